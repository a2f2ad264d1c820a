"""The TIFF scanner on real files that packages publish: imagecodecs' TIFF test corpus (tifffile's
author's files: every sample format, compression and layout) and the geotiff package's GeoTIFFs.
Every image read equals tifffile's; every one refused is refused for a reason we name."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tifffile
import xarray as xr
import zarr
from samples import Pin, sample
from test_scan_tiff import levels

import zarr_manifest_store as zms

IMAGECODECS = Pin(
    "imagecodecs",
    "2026.11.11",
    "imagecodecs-2026.11.11.tar.gz",
    "f3d0762f3676a2e7caca7d50825b06ec5865c00f18c2b367bb02797aec4e10d8",
)
GEOTIFF = Pin(
    "geotiff",
    "0.2.10",
    "geotiff-0.2.10.tar.gz",
    "36da356d3e2f6e3719bad32212283fe99049373391c7f576c2d6022642ad88d6",
)
REFUSED = {
    "gray.c8.tif": "SampleFormat COMPLEXIEEEFP",
    "gray.c16.tif": "SampleFormat COMPLEXIEEEFP",
    "gray.depth.u1.tif": "volume",
    "gray.depth.deflate.u1.tif": "volume",
    "gray.lerc.u1.tif": "LERC",
    "rgb.tiled.lerc.u1.tif": "LERC",
    "rgb.tiled.jpeg2000.u1.tif": "JPEG2000",
    "rgb.tiled.jpegxl.u1.tif": "JPEG2000",  # a JPEG 2000 file, by its Compression tag
    "rgb.tiled.jpegxr.u1.tif": "JPEGXR",
    "rgb.tiled.png.u1.tif": "PNG",
    "rgb.tiled.webp.u1.tif": "WEBP",
    "rgb.tiled.jpeg.u2.tif": "12 bits",
    "rgb_u2_jpeg.tif": "12 bits",
    "rgb_u2_jpegll.tif": "12 bits",
    "rgb_u2_tiled_jpeg.tif": "12 bits",
    "rgb_u2_tiled_jpegll.tif": "12 bits",
}
"""The corpus files refused, with a word of the reason their refusal gives."""


def scan_and_compare(path):
    """Scan ``path`` leaving refused images out; compare the rest with tifffile; the refusals."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        g = zms.scan(path, on_unsupported="skip")
    root = zarr.open_group(zms.ManifestStore(g), mode="r")
    read = 0
    for key, expected in levels(path):
        if key in root:
            got = root[key][...]
            assert got.dtype == expected.dtype, (path.name, key)
            np.testing.assert_array_equal(got, expected, err_msg=f"{path.name} {key}")
            read += 1
    return g, read, [str(w.message) for w in caught if "left out dataset" in str(w.message)]


@pytest.mark.xdist_group("tiff-samples")
def test_imagecodecs_tiff_corpus():
    folder = sample(IMAGECODECS, "imagecodecs-2026.11.11/tests/data/tiff")
    files = sorted(folder.glob("*.tif"))
    assert len(files) == 75
    read_files = 0
    for path in files:
        _, read, refusals = scan_and_compare(path)
        if path.name in REFUSED:
            assert read == 0, path.name
            assert len(refusals) == 1, path.name
            assert REFUSED[path.name] in refusals[0], refusals
        else:
            assert read >= 1, path.name
            assert not refusals, refusals
            read_files += 1
    assert read_files == 75 - len(REFUSED)


@pytest.mark.xdist_group("tiff-samples")
def test_geotiff_package_files():
    folder = sample(GEOTIFF, "geotiff-0.2.10/tests/inputs")
    for path in sorted(folder.glob("*.tif")):
        g, read, refusals = scan_and_compare(path)
        assert read == 1, path.name
        assert not refusals
        with tifffile.TiffFile(path) as tif:
            page = tif.pages[0]
            scale, tiepoint = page.tags[33550].value, page.tags[33922].value
        ds = xr.open_zarr(zms.ManifestStore(g), consolidated=False)
        x0 = tiepoint[3] - tiepoint[0] * scale[0]
        np.testing.assert_allclose(ds.x.values[:3], x0 + scale[0] * (np.arange(3) + 0.5))
        assert ds.image.attrs["grid_mapping"] == "spatial_ref"
