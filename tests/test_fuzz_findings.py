"""Bug classes the differential fuzzer (tests/fuzz_files.py, benchmarks/fuzz_views.py) found,
each on a file written here that reproduces it alone (issue #18)."""

from __future__ import annotations

import subprocess
import sys
import warnings

import h5netcdf
import h5py
import numpy as np
import pytest
import xarray as xr
from h5py import h5d, h5p, h5s, h5t
from scipy.io import netcdf_file
from test_scan_odd_objects import _set_undefined_fill_value

import zarr_manifest_store as zms


def _view(path, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        store = zms.ManifestStore(zms.scan(str(path)))
        return xr.open_dataset(store, engine="zarr_manifest", chunks=None, **options).load()


def _left_out_and_view(path):
    """The one warning of a dataset left out by a scan that skips, and the scan's view (not
    masked or scaled)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        group = zms.scan(str(path), on_unsupported="skip")
    (message,) = [str(w.message) for w in caught if "left out" in str(w.message)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        store = zms.ManifestStore(group)
        return message, xr.open_dataset(store, engine="zarr_manifest", mask_and_scale=False).load()


def test_netcdf3_names_scipy_wrote_in_latin1_are_read_as_scipy_reads_them(tmp_path):
    path = tmp_path / "latin1.nc"
    with netcdf_file(path, "w") as f:  # scipy encodes names as Latin-1: not UTF-8
        f.createDimension("ä", 2)
        v = f.createVariable("ünï", "i", ("ä",))
        v[:] = [1, 2]
        v.é = 3
        f.createVariable("plain", "d", ("ä",))[:] = [0.5, 1.5]
    with xr.open_dataset(path, engine="scipy") as expected:
        xr.testing.assert_identical(_view(path), expected.load())
    assert sorted(zms.scan(str(path)).arrays) == ["plain", "ünï"]


def test_a_coordinate_whose_name_zarr_reserves_stays_its_dimensions_coordinate(tmp_path):
    path = tmp_path / "reserved.nc"
    with h5netcdf.File(path, "w") as f:
        f.dimensions = {"__t": 3, "x\\y": 2}
        f.create_variable("__t", ("__t",), "f8", data=[0.0, 1.0, 2.0])
        f.create_variable("x\\y", ("x\\y",), "i4", data=[5, 6])
        f.create_variable("v", ("__t", "x\\y"), "f4", data=np.ones((3, 2)))
        f.create_variable("__lat", ("__t", "x\\y"), "f4", data=np.zeros((3, 2)))
        f.variables["v"].attrs["coordinates"] = "__lat"  # a 2-D coordinate
    with xr.open_dataset(path, engine="h5netcdf") as expected:  # views show the stored names
        renamed = {"__t": "%5F_t", "x\\y": "%78%5Cy", "__lat": "%5F_lat"}
        expected = expected.load().rename(renamed)
    assert "%5F_lat" in expected.coords
    actual = _view(path)
    xr.testing.assert_identical(actual, expected)
    assert list(actual.indexes) == ["%5F_t", "%78%5Cy"]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = xr.open_zarr(zms.ManifestStore(zms.scan(str(path))), chunks=None).load()
    xr.testing.assert_identical(plain, expected)


def test_a_refused_dataset_is_named_as_it_is_in_the_file(tmp_path):
    path = tmp_path / "backslash.h5"
    with h5py.File(path, "w") as f:
        sequences = f.create_dataset("g/a\\b", shape=(2,), dtype=h5py.vlen_dtype("i4"))
        sequences[0] = [1, 2]
        f["g/plain"] = np.arange(3)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        group = zms.scan(str(path), on_unsupported="skip")
    assert [str(w.message).split(": ")[1] for w in caught] == ["left out dataset 'g/a\\b'"]
    assert sorted(group["g"].arrays) == ["plain"]
    with pytest.raises(zms.UnsupportedDatasetError, match=r"  'g/a\\b' holds"):
        zms.scan(str(path))


NOFILL_SCRIPT = """
import sys, netCDF4, numpy as np
with netCDF4.Dataset(sys.argv[1], "w") as nc:
    nc.set_fill_off()  # HDF5's fill value stays 0; netCDF pads with its default fill
    nc.createDimension("time", None)
    nc.createDimension("x", 4)
    a = nc.createVariable("a", "f8", ("time",), chunksizes=(2,))
    b = nc.createVariable("b", "i4", ("time", "x"), chunksizes=(1, 2))
    c = nc.createVariable("c", "u4", ("time",), chunksizes=(2,), fill_value=4)  # ignored
    t = nc.createVariable("time", "f8", ("time",), chunksizes=(8,))
    t[:7] = np.arange(7.0)
    a[:3] = [1.0, 2.0, 3.0]  # ends inside its second chunk, four chunks past it
    b[4, 2:] = [7, 8]  # rows 0-3 and half of row 4 never written: undefined (HDF5: no fill)
    c[:1] = [1]
"""


def test_a_variable_written_without_fill_is_padded_as_netcdf_pads_it(tmp_path):
    path = tmp_path / "nofill.nc"
    subprocess.run([sys.executable, "-c", NOFILL_SCRIPT, str(path)], check=True)
    with h5py.File(path) as f:
        assert (f["a"].fillvalue, f["a"].shape) == (0, (3,))
    message, actual = _left_out_and_view(path)
    assert "'b': has fill time 'never' and 9 of its chunks were never written" in message
    with xr.open_dataset(path, engine="netcdf4", mask_and_scale=False) as expected:
        np.testing.assert_array_equal(actual["a"], expected["a"])  # 9.97e36 past the data
        assert actual["a"].values[3:].tolist() == [9.969209968386869e36] * 4
        np.testing.assert_array_equal(actual["c"], expected["c"])
    assert actual["c"].values.tolist() == [1] + [4294967295] * 6  # not its _FillValue, 4


def test_a_variable_without_a_fill_value_is_padded_as_netcdf_pads_it(tmp_path):
    """A dataset with no fill value (``H5Pset_fill_value`` with NULL, as PyTables writes them)
    shorter than its unlimited dimension: netCDF-C pads numbers with its default fill, as for
    NC_NOFILL, whatever its ``_FillValue`` (h5netcdf fails on it); text, which has no such
    fill, is refused by name."""
    path = tmp_path / "undefined.h5"
    with h5py.File(path, "w") as f:
        t = f.create_dataset("t", data=np.arange(6.0), maxshape=(None,), chunks=(2,))
        t.make_scale("t")
        for name, tid, values in (
            ("n", h5t.STD_I32LE, np.array([1, 2, 3], "<i4")),
            ("s", h5t.C_S1.copy(), np.array([b"a", b"b", b"c"], "S1")),
        ):
            dcpl = h5p.create(h5p.DATASET_CREATE)
            dcpl.set_chunk((2,))
            _set_undefined_fill_value(dcpl, tid)
            space = h5s.create_simple((3,), (h5s.UNLIMITED,))
            h5d.create(f.id, name.encode(), tid, space, dcpl=dcpl).close()
            f[name][...] = values
            f[name].dims[0].attach_scale(t)
        f["n"].attrs["_FillValue"] = np.int32(-5)  # not what netCDF-C pads with
        assert f["n"].id.get_create_plist().fill_value_defined() == h5d.FILL_VALUE_UNDEFINED
    message, actual = _left_out_and_view(path)
    assert "'s': has no fill value and is shorter than its unlimited dimension" in message
    with xr.open_dataset(path, engine="netcdf4", mask_and_scale=False) as expected:
        np.testing.assert_array_equal(actual["n"], expected["n"])
    assert actual["n"].values.tolist() == [1, 2, 3] + [-2147483647] * 3


def test_a_character_variables_missing_value_masks_it_as_netcdf_readers_do(tmp_path):
    h5, nc3 = tmp_path / "chars.h5", tmp_path / "chars.nc"
    with h5py.File(h5, "w") as f:
        x = f.create_dataset("x", data=np.arange(3.0))
        x.make_scale("x")
        chars = f.create_dataset("c", data=np.array([b"a", b"z", b"b"], "S1"))
        chars.dims[0].attach_scale(x)
        chars.attrs["missing_value"] = np.bytes_(b"z")
    with netcdf_file(nc3, "w") as f:
        f.createDimension("x", 3)
        f.createDimension("strlen", 1)
        chars = f.createVariable("c", "c", ("x", "strlen"))
        chars[:] = np.array([[b"a"], [b"z"], [b"b"]], "S1")
        chars.missing_value = b"z"
    for path, engine in ((h5, "h5netcdf"), (nc3, "scipy")):
        with xr.open_dataset(path, engine=engine) as expected:
            expected = expected.load()
        xr.testing.assert_identical(_view(path), expected)
    assert _view(h5)["c"].values.tolist() == [b"a", np.nan, b"b"]  # as h5netcdf masks it


NON_COORDINATE_SCRIPT = """
import sys, netCDF4, numpy as np
with netCDF4.Dataset(sys.argv[1], "w") as nc:
    g = nc.createGroup("g")
    g.createDimension("x", 2)
    g.createDimension("y", 3)
    vlen = g.createVLType(np.int32, "vlen_t")
    x = g.createVariable("x", vlen, ("y",))  # named like a dimension, not its coordinate
    x[0] = np.arange(2, dtype="i4")
    g.createVariable("plain", "f4", ("x",))[:] = [1.0, 2.0]
"""


def test_a_refused_non_coordinate_variable_is_named_as_netcdf_names_it(tmp_path):
    path = tmp_path / "non_coordinate.nc"
    subprocess.run([sys.executable, "-c", NON_COORDINATE_SCRIPT, str(path)], check=True)
    with h5py.File(path) as f:
        assert "_nc4_non_coord_x" in f["g"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        group = zms.scan(str(path), on_unsupported="skip")
    (message,) = [str(w.message) for w in caught if "left out" in str(w.message)]
    assert message.endswith("(netCDF variable 'g/x')")
    assert sorted(group["g"].arrays) == ["plain"]


def test_a_fixed_length_strings_fill_value_shows_as_h5netcdf_shows_it(tmp_path):
    path = tmp_path / "fixed.h5"
    with h5py.File(path, "w") as f:
        x = f.create_dataset("x", data=np.arange(2.0))
        x.make_scale("x")
        for name, fill in (("ascii", b"x y"), ("latin", b"\xc2\xb0C"), ("char", b"z")):
            text = f.create_dataset(name, data=np.array([fill, b"ab"], "S5"), fillvalue=fill)
            text.attrs["_FillValue"] = np.bytes_(fill)
            text.dims[0].attach_scale(x)
    with xr.open_dataset(path, engine="h5netcdf") as expected:
        expected = expected.load()
    assert expected["ascii"].values.tolist() == [b"x y", b"ab"]  # text: masks no bytes
    assert expected["char"].values.tolist() == [np.nan, b"ab"]  # a character: masks
    xr.testing.assert_identical(_view(path), expected)


COMPOUND_SCRIPT = """
import sys, netCDF4, numpy as np
with netCDF4.Dataset(sys.argv[1], "w") as nc:
    nc.createDimension("time", None)
    pair = nc.createCompoundType(np.dtype([("a", "<f8"), ("b", "<i8")]), "pair_t")
    p = nc.createVariable("pair", pair, ("time",), chunksizes=(1,))
    v = nc.createVariable("v", "f4", ("time",), chunksizes=(2,))
    v[:3] = [1.0, 2.0, 3.0]
    p[:1] = np.array([(0.5, 7)], dtype=[("a", "<f8"), ("b", "<i8")])
"""


def test_a_compound_shorter_than_its_unlimited_dimension_is_refused_alone(tmp_path):
    path = tmp_path / "compound.nc"
    subprocess.run([sys.executable, "-c", COMPOUND_SCRIPT, str(path)], check=True)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        group = zms.scan(str(path), on_unsupported="skip")
    (message,) = [str(w.message) for w in caught if "left out" in str(w.message)]
    assert "'pair': is shorter than its unlimited dimension 'time'" in message
    with xr.open_dataset(path, engine="netcdf4") as expected:
        expected = expected.drop_vars("pair").load()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        actual = xr.open_dataset(zms.ManifestStore(group), engine="zarr_manifest").load()
    xr.testing.assert_identical(actual, expected)


NO_RECORDS_SCRIPT = """
import sys, netCDF4
with netCDF4.Dataset(sys.argv[1], "w", format="NETCDF3_64BIT_DATA") as nc:
    nc.createDimension("time", None)
    nc.createDimension("x", 2)
    nc.createVariable("x", "f8", ("x",))[:] = [1.0, 2.0]
    nc.createVariable("a", "i2", ("time", "x"))
    nc.createVariable("b", "u4", ("time",))  # begins past the file's end: no record is written
"""


def test_record_variables_of_a_file_without_records_are_empty_not_truncated(tmp_path):
    path = tmp_path / "no_records.nc"
    subprocess.run([sys.executable, "-c", NO_RECORDS_SCRIPT, str(path)], check=True)
    group = zms.scan(str(path))  # on_unsupported="raise": nothing is refused
    assert (group["a"].shape, group["b"].shape) == ((0, 2), (0,))
    with xr.open_dataset(path, engine="netcdf4") as expected:
        xr.testing.assert_identical(_view(path), expected.load())
