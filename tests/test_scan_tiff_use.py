"""TIFF files through the package's front doors (zms.scan, open_virtual_dataset / mfdataset, the
CLI, remote URLs, documents, kerchunk export), and the tiff_segment codec on hostile bytes."""

from __future__ import annotations

import base64
import zlib

import numpy as np
import pytest
import tifffile
import xarray as xr
import zarr
from test_cli import run
from test_docs import Page

import zarr_manifest_store as zms
from zarr_manifest_store.errors import ManifestError
from zarr_manifest_store.format_codecs import tiff as tiff_codec
from zarr_manifest_store.format_codecs.tiff import CODEC_NAME, TiffSegmentCodec
from zarr_manifest_store.scan import REGISTRY, sniff


def read(g, key="image"):
    """The values of ``key`` in the scanned group, read through ManifestStore."""
    return zarr.open_group(zms.ManifestStore(g), mode="r")[key][...]


def geotile(path, column, value, *, compression="lzw", predictor=None):
    """A 32 x 32 GeoTIFF tile of ``value`` whose columns start at ``32 * column`` (EPSG:32633)."""
    keys = [1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32633]
    tags = [
        (34735, "H", len(keys), keys, True),
        (33550, "d", 3, (10.0, 10.0, 0.0), True),
        (33922, "d", 6, (0, 0, 0, 500000.0 + 320 * column, 4000000.0, 0), True),
    ]
    data = np.full((32, 32), value, "u2") + np.arange(32, dtype="u2")
    tifffile.imwrite(
        path, data, tile=(16, 16), compression=compression, predictor=predictor, extratags=tags
    )
    return data


def test_scan_recognises_tiff_and_bigtiff(tmp_path):
    for bigtiff, byteorder in [(False, "<"), (False, ">"), (True, "<"), (True, ">")]:
        path = tmp_path / f"{bigtiff}{byteorder}.tif"
        tifffile.imwrite(
            path, np.arange(6, dtype="u2").reshape(2, 3), bigtiff=bigtiff, byteorder=byteorder
        )
        assert sniff(path) == "tiff"
        np.testing.assert_array_equal(read(zms.scan(path)), tifffile.imread(path))
    assert REGISTRY["tiff"].options == {
        "group",
        "drop_variables",
        "on_unsupported",
        "storage_options",
    }
    with pytest.raises(TypeError, match=r"scan_tiff.*takes no option 'loadable'"):
        zms.scan(path, loadable=True)


def test_group_and_drop_variables(tmp_path):
    path = tmp_path / "pyramid.tif"
    base = np.arange(32 * 32, dtype="u2").reshape(32, 32)
    with tifffile.TiffWriter(path) as w:
        w.write(base, tile=(16, 16), subifds=1)
        w.write(base[::2, ::2], tile=(16, 16), subfiletype=1)
        w.write(np.ones((4, 4), "f4"))
    level = zms.scan_tiff(path, group="1")
    assert list(level.arrays) == ["image"]
    np.testing.assert_array_equal(read(level), base[::2, ::2])
    assert sorted(zms.scan_tiff(path, drop_variables=["1"]).groups) == ["series1"]
    assert "image" not in zms.scan_tiff(path, group="series1", drop_variables="image").arrays
    with pytest.raises(ValueError, match="has no group 'series9'"):
        zms.scan_tiff(path, group="series9")


def test_open_virtual_dataset_and_mfdataset_mosaic(tmp_path):
    left = geotile(tmp_path / "a.tif", 0, 100)
    right = geotile(tmp_path / "b.tif", 1, 200)
    ds = zms.open_virtual_dataset(tmp_path / "a.tif", loadable_variables=["x", "y"])
    assert ds.image.dims == ("y", "x")
    np.testing.assert_array_equal(ds.x.values, 500000 + 10 * (np.arange(32) + 0.5))
    mosaic = zms.open_virtual_mfdataset(
        [tmp_path / "a.tif", tmp_path / "b.tif"], combine="by_coords"
    )
    assert mosaic.image.shape == (32, 64)
    mosaic.virtualize.to_zarr(tmp_path / "mosaic.zarr")
    read = xr.open_dataset(tmp_path / "mosaic.zarr", engine="zarr_manifest", allow=[str(tmp_path)])
    np.testing.assert_array_equal(read.image.values, np.concatenate([left, right], axis=1))


def test_the_cli_scans_tiff(tmp_path, capsys):
    geotile(tmp_path / "a.tif", 0, 7)
    code, _, err = run(capsys, "scan", tmp_path / "a.tif", "-o", tmp_path / "a.zarr")
    assert code == 0, err
    store = zms.ManifestStore.open(tmp_path / "a.zarr", allow=[str(tmp_path)])
    np.testing.assert_array_equal(
        zarr.open_group(store, mode="r")["image"][:], tifffile.imread(tmp_path / "a.tif")
    )


def test_remote_tiff_over_http(http_server, tmp_path):
    data = geotile(http_server.root / "a.tif", 0, 9, compression="zlib", predictor=2)
    url = f"{http_server.url}/a.tif"
    g = zms.scan(url)
    assert g["image"].manifest.paths == (url,)
    np.testing.assert_array_equal(zarr.open_group(zms.ManifestStore(g), mode="r")["image"][:], data)


def test_kerchunk_export_refuses_the_tiff_codec_and_takes_zarr_codecs(tmp_path):
    geotile(tmp_path / "lzw.tif", 0, 1)
    with pytest.raises(zms.UnsupportedDatasetError, match=f"{CODEC_NAME}.*no Zarr v2"):
        zms.to_kerchunk(zms.scan(tmp_path / "lzw.tif"), format=None)
    data = geotile(tmp_path / "deflate.tif", 0, 1, compression="zlib")
    refs = zms.to_kerchunk(zms.scan(tmp_path / "deflate.tif"), format=None)
    ds = xr.open_dataset(
        "reference://",
        engine="zarr",
        backend_kwargs={
            "consolidated": False,
            "zarr_format": 2,
            "storage_options": {"fo": refs, "remote_protocol": "file"},
        },
    )
    np.testing.assert_array_equal(ds.image.values, data)


# ---------------------------------------------------------------------- the codec on hostile bytes


def decode(codec, data, shape=(16, 16), dtype="u2"):
    return codec.decode(data, shape, np.dtype(dtype))


def test_a_decompression_bomb_is_refused():
    bomb = zlib.compress(bytes(100 << 20))
    with pytest.raises(ManifestError, match="does not decode within 512 bytes"):
        decode(TiffSegmentCodec(compression="deflate"), bomb)
    lzw = tiff_codec.imagecodecs.lzw_encode(bytes(1 << 20))
    out = decode(TiffSegmentCodec(compression="lzw"), lzw)  # LZW stops at the chunk's size
    assert out.shape == (16, 16)


def test_a_jpeg_header_larger_than_its_chunk_is_refused():
    big = tiff_codec.imagecodecs.jpeg8_encode(np.zeros((64, 64), "u1"))
    with pytest.raises(ManifestError, match=r"JPEG segment is 64 x 64 pixels .* 16 x 16"):
        decode(TiffSegmentCodec(compression="jpeg"), big, dtype="u1")
    with pytest.raises(ManifestError, match="no frame header"):
        decode(TiffSegmentCodec(compression="jpeg"), b"\xff\xd8\xff\xd9", dtype="u1")


def test_a_segment_of_partial_rows_is_refused_and_a_short_one_padded():
    with pytest.raises(ManifestError, match="not whole rows of 32 bytes"):
        decode(TiffSegmentCodec(), bytes(33))
    short = decode(TiffSegmentCodec(), np.arange(32, dtype="<u2").tobytes())
    np.testing.assert_array_equal(short[:2].ravel(), np.arange(32))
    assert not short[2:].any()


def test_codec_settings_are_checked():
    assert TiffSegmentCodec.from_dict(
        {"name": CODEC_NAME, "configuration": {"compression": "lzw", "predictor": 2}}
    ).to_dict() == {
        "name": CODEC_NAME,
        "configuration": {"compression": "lzw", "predictor": 2, "endian": "little"},
    }
    for bad, match in [
        ({"compression": "jpeg2000"}, "compression must be one of"),
        ({"predictor": 5}, "predictor must be one of"),
        ({"samples": 0}, "samples must be"),
        ({"bits": 4}, "bits must be"),
        ({"colour": 1}, "unknown settings"),
    ]:
        with pytest.raises(ValueError, match=match):
            TiffSegmentCodec.from_dict({"name": CODEC_NAME, "configuration": bad})


def test_a_document_needing_imagecodecs_names_the_extra(tmp_path, monkeypatch):
    geotile(tmp_path / "a.tif", 0, 1)
    g = zms.scan(tmp_path / "a.tif")
    monkeypatch.setattr(tiff_codec, "imagecodecs", None)
    with pytest.raises(
        ManifestError, match=r"needs imagecodecs: pip install 'zarr-manifest-store\[formats\]'"
    ):
        zarr.open_group(zms.ManifestStore(g), mode="r")["image"][:]


def split_jpeg(jpeg):
    """(tables-only stream, abbreviated image stream) of a JPEG, as GDAL writes TIFF tiles."""
    tables, image, at = [b"\xff\xd8"], [b"\xff\xd8"], 2
    while jpeg[at + 1] != 0xDA:  # up to the start of scan
        length = int.from_bytes(jpeg[at + 2 : at + 4], "big")
        (tables if jpeg[at + 1] in (0xDB, 0xC4) else image).append(jpeg[at : at + 2 + length])
        at += 2 + length
    return b"".join(tables) + b"\xff\xd9", b"".join(image) + jpeg[at:]


def test_jpeg_tiles_with_shared_tables(tmp_path):
    data = (np.add.outer(np.arange(32), np.arange(32)) % 256).astype("u1")
    encode = tiff_codec.imagecodecs.jpeg8_encode
    tiles = [
        encode(np.ascontiguousarray(data[i : i + 16, j : j + 16])) for i in (0, 16) for j in (0, 16)
    ]
    tables = split_jpeg(tiles[0])[0]
    path = tmp_path / "tables.tif"
    tifffile.imwrite(
        path,
        iter([split_jpeg(t)[1] for t in tiles]),
        shape=(32, 32),
        dtype="u1",
        tile=(16, 16),
        compression="jpeg",
        jpegtables=tables,
        photometric="minisblack",
    )
    g = zms.scan(path)
    assert base64.b64decode(g["image"].metadata.codecs[0].jpeg_tables) == tables
    np.testing.assert_array_equal(read(g), tifffile.imread(path))


def test_page_docs_howto_tiff(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert Page("docs/howto/tiff.md").run() >= 3
