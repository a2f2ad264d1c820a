"""to_kerchunk: references that fsspec's ReferenceFileSystem reads back equal to the source."""

from __future__ import annotations

import itertools
import json
import math
from pathlib import Path

import fsspec
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import xarray as xr
import zarr
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, GzipCodec, TransposeCodec, ZstdCodec
from zarr.codecs.numcodecs import Shuffle, Zlib

import zarr_manifest_store as zms
from zarr_manifest_store.scan.kerchunk import scan_kerchunk
from zarr_manifest_store.scan.netcdf3 import scan_netcdf3
from zarr_manifest_store.writers.kerchunk import to_kerchunk


def through_fsspec(fo, **options) -> xr.Dataset:
    """xarray on the references through fsspec's ReferenceFileSystem (the brief's incantation)."""
    storage_options = {"fo": fo, "remote_protocol": "file", **options}
    return xr.open_dataset(
        "reference://",
        engine="zarr",
        backend_kwargs={
            "consolidated": False,
            "zarr_format": 2,
            "storage_options": storage_options,
        },
    ).load()


def virtual(g: zms.ManifestGroup) -> xr.Dataset:
    return xr.open_zarr(zms.ManifestStore(g), consolidated=False).load()


def manifest_group(root: Path) -> zms.ManifestGroup:
    """A ManifestGroup whose chunks are the chunk files of a Zarr v3 store zarr wrote at ``root``."""
    group = zarr.open_group(root, mode="r")
    arrays = {}
    for name, array in group.arrays():
        meta = array.metadata
        grid = tuple(
            math.ceil(s / c) for s, c in zip(array.shape, array.chunks, strict=True)
        )  # zarr's
        paths = np.full(grid, "", dtype=object)
        lengths = np.zeros(grid, dtype=np.uint64)
        for coords in itertools.product(*map(range, grid)):
            chunk = root / name / meta.encode_chunk_key(coords)
            if chunk.exists():
                paths[coords], lengths[coords] = str(chunk), chunk.stat().st_size
        manifest = zms.ChunkManifest.from_arrays(
            paths=paths.astype(str), offsets=np.zeros(grid, np.uint64), lengths=lengths
        )
        arrays[name] = zms.ManifestArray(metadata=meta, manifest=manifest)
    return zms.ManifestGroup(arrays=arrays, attributes=dict(group.attrs))


CODECS = {
    "gzip": {"compressors": [GzipCodec(level=3)]},
    "zstd": {"compressors": [ZstdCodec(level=2)]},
    "blosc": {"compressors": [BloscCodec(cname="lz4", shuffle="bitshuffle")]},
    "crc32c": {"compressors": [Crc32cCodec()]},
    "shuffle+zlib": {"compressors": [Shuffle(elementsize=4), Zlib(level=1)]},
    "big-endian": {"serializer": BytesCodec(endian="big"), "compressors": None},
    "fortran": {"filters": [TransposeCodec(order=(1, 0))], "compressors": [GzipCodec()]},
}


@pytest.fixture
def codec_store(tmp_path: Path) -> tuple[Path, xr.Dataset]:
    """A Zarr v3 store with one array per codec chain, xarray-written, with a missing chunk each."""
    rng = np.random.default_rng(3)
    data = rng.normal(size=(7, 6)).astype("f4")
    data[4:, :] = np.nan  # chunk row 2 all NaN: not written (missing)
    root = tmp_path / "codecs.zarr"
    group = zarr.open_group(root, mode="w", zarr_format=3, attributes={"title": "codecs"})
    for name, codecs in CODECS.items():
        array = group.create_array(
            name, shape=data.shape, chunks=(2, 4), dtype="f4", fill_value=np.nan,
            dimension_names=["y", "x"], attributes={"units": "m"}, **codecs,
        )  # fmt: skip
        array[:] = data
    names = group.create_array("names", shape=(3,), dtype=str, chunks=(2,), dimension_names=["n"])
    names[:] = np.array(["alpha", "beta", "gamma"])
    expected = xr.open_zarr(root, consolidated=False).load()
    return root, expected


def test_json_references_read_back_equal_through_fsspec(codec_store):
    root, expected = codec_store
    g = manifest_group(root)
    refs = to_kerchunk(g)
    assert refs["version"] == 1
    zarray = json.loads(refs["refs"]["gzip/.zarray"])
    assert zarray["compressor"] == {"id": "gzip", "level": 3}
    assert zarray["dimension_separator"] == "."
    assert json.loads(refs["refs"]["gzip/.zattrs"])["_ARRAY_DIMENSIONS"] == ["y", "x"]
    assert json.loads(refs["refs"]["fortran/.zarray"])["order"] == "F"
    assert json.loads(refs["refs"]["big-endian/.zarray"])["dtype"] == ">f4"
    assert "gzip/2.0" not in refs["refs"]  # missing chunks stay missing
    xr.testing.assert_identical(through_fsspec(refs), expected)
    xr.testing.assert_identical(virtual(scan_kerchunk(refs)), expected)


@pytest.mark.parametrize("fmt", ["json", "parquet"])
def test_written_references_open_with_fsspec_and_scan_kerchunk(codec_store, tmp_path, fmt):
    root, expected = codec_store
    g = manifest_group(root)
    url = tmp_path / ("refs.json" if fmt == "json" else "refs.parq")
    assert to_kerchunk(zms.ManifestStore(g), url, format=fmt) is None
    xr.testing.assert_identical(through_fsspec(str(url)), expected)
    round_trip = scan_kerchunk(url)
    xr.testing.assert_identical(virtual(round_trip), expected)
    for name in CODECS:
        assert round_trip[name].manifest.equals(g[name].manifest)


def test_parquet_layout_has_no_nan_paths_and_infers_the_protocol(tmp_path):
    """Inline and missing chunks leave the path null (None in pandas), not NaN."""
    data = np.arange(10, dtype="i2")
    chunk = tmp_path / "chunk.bin"
    chunk.write_bytes(data[:4].tobytes())
    manifest = zms.ChunkManifest.from_arrays(
        paths=[str(chunk), "", ""], offsets=[0, 0, 0], lengths=[8, 0, 0],
        inline={(1,): data[4:8].tobytes()},
    )  # fmt: skip
    meta = {
        "shape": [10], "data_type": "int16", "fill_value": 0,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [4]}},
        "chunk_key_encoding": {"name": "default"}, "dimension_names": ["x"],
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
    }  # fmt: skip
    g = zms.ManifestGroup(arrays={"v": zms.ManifestArray(metadata=meta, manifest=manifest)})
    url = tmp_path / "refs.parq"
    to_kerchunk(g, url, record_size=2)
    assert sorted(p.name for p in (url / "v").iterdir()) == ["refs.0.parq", "refs.1.parq"]
    assert json.loads((url / ".zmetadata").read_text())["record_size"] == 2
    columns = pq.read_table(url / "v" / "refs.0.parq").to_pydict()
    assert columns == {
        "path": [str(chunk), None], "offset": [0, 0], "size": [8, 0],
        "raw": [None, data[4:8].tobytes()],
    }  # fmt: skip
    rows = pd.read_parquet(url / "v" / "refs.1.parq", engine="fastparquet")  # as fsspec reads it
    assert rows["path"].tolist() == [None]
    assert rows["offset"].dtype == np.int64
    expected = np.concatenate([data[:8], [0, 0]])
    for options in ({}, {"remote_protocol": "file"}):  # with and without protocol inference
        storage_options = {"fo": str(url), **options}
        fs_store = zarr.storage.FsspecStore.from_url(
            "reference://", storage_options=storage_options
        )
        v = zarr.open_array(fs_store, path="v", mode="r", zarr_format=2)
        np.testing.assert_array_equal(v[:], expected)


def test_netcdf3_scan_exports_to_references_equal_to_scipy(tmp_path):
    path = tmp_path / "f.nc"
    xr.Dataset(
        {
            "t": (("time", "x"), np.arange(8, dtype="f4").reshape(4, 2), {"_FillValue": 5.0}),
            "n": (("x",), np.array([1, 2], dtype="i2"), {"units": "1"}),
            "s": ((), 3.5),
        },
        attrs={"history": "made here"},
    ).to_netcdf(path, engine="scipy", unlimited_dims=["time"])
    refs = to_kerchunk(scan_netcdf3(path))
    assert json.loads(refs["refs"]["t/.zarray"])["fill_value"] == 5.0
    assert "_FillValue" not in json.loads(refs["refs"]["t/.zattrs"])
    assert refs["refs"]["s/0"][0] == str(path)  # a scalar's single chunk
    xr.testing.assert_identical(through_fsspec(refs), xr.open_dataset(path, engine="scipy").load())


def test_nested_groups_and_inline_strings(codec_store):
    root, expected = codec_store
    inner = manifest_group(root)
    g = zms.ManifestGroup(groups={"run": inner}, attributes={"top": 1})
    refs = to_kerchunk(g)["refs"]
    assert json.loads(refs[".zattrs"]) == {"top": 1}
    assert json.loads(refs["run/.zgroup"]) == {"zarr_format": 2}
    assert json.loads(refs["run/names/.zarray"])["filters"] == [{"id": "vlen-utf8"}]
    tree = xr.open_datatree(
        "reference://", engine="zarr", consolidated=False, zarr_format=2,
        storage_options={"fo": {"version": 1, "refs": refs}, "remote_protocol": "file"},
    )  # fmt: skip
    xr.testing.assert_identical(tree["run"].to_dataset().load(), expected)


@pytest.mark.parametrize("fmt", ["json", "parquet"])
def test_missing_chunks_whose_fill_differs_from_fill_value_are_written_inline(tmp_path, fmt):
    """v3 fills missing chunks with 0 but masks -1; v2 has one value for both: write fill chunks."""
    root = tmp_path / "fill.zarr"
    group = zarr.open_group(root, mode="w", zarr_format=3)
    array = group.create_array(
        "v", shape=(6,), chunks=(2,), dtype="i4", fill_value=0, dimension_names=["x"],
        attributes={"_FillValue": -1}, compressors=[GzipCodec()],
    )  # fmt: skip
    array[:2] = [-1, 7]  # chunks 1 and 2 never written: zeros, not masked
    g = manifest_group(root)
    expected = virtual(g)
    assert expected["v"].values[2:].tolist() == [0, 0, 0, 0]
    refs = to_kerchunk(g)["refs"]
    assert refs["v/1"].startswith("base64:")
    assert refs["v/1"] == refs["v/2"]
    url = tmp_path / f"refs.{fmt}"
    to_kerchunk(g, url, format=fmt)
    xr.testing.assert_identical(through_fsspec(str(url)), expected)


def rectilinear_group() -> zms.ManifestGroup:
    meta = {
        "shape": [5], "data_type": "int8", "fill_value": 0,
        "chunk_grid": {"name": "rectilinear", "configuration": {"kind": "inline", "chunk_shapes": [[3, 2]]}},
        "chunk_key_encoding": {"name": "default"}, "codecs": [{"name": "bytes"}],
    }  # fmt: skip
    manifest = zms.ChunkManifest.from_arrays(paths=["", ""], offsets=[0, 0], lengths=[0, 0])
    return zms.ManifestGroup(arrays={"ragged": zms.ManifestArray(metadata=meta, manifest=manifest)})


def test_what_zarr_v2_cannot_express_is_refused_by_name():
    with pytest.raises(zms.UnsupportedDatasetError, match="'ragged' has a rectilinear chunk grid"):
        to_kerchunk(rectilinear_group())
    meta = {
        "shape": [2, 2, 2], "data_type": "int8", "fill_value": 0,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [2, 2, 2]}},
        "chunk_key_encoding": {"name": "default"},
        "codecs": [{"name": "transpose", "configuration": {"order": [1, 0, 2]}}, {"name": "bytes"}],
    }  # fmt: skip
    manifest = zms.ChunkManifest.from_arrays(paths=[[[""]]], offsets=[[[0]]], lengths=[[[0]]])
    g = zms.ManifestGroup(arrays={"cube": zms.ManifestArray(metadata=meta, manifest=manifest)})
    with pytest.raises(zms.UnsupportedDatasetError, match="'cube': the transpose codec"):
        to_kerchunk(g)
    with pytest.raises(ValueError, match="give a url"):
        to_kerchunk(g, format="parquet")


def test_parquet_export_replaces_earlier_references_but_no_other_folder(tmp_path):
    (tmp_path / "data.bin").write_bytes(np.arange(4, dtype="<i2").tobytes())
    manifest = zms.ChunkManifest.from_dict(
        {"0": {"path": str(tmp_path / "data.bin"), "offset": 0, "length": 8}}
    )
    meta = {
        "shape": [4], "data_type": "int16", "fill_value": 0,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [4]}},
        "chunk_key_encoding": {"name": "default"}, "dimension_names": ["x"],
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
    }  # fmt: skip
    g = zms.ManifestGroup(arrays={"v": zms.ManifestArray(metadata=meta, manifest=manifest)})
    refs = tmp_path / "refs.parq"
    to_kerchunk(g, refs)
    to_kerchunk(g, refs)  # earlier references are replaced
    np.testing.assert_array_equal(through_fsspec(str(refs))["v"].values, np.arange(4))
    precious = tmp_path / "precious"
    precious.mkdir()
    (precious / "results.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a folder of parquet references"):
        to_kerchunk(g, precious, format="parquet")
    assert (precious / "results.txt").read_text() == "keep me"


def _small_group(tmp_path: Path) -> zms.ManifestGroup:
    (tmp_path / "data.bin").write_bytes(np.arange(4, dtype="<i2").tobytes())
    manifest = zms.ChunkManifest.from_dict(
        {"0": {"path": str(tmp_path / "data.bin"), "offset": 0, "length": 8}}
    )
    meta = {
        "shape": [4], "data_type": "int16", "fill_value": 0,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [4]}},
        "chunk_key_encoding": {"name": "default"}, "dimension_names": ["x"],
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
    }  # fmt: skip
    return zms.ManifestGroup(arrays={"v": zms.ManifestArray(metadata=meta, manifest=manifest)})


@pytest.mark.parametrize("name", ["refs.json", "refs.parq"])
def test_mode_w_minus_refuses_to_replace_what_is_there(tmp_path, name):
    """The writers' shared ``mode``: "w" (the default here) replaces, "w-" refuses."""
    g = _small_group(tmp_path)
    refs = tmp_path / name
    to_kerchunk(g, refs, mode="w-")
    with pytest.raises(FileExistsError, match="exists; pass mode='w' to replace it"):
        to_kerchunk(g, refs, mode="w-")
    to_kerchunk(g, refs, mode="w")
    np.testing.assert_array_equal(through_fsspec(str(refs))["v"].values, np.arange(4))
    with pytest.raises(ValueError, match="mode must be 'w-' or 'w'"):
        to_kerchunk(g, refs, mode="a")


def test_an_array_or_a_store_is_exported_like_the_writers_take_them(tmp_path):
    g = _small_group(tmp_path)
    assert to_kerchunk(zms.ManifestStore(g)) == to_kerchunk(g)
    refs = to_kerchunk(g["v"])  # the array at the root
    assert set(refs["refs"]) == {".zarray", ".zattrs", "0"}
    fs = fsspec.filesystem("reference", fo=refs, remote_protocol="file")
    array = zarr.open_array(fs.get_mapper(""), mode="r", zarr_format=2)
    np.testing.assert_array_equal(array[:], np.arange(4))
    with pytest.raises(ValueError, match="use format='json'"):
        to_kerchunk(g["v"], tmp_path / "v.parq")
    with pytest.raises(TypeError, match="to_kerchunk needs a ManifestGroup, ManifestArray"):
        to_kerchunk({"not": "a hierarchy"})
