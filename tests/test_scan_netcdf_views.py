"""The xarray view of a scan equals ``xr.open_dataset`` of the file (issue #18).

Files are written by netCDF4 (in a subprocess: it sets ``HDF5_PLUGIN_PATH`` on
import), h5netcdf and h5py, and each view is compared with the engine that
reads such files, with default chunks and with ``chunks=None``.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import h5netcdf
import h5py
import numpy as np
import pytest
import xarray as xr

import zarr_manifest_store as zms

UNLIMITED_SCRIPT = """
import sys, netCDF4, numpy as np
with netCDF4.Dataset(sys.argv[1], "w") as nc:
    nc.createDimension("time", None)
    nc.createDimension("x", 3)
    a = nc.createVariable("a", "f4", ("time", "x"), chunksizes=(2, 3))
    b = nc.createVariable("b", "i2", ("time",), chunksizes=(2,), fill_value=-9)
    c = nc.createVariable("c", "f8", ("time",), chunksizes=(4,))
    t = nc.createVariable("time", "f8", ("time",))
    a[:5] = np.arange(15, dtype="f4").reshape(5, 3)
    b[:3] = [1, 2, 3]      # ends inside its second chunk: that chunk is padded
    c[:1] = [7.0]          # no _FillValue attribute: padded with netCDF's default, unmasked
    t[:4] = np.arange(4.0)
"""


def _views(path):
    group = zms.scan(str(path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for chunks in (None, {}):
            yield xr.open_zarr(zms.ManifestStore(group), chunks=chunks).load()


@pytest.mark.parametrize("engine", ["h5netcdf", "netcdf4"])
def test_variables_of_an_unlimited_dimension_are_padded_to_its_length(tmp_path, engine):
    path = tmp_path / "unlimited.nc"
    subprocess.run([sys.executable, "-c", UNLIMITED_SCRIPT, str(path)], check=True)
    with h5py.File(path) as f:
        assert [f[n].shape[0] for n in ("a", "b", "c", "time")] == [5, 3, 1, 4]
    with xr.open_dataset(path, engine=engine) as expected:
        expected = expected.load()
        for actual in _views(path):
            xr.testing.assert_identical(actual, expected)
    group = zms.scan(str(path))
    assert group["b"].manifest.path_index.tolist()[1] == zms.manifest.INLINE  # the padded edge
    assert group["c"].shape == (5,)


def test_variable_length_strings_have_the_dtype_h5netcdf_gives(tmp_path):
    path = tmp_path / "strings.nc"
    with h5netcdf.File(path, "w") as f:
        f.dimensions = {"n": 3}
        f.create_variable("utf8", ("n",), dtype=h5py.string_dtype())
        f.variables["utf8"][:] = np.array(["x", "yyé", ""], object)
        f.create_variable("scalar", (), dtype=h5py.string_dtype())[()] = "héllo"
    with h5py.File(path, "a") as f:  # h5netcdf writes UTF-8; ASCII ones come from elsewhere
        ascii_text = f.create_dataset(
            "ascii", data=np.array([b"ab", b"c", b"d"], dtype=h5py.string_dtype("ascii"))
        )
        ascii_text.dims[0].attach_scale(f["n"])
        f.create_dataset("one_char", data=np.array([b"a"], dtype=h5py.string_dtype("ascii")))
        f.create_dataset("date", data=b"2019-01-01", dtype=h5py.string_dtype("ascii"))  # NWB
    with xr.open_dataset(path, engine="h5netcdf") as expected:
        expected = expected.load()
        assert expected["utf8"].dtype == "<U3"
        assert expected["ascii"].dtype == object
        assert expected["date"].dtype == "<U10"
        for actual in _views(path):
            xr.testing.assert_identical(actual, expected)
            for name in expected.variables:
                assert actual[name].dtype == expected[name].dtype, name


def test_text_larger_than_the_inline_budget_has_the_dtype_h5netcdf_gives(tmp_path):
    """8,000 UTF-8 and 30,000 ASCII strings whose fixed-width form passes 1 MiB (AnnData's cell
    names): stored compressed, not as ``StringDType`` nor refused."""
    path = tmp_path / "many_strings.h5"
    utf8 = np.array([f"cellé-{i:06d}" + "ACGT" * (i % 8) for i in range(8000)], object)
    ascii_text = np.array([f"gene-{i:06d}".encode() * (1 + i % 3) for i in range(30000)], object)
    with h5py.File(path, "w") as f:
        f.create_dataset("utf8", data=utf8, dtype=h5py.string_dtype())
        f.create_dataset("ascii", data=ascii_text, dtype=h5py.string_dtype("ascii"))
    group = zms.scan(str(path))
    assert [c["name"] for c in group["utf8"].metadata.to_dict()["codecs"]] == [
        "bytes",
        "gzip",
    ]
    with xr.open_dataset(path, engine="h5netcdf") as expected:
        expected = expected.load()
        assert expected["utf8"].dtype == "<U40"
        assert expected["ascii"].dtype == object
        for actual in _views(path):
            xr.testing.assert_identical(actual, expected)
            for name in expected.variables:
                assert actual[name].dtype == expected[name].dtype, name


def test_attributes_show_as_h5netcdf_shows_them(tmp_path):
    path = tmp_path / "attributes.h5"
    with h5py.File(path, "w") as f:
        f.attrs["TITLE"] = h5py.Empty("S1")  # PyTables' null-dataspace attributes
        f.attrs["NOTHING"] = h5py.Empty("f8")
        f.attrs["vlen_matrix"] = np.array([["a", "b"], ["c", "d"]], dtype=h5py.string_dtype())
        f.attrs["fixed_matrix"] = np.array([[b"a", b"b"], [b"c", b"d"]])
        f.attrs["numbers"] = np.arange(6).reshape(3, 2)
        kind = h5py.enum_dtype({"CLEAR": 0, "CLOUDY": 1}, basetype="i1")
        f.create_dataset("cloud", data=np.array([0, 1, 1], "i1"), dtype=kind)
    with xr.open_dataset(path, engine="h5netcdf") as expected:
        expected = expected.load()
        for actual in _views(path):
            assert actual.attrs.keys() == expected.attrs.keys()
            for name, value in expected.attrs.items():
                # JSON has no bytes: fixed-length text attributes come back decoded
                text = np.char.decode(value) if np.asarray(value).dtype.kind == "S" else value
                np.testing.assert_array_equal(np.asarray(actual.attrs[name]), text, name)
            assert actual["cloud"].attrs == expected["cloud"].attrs == {}
            np.testing.assert_array_equal(actual["cloud"].values, expected["cloud"].values)
