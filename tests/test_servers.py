"""The test peers themselves: ranges, ETags and faults over real loopback sockets."""

from __future__ import annotations

import fsspec
import pytest


def test_http_server_serves_ranges_etags_and_faults(http_server):
    (http_server.root / "f.bin").write_bytes(bytes(range(100)))
    url = f"{http_server.url}/f.bin"
    fs = fsspec.filesystem("http", skip_instance_cache=True)
    assert fs.cat_file(url, start=10, end=20) == bytes(range(10, 20))
    info = fs.info(url)
    assert info["size"] == 100
    assert info["ETag"]
    assert http_server.requests.count("GET", "/f.bin") >= 1
    http_server.inject("f.bin", ["500"])
    with pytest.raises(Exception, match="500"):
        fs.cat_file(url, start=0, end=4)
    assert fs.cat_file(url, start=0, end=4) == bytes(range(4))


@pytest.mark.parametrize("store", ["s3", "gcs", "azure"])
def test_object_store_servers_count_requests_per_object(request, store):
    fs, bucket, server = request.getfixturevalue(store)
    fs.pipe(f"{bucket}/dir/x.bin", b"abcdef")
    server.requests.clear()
    assert fs.cat_file(f"{bucket}/dir/x.bin", start=1, end=3) == b"bc"
    assert server.data_requests(bucket, "dir/x.bin") == 1
    assert server.metadata_requests(bucket, "dir/x.bin") == 0
    with pytest.raises(FileNotFoundError):
        fs.cat_file(f"{bucket}/dir/missing.bin")


def test_gcs_server_sends_etags_with_ranges(gcs):
    fs, bucket, server = gcs
    fs.pipe(f"{bucket}/dir/x.bin", b"abcdef")
    server.requests.clear()
    headers, data = fs.call("GET", fs.url(f"{bucket}/dir/x.bin"), headers={"Range": "bytes=2-3"})
    assert data == b"cd"
    assert headers["ETag"] == fs.info(f"{bucket}/dir/x.bin")["etag"]
    assert server.metadata_requests(bucket, "dir/x.bin") == 1


def test_azure_proxy_relays_head_answers(azure):
    fs, container, server = azure
    fs.pipe(f"{container}/x.bin", b"abcdef")
    server.requests.clear()
    info = fs.info(f"{container}/x.bin")  # a HEAD: the size comes from its Content-Length
    assert (info["size"], server.metadata_requests(container, "x.bin")) == (6, 1)
    assert info["etag"]
