"""Remote sources through fsspec's async file systems on 127.0.0.1: S3 (moto's server),
GCS (gcp-storage-emulator), Azure Blob Storage (Azurite) and HTTP (a small range server)."""

from __future__ import annotations

import pickle
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
import zarr
from read_fixtures import CHUNK_ROWS, manifest_for, store_over, write_source

import zarr_manifest_store as zms
from zarr_manifest_store.io.sources import Sources


@dataclass
class Uploaded:
    """The test dataset uploaded to an object store (S3 on moto, GCS or Azure on emulators)."""

    fs: Any
    bucket: str
    server: Any  # servers.S3Server | cloud_emulators.GCSServer | cloud_emulators.AzureServer
    path: Path  # the local original
    data: np.ndarray
    key: str = "archive/src.h5"

    @property
    def url(self) -> str:
        return f"{self.server.scheme}://{self.bucket}/{self.key}"

    @property
    def options(self) -> dict[str, Any]:
        return self.server.storage_options

    def data_requests(self) -> int:
        return self.server.data_requests(self.bucket, self.key)

    def metadata_requests(self) -> int:
        return self.server.metadata_requests(self.bucket, self.key)

    def required_etags(self) -> set[str | None]:
        """The ETags (unquoted) the data requests required with ``If-Match``; None: none."""
        found = self.server.required_etags(self.bucket, self.key)
        return {None if tag is None else tag.strip('"') for tag in found}

    def replace(self, seed: int = 5) -> Path:
        """Overwrite the object with a file of the same layout and other values."""
        other = self.path.with_name(f"other-{seed}.h5")
        write_source(other, seed=seed)
        self.fs.put(str(other), self.url)
        return other


@pytest.fixture(params=["s3", "gcs", "azure"])
def uploaded(request, tmp_path) -> Uploaded:
    fs, bucket, server = request.getfixturevalue(request.param)
    path = tmp_path / "src.h5"
    source = Uploaded(fs, bucket, server, path, write_source(path))
    fs.put(str(path), source.url)
    server.requests.clear()
    return source


def test_slice_of_adjacent_chunks_is_read_in_few_requests(uploaded):
    fp = Sources(uploaded.options).fingerprint(uploaded.url)
    assert fp.etag
    assert fp.size == uploaded.path.stat().st_size
    store = store_over(
        manifest_for(uploaded.path, uploaded.url, fp), storage_options=uploaded.options
    )
    arr = zarr.open_group(store, mode="r")["v"]
    data, server = uploaded.data, uploaded.server
    server.requests.clear()
    np.testing.assert_array_equal(arr[:2], data[:2])
    # The recorded fingerprint is checked on the data requests themselves: no HEAD.
    assert uploaded.metadata_requests() == 0
    for rows in (slice(0, 48), slice(6, 46), slice(20, 30)):
        server.requests.clear()
        np.testing.assert_array_equal(arr[rows], data[rows])
        chunks = len(range(48)[rows]) // CHUNK_ROWS
        gets = uploaded.data_requests()
        assert 1 <= gets <= chunks / 2, (rows, gets, chunks)
        assert uploaded.metadata_requests() == 0  # and not again

    server.requests.clear()
    np.testing.assert_array_equal(xr.open_zarr(store, chunks=None)["v"].values, data)
    assert uploaded.data_requests() <= 24 / 2


def test_changed_or_missing_object_refuses(uploaded):
    url, options = uploaded.url, uploaded.options
    manifest = manifest_for(uploaded.path, url, Sources(options).fingerprint(url))
    store = store_over(manifest, storage_options=options)
    np.testing.assert_array_equal(zarr.open_group(store, mode="r")["v"][:], uploaded.data)

    uploaded.replace()
    fresh = store_over(manifest, storage_options=options)
    with pytest.raises(
        zms.SourceChangedError, match=r"src\.h5' changed since it was scanned.*ETag"
    ):
        zarr.open_group(fresh, mode="r")["v"][:]
    report = fresh.verify()
    assert [s.status for s in report.sources] == ["changed"]

    uploaded.fs.rm(url)
    gone = store_over(manifest, storage_options=options, verify="never")
    with pytest.raises(FileNotFoundError, match=r"src\.h5.*chunk 'v/c/"):
        zarr.open_group(gone, mode="r")["v"][:]
    assert [s.status for s in gone.verify().sources] == ["missing"]


@pytest.mark.parametrize("recorded", [True, False])
def test_object_replaced_after_its_first_use_is_refused(uploaded, recorded):
    """The first-use check passed long ago: each range must still come from that object."""
    url, options = uploaded.url, uploaded.options
    fp = Sources(options).fingerprint(url) if recorded else None
    store = store_over(manifest_for(uploaded.path, url, fp), storage_options=options)
    arr = zarr.open_group(store, mode="r")["v"]
    np.testing.assert_array_equal(arr[:4], uploaded.data[:4])  # checked, and read

    other = uploaded.replace()
    with pytest.raises(zms.SourceChangedError, match=r"src\.h5' changed.*ETag.*chunk 'v/c/"):
        arr[:]
    rescanned = store_over(manifest_for(other, url), storage_options=options)
    np.testing.assert_array_equal(
        zarr.open_group(rescanned, mode="r")["v"][:], write_source(other, seed=5)
    )


@pytest.mark.parametrize("recorded", [True, False])
def test_every_range_is_asked_for_with_the_checked_etag(uploaded, recorded):
    """The server itself refuses a replaced object: each data request carries ``If-Match``
    with the ETag the object was checked with (recorded at scan time, or seen at first use)."""
    url, options = uploaded.url, uploaded.options
    fp = Sources(options).fingerprint(url)
    store = store_over(
        manifest_for(uploaded.path, url, fp if recorded else None), storage_options=options
    )
    uploaded.server.requests.clear()
    np.testing.assert_array_equal(zarr.open_group(store, mode="r")["v"][:], uploaded.data)
    assert uploaded.data_requests() >= 1
    assert uploaded.required_etags() == {fp.etag}

    uploaded.server.requests.clear()
    never = store_over(
        manifest_for(uploaded.path, url, fp), storage_options=options, verify="never"
    )
    np.testing.assert_array_equal(zarr.open_group(never, mode="r")["v"][:], uploaded.data)
    assert uploaded.required_etags() == {None}


def test_verify_modes_cost_one_check_per_source_or_per_read(uploaded):
    url, options = uploaded.url, uploaded.options
    for verify, checks in (("never", 0), ("first-use", 1)):
        store = store_over(manifest_for(uploaded.path, url), storage_options=options, verify=verify)
        uploaded.server.requests.clear()
        for _ in range(3):
            np.testing.assert_array_equal(zarr.open_group(store, mode="r")["v"][:], uploaded.data)
        assert uploaded.metadata_requests() == checks, verify
    store = store_over(manifest_for(uploaded.path, url), storage_options=options, verify="always")
    uploaded.server.requests.clear()
    store.get_sync("v/c/0/0")
    store.get_sync("v/c/1/0")
    assert uploaded.metadata_requests() == 2


def test_options_per_url_prefix_reach_two_endpoints(uploaded):
    second = type(uploaded.server)().start()
    try:
        second.create_bucket("bucket-b")
        copy = f"{second.scheme}://bucket-b/copy.h5"
        second.filesystem().put(str(uploaded.path), copy)
        a = manifest_for(uploaded.path, uploaded.url)
        b = manifest_for(uploaded.path, copy)
        meta = store_over(a).root["v"].metadata
        group = zms.ManifestGroup(
            arrays={
                "a": zms.ManifestArray(metadata=meta, manifest=a),
                "b": zms.ManifestArray(metadata=meta, manifest=b),
            }
        )
        options = {
            f"{second.scheme}://{uploaded.bucket}/": uploaded.options,
            f"{second.scheme}://bucket-b/": second.storage_options,
        }
        store = zms.ManifestStore(group, storage_options=options)
        g = zarr.open_group(store, mode="r")
        second.requests.clear()
        np.testing.assert_array_equal(g["a"][:], uploaded.data)
        np.testing.assert_array_equal(g["b"][:], uploaded.data)
        assert second.data_requests("bucket-b", "copy.h5") >= 1
        assert uploaded.data_requests() >= 1

        clone = pickle.loads(pickle.dumps(store))  # the options travel; no session does
        np.testing.assert_array_equal(zarr.open_group(clone, mode="r")["b"][:], uploaded.data)
    finally:
        second.stop()


def test_endpoint_from_the_environment(uploaded, monkeypatch):
    server = uploaded.server
    for name, value in server.environment.items():
        monkeypatch.setenv(name, value)
    # Credentials: conftest's AWS variables; GCS's emulator takes anonymous requests; Azure's
    # connection string carries the account key.
    options = {"skip_instance_cache": True} | ({"token": "anon"} if server.scheme == "gs" else {})
    store = store_over(manifest_for(uploaded.path, uploaded.url), storage_options=options)
    np.testing.assert_array_equal(zarr.open_group(store, mode="r")["v"][:], uploaded.data)
    assert uploaded.data_requests() >= 1


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


def test_remote_allow_list(uploaded):
    url, options, bucket = uploaded.url, uploaded.options, uploaded.bucket
    scheme = uploaded.server.scheme
    store = store_over(
        manifest_for(uploaded.path, url),
        storage_options=options,
        allow=[f"{scheme}://{bucket}/other/"],
    )
    with pytest.raises(PermissionError, match=r"archive/src\.h5.*outside the allowed prefixes"):
        zarr.open_group(store, mode="r")["v"][:]
    assert not uploaded.server.requests.entries  # refused before any request
    allowed = store_over(
        manifest_for(uploaded.path, url),
        storage_options=options,
        allow=[f"{scheme}://{bucket}/archive/"],
    )
    assert allowed.verify().ok


def _read_in_child(store: zms.ManifestStore, conn) -> None:
    try:
        conn.send(zarr.open_group(store, mode="r")["v"][:])
    except BaseException as e:
        conn.send(repr(e))


def _in_forked_child(store: zms.ManifestStore) -> Any:
    """What reading the store's array ``v`` gives in a forked child: the values, or the
    ``repr`` of the error."""
    import multiprocessing
    import warnings

    parent, child = multiprocessing.Pipe()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # fork() of a threaded process
        process = multiprocessing.get_context("fork").Process(
            target=_read_in_child, args=(store, child)
        )
        process.start()
    got = parent.recv() if parent.poll(60) else "no answer from the child"
    process.join(10)
    return got


def test_a_forked_child_reads_with_fresh_connections(http_server, tmp_path):
    path = tmp_path / "src.h5"
    data = write_source(path)
    shutil.copy(path, http_server.root / "src.h5")
    store = store_over(manifest_for(path, f"{http_server.url}/src.h5"))
    np.testing.assert_array_equal(zarr.open_group(store, mode="r")["v"][:], data)  # parent: warm

    got = _in_forked_child(store)
    assert not isinstance(got, str), got
    np.testing.assert_array_equal(got, data)


def test_a_forked_child_still_refuses_a_replaced_object(uploaded):
    """The parent read through obstore, whose runtime a forked child cannot use: the child
    reads through fsspec, and checks the object before each batch of reads instead."""
    url, options = uploaded.url, uploaded.options
    fp = Sources(options).fingerprint(url)
    store = store_over(manifest_for(uploaded.path, url, fp), storage_options=options)
    np.testing.assert_array_equal(zarr.open_group(store, mode="r")["v"][:], uploaded.data)

    got = _in_forked_child(store)
    assert not isinstance(got, str), got
    np.testing.assert_array_equal(got, uploaded.data)
    uploaded.replace()
    got = _in_forked_child(store)
    assert isinstance(got, str), "the child read a replaced object"
    assert "SourceChangedError" in got, got
    assert "changed" in got, got
