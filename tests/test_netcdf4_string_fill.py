"""A netCDF-4 string variable's ``_FillValue`` masks it in the view, as netCDF readers mask it.

Found by generating netCDF-C files of every variable type (issue #18): the
``_FillValue`` of a variable-length string variable was dropped (neither an
attribute, which xarray's Zarr backend cannot decode for text, nor a typed
record), so the view showed the fill strings where h5netcdf shows NaN.
"""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
import xarray as xr

import zarr_manifest_store as zms

SCRIPT = """
import sys, netCDF4, numpy as np
with netCDF4.Dataset(sys.argv[1], "w") as nc:
    nc.createDimension("x", 4)
    v = nc.createVariable("station", str, ("x",), fill_value="NA")
    v[0] = "Oslo"
    v[2] = "Bergen"
    w = nc.createVariable("empty_fill", str, ("x",), fill_value="")
    w[1] = "b"
    u = nc.createVariable("unfilled", str, ("x",))
    u[:] = np.array(["a", "NA", "", "d"], dtype=object)
"""


@pytest.fixture
def string_file(tmp_path):
    path = tmp_path / "strings.nc"
    subprocess.run([sys.executable, "-c", SCRIPT, str(path)], check=True)
    return path


@pytest.mark.parametrize("engine", ["h5netcdf", "netcdf4"])
def test_string_fill_values_mask_as_netcdf_readers_mask(string_file, engine):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with xr.open_dataset(string_file, engine=engine) as expected:
            expected = expected.load()
        store = zms.ManifestStore(zms.scan(str(string_file)))
        with xr.open_dataset(store, engine="zarr_manifest") as actual:
            actual = actual.load()
    assert expected["station"].isnull().values.tolist() == [False, True, False, True]
    for name in ("station", "empty_fill", "unfilled"):
        xr.testing.assert_identical(actual[name], expected[name])


UNLIMITED_TEXT = """
import sys, netCDF4, numpy as np
with netCDF4.Dataset(sys.argv[1], "w") as nc:
    nc.createDimension("t", None)
    nc.createDimension("n", 3)
    s = nc.createVariable("s", str, ("t",))
    s[0], s[1] = "a", "bb"
    sf = nc.createVariable("sf", str, ("t",), fill_value="NA")
    sf[0] = "x"
    c = nc.createVariable("c", "S1", ("t", "n"))
    c[:1] = np.array([[b"a", b"b", b"c"]])
    e = nc.createVariable("e", nc.createEnumType("u1", "e_t", {"a": 1, "b": 2}), ("t",), fill_value=2)
    e[:2] = [1, 1]
    f = nc.createVariable("f", "f4", ("t",))
    f[:4] = np.arange(4)
"""


def test_text_variables_shorter_than_their_unlimited_dimension_are_padded(tmp_path):
    """netCDF-C pads every variable of an unlimited dimension, strings and characters too (with
    their fill value); h5netcdf pads only numbers and cannot open such a file at all."""
    path = tmp_path / "unlimited_text.nc"
    subprocess.run([sys.executable, "-c", UNLIMITED_TEXT, str(path)], check=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with xr.open_dataset(path, engine="netcdf4") as expected:
            expected = expected.load()
        store = zms.ManifestStore(zms.scan(str(path)))
        with xr.open_dataset(store, engine="zarr_manifest") as actual:
            actual = actual.load()
    assert expected["s"].values.tolist() == ["a", "bb", "", ""]
    for name in ("s", "sf", "c", "e", "f"):
        xr.testing.assert_identical(actual[name], expected[name])
