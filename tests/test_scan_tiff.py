"""The TIFF scanner: files written by tifffile, read through ManifestStore, equal tifffile's values."""

from __future__ import annotations

import struct

import numpy as np
import pytest
import tifffile
import xarray as xr
import zarr

import zarr_manifest_store as zms
from zarr_manifest_store.format_codecs.tiff import CODEC_NAME

RNG = np.random.default_rng(21)


def levels(path):
    """``(key, values)`` of every series and level as tifffile reads them, by the scan's layout."""
    with tifffile.TiffFile(path) as tif:
        images = []
        for series in tif.series:
            if images and series.keyframe.subfiletype & 4:
                images[-1][1].append(series)
            else:
                images.append((series, []))
        for k, (series, masks) in enumerate(images):
            group = f"series{k}/" if k else ""
            for j, level in enumerate(series.levels):
                at = f"{group}{j}/" if j else group
                yield f"{at}image", level.asarray()
                for m, mask in enumerate(masks):
                    yield f"{at}{'mask' if m == 0 else f'mask{m}'}", mask.levels[j].asarray()


def check(path, **options):
    """Scan ``path`` and compare every array with tifffile's, value for value and dtype for dtype."""
    g = zms.scan(path, **options)
    root = zarr.open_group(zms.ManifestStore(g), mode="r")
    seen = 0
    for key, expected in levels(path):
        got = root[key][...]
        assert got.dtype == expected.dtype, key
        np.testing.assert_array_equal(got, expected, err_msg=key)
        seen += 1
    assert seen
    return g


def codec_name(g, key="image"):
    return [c.to_dict()["name"] for c in g[key].metadata.codecs]


def image(shape, dtype):
    dtype = np.dtype(dtype)
    if dtype.kind == "f":
        return RNG.normal(size=shape).astype(dtype)
    info = np.iinfo(dtype)
    return RNG.integers(info.min, info.max, shape, dtype=dtype, endpoint=True)


@pytest.mark.parametrize("compression", [None, "zlib", "lzw", "packbits", "zstd", "lzma"])
@pytest.mark.parametrize("layout", [{"tile": (16, 32)}, {"rowsperstrip": 7}])
def test_compressions_tiles_and_strips(tmp_path, compression, layout):
    # 50 x 45: edge tiles on both axes, and a short last strip (50 = 7 * 7 + 1)
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, image((50, 45), "u2"), compression=compression, **layout)
    check(path)


@pytest.mark.parametrize(
    "dtype", ["u1", "i1", "u2", "i2", "u4", "i4", "u8", "i8", "f2", "f4", "f8"]
)
@pytest.mark.parametrize("byteorder", ["<", ">"])
def test_sample_formats_and_byte_orders(tmp_path, dtype, byteorder):
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, image((20, 30), dtype), byteorder=byteorder, tile=(16, 16))
    g = check(path)
    assert g["image"].dtype == np.dtype(dtype).newbyteorder("=")


@pytest.mark.parametrize(
    ("dtype", "predictor"),
    [("u2", 2), ("i4", 2), ("u1", 2), ("i8", 2), ("f4", 3), ("f8", 3), ("f2", 3)],
)
@pytest.mark.parametrize("byteorder", ["<", ">"])
@pytest.mark.parametrize("layout", [{"tile": (16, 16)}, {"rowsperstrip": 6}])
def test_predictors(tmp_path, dtype, predictor, byteorder, layout):
    path = tmp_path / "a.tif"
    data = image((3, 21, 18), dtype)  # three samples interleaved
    tifffile.imwrite(
        path,
        data,
        photometric="rgb",
        planarconfig="contig",
        predictor=predictor,
        compression="zlib",
        byteorder=byteorder,
        **layout,
    )
    g = check(path)
    assert codec_name(g) == [CODEC_NAME]


@pytest.mark.parametrize("planarconfig", ["contig", "separate"])
@pytest.mark.parametrize("layout", [{"tile": (16, 16)}, {"rowsperstrip": 5}])
def test_planar_configurations(tmp_path, planarconfig, layout):
    path = tmp_path / "rgb.tif"
    data = image((3, 33, 20), "u1") if planarconfig == "separate" else image((33, 20, 3), "u1")
    tifffile.imwrite(
        path, data, photometric="rgb", planarconfig=planarconfig, compression="zlib", **layout
    )
    g = check(path)
    dims = g["image"].dimension_names
    assert dims == (("sample", "y", "x") if planarconfig == "separate" else ("y", "x", "sample"))


@pytest.mark.parametrize("photometric", ["rgb", "ycbcr", "minisblack"])
@pytest.mark.parametrize("layout", [{"tile": (16, 16)}, {"rowsperstrip": 8}])
def test_jpeg(tmp_path, photometric, layout):
    path = tmp_path / "jpeg.tif"
    shape = (40, 35) if photometric == "minisblack" else (40, 35, 3)
    data = (np.add.outer(np.arange(40), np.arange(35)) % 256).astype("u1")
    data = (
        data
        if photometric == "minisblack"
        else np.stack([data, data[::-1], data.T[:35, :40].T], -1)
    )
    tifffile.imwrite(
        path, data.reshape(shape), photometric=photometric, compression="jpeg", **layout
    )
    g = check(path)
    assert g["image"].metadata.codecs[0].compression == "jpeg"


def test_uncompressed_reads_with_the_bytes_codec(tmp_path):
    path = tmp_path / "a.tif"
    tifffile.imwrite(path, image((64, 40), "f4"), tile=(16, 16))
    g = check(path)
    assert codec_name(g) == ["bytes"]
    path = tmp_path / "b.tif"
    tifffile.imwrite(path, image((64, 40), "i2"), tile=(32, 16), compression="zlib")
    assert codec_name(check(path)) == ["bytes", "numcodecs.zlib"]


def test_short_last_strip_of_an_uncompressed_file(tmp_path):
    # the strip is short and the file ends with it: no bytes to read on into
    path = tmp_path / "a.tif"
    data = image((10, 9), "u2")
    tifffile.imwrite(path, data, rowsperstrip=4)
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        assert page.databytecounts[-1] == 2 * 9 * 2
        ends_there = page.dataoffsets[-1] + 4 * 9 * 2 > path.stat().st_size
    g = check(path)
    assert codec_name(g) == ([CODEC_NAME] if ends_there else ["bytes"])


def set_segment(path, index, **values):
    """Overwrite segment ``index``'s ``offset`` and/or ``bytecount`` in the first page's tags."""
    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        codes = {
            "offset": 324 if page.is_tiled else 273,
            "bytecount": 325 if page.is_tiled else 279,
        }
        patches = []
        for name, value in values.items():
            tag = page.tags[codes[name]]
            code = tif.byteorder + {3: "H", 4: "I", 16: "Q"}[tag.dtype]
            size = struct.calcsize(code)
            where = (
                tag.valueoffset
                if tag.count * size > (8 if tif.is_bigtiff else 4)
                else tag.offset + (20 if tif.is_bigtiff else 8)
            )
            patches.append((where + index * size, struct.pack(code, value)))
    with open(path, "r+b") as f:
        for where, packed in patches:
            f.seek(where)
            f.write(packed)


def zero_segment(path, index):
    """Make segment ``index`` of the first page missing: offset and byte count 0 (sparse)."""
    set_segment(path, index, offset=0, bytecount=0)


def test_an_uncompressed_segment_shorter_than_its_pixels_is_refused(tmp_path):
    path = tmp_path / "short.tif"
    tifffile.imwrite(path, image((20, 10), "u2"), rowsperstrip=4)
    set_segment(path, 1, bytecount=4 * 10 * 2 - 2)
    with pytest.raises(zms.UnsupportedDatasetError, match="segment 1 holds 78 bytes"):
        zms.scan(path)
    with pytest.raises(ValueError, match="corrupted"):
        tifffile.imread(path)


@pytest.mark.parametrize("compression", [None, "zlib", "lzw"])
def test_sparse_tiles_read_as_tifffile_fills_them(tmp_path, compression):
    path = tmp_path / "sparse.tif"
    tifffile.imwrite(path, image((40, 40), "u1") + 1, tile=(16, 16), compression=compression)
    zero_segment(path, 4)
    g = check(path)
    assert g["image"].manifest.get((1, 1)) is None
    values = zarr.open_array(zms.ManifestStore(g), path="image", mode="r")[16:32, 16:32]
    assert (values == 0).all()


def test_missing_tiles_take_the_gdal_nodata_value(tmp_path):
    path = tmp_path / "nodata.tif"
    tifffile.imwrite(
        path, image((32, 32), "i2"), tile=(16, 16), extratags=[(42113, "s", 0, "-99", True)]
    )
    zero_segment(path, 1)
    g = check(path)
    assert g["image"].fill_value == -99
    assert g["image"].attributes["GDAL_NODATA"] == "-99"


def test_multi_page_files(tmp_path):
    stack = tmp_path / "stack.tif"
    tifffile.imwrite(
        stack, image((4, 20, 30), "u2"), tile=(16, 16), compression="zlib", photometric="minisblack"
    )
    g = check(stack)
    assert g["image"].shape == (4, 20, 30)
    assert g["image"].metadata.chunk_grid.chunk_shape == (1, 16, 16)
    shaped = tmp_path / "shaped.tif"
    tifffile.imwrite(
        shaped,
        image((2, 3, 20, 30), "u1"),
        metadata={"axes": "TZYX"},
        rowsperstrip=9,
        photometric="minisblack",
    )
    g = check(shaped)
    assert g["image"].dimension_names == ("time", "depth", "y", "x")
    mixed = tmp_path / "mixed.tif"
    with tifffile.TiffWriter(mixed) as w:
        w.write(image((20, 30), "u2"), tile=(16, 16))
        w.write(image((10, 12, 3), "u1"), photometric="rgb", compression="lzw")
        w.write(image((8, 8), "f4"), predictor=3, compression="zlib")
    g = check(mixed)
    assert sorted(g.groups) == ["series1", "series2"]
    ds = xr.open_zarr(zms.ManifestStore(g), group="series1", consolidated=False)
    np.testing.assert_array_equal(ds.image.values, tifffile.imread(mixed, series=1))


def pyramid(path, *, masks=False, subifds=True, tile=(16, 16)):
    """A pyramid of three levels, as overviews in SubIFDs (tifffile) or following pages (GDAL)."""
    base = image((64, 48, 3), "u1")
    levels = [base, base[::2, ::2], base[::4, ::4]]
    with tifffile.TiffWriter(path) as w:
        options = {"photometric": "rgb", "tile": tile, "compression": "zlib"}
        w.write(levels[0], subifds=2 if subifds else 0, **options)
        if not subifds and masks:
            w.write(levels[0][..., 0] > 100, subfiletype=4, tile=tile, compression="zlib")
        for level in levels[1:]:
            w.write(level, subfiletype=1, **options)
            if not subifds and masks:
                w.write(level[..., 0] > 100, subfiletype=5, tile=tile, compression="zlib")


@pytest.mark.parametrize("subifds", [True, False])
def test_overview_levels_are_groups(tmp_path, subifds):
    path = tmp_path / "cog.tif"
    pyramid(path, subifds=subifds)
    g = check(path)
    assert sorted(g.groups) == ["1", "2"]
    assert g["2/image"].shape == (16, 12, 3)


def test_masks_beside_their_images(tmp_path):
    path = tmp_path / "masked.tif"
    pyramid(path, masks=True, subifds=False)
    g = check(path)
    assert g["mask"].dtype == np.bool_
    assert g["1/mask"].shape == (32, 24)
    assert g["mask"].metadata.codecs[0].to_dict()["configuration"]["bits"] == 1


def geotiff(
    path,
    data,
    *,
    tiepoint=(0, 0, 0, 500000.0, 4000000.0, 0),
    scale=(10.0, 10.0, 0),
    raster_type=1,
    epsg=32633,
    transformation=None,
    **options,
):
    """A GeoTIFF in a projected CRS (EPSG code), placed by scale and tiepoint or a transformation."""
    keys = [1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, raster_type, 3072, 0, 1, epsg]
    tags = [(34735, "H", len(keys), keys, True)]
    if transformation is not None:
        tags.append((34264, "d", 16, transformation, True))
    else:
        tags += [(33550, "d", 3, scale, True), (33922, "d", 6, tiepoint, True)]
    tifffile.imwrite(path, data, extratags=tags, **options)


def test_geotiff_coordinates_and_grid_mapping(tmp_path):
    path = tmp_path / "geo.tif"
    geotiff(path, image((30, 20), "f4"), tile=(16, 16))
    g = check(path)
    ds = xr.open_zarr(zms.ManifestStore(g), consolidated=False)
    np.testing.assert_array_equal(ds.x.values, 500000 + 10 * (np.arange(20) + 0.5))
    np.testing.assert_array_equal(ds.y.values, 4000000 - 10 * (np.arange(30) + 0.5))
    assert ds.image.attrs["grid_mapping"] == "spatial_ref"
    assert "spatial_ref" in ds.coords
    ref = ds.spatial_ref.attrs
    assert ref["GeoTransform"] == "500000.0 10.0 0.0 4000000.0 0.0 -10.0"
    assert ref["grid_mapping_name"] == "transverse_mercator"
    assert "UTM zone 33N" in ref["crs_wkt"]
    assert ds.image.attrs["ModelPixelScaleTag"] == [10.0, 10.0, 0.0]


def test_geotiff_pixel_is_point_and_transformation(tmp_path):
    point = tmp_path / "point.tif"
    geotiff(point, image((4, 5), "u1"), raster_type=2)
    x = xr.open_zarr(zms.ManifestStore(zms.scan(point)), consolidated=False).x.values
    np.testing.assert_array_equal(x, 500000 + 10 * np.arange(5.0))  # the tiepoint is a centre
    matrix = [2.0, 0, 0, 100.0, 0, -3.0, 0, 200.0, 0, 0, 0, 0, 0, 0, 0, 1]
    placed = tmp_path / "matrix.tif"
    geotiff(placed, image((4, 5), "u1"), transformation=matrix)
    ds = xr.open_zarr(zms.ManifestStore(zms.scan(placed)), consolidated=False)
    np.testing.assert_array_equal(ds.y.values, 200 - 3 * (np.arange(4) + 0.5))
    rotated = tmp_path / "rotated.tif"
    geotiff(rotated, image((4, 5), "u1"), transformation=[2.0, 0.5, *matrix[2:]])
    g = check(rotated)
    assert "x" not in g.arrays
    assert "ModelTransformationTag" in g["image"].attributes


def test_overviews_of_a_geotiff_have_coarser_coordinates(tmp_path):
    path = tmp_path / "cog.tif"
    keys = [1, 1, 0, 1, 1024, 0, 1, 2]
    tags = [
        (34735, "H", 8, keys, True),
        (33550, "d", 3, (1.0, 1.0, 0), True),
        (33922, "d", 6, (0, 0, 0, 10.0, 50.0, 0), True),
    ]
    data = image((32, 32), "u2")
    with tifffile.TiffWriter(path) as w:
        w.write(data, tile=(16, 16), subifds=1, extratags=tags)
        w.write(data[::2, ::2], tile=(16, 16), subfiletype=1)
    g = check(path)
    ds = xr.open_zarr(zms.ManifestStore(g), group="1", consolidated=False)
    np.testing.assert_array_equal(ds.x.values, 10 + 2 * (np.arange(16) + 0.5))
    assert ds.x.attrs["standard_name"] == "longitude"


@pytest.mark.parametrize(
    ("data", "options", "reason"),
    [
        (np.zeros((8, 8), "u2"), {"bitspersample": 12}, "12 bits"),
        (np.zeros((8, 8), "c8"), {}, "SampleFormat"),
        (
            np.zeros((4, 8, 8), "u1"),
            {"volumetric": True, "tile": (2, 16, 16), "photometric": "minisblack"},
            "volume",
        ),
    ],
)
def test_refused_images_are_named(tmp_path, data, options, reason):
    path = tmp_path / "odd.tif"
    tifffile.imwrite(path, data, **options)
    with pytest.raises(zms.UnsupportedDatasetError, match=rf"'image' .*{reason}"):
        zms.scan(path)
    with pytest.warns(UserWarning, match="left out dataset 'image'"):
        g = zms.scan(path, on_unsupported="skip")
    assert "image" not in g.arrays
