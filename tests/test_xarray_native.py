"""The seed idiom (engine "virtual" through xr.open_mfdataset), the document engine's options,
and the VirtualiZarr 2.x call shapes of the ``.virtualize`` accessor."""

from __future__ import annotations

import json
import os
import warnings
from functools import partial
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
import pytest
import xarray as xr
from dask.task_spec import Alias
from xarray_files import daily_files

import zarr_manifest_store as zms
from zarr_manifest_store.cli import main
from zarr_manifest_store.xarray import VirtualBackendEntrypoint
from zarr_manifest_store.xarray.dask_blocks import manifest_array_of_blocks


def from_kerchunk(target: Any) -> xr.Dataset:
    """References read back by fsspec and xarray's own Zarr backend."""
    return xr.open_dataset(
        "reference://",
        engine="zarr",
        backend_kwargs={
            "consolidated": False,
            "zarr_format": 2,
            "storage_options": {"fo": target, "remote_protocol": "file"},
        },
    ).load()


@pytest.fixture
def files(tmp_path) -> list[Path]:
    return daily_files(tmp_path / "src", (4, 4, 4))


# ---------------------------------------------------------------------- the seed idiom


def test_seed_idiom_round_trips_through_the_document_and_kerchunk(tmp_path, files, monkeypatch):
    monkeypatch.chdir(tmp_path)
    glob = str(tmp_path / "src" / "day*.nc")
    ds = xr.open_mfdataset(glob, engine="virtual", combine="by_coords")
    ds.virtualize.to_zarr(store="out.zarr", spec="kerchunk")
    ds.virtualize.to_zarr(store="doc.zarr", spec="manifest")

    with xr.open_mfdataset(glob, engine="h5netcdf", combine="by_coords") as opened:
        expected = opened.load()  # closed: a file left to the garbage collector may deadlock h5py
    xr.testing.assert_identical(from_kerchunk("out.zarr"), expected)
    document = xr.open_dataset("doc.zarr", engine="zarr_manifest", allow=[str(tmp_path / "src")])
    xr.testing.assert_identical(document.load(), expected)
    # the references, not the values, were written: three files' chunks of t2m
    refs = json.loads(Path("out.zarr").read_text())["refs"]
    assert sum(isinstance(v, list) for k, v in refs.items() if k.startswith("t2m/")) == 24


def test_open_mfdataset_gives_what_open_virtual_mfdataset_gives(files):
    ds = xr.open_mfdataset(files, engine="virtual", combine="by_coords")
    virtual = zms.open_virtual_mfdataset(files, combine="by_coords")
    assert ds.virtualize.to_group().equals(virtual.virtualize.to_group())
    assert ds.virtualize.nrefs == virtual.virtualize.nrefs == 24
    # coordinates are loaded (indexes), data variables stay dask arrays over references
    assert set(ds.xindexes) == {"time", "lat", "lon"}
    with pytest.raises(TypeError, match="holds chunk references, not values"):
        ds.t2m.values  # noqa: B018


def test_open_dataset_with_the_virtual_engine_holds_manifest_arrays(files):
    ds = xr.open_dataset(files[0], engine="virtual")
    assert isinstance(ds.t2m.data, zms.ManifestArray)
    assert ds.virtualize.to_group().equals(zms.open_virtual_dataset(files[0]).virtualize.to_group())


def test_nested_parallel_and_preprocess(files):
    def first_steps(ds: xr.Dataset) -> xr.Dataset:
        return ds[["t2m"]]

    ds = xr.open_mfdataset(
        [str(f) for f in files],
        engine="virtual",
        combine="nested",
        concat_dim="time",
        parallel=True,
        preprocess=first_steps,
        data_vars="minimal",
        coords="minimal",
        compat="override",
    )
    virtual = zms.open_virtual_mfdataset(
        files, combine="nested", concat_dim="time", preprocess=first_steps
    )
    assert ds.virtualize.to_group()["t2m"].equals(virtual.virtualize.to_group()["t2m"])


def test_operations_dask_did_on_the_blocks_are_refused_naming_the_variable(files):
    ds = xr.open_mfdataset(files, engine="virtual", combine="by_coords", chunks={"time": 2})
    with pytest.raises(
        zms.UnsupportedDatasetError, match=r"variable 't2m'.*open_virtual_mfdataset"
    ):
        ds.virtualize.to_group()


def test_the_virtual_engine_is_never_guessed(files):
    assert not VirtualBackendEntrypoint().guess_can_open(str(files[0]))
    assert "virtual" in xr.backends.list_engines()


# ---------------------------------------------------------------------- the document engine


def test_document_engine_refuses_a_netcdf_file_naming_the_engine_to_use(files):
    with pytest.raises(ValueError, match=r"day000\.nc.*HDF5.*engine=\"virtual\""):
        xr.open_dataset(files[0], engine="zarr_manifest")


def test_document_engine_takes_the_store_options(tmp_path, files):
    zms.open_virtual_dataset(files[0]).virtualize.to_zarr(tmp_path / "d.zarr")
    with open(files[0], "r+b") as f:  # same size, changed bytes and mtime
        f.seek(os.path.getsize(files[0]) - 1)
        f.write(f.read(1))
    os.utime(files[0], (1, 1))
    allow = [str(tmp_path / "src")]
    with pytest.raises(zms.SourceChangedError):
        xr.open_dataset(tmp_path / "d.zarr", engine="zarr_manifest", allow=allow).load()
    ds = xr.open_dataset(tmp_path / "d.zarr", engine="zarr_manifest", allow=allow, verify="never")
    assert ds.t2m.shape == (4, 6, 8)
    with pytest.raises(zms.ManifestError, match="max_chunks"):
        xr.open_dataset(
            tmp_path / "d.zarr", engine="zarr_manifest", allow=allow, max_chunks=2, load=True
        )


# ---------------------------------------------------------------------- accessor call shapes


def test_to_zarr_spellings_and_refusals(tmp_path, files):
    ds = zms.open_virtual_dataset(files[0])
    ds.virtualize.to_zarr(tmp_path / "a.zarr")
    ds.virtualize.to_zarr(store=tmp_path / "b.zarr", spec="manifest")
    assert zms.ManifestStore.open(tmp_path / "a.zarr").root.equals(
        zms.ManifestStore.open(tmp_path / "b.zarr").root
    )
    with pytest.raises(TypeError, match="writes into an Icechunk store"):
        ds.virtualize.to_zarr(store=tmp_path / "c", spec="icechunk")
    with pytest.raises(ValueError, match="spec must be"):
        ds.virtualize.to_zarr(store=tmp_path / "c", spec="zarr")
    with pytest.raises(TypeError, match="once"):
        ds.virtualize.to_zarr(tmp_path / "c", store=tmp_path / "d")


def test_to_kerchunk_format_dict_and_thresholds(tmp_path, files):
    ds = zms.open_virtual_dataset(files[0])
    refs = ds.virtualize.to_kerchunk(format="dict")
    assert refs == ds.virtualize.to_kerchunk()
    with pytest.raises(ValueError, match="format='dict' returns"):
        ds.virtualize.to_kerchunk(tmp_path / "r.json", format="dict")
    inlined = ds.virtualize.to_kerchunk(format="dict", inline_threshold=10**9)
    assert not any(isinstance(v, list) for v in inlined["refs"].values())
    xr.testing.assert_identical(from_kerchunk(inlined), from_kerchunk(refs))
    ds.virtualize.to_kerchunk(
        str(tmp_path / "r.parq"), "parquet", record_size=3, categorical_threshold=5
    )
    xr.testing.assert_identical(from_kerchunk(str(tmp_path / "r.parq")), from_kerchunk(refs))
    with pytest.raises(ValueError, match="categorical_threshold"):
        ds.virtualize.to_kerchunk(format="dict", categorical_threshold=0)


def test_inline_threshold_checks_the_fingerprint(files):
    ds = zms.open_virtual_dataset(files[0])
    os.utime(files[0], (1, 1))
    with pytest.raises(zms.SourceChangedError):
        ds.virtualize.to_kerchunk(inline_threshold=10**9)


def test_rename_paths_with_a_string_for_a_single_source(files):
    ds = zms.open_virtual_dataset(files[0])
    moved = ds.virtualize.rename_paths("s3://bucket/one.nc")
    assert moved.t2m.data.manifest.paths == ("s3://bucket/one.nc",)
    combined = zms.open_virtual_mfdataset(files)
    with pytest.raises(ValueError, match="references 3 files; pass a dict"):
        combined.virtualize.rename_paths("s3://bucket/one.nc")


def test_nrefs_is_a_property_and_calling_it_says_so(files):
    ds = zms.open_virtual_dataset(files[0])
    assert ds.virtualize.nrefs == 8
    with pytest.raises(TypeError, match=r"write ds\.virtualize\.nrefs"):
        ds.virtualize.nrefs()


def test_virtual_dimension_coordinates_need_no_default_index(files):
    """xarray indexes dimension coordinates by reading them: virtual ones must not be indexed."""
    opened = partial(xr.open_dataset, engine="virtual", loadable_variables=[])
    with pytest.raises(TypeError, match="holds chunk references"):
        opened(files[0])
    ds = opened(files[0], create_default_indexes=False)
    assert isinstance(ds.time.data, zms.ManifestArray)
    assert not ds.xindexes


# ---------------------------------------------------------------------- the command line


def test_the_cli_scan_prints_no_future_warnings(tmp_path, capsys):
    extra = {"mask": (("lat", "lon"), np.ones((6, 8), "f4"), {})}  # not along time
    daily_files(tmp_path / "src", (4, 4), extra=extra)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        assert main(["scan", str(tmp_path / "src" / "day*.nc"), "-o", str(tmp_path / "o")]) == 0
    assert "Warning" not in capsys.readouterr().err


# ---------------------------------------------------------------------- variables in some files


def test_a_variable_in_only_some_files_is_refused_naming_it_and_the_files(tmp_path):
    tp = {"tp": (("time", "lat", "lon"), np.ones((4, 6, 8), "f4"), {})}
    first = daily_files(tmp_path / "a", (4,), extra=tp)
    rest = daily_files(tmp_path / "b", (4, 4, 4))[1:]
    with pytest.raises(zms.UnsupportedDatasetError) as caught:
        zms.open_virtual_mfdataset(first + rest, join="outer")
    message = str(caught.value)
    assert "variable 'tp' is in 1 of 3 files" in message
    assert all(str(p) in message for p in rest)
    assert str(first[0]) not in message
    combined = zms.open_virtual_mfdataset(first + rest, drop_variables=["tp"], join="outer")
    assert combined.sizes["time"] == 12


def test_parallel_dask_opens_on_the_current_scheduler(files):
    serial = zms.open_virtual_mfdataset(files)
    with dask.config.set(scheduler="threads"):
        threaded = zms.open_virtual_mfdataset(files, parallel="dask")
    assert threaded.virtualize.to_group().equals(serial.virtualize.to_group())
    with pytest.raises(ValueError, match="'dask'"):
        zms.open_virtual_mfdataset(files, parallel="lithops")


# ---------------------------------------------------------------------- sub-chunk selection


@pytest.mark.parametrize(
    "selection",
    [
        {"time": slice(1, 3)},
        {"time": slice(1, 7)},
        {"time": slice(3, 4)},
        {"time": 1},
        {"time": slice(1, 3), "lat": slice(3, None)},
    ],
    ids=["inside-a-chunk", "across-chunks", "last-row", "integer", "two-axes"],
)
def test_uncompressed_chunks_are_narrowed_to_the_rows_selected(tmp_path, selection):
    files = daily_files(tmp_path / "src", (8,), compress=False, time_chunk=4)
    ds = zms.open_virtual_dataset(files[0])
    picked = ds[["t2m"]].isel(selection)
    assert isinstance(picked.t2m.data, zms.ManifestArray)
    expected = xr.load_dataset(files[0], engine="h5netcdf")[["t2m"]].isel(selection)
    got = xr.open_zarr(picked.virtualize.to_store()).load()
    xr.testing.assert_identical(got, expected)


def test_compressed_chunks_still_refuse_a_slice_inside_a_chunk(tmp_path):
    files = daily_files(tmp_path / "src", (8,), compress=True, time_chunk=4)
    ds = zms.open_virtual_dataset(files[0])
    with pytest.raises(IndexError, match="starts at 1, inside the chunk 0:4"):
        ds.isel(time=slice(1, 3))
    with pytest.raises(IndexError, match="integer indices need chunks of size 1"):
        ds.t2m.data[1]


def test_rows_of_a_later_axis_are_not_contiguous_and_stay_refused(tmp_path):
    files = daily_files(tmp_path / "src", (8,), compress=False, time_chunk=4)
    ds = zms.open_virtual_dataset(files[0])
    with pytest.raises(IndexError, match="starts at 1, inside the chunk 0:3"):
        ds.isel(lat=slice(1, 3))


def test_virtualizarr_parser_and_registry_say_what_to_write_instead(files):
    with pytest.raises(TypeError, match=r"parser= is VirtualiZarr's option.*first bytes"):
        zms.open_virtual_dataset(files[0], parser=object())
    with pytest.raises(TypeError, match=r"registry= .*storage_options"):
        zms.open_virtual_mfdataset(files, registry=object())


def test_blocks_reached_through_either_form_of_dask_alias(files):
    """dask writes an alias as a key (a tuple) or as an ``Alias`` node: both lead to the file."""
    data = xr.open_mfdataset(files, engine="virtual", combine="by_coords").t2m.data
    graph = dict(data.__dask_graph__())
    aliased = {
        k: Alias(k, v) if isinstance(v, tuple) and v in graph else v for k, v in graph.items()
    }
    assert aliased != graph
    rebuilt = da.Array(aliased, data.name, data.chunks, dtype=data.dtype)
    expected = zms.open_virtual_mfdataset(files).t2m.data
    assert manifest_array_of_blocks(rebuilt, "t2m").equals(expected)
    assert manifest_array_of_blocks(data, "t2m").equals(expected)
