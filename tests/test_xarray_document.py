"""ds.virtualize.to_zarr and the zarr_manifest engine: a virtual dataset stored and reopened."""

from __future__ import annotations

import pytest
import xarray as xr
from xarray_files import daily_files

import zarr_manifest_store as zms


def expected_mf(paths, **kwargs) -> xr.Dataset:
    return xr.open_mfdataset(paths, engine="h5netcdf", **kwargs).load()


@pytest.mark.parametrize(
    ("steps", "units", "edge_chunks"),
    [
        pytest.param((4, 4, 4), "hours since 2020-01-01", "refuse", id="daily"),
        pytest.param((5, 3, 4), "hours since 2020-01-01", "inline", id="ragged-compressed"),
        pytest.param(
            (4, 4, 4),
            [
                "hours since 2020-01-01",
                "minutes since 2020-01-01 04:00",
                "seconds since 1970-01-01",
            ],
            "refuse",
            id="per-file-time-units",
        ),
    ],
)
def test_reopened_document_equals_open_mfdataset(tmp_path, steps, units, edge_chunks):
    files = daily_files(tmp_path / "src", steps, units=units)
    vds = zms.open_virtual_mfdataset(files, edge_chunks=edge_chunks)
    out = tmp_path / "all.zarr"
    assert vds.virtualize.to_zarr(out) is None
    expected = expected_mf(files, combine="by_coords")
    allow = [str(tmp_path / "src")]

    by_engine = xr.open_dataset(out, engine="zarr_manifest", allow=allow).load()
    xr.testing.assert_identical(by_engine, expected)
    store = zms.ManifestStore.open(out, allow=allow)
    xr.testing.assert_identical(xr.open_zarr(store).load(), expected)
    xr.testing.assert_identical(xr.open_dataset(store, engine="zarr_manifest").load(), expected)
    xr.testing.assert_identical(xr.open_dataset(store).load(), expected)  # engine guessed


def test_document_holds_loaded_variables_itself(tmp_path):
    """Coordinates read from the document alone; the virtual data needs its sources allowed."""
    files = daily_files(tmp_path / "src", (2, 2))
    out = tmp_path / "all.zarr"
    zms.open_virtual_mfdataset(files).virtualize.to_zarr(out)
    ds = xr.open_dataset(out, engine="zarr_manifest")  # only the document's folder is allowed
    expected = expected_mf(files)
    xr.testing.assert_identical(ds.coords.to_dataset(), expected.coords.to_dataset())
    with pytest.raises(PermissionError, match="outside the allowed prefixes"):
        ds["t2m"].load()


def test_engine_passes_decoding_options(tmp_path):
    files = daily_files(tmp_path / "src", (2, 2))
    out = tmp_path / "all.zarr"
    zms.open_virtual_mfdataset(files).virtualize.to_zarr(out)
    allow = [str(tmp_path / "src")]
    raw = xr.open_dataset(
        out, engine="zarr_manifest", allow=allow, decode_times=False, drop_variables=["lon"]
    )
    assert "lon" not in raw
    assert raw["time"].dtype.kind == "i"
    assert raw["time"].attrs["units"] == "hours since 2020-01-01"
