"""Remote sources through fsspec's async file systems: S3 (moto server) and HTTP, on 127.0.0.1."""

from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest
import xarray as xr
import zarr
from read_fixtures import CHUNK_ROWS, manifest_for, store_over, write_source

import zarr_manifest_store as zms
from zarr_manifest_store.sources import Sources


@pytest.fixture
def s3_source(s3, tmp_path):
    """The test dataset uploaded to S3: (fs, bucket, server, url, local copy, values)."""
    fs, bucket, server = s3
    path = tmp_path / "src.h5"
    data = write_source(path)
    url = f"s3://{bucket}/archive/src.h5"
    fs.put(str(path), url)
    return fs, bucket, server, url, path, data


def test_s3_slice_of_adjacent_chunks_is_read_in_few_requests(s3_source):
    _, bucket, server, url, path, data = s3_source
    key = f"/{bucket}/archive/src.h5"  # this test's object only
    fp = Sources(server.storage_options).fingerprint(url)
    assert fp.etag
    assert fp.size == path.stat().st_size
    store = store_over(manifest_for(path, url, fp), storage_options=server.storage_options)
    arr = zarr.open_group(store, mode="r")["v"]
    for rows in (slice(0, 48), slice(6, 46), slice(20, 30)):
        server.requests.clear()
        np.testing.assert_array_equal(arr[rows], data[rows])
        chunks = len(range(48)[rows]) // CHUNK_ROWS
        gets = server.requests.count("GET", key)
        assert 1 <= gets <= chunks / 2, (rows, gets, chunks)
    heads = server.requests.count("HEAD", key)
    assert heads == 0  # the fingerprint was checked once, on first use, before these

    server.requests.clear()
    np.testing.assert_array_equal(xr.open_zarr(store, chunks=None)["v"].values, data)
    assert server.requests.count("GET", key) <= 24 / 2


def test_s3_changed_or_missing_object_refuses(s3_source):
    fs, _, server, url, path, data = s3_source
    fp = Sources(server.storage_options).fingerprint(url)
    manifest = manifest_for(path, url, fp)
    store = store_over(manifest, storage_options=server.storage_options)
    np.testing.assert_array_equal(zarr.open_group(store, mode="r")["v"][:], data)

    other = path.with_name("other.h5")
    write_source(other, seed=5)  # same layout, other values
    fs.put(str(other), url)
    fresh = store_over(manifest, storage_options=server.storage_options)
    with pytest.raises(
        zms.SourceChangedError, match=r"src\.h5' changed since it was scanned.*ETag"
    ):
        zarr.open_group(fresh, mode="r")["v"][:]
    report = fresh.verify()
    assert [s.status for s in report.sources] == ["changed"]

    fs.rm(url)
    gone = store_over(manifest, storage_options=server.storage_options, verify="never")
    with pytest.raises(FileNotFoundError, match=r"src\.h5.*chunk 'v/c/"):
        zarr.open_group(gone, mode="r")["v"][:]
    assert [s.status for s in gone.verify().sources] == ["missing"]


@pytest.mark.parametrize("recorded", [True, False])
def test_s3_object_replaced_after_its_first_use_is_refused(s3_source, recorded):
    """The first-use check passed long ago: each range must still come from that object."""
    fs, _, server, url, path, data = s3_source
    fp = Sources(server.storage_options).fingerprint(url) if recorded else None
    store = store_over(manifest_for(path, url, fp), storage_options=server.storage_options)
    arr = zarr.open_group(store, mode="r")["v"]
    np.testing.assert_array_equal(arr[:4], data[:4])  # checked, and read

    other = path.with_name("other.h5")
    write_source(other, seed=5)  # same layout, other values
    fs.put(str(other), url)
    with pytest.raises(zms.SourceChangedError, match=r"src\.h5' changed.*ETag.*chunk 'v/c/"):
        arr[:]
    rescanned = store_over(manifest_for(other, url), storage_options=server.storage_options)
    np.testing.assert_array_equal(
        zarr.open_group(rescanned, mode="r")["v"][:], write_source(other, seed=5)
    )


def test_s3_verify_modes_cost_one_head_per_source_or_per_read(s3_source):
    _, bucket, server, url, path, data = s3_source
    key = f"/{bucket}/archive/src.h5"
    for verify, heads in (("never", 0), ("first-use", 1)):
        store = store_over(
            manifest_for(path, url), storage_options=server.storage_options, verify=verify
        )
        server.requests.clear()
        for _ in range(3):
            np.testing.assert_array_equal(zarr.open_group(store, mode="r")["v"][:], data)
        assert server.requests.count("HEAD", key) == heads, verify
    store = store_over(
        manifest_for(path, url), storage_options=server.storage_options, verify="always"
    )
    server.requests.clear()
    store.get_sync("v/c/0/0")
    store.get_sync("v/c/1/0")
    assert server.requests.count("HEAD", key) == 2


def test_s3_options_per_url_prefix_reach_two_endpoints(s3_source, tmp_path):
    from servers import S3Server

    _, bucket, server, url, path, data = s3_source
    second = S3Server().start()
    try:
        second.client().create_bucket(Bucket="bucket-b")
        second.client().upload_file(str(path), "bucket-b", "copy.h5")
        a = manifest_for(path, url)
        b = manifest_for(path, "s3://bucket-b/copy.h5")
        meta = store_over(a).root["v"].metadata
        group = zms.ManifestGroup(
            arrays={
                "a": zms.ManifestArray(metadata=meta, manifest=a),
                "b": zms.ManifestArray(metadata=meta, manifest=b),
            }
        )
        options = {
            f"s3://{bucket}/": server.storage_options,
            "s3://bucket-b/": second.storage_options,
        }
        store = zms.ManifestStore(group, storage_options=options)
        g = zarr.open_group(store, mode="r")
        np.testing.assert_array_equal(g["a"][:], data)
        np.testing.assert_array_equal(g["b"][:], data)
        assert second.requests.count("GET", "/copy.h5") >= 1

        clone = pickle.loads(pickle.dumps(store))  # the options travel; no session does
        np.testing.assert_array_equal(zarr.open_group(clone, mode="r")["b"][:], data)
    finally:
        second.stop()


def test_s3_endpoint_and_credentials_from_the_environment(s3_source, monkeypatch):
    _, _, server, url, path, data = s3_source
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", server.endpoint_url)  # credentials: conftest's env
    store = store_over(manifest_for(path, url), storage_options={"skip_instance_cache": True})
    np.testing.assert_array_equal(zarr.open_group(store, mode="r")["v"][:], data)


def test_http_source_reads_and_honours_proxy_variables(http_server, tmp_path, monkeypatch):
    path = tmp_path / "src.h5"
    data = write_source(path)
    shutil.copy(path, http_server.root / "src.h5")
    url = f"{http_server.url}/src.h5"
    fp = Sources().fingerprint(url)
    assert fp.etag
    store = store_over(manifest_for(path, url, fp), retries=0)
    http_server.requests.clear()
    np.testing.assert_array_equal(zarr.open_group(store, mode="r")["v"][:], data)
    assert http_server.requests.count("GET", "/src.h5") <= 24 / 2

    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("NO_PROXY", "")
    proxied = store_over(manifest_for(path, url), retries=0, verify="never")
    with pytest.raises(OSError, match=r"src\.h5.*chunk 'v/c/"):
        zarr.open_group(proxied, mode="r")["v"][:2]
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    direct = store_over(manifest_for(path, url), retries=0, verify="never")
    np.testing.assert_array_equal(zarr.open_group(direct, mode="r")["v"][:2], data[:2])


def test_remote_allow_list(s3_source):
    _, bucket, server, url, path, _ = s3_source
    store = store_over(
        manifest_for(path, url),
        storage_options=server.storage_options,
        allow=[f"s3://{bucket}/other/"],
    )
    server.requests.clear()
    with pytest.raises(PermissionError, match=r"archive/src\.h5.*outside the allowed prefixes"):
        zarr.open_group(store, mode="r")["v"][:]
    assert not server.requests.entries  # refused before any request
    allowed = store_over(
        manifest_for(path, url),
        storage_options=server.storage_options,
        allow=[f"s3://{bucket}/archive/"],
    )
    assert allowed.verify().ok


def _read_in_child(store: zms.ManifestStore, conn) -> None:
    try:
        conn.send(zarr.open_group(store, mode="r")["v"][:])
    except BaseException as e:
        conn.send(repr(e))


def test_a_forked_child_reads_with_fresh_connections(http_server, tmp_path):
    import multiprocessing
    import warnings

    path = tmp_path / "src.h5"
    data = write_source(path)
    shutil.copy(path, http_server.root / "src.h5")
    store = store_over(manifest_for(path, f"{http_server.url}/src.h5"))
    np.testing.assert_array_equal(zarr.open_group(store, mode="r")["v"][:], data)  # parent: warm

    parent, child = multiprocessing.Pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() of a threaded process
        process = multiprocessing.get_context("fork").Process(
            target=_read_in_child, args=(store, child)
        )
        process.start()
    got = parent.recv() if parent.poll(60) else "no answer from the child"
    process.join(10)
    assert not isinstance(got, str), got
    np.testing.assert_array_equal(got, data)
