"""open_virtual_dataset, the .virtualize accessor and the package's xarray wiring."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
from xarray_files import daily_files

import zarr_manifest_store as zms
from zarr_manifest_store.cf import fill_value_from_attribute
from zarr_manifest_store.io.sources import Sources
from zarr_manifest_store.xarray.values import read_values


def reopened(vds: xr.Dataset) -> xr.Dataset:
    """What xarray reads back through the store the virtual dataset becomes."""
    return xr.open_zarr(vds.virtualize.to_store()).load()


@pytest.fixture
def one_file(tmp_path: Path) -> Path:
    return daily_files(tmp_path, steps=(5,))[0]


# ---------------------------------------------------------------------- open_virtual_dataset


def test_virtual_variables_wrap_manifests_and_coordinates_are_decoded(one_file):
    vds = zms.open_virtual_dataset(one_file)
    expected = xr.open_dataset(one_file, engine="h5netcdf")

    assert isinstance(vds["t2m"].variable._data, zms.ManifestArray)
    assert vds["t2m"].data.manifest.paths == (str(one_file),)
    assert vds["t2m"].attrs["units"] == "K"
    assert np.isnan(vds["t2m"].attrs["_FillValue"])  # as a number, not zarr's base64 form
    for name in ("time", "lat", "lon"):
        assert isinstance(vds[name].variable.data, np.ndarray)
        xr.testing.assert_identical(vds[name], expected[name])
    assert set(vds.xindexes) == {"time", "lat", "lon"}
    assert vds.encoding["source"] == str(one_file)
    xr.testing.assert_identical(reopened(vds), expected.load())


def test_loadable_variables_are_read_and_decoded(one_file):
    vds = zms.open_virtual_dataset(one_file, loadable_variables=["time", "t2m"])
    expected = xr.open_dataset(one_file, engine="h5netcdf").load()

    assert isinstance(vds["t2m"].variable.data, np.ndarray)
    xr.testing.assert_identical(vds["t2m"].variable, expected["t2m"].variable)
    assert isinstance(vds["lat"].variable._data, zms.ManifestArray)
    assert set(vds.xindexes) == {"time"}
    xr.testing.assert_identical(reopened(vds), expected)


def test_nothing_loaded_leaves_coordinates_virtual_without_indexes(one_file):
    vds = zms.open_virtual_dataset(one_file, loadable_variables=[])
    assert not vds.xindexes
    assert all(isinstance(v._data, zms.ManifestArray) for v in vds.variables.values())
    assert set(vds.coords) == {"time", "lat", "lon"}
    xr.testing.assert_identical(reopened(vds), xr.open_dataset(one_file, engine="h5netcdf").load())


def test_unknown_loadable_variable_is_named(one_file):
    with pytest.raises(ValueError, match=r"\['nope'\] are not variables"):
        zms.open_virtual_dataset(one_file, loadable_variables=["nope"])


def test_decode_times_false_keeps_encoded_times(one_file):
    vds = zms.open_virtual_dataset(one_file, decode_times=False)
    expected = xr.open_dataset(one_file, engine="h5netcdf", decode_times=False)
    xr.testing.assert_identical(vds["time"], expected["time"])
    assert vds["time"].attrs["units"] == "hours since 2020-01-01"


def test_drop_variables_and_group(tmp_path):
    path = tmp_path / "groups.nc"
    base = daily_files(tmp_path / "src", steps=(3,))[0]
    xr.open_dataset(base, engine="h5netcdf").to_netcdf(path, engine="h5netcdf", group="fc/sfc")
    vds = zms.open_virtual_dataset(path, group="fc/sfc", drop_variables="t2m")
    assert "t2m" not in vds
    assert set(vds.coords) == {"time", "lat", "lon"}
    vds = zms.open_virtual_dataset(path, group="fc/sfc")
    expected = xr.open_dataset(path, engine="h5netcdf", group="fc/sfc").load()
    xr.testing.assert_identical(reopened(vds), expected)


def test_cf_coordinates_attribute_makes_coordinates(tmp_path):
    """2-D auxiliary coordinates named by ``coordinates`` are coordinates, virtual by default."""
    lat2d = np.add.outer(np.arange(6.0), np.zeros(8))
    lon2d = np.add.outer(np.zeros(6), np.arange(8.0))
    path = tmp_path / "curvilinear.nc"
    ds = xr.Dataset(
        {"sst": (("time", "y", "x"), np.random.default_rng(1).random((2, 6, 8)))},
        coords={
            "time": [0, 1],
            "lat2d": (("y", "x"), lat2d, {"units": "degrees_north"}),
            "lon2d": (("y", "x"), lon2d),
            "height": ((), 2.0, {"units": "m"}),
        },
    )
    ds.to_netcdf(path, engine="h5netcdf")
    with h5py.File(path) as f:
        assert "coordinates" in f["sst"].attrs  # what the test is about

    vds = zms.open_virtual_dataset(path)
    expected = xr.open_dataset(path, engine="h5netcdf").load()
    assert set(vds.coords) == set(expected.coords)
    assert isinstance(vds["lat2d"].variable._data, zms.ManifestArray)
    assert "coordinates" not in vds["sst"].attrs
    assert vds["sst"].encoding["coordinates"] == expected["sst"].encoding["coordinates"]
    xr.testing.assert_identical(reopened(vds), expected)


def test_packed_coordinate_decodes_like_open_dataset(tmp_path):
    """A scale_factor / add_offset packed coordinate is unpacked when loaded."""
    path = tmp_path / "packed.nc"
    ds = xr.Dataset(
        {"v": (("depth",), np.arange(4.0))}, coords={"depth": ("depth", [0.5, 1.5, 10.0, 20.25])}
    )
    encoding = {"depth": {"dtype": "int16", "scale_factor": 0.25, "add_offset": 0.0}}
    ds.to_netcdf(path, engine="h5netcdf", encoding=encoding)
    vds = zms.open_virtual_dataset(path)
    expected = xr.open_dataset(path, engine="h5netcdf")
    np.testing.assert_array_equal(vds["depth"].values, expected["depth"].values)
    assert vds["depth"].encoding["scale_factor"] == 0.25


def test_compressed_and_big_endian_coordinates_are_read_exactly(tmp_path):
    """Coordinates that are not raw little-endian bytes go through zarr's codecs."""
    path = tmp_path / "codecs.nc"
    values = np.arange(10, dtype=">f8") * 1.5
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.arange(10, dtype="<i4"), chunks=(4,), compression="gzip")
        f.create_dataset("y", data=values)
        f["x"].make_scale("x")
        f["y"].make_scale("y")
        v = f.create_dataset("v", data=np.zeros((10, 10), "f4"), chunks=(5, 5))
        v.dims[0].attach_scale(f["x"])
        v.dims[1].attach_scale(f["y"])
    vds = zms.open_virtual_dataset(path)
    expected = xr.open_dataset(path, engine="h5netcdf")
    xr.testing.assert_identical(vds["x"], expected["x"])
    xr.testing.assert_identical(vds["y"], expected["y"])


def test_read_values_ragged_grid_missing_chunks_and_short_chunks(tmp_path):
    """Raw chunks of a rectilinear grid, a missing chunk (fill value), and a truncated one."""
    data = np.arange(7, dtype="<i2")
    path = tmp_path / "raw.bin"
    path.write_bytes(data.tobytes())
    meta = {
        "shape": [9],
        "data_type": "int16",
        "chunk_grid": {
            "name": "rectilinear",
            "configuration": {"kind": "inline", "chunk_shapes": [[3, 4, 2]]},
        },
        "chunk_key_encoding": {"name": "default"},
        "fill_value": -1,
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
    }
    manifest = zms.ChunkManifest.from_dict(
        {
            "0": {"path": str(path), "offset": 0, "length": 6},
            "1": {"path": str(path), "offset": 6, "length": 8},
        },
        shape=(3,),
    )
    sources = Sources()
    values = read_values(zms.ManifestArray(metadata=meta, manifest=manifest), sources)
    np.testing.assert_array_equal(values, [0, 1, 2, 3, 4, 5, 6, -1, -1])

    short = zms.ChunkManifest.from_dict(
        {"0": {"path": str(path), "offset": 0, "length": 4}}, shape=(3,)
    )
    with pytest.raises(zms.UnsupportedDatasetError, match="holds 4 bytes, not the 6"):
        read_values(zms.ManifestArray(metadata=meta, manifest=short), sources)
    sources.close()


# ---------------------------------------------------------------------- the accessor


def test_accessor_counts_and_renames(tmp_path, one_file):
    vds = zms.open_virtual_dataset(one_file)
    t2m = vds["t2m"].data
    assert vds.virtualize.nrefs == t2m.manifest.nchunks == 3 * 2 * 2
    loaded = sum(vds[n].nbytes for n in ("time", "lat", "lon"))
    assert vds.virtualize.nbytes == t2m.manifest.nbytes + loaded

    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.copy2(one_file, moved / one_file.name)  # same size and mtime: the fingerprint holds
    renamed = vds.virtualize.rename_paths({str(one_file): str(moved / one_file.name)})
    assert renamed["t2m"].data.manifest.paths == (str(moved / one_file.name),)
    assert vds["t2m"].data.manifest.paths == (str(one_file),)  # the original is untouched
    os.remove(one_file)
    expected = xr.open_dataset(moved / one_file.name, engine="h5netcdf").load()
    xr.testing.assert_identical(reopened(renamed), expected)

    by_function = vds.virtualize.rename_paths(lambda p: p.replace("/day", "/renamed-day"))
    assert by_function["t2m"].data.manifest.paths[0].endswith("renamed-day000.nc")

    other = moved / "other.nc"
    shutil.copy(moved / one_file.name, other)  # a new mtime: not provably the same file
    elsewhere = renamed.virtualize.rename_paths(lambda p: str(other))
    with pytest.raises(zms.SourceChangedError, match="changed since it was scanned"):
        xr.open_zarr(elsewhere.virtualize.to_store()).load()
    xr.testing.assert_identical(
        xr.open_zarr(elsewhere.virtualize.to_store(verify="never")).load(), expected
    )


def test_virtual_variables_are_found_inside_the_wrappers_of_xr_open_dataset(one_file):
    """A backend that returns a virtual dataset: xarray wraps its variables, they stay virtual."""

    class VirtualBackend(xr.backends.BackendEntrypoint):
        def open_dataset(self, filename_or_obj, *, drop_variables=None):
            return zms.open_virtual_dataset(filename_or_obj, drop_variables=drop_variables)

    vds = zms.open_virtual_dataset(one_file)
    wrapped = xr.open_dataset(one_file, engine=VirtualBackend)
    assert not isinstance(wrapped["t2m"].variable._data, zms.ManifestArray)  # xarray's wrapper
    assert wrapped.virtualize.nrefs == vds.virtualize.nrefs > 0
    moved = wrapped.virtualize.rename_paths(lambda p: p + ".moved")
    assert moved["t2m"].data.manifest.paths == (f"{one_file}.moved",)
    assert wrapped.virtualize.to_group()["t2m"].manifest.paths == (str(one_file),)


def test_to_store_keeps_loaded_variables_inline(one_file):
    vds = zms.open_virtual_dataset(one_file)
    group = vds.virtualize.to_group()
    for name in ("time", "lat", "lon"):
        assert not group[name].manifest.paths
        assert group[name].manifest.inline
    assert group["t2m"].manifest.paths == (str(one_file),)
    assert group.attributes["title"] == "daily test file"


NAN_B64, MINUS_9999_B64, ONE_B64 = "AAAAAAAA+H8=", "AAAAAICHw8A=", "AAAAAAAA8D8="


@pytest.mark.parametrize(
    ("attribute", "dtype"),
    [
        (NAN_B64, "float32"),
        (MINUS_9999_B64, "float64"),
        ([ONE_B64, MINUS_9999_B64], "complex64"),
        (-32767, "int16"),
        (65535.0, "uint16"),
        (1, "bool"),
        (-9999.0, "float32"),  # not base64: refused
        ("x", "int32"),
        ([ONE_B64], "complex128"),
        ("abc", "S3"),  # no decoding for bytes and text
        ("abc", "U3"),
    ],
)
def test_fill_value_attributes_decode_as_xarrays_zarr_backend_decodes_them(attribute, dtype):
    from xarray.backends.zarr import FillValueCoder  # the reference, not used by the package

    try:
        expected = FillValueCoder.decode(attribute, np.dtype(dtype))
    except (TypeError, ValueError) as e:
        with pytest.raises(type(e)):
            fill_value_from_attribute(attribute, np.dtype(dtype))
        return
    decoded = fill_value_from_attribute(attribute, np.dtype(dtype))
    assert type(decoded) is type(expected)
    np.testing.assert_equal(decoded, expected)


def test_arrays_without_dimension_names_are_refused():
    meta = {
        "shape": [2],
        "data_type": "int8",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [2]}},
        "chunk_key_encoding": {"name": "default"},
        "fill_value": 0,
        "codecs": [{"name": "bytes"}],
    }
    array = zms.ManifestArray(metadata=meta, manifest=zms.ChunkManifest.from_dict({}, shape=(1,)))
    from zarr_manifest_store.xarray.open import virtual_dataset

    with pytest.raises(ValueError, match="'a' has no dimension_names"):
        virtual_dataset(zms.ManifestGroup(arrays={"a": array}))


# ---------------------------------------------------------------------- remote files


def test_open_over_http_reads_only_what_it_needs(http_server, tmp_path):
    path = daily_files(tmp_path, steps=(5,))[0]
    shutil.copy(path, http_server.root / path.name)
    url = f"{http_server.url}/{path.name}"
    vds = zms.open_virtual_dataset(url)
    assert vds["t2m"].data.manifest.paths == (url,)
    expected = xr.open_dataset(path, engine="h5netcdf").load()
    xr.testing.assert_identical(reopened(vds), expected)


def test_open_from_s3_uses_storage_options_for_scanning_and_reading(s3, tmp_path):
    fs, bucket, server = s3
    path = daily_files(tmp_path, steps=(5,))[0]
    fs.put(str(path), f"{bucket}/{path.name}")
    url = f"s3://{bucket}/{path.name}"
    vds = zms.open_virtual_dataset(url, storage_options=server.storage_options)
    assert vds["t2m"].data.manifest.paths == (url,)
    expected = xr.open_dataset(path, engine="h5netcdf").load()
    xr.testing.assert_identical(reopened(vds), expected)  # the store reuses the options


# ---------------------------------------------------------------------- package wiring


def test_package_import_registers_the_xarray_layer_without_an_import_hook():
    code = (
        "import sys, zarr_manifest_store as zms\n"
        "hooks = [f for f in sys.meta_path if type(f).__module__.startswith('zarr_manifest')]\n"
        "assert not hooks, hooks\n"
        "import xarray as xr\n"
        "assert hasattr(xr.Dataset(), 'virtualize')\n"
        "assert callable(zms.open_virtual_mfdataset)\n"
        "assert 'zarr_manifest' in xr.backends.list_engines()\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_repeated_coordinates_are_decoded_once_and_stay_exact(tmp_path):
    """Same raw time values under other units decode differently; equal lat / lon are shared."""
    first, second = daily_files(
        tmp_path, (3, 3), units=["hours since 2020-01-01", "hours since 2020-01-01 03:00"]
    )
    a, b = zms.open_virtual_dataset(first), zms.open_virtual_dataset(second)
    np.testing.assert_array_equal(a["time"].encoding.get("units"), "hours since 2020-01-01")
    for vds, path in ((a, first), (b, second)):
        xr.testing.assert_identical(
            vds.drop_vars("t2m"), xr.open_dataset(path, engine="h5netcdf").drop_vars("t2m")
        )
    assert a.xindexes["lat"] is b.xindexes["lat"]
    assert a.xindexes["time"] is not b.xindexes["time"]
    a["lat"].attrs["note"] = "only here"
    a["lat"].encoding["note"] = "only here"
    assert "note" not in b["lat"].attrs
    assert "note" not in b["lat"].encoding
    assert "note" not in zms.open_virtual_dataset(first)["lat"].attrs
