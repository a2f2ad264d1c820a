"""DataTrees: every group of a nested netCDF-4 file, virtual, written out and read back."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from icechunk_repos import local_repository, reopen

import zarr_manifest_store as zms


def nested_file(path: Path) -> Path:
    """A netCDF-4 file with groups two levels deep; children use their parent's coordinates."""
    rng = np.random.default_rng(1)
    time = pd.date_range("2021-01-01", periods=6, freq="D")
    root = xr.Dataset(
        {"sst": (("time", "x"), rng.normal(size=(6, 4)).astype("f4"), {"units": "K"})},
        coords={"time": time, "x": ("x", np.arange(4.0), {"units": "m"})},
        attrs={"title": "nested"},
    )
    forecast = xr.Dataset(
        {"t2m": (("time", "x", "member"), rng.normal(size=(6, 4, 3)).astype("f4"))},
        coords={"member": np.arange(3)},
        attrs={"kind": "ensemble"},
    )
    deep = xr.Dataset({"flag": (("time",), np.arange(6, dtype="i2"), {"_FillValue": -1})})
    tree = xr.DataTree.from_dict({"/": root, "/forecast": forecast, "/forecast/deep": deep})
    encoding = {"/forecast": {"t2m": {"chunksizes": (2, 4, 3), "zlib": True}}}
    path.parent.mkdir(parents=True, exist_ok=True)
    tree.to_netcdf(path, engine="h5netcdf", encoding=encoding)
    return path


@pytest.fixture
def nested(tmp_path) -> Path:
    return nested_file(tmp_path / "src" / "nested.nc")


def test_open_virtual_datatree_holds_every_group_virtually(nested):
    tree = zms.open_virtual_datatree(nested)
    assert set(tree.groups) == {"/", "/forecast", "/forecast/deep"}
    assert isinstance(tree["forecast"].to_dataset(inherit=False).t2m.data, zms.ManifestArray)
    assert set(tree["forecast"].xindexes) == {
        "time",
        "x",
        "member",
    }  # member loaded, rest inherited
    assert tree.virtualize.nrefs == 3 + 1 + 1  # t2m's chunks, sst and flag (contiguous)


def test_datatree_round_trips_through_the_document(tmp_path, nested):
    expected = xr.load_datatree(nested, engine="h5netcdf")
    zms.open_virtual_datatree(nested).virtualize.to_zarr(store=tmp_path / "tree.zarr")
    got = xr.open_datatree(
        tmp_path / "tree.zarr",
        engine="zarr_manifest",
        allow=[str(tmp_path / "src")],
        verify="always",
    ).load()
    xr.testing.assert_identical(got, expected)


def test_datatree_round_trips_through_kerchunk(tmp_path, nested):
    expected = xr.load_datatree(nested, engine="h5netcdf")
    refs = zms.open_virtual_datatree(nested).virtualize.to_kerchunk(format="dict")
    got = xr.open_datatree(
        "reference://",
        engine="zarr",
        consolidated=False,
        zarr_format=2,
        storage_options={"fo": refs, "remote_protocol": "file"},
    ).load()
    xr.testing.assert_identical(got, expected)


def test_datatree_store_and_engine_forms(tmp_path, nested):
    expected = xr.load_datatree(nested, engine="h5netcdf")
    store = zms.open_virtual_datatree(nested).virtualize.to_store()
    xr.testing.assert_identical(xr.open_datatree(store, engine="zarr").load(), expected)
    via_engine = xr.open_datatree(nested, engine="virtual")
    assert via_engine.virtualize.to_group().equals(
        zms.open_virtual_datatree(nested).virtualize.to_group()
    )


def test_a_document_opens_as_a_virtual_datatree_under_allow(tmp_path, nested):
    zms.open_virtual_datatree(nested).virtualize.to_zarr(tmp_path / "tree.zarr")
    tree = zms.open_virtual_datatree(tmp_path / "tree.zarr", allow=[str(tmp_path / "src")])
    assert tree.virtualize.to_group().equals(zms.ManifestStore.open(tmp_path / "tree.zarr").root)
    sub = zms.open_virtual_datatree(tmp_path / "tree.zarr", group="forecast")
    assert set(sub.to_dataset().data_vars) == {"t2m"}
    with pytest.raises(KeyError, match="no group 'nope'"):
        zms.open_virtual_datatree(nested, group="nope")


def test_open_datatree_takes_the_store_options(tmp_path, nested):
    zms.open_virtual_datatree(nested).virtualize.to_zarr(tmp_path / "tree.zarr")
    allow = [str(tmp_path / "src")]
    with pytest.raises(zms.ManifestError, match="max_chunks"):
        xr.open_datatree(
            tmp_path / "tree.zarr", engine="zarr_manifest", allow=allow, max_chunks=1, load=True
        )
    with pytest.raises(PermissionError):
        xr.open_datatree(tmp_path / "tree.zarr", engine="zarr_manifest").load()
    with pytest.raises(ValueError, match=r'nested\.nc.*engine="virtual"'):
        xr.open_datatree(nested, engine="zarr_manifest")


def test_datatree_round_trips_through_icechunk(tmp_path, nested):
    expected = xr.load_datatree(nested, engine="h5netcdf")
    tree = zms.open_virtual_datatree(nested)
    repo = local_repository(tmp_path / "repo", zms.icechunk_containers(tree.virtualize.to_group()))
    session = repo.writable_session("main")
    tree.virtualize.to_icechunk(session.store)
    session.commit("tree")
    store = reopen(repo).readonly_session("main").store
    got = xr.open_datatree(store, engine="zarr", consolidated=False).load()
    xr.testing.assert_identical(got, expected)
