"""``_FillValue`` attributes that are not one value of their variable's type (issue #18).

Found by generating files for the corpus checker: in a netCDF3 file, a text
``_FillValue`` on a float variable failed the whole scan, and an out-of-range
one was wrapped into the variable's type (masking a value netCDF readers keep);
in any file, a ``_FillValue`` of several values masked only the first, and in
HDF5 a NaN ``_FillValue`` on integers, or an empty one, refused its dataset.
Each view now equals ``xr.open_dataset`` of the file (scipy / h5netcdf).
"""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest
import xarray as xr
from scipy.io import netcdf_file

import zarr_manifest_store as zms


def _load(target, engine, **kwargs) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with xr.open_dataset(target, engine=engine, **kwargs) as ds:
            return ds.load()


def _scanned_view(path) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # nothing is left out
        group = zms.scan(str(path), on_unsupported="raise")
    return _load(zms.ManifestStore(group), "zarr_manifest")


@pytest.fixture
def netcdf3_fills(tmp_path):
    path = tmp_path / "fills.nc"
    with netcdf_file(path, "w") as f:
        f.createDimension("x", 4)

        def var(name, typ, data, fill):
            v = f.createVariable(name, typ, ("x",))
            v[:] = data
            v._FillValue = fill

        var("text_fill", "f", [1, 2, 3, 4], b"NaN")
        var("out_of_range", "h", [1, -31073, 3, 4], np.array([99999], "i4"))  # wraps to -31073
        var("not_integral", "h", [1, 0, 3, 4], np.array([0.5], "f8"))  # truncates to 0
        var("two_fills", "d", [1, -1, -2, 4], np.array([-1.0, -2.0]))
        var("float_fill", "h", [1, -9999, 3, 4], np.array([-9999.0], "f8"))
    return path


def test_netcdf3_fill_values_mask_as_scipy_masks(netcdf3_fills):
    expected = _load(netcdf3_fills, "scipy")
    actual = _scanned_view(netcdf3_fills)
    assert np.isnan(expected["two_fills"].values).sum() == 2
    assert not np.isnan(expected["out_of_range"].values).any()
    for name in expected.variables:
        xr.testing.assert_identical(actual[name], expected[name])


@pytest.fixture
def hdf5_fills(tmp_path):
    path = tmp_path / "fills.h5"
    with h5py.File(path, "w") as f:
        f["two_fills"] = np.array([1.0, -1, -2])
        f["two_fills"].attrs["_FillValue"] = np.array([-1.0, -2.0])
        f["nan_on_ints"] = np.array([1, 2, 3], "i4")
        f["nan_on_ints"].attrs["_FillValue"] = np.float64(np.nan)
        f["no_value"] = np.array([1.0, 2.0])
        f["no_value"].attrs["_FillValue"] = np.array([], "f8")
    return path


def test_hdf5_fill_values_mask_as_h5netcdf_masks(hdf5_fills):
    expected = _load(hdf5_fills, "h5netcdf", phony_dims="access")
    actual = _scanned_view(hdf5_fills)
    assert np.isnan(expected["two_fills"].values).sum() == 2
    for name in expected.variables:
        np.testing.assert_array_equal(actual[name].values, expected[name].values)
        assert actual[name].dtype == expected[name].dtype
