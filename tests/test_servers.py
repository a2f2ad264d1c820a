"""The test peers themselves: ranges, ETags and faults over real loopback sockets."""

from __future__ import annotations

import hashlib
import http.client
from urllib.parse import quote, urlsplit

import fsspec
import pytest

from zarr_manifest_store.io.sources import Sources


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
    url = f"{server.scheme}://{bucket}/dir/x.bin"
    sources = Sources(server.storage_options, verify="never")  # reads as the stores do
    assert bytes(sources.read_sync(url, 1, 2)) == b"bc"
    assert server.data_requests(bucket, "dir/x.bin") == 1
    assert server.metadata_requests(bucket, "dir/x.bin") == 0
    assert sources.fingerprint(url).size == 6
    assert server.metadata_requests(bucket, "dir/x.bin") == 1
    with pytest.raises(FileNotFoundError):
        sources.read_sync(f"{server.scheme}://{bucket}/dir/missing.bin", 0, 1)


def test_gcs_server_speaks_the_xml_api_for_heads_and_ranges(gcs):
    fs, bucket, server = gcs
    fs.pipe(f"{bucket}/dir/x.bin", b"abcdef")
    etag = hashlib.md5(b"abcdef").hexdigest()  # GCS's XML API ETag: the hex MD5 of the bytes
    server.requests.clear()
    encoded = f"/{quote(bucket, safe='')}/dir/x%2Ebin".replace("-", "%2D")  # as obstore sends

    def ask(method: str, headers: dict[str, str]) -> tuple[int, dict[str, str], bytes]:
        connection = http.client.HTTPConnection(urlsplit(server.endpoint_url).netloc, timeout=10)
        try:
            connection.request(method, encoded, headers=headers)
            response = connection.getresponse()
            return response.status, dict(response.getheaders()), response.read()
        finally:
            connection.close()

    status, headers, data = ask("GET", {"Range": "bytes=2-3"})
    assert (status, data, headers["ETag"]) == (206, b"cd", f'"{etag}"')
    assert headers["Last-Modified"]
    status, headers, _ = ask("HEAD", {})
    assert (status, headers["Content-Length"], headers["ETag"]) == (200, "6", f'"{etag}"')
    assert ask("GET", {"Range": "bytes=2-3", "If-Match": '"other"'})[0] == 412
    assert ask("GET", {"Range": "bytes=2-3", "If-Match": f'"{etag}"'})[0] == 206
    assert server.data_requests(bucket, "dir/x.bin") == 3
    assert server.metadata_requests(bucket, "dir/x.bin") == 1


def test_azure_proxy_relays_head_answers(azure):
    fs, container, server = azure
    fs.pipe(f"{container}/x.bin", b"abcdef")
    server.requests.clear()
    info = fs.info(f"{container}/x.bin")  # a HEAD: the size comes from its Content-Length
    assert (info["size"], server.metadata_requests(container, "x.bin")) == (6, 1)
    assert info["etag"]
