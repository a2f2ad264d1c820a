"""Scanning remote files: concurrently by default, one request per small file (its first
block serves identification, metadata, fingerprint and loaded coordinates), metadata read in
large cached blocks, one client per store shared by every reader."""

from __future__ import annotations

import collections
import io

import numpy as np
import obstore.store
import pytest
import xarray as xr
from test_read_plan import SlowHTTPServer

import zarr_manifest_store as zms
from zarr_manifest_store.io import clients
from zarr_manifest_store.io.remote_file import (
    BLOCK_BYTES,
    RemoteFile,
    cached_bytes,
    shared_remote_file,
    sharing,
)
from zarr_manifest_store.io.sources import Sources

FILES = 6


@pytest.fixture
def slow_files(tmp_path):
    """``FILES`` netCDF-4 files of 4 steps each, on a server holding each GET 0.2 s."""
    root = tmp_path / "served"
    root.mkdir()
    server = SlowHTTPServer(root, delay=0.2).start()
    rng = np.random.default_rng(0)
    values = rng.normal(size=(FILES * 4, 8, 10)).astype("float32")
    for f in range(FILES):
        ds = xr.Dataset(
            {"t": (("time", "y", "x"), values[f * 4 : (f + 1) * 4])},
            coords={"time": np.arange(4) + 4 * f},
        )
        ds.to_netcdf(root / f"f{f}.nc", engine="h5netcdf", encoding={"t": {"zlib": True}})
    yield server, [f"{server.url}/f{f}.nc" for f in range(FILES)], values
    server.stop()


def test_remote_files_are_scanned_concurrently_in_few_requests(slow_files):
    server, urls, values = slow_files
    ds = zms.open_virtual_mfdataset(urls, combine="nested", concat_dim="time")
    assert server.most_in_flight >= FILES // 2  # not one file after another
    for f in range(FILES):
        # Its first MiB, with its fingerprint, serves its format, its metadata and its
        # loaded coordinate: one GET, no HEAD.
        assert server.requests.count("GET", path=f"/f{f}.nc") == 1
        assert server.requests.count("HEAD", path=f"/f{f}.nc") == 0
    store = ds.virtualize.to_store()
    np.testing.assert_array_equal(xr.open_zarr(store, chunks=None)["t"].values, values)


def test_remote_file_reads_in_cached_blocks(http_server):
    data = np.random.default_rng(1).bytes(10_000)
    (http_server.root / "blob.bin").write_bytes(data)
    url = f"{http_server.url}/blob.bin"
    head, fingerprint = Sources().read_head(url, 2048)
    assert (bytes(head), fingerprint.size) == (data[:2048], len(data))
    http_server.requests.clear()
    f = RemoteFile(
        Sources(),
        url,
        len(data),
        fingerprint=fingerprint,
        head=bytes(head),
        block_bytes=1024,
        max_blocks=3,
    )
    assert f.read(100) == data[:100]  # from the head
    assert f.requests == 0
    f.seek(5000)
    assert f.read(2500) == data[5000:7500]  # blocks 4 to 7, in one request
    assert f.requests == 1
    f.seek(6000)
    assert f.read(100) == data[6000:6100]  # still cached
    assert f.requests == 1
    f.seek(-10, io.SEEK_END)
    assert f.read() == data[-10:]
    assert f.requests == 2
    f.seek(0)
    assert f.read(10) == data[:10]  # the head's blocks were dropped: fetched again
    assert f.requests == 3
    assert http_server.requests.count("GET", path="/blob.bin") == 3


def write_netcdf(path, steps: int = 4, ny: int = 8, nx: int = 10, seed: int = 0) -> xr.Dataset:
    """A netCDF-4 file with a time coordinate and a compressed variable; the dataset written."""
    values = np.random.default_rng(seed).normal(size=(steps, ny, nx)).astype("float32")
    ds = xr.Dataset(
        {"t": (("time", "y", "x"), values)}, coords={"time": np.arange(steps, dtype="int64")}
    )
    ds.to_netcdf(path, engine="h5netcdf", encoding={"t": {"zlib": True, "chunksizes": (1, ny, nx)}})
    return ds


@pytest.fixture(params=["s3", "http"])
def remote(request, tmp_path, http_server):
    """Where a test puts a file: ``put(local path, name) -> (url, storage_options, counts)``,
    ``counts()`` giving the (GET, HEAD) requests for it since it was put."""
    if request.param == "http":

        def put(path, name):
            (http_server.root / name).write_bytes(path.read_bytes())
            http_server.requests.clear()

            def counts():
                log = http_server.requests
                return log.count("GET", path=f"/{name}"), log.count("HEAD", path=f"/{name}")

            return f"{http_server.url}/{name}", None, counts

        return put
    fs, bucket, server = request.getfixturevalue("s3")

    def put(path, name):
        fs.put(str(path), f"s3://{bucket}/{name}")
        server.requests.clear()

        def counts():
            return server.data_requests(bucket, name), server.metadata_requests(bucket, name)

        return f"s3://{bucket}/{name}", server.storage_options, counts

    return put


def test_a_small_remote_file_is_scanned_and_opened_in_one_request(remote, tmp_path):
    written = write_netcdf(tmp_path / "small.nc")
    url, options, counts = remote(tmp_path / "small.nc", "small.nc")
    group = zms.scan(url, storage_options=options)
    assert counts() == (1, 0)  # identified and scanned from its first block, fingerprint included
    ds = zms.open_virtual_dataset(url, storage_options=options)
    assert counts() == (2, 0)  # the loaded time coordinate came from that block too
    np.testing.assert_array_equal(ds["time"].values, written["time"].values)
    assert group["t"].manifest.fingerprints == ds["t"].data.manifest.fingerprints
    read = xr.open_zarr(ds.virtualize.to_store(), chunks=None)
    np.testing.assert_array_equal(read["t"].values, written["t"].values)


def test_a_small_remote_netcdf3_file_is_scanned_and_opened_in_one_request(remote, tmp_path):
    values = np.random.default_rng(4).normal(size=(5, 3)).astype("float32")
    written = xr.Dataset(
        {"t": (("time", "x"), values)}, coords={"time": np.arange(5, dtype="int32")}
    )
    written.to_netcdf(tmp_path / "classic.nc", engine="scipy", format="NETCDF3_64BIT")
    url, options, counts = remote(tmp_path / "classic.nc", "classic.nc")
    ds = zms.open_virtual_dataset(url, storage_options=options)
    assert counts() == (1, 0)  # its format, header, fingerprint and coordinate: one block
    read = xr.open_zarr(ds.virtualize.to_store(), chunks=None)
    np.testing.assert_array_equal(read["t"].values, values)
    np.testing.assert_array_equal(read["time"].values, written["time"].values)


def test_a_larger_file_reads_on_in_few_requests_without_a_head(remote, tmp_path):
    # ~2.3 MiB of barely compressible chunks: the time coordinate, written last, lies beyond
    # the first block, and is read on its own (checked by the first block's fingerprint);
    # identification read no bytes of its own.
    written = write_netcdf(tmp_path / "large.nc", steps=24, ny=160, nx=160)
    assert (tmp_path / "large.nc").stat().st_size > 2 * BLOCK_BYTES
    url, options, counts = remote(tmp_path / "large.nc", "large.nc")
    ds = zms.open_virtual_dataset(url, storage_options=options)
    assert counts() == (2, 0)  # the first block (all the metadata), the coordinate
    np.testing.assert_array_equal(ds["time"].values, written["time"].values)


def test_a_file_replaced_after_its_first_block_is_refused(s3, tmp_path):
    fs, bucket, server = s3
    data = np.random.default_rng(2).bytes(3 * BLOCK_BYTES)
    url = f"s3://{bucket}/blob.bin"
    fs.pipe(url, data)
    sources = Sources(server.storage_options)
    f = RemoteFile.open(sources, url)
    assert f.read(10) == data[:10]
    fs.pipe(url, data[::-1])
    f.seek(2 * BLOCK_BYTES)
    with pytest.raises(zms.SourceChangedError, match=r"blob\.bin"):
        f.read(10)


def test_files_opened_within_sharing_share_their_blocks(http_server):
    data = np.random.default_rng(3).bytes(3000)
    (http_server.root / "a.bin").write_bytes(data)
    url = f"{http_server.url}/a.bin"
    sources = Sources()
    with sharing():
        first = shared_remote_file(sources, url)
        assert shared_remote_file(Sources(), url) is first  # the same storage options
        with sharing():  # an inner sharing joins the outer one
            assert shared_remote_file(sources, url) is first
        assert cached_bytes(Sources(), url, 100, 200) == data[100:200]
        assert cached_bytes(Sources({"headers": {"a": "b"}}), url, 100, 200) is None
    assert cached_bytes(sources, url, 100, 200) is None  # dropped with the sharing
    assert shared_remote_file(sources, url) is not first
    assert http_server.requests.count("GET", path="/a.bin") == 2


def test_one_client_per_store_across_files_threads_and_reads(s3, tmp_path, monkeypatch):
    fs, bucket, server = s3
    urls = []
    for f in range(FILES):
        write_netcdf(tmp_path / f"f{f}.nc", seed=f)
        fs.put(str(tmp_path / f"f{f}.nc"), f"s3://{bucket}/f{f}.nc")
        urls.append(f"s3://{bucket}/f{f}.nc")
    made = []
    original = obstore.store.S3Store

    def counting(*args, **kwargs):
        made.append(kwargs["bucket"])
        return original(*args, **kwargs)

    monkeypatch.setattr(obstore.store, "S3Store", counting)
    monkeypatch.setattr(clients, "_SHARED", collections.OrderedDict())
    options = server.storage_options
    ds = zms.open_virtual_mfdataset(
        urls, combine="nested", concat_dim="time", storage_options=options
    )
    xr.open_zarr(ds.virtualize.to_store(), chunks=None)["t"].load()
    assert made == [bucket]
    other = {**options, "client_kwargs": {**options["client_kwargs"], "region_name": "eu-west-1"}}
    zms.scan(urls[0], storage_options=other)
    assert made == [bucket, bucket]  # other options: a client of their own


def test_faults_while_scanning_are_retried_then_named(http_server, tmp_path):
    written = write_netcdf(http_server.root / "flaky.nc")
    url = f"{http_server.url}/flaky.nc"
    http_server.inject("flaky.nc", ["500", "reset"])
    ds = zms.open_virtual_dataset(url)
    np.testing.assert_array_equal(ds["time"].values, written["time"].values)
    assert http_server.requests.count("GET", path="/flaky.nc") == 3  # two retries, one block
    http_server.inject("flaky.nc", ["500"] * 5)
    with pytest.raises(OSError, match=r"flaky\.nc' failed after 5 attempt"):
        zms.open_virtual_dataset(url)
