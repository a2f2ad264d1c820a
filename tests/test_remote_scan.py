"""Scanning remote files: concurrently by default, few requests per file, metadata read in
large cached blocks."""

from __future__ import annotations

import io

import numpy as np
import pytest
import xarray as xr
from test_read_plan import SlowHTTPServer

import zarr_manifest_store as zms
from zarr_manifest_store.io.remote_file import RemoteFile
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
        # Its format (the first 4 kB), its metadata (the first MiB, with its fingerprint),
        # its loaded coordinate: no HEAD.
        assert server.requests.count("GET", path=f"/f{f}.nc") == 3
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
    f = RemoteFile(Sources(), url, len(data), head=bytes(head), block_bytes=1024, max_blocks=3)
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
