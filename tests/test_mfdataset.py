"""open_virtual_mfdataset: the same dataset as xr.open_mfdataset, through virtual concatenation."""

from __future__ import annotations

import concurrent.futures
import multiprocessing
import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
from xarray_files import LAT, LON, daily_files

import zarr_manifest_store as zms


def expected_mf(paths: Any, **kwargs: Any) -> xr.Dataset:
    """What xarray itself makes of the files."""
    return xr.open_mfdataset(paths, engine="h5netcdf", **kwargs).load()


def reopened(vds: xr.Dataset) -> xr.Dataset:
    return xr.open_zarr(vds.virtualize.to_store()).load()


# ---------------------------------------------------------------------- issue 5: done when


@pytest.mark.parametrize(
    ("steps", "compress", "units", "edge_chunks"),
    [
        pytest.param((4, 4, 4), True, "hours since 2020-01-01", "refuse", id="daily"),
        pytest.param((5, 3, 4), False, "hours since 2020-01-01", "refuse", id="ragged-raw"),
        pytest.param((5, 3, 4), True, "hours since 2020-01-01", "inline", id="ragged-compressed"),
        pytest.param(
            (4, 4, 4),
            True,
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
def test_combined_dataset_reads_like_open_mfdataset(tmp_path, steps, compress, units, edge_chunks):
    files = daily_files(tmp_path, steps, compress=compress, units=units)
    shuffled = random.Random(1).sample([str(f) for f in files], len(files))
    vds = zms.open_virtual_mfdataset(shuffled, combine="by_coords", edge_chunks=edge_chunks)
    expected = expected_mf(files, combine="by_coords")

    t2m = vds["t2m"].data
    assert isinstance(t2m, zms.ManifestArray)
    assert t2m.shape == (sum(steps), LAT.size, LON.size)
    assert set(t2m.manifest.paths) == {str(f) for f in files}
    xr.testing.assert_identical(reopened(vds), expected)


def test_ragged_compressed_files_are_refused_by_default(tmp_path):
    daily_files(tmp_path, (5, 3), compress=True)
    with pytest.raises(zms.UnsupportedDatasetError, match="not a multiple of the chunk size") as e:
        zms.open_virtual_mfdataset(str(tmp_path / "*.nc"))
    assert "open_virtual_mfdataset(..., edge_chunks='inline')" in "\n".join(e.value.__notes__)


def test_ragged_edge_chunks_are_inlined_once(tmp_path):
    files = daily_files(tmp_path, (5, 3, 4), compress=True)
    vds = zms.open_virtual_mfdataset(files, edge_chunks="inline")
    manifest = vds["t2m"].data.manifest
    # chunks of 2 steps: the last chunk of the first two files holds 1 step and is inlined
    assert len(manifest.inline) == 2 * 2 * 2
    assert vds["t2m"].data.chunk_sizes[0] == (2, 2, 1, 2, 1, 2, 2)


# ---------------------------------------------------------------------- CF safety


def test_differing_scale_factors_are_refused_naming_variable_and_files(tmp_path):
    files = []
    for i, scale in enumerate((0.01, 0.02)):
        path = tmp_path / f"packed{i}.nc"
        ds = xr.Dataset(
            {"p": (("time", "x"), np.full((2, 3), 1.0 + i))},
            coords={"time": [2 * i, 2 * i + 1], "x": [0, 1, 2]},
        )
        ds.to_netcdf(
            path, engine="h5netcdf", encoding={"p": {"dtype": "int16", "scale_factor": scale}}
        )
        files.append(path)
    with pytest.raises(ValueError, match="variable 'p': attribute 'scale_factor'") as e:
        zms.open_virtual_mfdataset(files)
    assert str(files[0]) in str(e.value)
    assert str(files[1]) in str(e.value)

    # Loaded, each file is decoded with its own scale factor: exact, as xarray does it.
    vds = zms.open_virtual_mfdataset(files, loadable_variables=["time", "x", "p"])
    xr.testing.assert_identical(vds, expected_mf(files))


def test_differing_units_of_virtual_variables_are_refused(tmp_path):
    files = daily_files(tmp_path, (2, 2))
    with xr.open_dataset(files[1], engine="h5netcdf") as ds:
        ds = ds.load()
    ds["t2m"].attrs["units"] = "degC"
    ds.to_netcdf(files[1], engine="h5netcdf")
    with pytest.raises(ValueError, match="variable 't2m': attribute 'units' is 'K' in"):
        zms.open_virtual_mfdataset(files)


# ---------------------------------------------------------------------- variables xarray compares


def curvilinear_files(folder: Path, *, same_grid: bool) -> list[Path]:
    folder.mkdir()
    rng = np.random.default_rng(2)
    files = []
    for i in range(3):
        lat2d = np.add.outer(np.arange(4.0), np.zeros(5)) + (0 if same_grid else i)
        ds = xr.Dataset(
            {
                "sst": (("time", "y", "x"), rng.random((2, 4, 5)).astype("f4")),
                "mask": (("y", "x"), np.ones((4, 5), "i1")),
            },
            coords={
                "time": ("time", [2 * i, 2 * i + 1], {"units": "days since 2000-01-01"}),
                "lat2d": (("y", "x"), lat2d, {"units": "degrees_north"}),
                "height": ((), 2.0),
            },
        )
        path = folder / f"c{i}.nc"
        ds.to_netcdf(path, engine="h5netcdf")
        files.append(path)
    return files


@pytest.mark.parametrize("same_grid", [True, False])
def test_virtual_coordinates_compared_by_value(tmp_path, same_grid):
    """Equal auxiliary coordinates stay single, different ones are concatenated, as xarray does."""
    files = curvilinear_files(tmp_path / "c", same_grid=same_grid)
    vds = zms.open_virtual_mfdataset(files)
    expected = expected_mf(files)
    assert vds["lat2d"].dims == expected["lat2d"].dims
    assert ("time" in vds["lat2d"].dims) is not same_grid
    xr.testing.assert_identical(reopened(vds), expected)


def test_data_vars_minimal_compares_static_variables(tmp_path):
    files = curvilinear_files(tmp_path / "c", same_grid=True)
    vds = zms.open_virtual_mfdataset(files, data_vars="minimal")
    assert vds["mask"].dims == ("y", "x")
    xr.testing.assert_identical(reopened(vds), expected_mf(files, data_vars="minimal"))


def test_join_is_passed_to_xarray(tmp_path):
    files = daily_files(tmp_path, (2, 2))
    with xr.open_dataset(files[1], engine="h5netcdf") as ds:
        shifted = ds.load().assign_coords(lat=ds.lat + 1.0)
    shifted.to_netcdf(files[1], engine="h5netcdf")
    with pytest.raises(ValueError, match="cannot align objects with join='exact'"):
        zms.open_virtual_mfdataset(files, join="exact")


# ---------------------------------------------------------------------- nested, preprocess, errors


def test_nested_combine_stacks_members_along_a_new_dimension(tmp_path):
    members = [daily_files(tmp_path / f"m{m}", (2, 2), seed=m) for m in range(2)]
    nested = [[str(p) for p in files] for files in members]
    vds = zms.open_virtual_mfdataset(nested, combine="nested", concat_dim=["member", "time"])
    expected = expected_mf(nested, combine="nested", concat_dim=["member", "time"])
    assert vds["t2m"].dims == ("member", "time", "lat", "lon")
    xr.testing.assert_identical(reopened(vds), expected)


def test_preprocess_attrs_file_and_concat_dim_check(tmp_path):
    files = daily_files(tmp_path, (2, 2, 2))

    def keep_t2m(ds: xr.Dataset) -> xr.Dataset:
        return ds[["t2m"]].assign_attrs(seen=ds.encoding["source"])

    vds = zms.open_virtual_mfdataset(files, preprocess=keep_t2m, attrs_file=files[2])
    assert vds.attrs["file_number"] == 2
    assert vds.attrs["seen"] == str(files[2])
    expected = expected_mf(files, preprocess=keep_t2m, attrs_file=files[2])
    xr.testing.assert_identical(reopened(vds), expected)

    with pytest.raises(ValueError, match="concat_dim has no effect"):
        zms.open_virtual_mfdataset(files, concat_dim="time")


def test_errors_option_skips_unreadable_files(tmp_path):
    files = daily_files(tmp_path, (2, 2))
    bad = tmp_path / "day999.nc"
    bad.write_bytes(b"not a netCDF file")
    with pytest.raises(zms.UnsupportedDatasetError, match="cannot identify the format"):
        zms.open_virtual_mfdataset(str(tmp_path / "*.nc"))
    with pytest.warns(UserWarning, match=r"could not open .*day999\.nc"):
        vds = zms.open_virtual_mfdataset(str(tmp_path / "*.nc"), errors="warn")
    xr.testing.assert_identical(reopened(vds), expected_mf(files))
    assert zms.open_virtual_mfdataset(str(tmp_path / "*.nc"), errors="ignore").sizes["time"] == 4
    with pytest.raises(OSError, match="matched nothing"):
        zms.open_virtual_mfdataset(str(tmp_path / "*.h5"))


def test_the_first_file_that_fails_is_reported_whichever_step_failed(tmp_path):
    """Files are all scanned before any becomes a dataset; errors still come in file order."""
    files = daily_files(tmp_path, (2, 2))
    bad = tmp_path / "garbage.nc"
    bad.write_bytes(b"not a netCDF file")
    paths = [str(files[0]), str(bad), str(files[1])]
    with pytest.raises(ValueError, match="loadable_variables") as caught:  # not bad's scan error
        zms.open_virtual_mfdataset(paths, loadable_variables=["time", "absent"])
    assert caught.value.__notes__ == [f"while opening {files[0]}"]


# ---------------------------------------------------------------------- parallel and remote


@pytest.fixture
def six_files(tmp_path) -> list[Path]:
    return daily_files(tmp_path, (2,) * 6)


@pytest.mark.parametrize("parallel", ["threads", "processes", "executor", "process-executor"])
def test_parallel_opening_gives_the_serial_result(six_files, parallel):
    serial = zms.open_virtual_mfdataset(six_files)
    if parallel == "executor":
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            vds = zms.open_virtual_mfdataset(six_files, parallel=pool)
    elif parallel == "process-executor":
        context = multiprocessing.get_context("forkserver")
        with concurrent.futures.ProcessPoolExecutor(2, mp_context=context) as pool:
            vds = zms.open_virtual_mfdataset(six_files, parallel=pool)
    else:
        vds = zms.open_virtual_mfdataset(six_files, parallel=parallel)
    assert vds["t2m"].data.equals(serial["t2m"].data)
    xr.testing.assert_identical(vds.drop_vars("t2m"), serial.drop_vars("t2m"))


def test_worker_processes_of_a_call_are_stopped_when_it_returns(six_files):
    before = set(multiprocessing.active_children())
    zms.open_virtual_mfdataset(six_files, parallel="processes")
    assert set(multiprocessing.active_children()) <= before


def test_dask_distributed_client(six_files):
    distributed = pytest.importorskip("distributed")
    with (
        distributed.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=False, dashboard_address=None
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        vds = zms.open_virtual_mfdataset(six_files, parallel=client)
    xr.testing.assert_identical(reopened(vds), expected_mf(six_files))


def test_glob_over_s3(s3, tmp_path):
    fs, bucket, server = s3
    files = daily_files(tmp_path, (2, 3))
    for f in files:
        fs.put(str(f), f"{bucket}/data/{f.name}")
    vds = zms.open_virtual_mfdataset(
        f"s3://{bucket}/data/day*.nc",
        storage_options=server.storage_options,
        edge_chunks="inline",
    )
    assert vds["t2m"].data.manifest.paths == tuple(f"s3://{bucket}/data/{f.name}" for f in files)
    xr.testing.assert_identical(reopened(vds), expected_mf(files))


# ---------------------------------------------------------------------- kerchunk export


@pytest.mark.parametrize("fmt", ["json", "parquet"])
def test_kerchunk_export_reads_like_open_mfdataset(tmp_path, fmt):
    files = daily_files(tmp_path / "src", (4, 4))
    vds = zms.open_virtual_mfdataset(files)
    if fmt == "json":
        refs = vds.virtualize.to_kerchunk()
        target = refs
    else:
        target = str(tmp_path / "refs.parq")
        assert vds.virtualize.to_kerchunk(target, format="parquet") is None
    ds = xr.open_dataset(
        "reference://",
        engine="zarr",
        backend_kwargs={
            "consolidated": False,
            "zarr_format": 2,
            "storage_options": {"fo": target, "remote_protocol": "file"},
        },
    ).load()
    xr.testing.assert_identical(ds, expected_mf(files))


def test_the_same_file_twice_and_parallel_checked(tmp_path):
    path = str(daily_files(tmp_path, (2,))[0])
    vds = zms.open_virtual_mfdataset([path, path], combine="nested", concat_dim="member")
    expected = expected_mf([path, path], combine="nested", concat_dim="member")
    xr.testing.assert_identical(reopened(vds), expected)
    with pytest.raises(ValueError, match="parallel must be None, 'threads', 'processes'"):
        zms.open_virtual_mfdataset(path, parallel="lithops")


# ---------------------------------------------------------------------- other formats


def test_netcdf3_files_combine_like_scipy(tmp_path):
    """netCDF3 (big-endian, contiguous) through zms.scan, compared with xarray's scipy engine."""
    files = []
    for i, path in enumerate(daily_files(tmp_path / "nc4", (3, 3), compress=False)):
        with xr.open_dataset(path, engine="h5netcdf") as ds:
            target = tmp_path / f"classic{i}.nc"
            ds.load().to_netcdf(target, engine="scipy")
        files.append(target)
    vds = zms.open_virtual_mfdataset(files)
    assert vds["t2m"].data.manifest.paths == tuple(str(f) for f in files)
    expected = xr.open_mfdataset(files, engine="scipy").load()
    xr.testing.assert_identical(reopened(vds), expected)


def test_kerchunk_references_open_as_virtual_datasets(tmp_path):
    files = daily_files(tmp_path / "src", (4, 4))
    refs = tmp_path / "refs.json"
    zms.open_virtual_mfdataset(files).virtualize.to_kerchunk(refs)
    vds = zms.open_virtual_dataset(refs)
    assert set(vds["t2m"].data.manifest.paths) == {str(f) for f in files}
    xr.testing.assert_identical(reopened(vds), expected_mf(files))


def test_values_read_for_comparison_are_checked_against_the_scan(tmp_path):
    """A file that changes between its scan and the comparison read is reported, not decoded."""
    files = curvilinear_files(tmp_path / "c", same_grid=True)

    def touch_first_file(ds: xr.Dataset) -> xr.Dataset:
        stat = files[0].stat()
        os.utime(files[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
        return ds

    with pytest.raises(zms.SourceChangedError, match="changed since it was scanned"):
        zms.open_virtual_mfdataset(files, preprocess=touch_first_file)
