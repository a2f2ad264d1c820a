"""scan_zarr from remote prefixes, through zms.scan, the xarray entry points and the CLI, and
combined with netCDF files."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
import xarray as xr
import zarr
from samples import Pin, sample

import zarr_manifest_store as zms
from zarr_manifest_store.cli import main

pytestmark = pytest.mark.filterwarnings(
    "ignore::zarr.errors.ZarrUserWarning", "ignore::zarr.errors.UnstableSpecificationWarning"
)


def era(times: np.ndarray, seed: int) -> xr.Dataset:
    rng = np.random.default_rng(seed)
    return xr.Dataset(
        {"t2m": (("time", "lat"), rng.normal(size=(len(times), 5)).astype("f4"), {"units": "K"})},
        coords={"time": times, "lat": np.arange(5.0)},
    )


@pytest.mark.parametrize("server", ["s3", "gcs", "azure"])
@pytest.mark.parametrize("zarr_format", [2, 3])
def test_remote_store_is_listed_once_and_read_exactly(request, tmp_path, server, zarr_format):
    fs, bucket, srv = request.getfixturevalue(server)
    local = tmp_path / "s.zarr"
    era(np.arange(6), 0).chunk({"time": 2}).to_zarr(local, zarr_format=zarr_format)
    url = f"{srv.scheme}://{bucket}/archive/s.zarr"
    fs.put(str(local), url.partition("://")[2], recursive=True)
    options = srv.storage_options
    group = zms.scan(url, storage_options=options)  # recognised by its root metadata object
    chunk = group["t2m"].manifest.get((1, 0))
    assert chunk.path.startswith(f"{url}/t2m/")
    assert chunk.offset == 0
    assert group["t2m"].manifest.fingerprints[chunk.path].etag
    store = zms.ManifestStore(group, storage_options=options)
    xr.testing.assert_identical(xr.open_zarr(store).load(), xr.open_zarr(local).load())


def test_http_prefixes_cannot_be_listed_and_are_refused(http_server, tmp_path):
    era(np.arange(2), 0).to_zarr(http_server.root / "s.zarr", zarr_format=3)
    with pytest.raises(zms.UnsupportedDatasetError, match="cannot list the Zarr store"):
        zms.scan_zarr(f"{http_server.url}/s.zarr")


@pytest.fixture
def archive(tmp_path):
    """January in a Zarr v2 store, February and March in netCDF files."""
    days = np.arange("2026-01-01", "2026-04-01", dtype="datetime64[D]").astype("datetime64[ns]")
    months = [days[:31], days[31:59], days[59:]]
    january = era(months[0], 0).chunk({"time": 7})
    plain = {"t2m": {"compressors": None}}  # as the netCDF files: chunks of one array decode alike
    january.to_zarr(tmp_path / "jan.zarr", zarr_format=2, encoding=plain)
    era(months[1], 1).to_netcdf(tmp_path / "feb.nc", engine="h5netcdf")
    era(months[2], 2).to_netcdf(tmp_path / "mar.nc", engine="h5netcdf")
    return tmp_path


def test_scan_and_open_virtual_dataset_read_zarr_stores(archive):
    assert zms.scan(archive / "jan.zarr")["t2m"].shape == (31, 5)
    virtual = zms.open_virtual_dataset(str(archive / "jan.zarr"), loadable_variables=["time"])
    assert type(virtual.t2m.data).__name__ == "ManifestArray"
    expected = xr.open_zarr(archive / "jan.zarr").load()
    got = xr.open_zarr(virtual.virtualize.to_store()).load()
    xr.testing.assert_identical(got, expected)


def test_a_zarr_archive_combined_with_netcdf_files(archive):
    paths = [str(archive / name) for name in ("jan.zarr", "feb.nc", "mar.nc")]
    combined = zms.open_virtual_mfdataset(paths, combine="by_coords")
    assert combined.t2m.shape == (90, 5)
    expected = xr.concat(
        [xr.open_zarr(paths[0]), *(xr.open_dataset(p, engine="h5netcdf") for p in paths[1:])],
        dim="time",
    ).load()
    got = xr.open_zarr(combined.virtualize.to_store()).load()
    np.testing.assert_array_equal(got.t2m.values, expected.t2m.values)
    np.testing.assert_array_equal(got.time.values, expected.time.values)


def test_cli_scans_a_zarr_store(archive, capsys):
    assert main(["scan", str(archive / "jan.zarr"), "-o", str(archive / "doc.zarr")]) == 0
    store = zms.ManifestStore.open(archive / "doc.zarr", allow=[str(archive)])
    expected = xr.open_zarr(archive / "jan.zarr").load()
    xr.testing.assert_identical(xr.open_zarr(store).load(), expected)


ZARR_2_18 = Pin(
    "zarr",
    "2.18.3",
    "zarr-2.18.3.tar.gz",
    "2580d8cb6dd84621771a10d31c4d777dca8a27706a1a89b29f42d2d37e2df5ce",
)


def test_zarr_2_fixtures_published_in_its_sdist():
    """zarr 2.18's compatibility fixtures (173 arrays: every dtype, compressor, order and
    separator zarr 2 wrote): each reads as zarr reads it, or is refused where zarr refuses it."""
    root = sample(ZARR_2_18, "zarr-2.18.3/fixture")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        scanned = zms.scan_zarr(root, on_unsupported="skip")
    group = zarr.open_group(zms.ManifestStore(scanned), mode="r")
    refused = {m.group(1) for w in caught if (m := re.search(r"dataset '([^']+)'", str(w.message)))}
    paths = sorted(str(p.parent.relative_to(root)) for p in root.rglob(".zarray"))
    assert len(paths) == 173
    for path in paths:
        try:
            expected = zarr.open_array(root / path, mode="r")[...]
        except (TypeError, ValueError):  # zarr 3 refuses these too
            assert path in refused
            continue
        np.testing.assert_array_equal(group[path][...], expected, err_msg=path)
    assert len(refused) == 14
