"""scan_fits on the FITS files astropy publishes in its sdist: equal to astropy, or refused."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import xarray as xr
from astropy.io import fits
from samples import Pin, sample

import zarr_manifest_store as zms

ASTROPY = Pin(
    "astropy",
    "8.0.2",
    "astropy-8.0.2.tar.gz",
    "e6af35823099ad6a40b57dbe5ff845f577374ea131925c9fa4b49eeab06c5310",
)
DATA = "astropy-8.0.2/astropy/io/fits/tests/data"

IMAGES = {
    "arange.fits": {"PRIMARY": "int32"},
    "blank.fits": {"PRIMARY": "float64"},
    "comp.fits": {"COMPRESSED_IMAGE": "int16"},
    "compressed_float_bzero.fits": {"COMPRESSED_IMAGE": "uint16"},
    "compressed_image.fits": {"COMPRESSED_IMAGE": "int16"},
    "double_ext.fits": {"ccd00": "uint16"},
    "fixed-1890.fits": {"PRIMARY": "uint16"},
    "o4sp040b0_raw.fits": {"SCI_1": "uint16", "SCI_2": "uint16"},
    "test0.fits": {f"SCI_{i}": "int16" for i in range(1, 5)},
}
"""Files whose images are all described, with each array's dtype (astropy's)."""
REFUSED = {
    "btable.fits": "'HDU1' is a binary table",
    "ascii.fits": "'HDU1' is an ASCII table",
    "random_groups.fits": "'PRIMARY' is a random-groups HDU",
    "checksum.fits": "'RATE' is a binary table",
}


@pytest.fixture(scope="module")
def folder():
    return sample(ASTROPY, DATA)


@pytest.mark.parametrize("name", sorted(IMAGES))
def test_images_read_as_astropy_reads_them(folder, name):
    path = folder / name
    g = zms.scan(path, on_unsupported="skip")
    assert set(g.arrays) == set(IMAGES[name])
    ds = xr.open_zarr(zms.ManifestStore(g), consolidated=False)
    with fits.open(path) as hdul:
        for array, dtype in IMAGES[name].items():
            extname, _, ver = array.rpartition("_") if array.startswith("SCI_") else (array, "", "")
            expected = hdul[extname, int(ver)].data if ver else hdul[extname].data
            assert expected.dtype.newbyteorder("=") == np.dtype(dtype) == ds[array].dtype
            np.testing.assert_array_equal(ds[array].values, expected)


def test_a_scaled_image_reads_as_astropy_to_its_precision(folder):
    """CF decoding computes BSCALE * stored + BZERO in float64, exactly; astropy in float32."""
    path = folder / "scale.fits"
    got = xr.open_zarr(zms.ManifestStore(zms.scan(path)), consolidated=False).PRIMARY.values
    with fits.open(path, do_not_scale_image_data=True) as hdul:
        raw, header = hdul[0].data, hdul[0].header
        exact = raw * np.float64(header["BSCALE"]) + np.float64(header["BZERO"])
    expected = fits.getdata(path)
    assert expected.dtype == np.float32
    assert got.dtype == np.float64
    np.testing.assert_array_equal(got, exact)
    np.testing.assert_allclose(got, expected, rtol=np.finfo(np.float32).eps)


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_tables_and_random_groups_are_refused_by_name(folder, name):
    with pytest.raises(zms.UnsupportedDatasetError, match=REFUSED[name]):
        zms.scan(folder / name)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        zms.scan(folder / name, on_unsupported="skip")
