"""The chunk-manifest document: write_manifest and ManifestStore.open, both encodings (the
round trip, the stored form, lazy loading)."""

from __future__ import annotations

import json
import math
import os
import pickle
import shutil
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import google_crc32c
import numpy as np
import pytest
import xarray as xr
import zarr
from document_samples import ENCODINGS, read_all, sample_group
from numcodecs import Blosc, GZip, Zstd

import zarr_manifest_store as zms
from conformance.build import source_array
from zarr_manifest_store.document import LazyChunkManifest
from zarr_manifest_store.document.columnar import block_shape

# ---------------------------------------------------------------------- round trip


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_round_trip_reads_the_same_bytes(tmp_path, encoding):
    g, expected = sample_group(tmp_path / "data")
    zms.write_manifest(g, tmp_path / "out.zarr", encoding=encoding)

    store = zms.ManifestStore.open(tmp_path / "out.zarr", allow=[str(tmp_path / "data")])

    assert store.root.equals(g)
    got = read_all(store, expected)
    for name, values in expected.items():
        np.testing.assert_array_equal(got[name], values)
    ds = xr.open_zarr(store)
    assert ds["t2m"].dims == ("y", "x")
    assert ds["t2m"].attrs["units"] == "K"
    assert ds.attrs["title"] == "demo"
    assert zarr.open_group(store, mode="r")["sub"].attrs["level"] == 2


def test_auto_encoding_is_json_for_small_arrays_and_columnar_for_large(tmp_path):
    small = source_array(tmp_path / "small.bin", np.arange(8.0), chunks=(4,))
    g = many_chunks(tmp_path, 2000).replace(
        arrays={"small": small, "large": many_chunks(tmp_path, 2000)["v"]}
    )
    zms.write_manifest(g, tmp_path / "out.zarr")

    assert (tmp_path / "out.zarr/small/manifest.json").is_file()
    assert (tmp_path / "out.zarr/large/manifest/zarr.json").is_file()
    store = zms.ManifestStore.open(tmp_path / "out.zarr", allow=[str(tmp_path)])
    np.testing.assert_array_equal(zarr.open_group(store, mode="r")["large"][:], np.arange(2000))


def test_encoding_can_be_chosen_per_array(tmp_path):
    g, _ = sample_group(tmp_path / "data")
    zms.write_manifest(g, tmp_path / "out.zarr", encoding={"t2m": "columnar", "sub/codes": "json"})
    assert (tmp_path / "out.zarr/t2m/manifest/zarr.json").is_file()
    assert (tmp_path / "out.zarr/sub/codes/manifest.json").is_file()
    with pytest.raises(ValueError, match="encoding for 't2m'"):
        zms.write_manifest(g, tmp_path / "other.zarr", encoding={"t2m": "parquet"})


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_nan_and_infinity_attributes_survive(tmp_path, encoding):
    a = source_array(
        tmp_path / "a.bin",
        np.array([1.0, np.nan, np.inf], dtype="float64"),
        chunks=(3,),
        fill_value=np.nan,
        attributes={"missing": float("nan"), "max": float("inf"), "min": float("-inf")},
    )
    g = zms.ManifestGroup(arrays={"a": a}, attributes={"valid_min": float("-inf")})
    zms.write_manifest(g, tmp_path / "out.zarr", encoding=encoding)

    store = zms.ManifestStore.open(tmp_path / "out.zarr", allow=[str(tmp_path)])
    attrs = store.root["a"].attributes
    assert math.isnan(attrs["missing"])
    assert attrs["max"] == math.inf
    assert attrs["min"] == -math.inf
    assert store.root.attributes["valid_min"] == -math.inf
    assert math.isnan(store.root["a"].fill_value)
    np.testing.assert_array_equal(zarr.open_group(store, mode="r")["a"][:], [1.0, np.nan, np.inf])


def test_a_missing_document_is_file_not_found(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no chunk-manifest document at .*nowhere\.zarr"):
        zms.ManifestStore.open(tmp_path / "nowhere.zarr")


def test_encoding_names_must_be_arrays(tmp_path):
    g, _ = sample_group(tmp_path / "data")
    with pytest.raises(ValueError, match=r"encoding names \['t2n'\]"):
        zms.write_manifest(g, tmp_path / "out.zarr", encoding={"t2n": "json"})


def test_writes_from_a_store_and_a_root_array(tmp_path):
    a = source_array(tmp_path / "a.bin", np.arange(6, dtype="uint8"), chunks=(4,))
    zms.write_manifest(zms.ManifestStore(zms.ManifestGroup(arrays={"a": a})), tmp_path / "g.zarr")
    zms.write_manifest(a, tmp_path / "a.zarr")

    root = zms.ManifestStore.open(tmp_path / "a.zarr", allow=[str(tmp_path)])
    assert isinstance(root.root, zms.ManifestArray)
    np.testing.assert_array_equal(zarr.open_array(root, mode="r")[:], np.arange(6))
    group = zms.ManifestStore.open(tmp_path / "g.zarr", allow=[str(tmp_path)])
    assert group.root["a"].equals(a)
    with pytest.raises(TypeError, match="ManifestGroup, ManifestArray or ManifestStore"):
        zms.write_manifest({"a": a}, tmp_path / "x.zarr")


def test_scalar_and_empty_arrays(tmp_path):
    scalar = source_array(tmp_path / "s.bin", np.array(3.5), chunks=())
    empty = source_array(tmp_path / "e.bin", np.zeros((0, 4), "int32"), chunks=(2, 2))
    g = zms.ManifestGroup(arrays={"scalar": scalar, "empty": empty})
    for encoding in ENCODINGS:
        out = tmp_path / f"{encoding}.zarr"
        zms.write_manifest(g, out, encoding=encoding)
        group = zarr.open_group(zms.ManifestStore.open(out, allow=[str(tmp_path)]), mode="r")
        assert group["scalar"][()] == 3.5
        assert group["empty"].shape == (0, 4)


# ---------------------------------------------------------------------- the stored form


def test_stored_metadata_declares_the_extension_and_is_consolidated(tmp_path):
    g, _ = sample_group(tmp_path / "data")
    zms.write_manifest(g, tmp_path / "out.zarr")

    root = json.loads((tmp_path / "out.zarr/zarr.json").read_text())
    members = root["consolidated_metadata"]["metadata"]
    assert set(members) == {"t2m", "sub", "sub/codes"}
    array = json.loads((tmp_path / "out.zarr/t2m/zarr.json").read_text())
    assert array == members["t2m"]
    source = str((tmp_path / "data/t2m.bin").resolve())
    (transformer,) = array["storage_transformers"]
    assert transformer["name"] == "chunk-manifest"
    assert transformer["configuration"] == {
        "version": "1.0",
        "encoding": "json",
        "sources": {source: {"size": (tmp_path / "data/t2m.bin").stat().st_size}},
    }
    assert array["chunk_manifest"] == {"must_understand": True}
    manifest = json.loads((tmp_path / "out.zarr/t2m/manifest.json").read_text())
    assert manifest["0.0"] == {"path": source, "offset": 19, "length": manifest["0.0"]["length"]}
    assert set(manifest["0.1"]) == {"data"}  # the inline chunk, base64
    assert "2.1" not in manifest  # the missing chunk


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_plain_zarr_and_xarray_refuse_the_stored_document(tmp_path, encoding):
    """Readers that do not know the extension must fail, never return fill values."""
    g, _ = sample_group(tmp_path / "data")
    zms.write_manifest(g, tmp_path / "out.zarr", encoding=encoding)
    url = str(tmp_path / "out.zarr")

    with pytest.raises(ValueError, match="chunk_manifest"):
        zarr.open_group(url, mode="r")["t2m"][:]
    with pytest.raises(ValueError, match="chunk_manifest"):
        zarr.open_group(url, mode="r", use_consolidated=False)["t2m"][:]
    with pytest.raises(ValueError, match=r"chunk_manifest|storage transformers"):
        zarr.open_array(f"{url}/t2m", mode="r")
    with pytest.raises(ValueError, match="chunk_manifest"):
        xr.open_zarr(url)


def test_served_metadata_has_no_storage_transformer(tmp_path):
    g, _ = sample_group(tmp_path / "data")
    zms.write_manifest(g, tmp_path / "out.zarr")
    store = zms.ManifestStore.open(tmp_path / "out.zarr", allow=[str(tmp_path / "data")])
    served = zarr.open_group(store, mode="r")["t2m"].metadata.to_dict()
    assert served["storage_transformers"] == ()
    assert "chunk_manifest" not in json.dumps(served)


def test_columnar_manifest_arrays_are_ordinary_zarr(tmp_path):
    """Any Zarr implementation can read a columnar manifest: here, zarr-python itself."""
    g, _ = sample_group(tmp_path / "data")
    zms.write_manifest(g, tmp_path / "out.zarr", encoding="columnar")
    manifest = zarr.open_group(tmp_path / "out.zarr/t2m/manifest", mode="r")
    original = g["t2m"].manifest

    index = manifest["path_index"][...]
    np.testing.assert_array_equal(index, original.path_index)
    present = index < 2**32 - 2
    np.testing.assert_array_equal(manifest["offset"][...][present], original.offsets[present])
    np.testing.assert_array_equal(manifest["length"][...][present], original.lengths[present])
    assert manifest.attrs["paths"] == [str((tmp_path / "data/t2m.bin").resolve())]
    inline = manifest["inline"][...].tobytes()
    start, length = int(manifest["offset"][0, 1]), int(manifest["length"][0, 1])
    assert inline[start : start + length] == original.inline[(0, 1)]
    codecs = [
        c["name"]
        for c in json.loads((tmp_path / "out.zarr/t2m/manifest/offset/zarr.json").read_text())[
            "codecs"
        ]
    ]
    assert codecs == ["bytes", "blosc", "crc32c"]


@pytest.mark.parametrize(
    ("codec", "compress"),
    [
        ({"name": "zstd", "configuration": {"level": 3, "checksum": False}}, Zstd(3).encode),
        ({"name": "gzip", "configuration": {"level": 5}}, GZip(5).encode),
        (None, bytes),
    ],
)
def test_columns_written_with_other_codecs_are_read(tmp_path, monkeypatch, codec, compress):
    """Other writers may compress manifest columns with zstd or gzip, or not at all."""
    monkeypatch.setattr("zarr_manifest_store.document.columnar.BLOCK_REFERENCES", 700)
    g = many_chunks(tmp_path, 2000)
    zms.write_manifest(g, tmp_path / "out.zarr", encoding="columnar")
    manifest = tmp_path / "out.zarr/v/manifest"
    group = json.loads((manifest / "zarr.json").read_text())
    for name, meta in group["consolidated_metadata"]["metadata"].items():
        for chunk in (manifest / name / "c").iterdir():
            raw = Blosc().decode(chunk.read_bytes()[:-4])
            data = bytes(compress(raw))
            chunk.write_bytes(data + struct.pack("<I", google_crc32c.value(data)))
        meta["codecs"][1:2] = [codec] if codec else []
    (manifest / "zarr.json").write_text(json.dumps(group))

    store = zms.ManifestStore.open(tmp_path / "out.zarr", allow=[str(tmp_path)])
    assert store.root["v"].manifest.load().equals(g["v"].manifest)
    np.testing.assert_array_equal(
        zarr.open_group(store, mode="r")["v"][1990:], np.arange(1990, 2000)
    )


def test_block_shape_makes_contiguous_blocks_of_the_target_size():
    assert block_shape((100, 100_000), 2**17) == (1, 100_000)
    assert block_shape((10_000_000,), 2**17) == (2**17,)
    assert block_shape((50, 200, 1000), 2**17) == (1, 131, 1000)
    assert block_shape((3, 4), 2**17) == (3, 4)
    assert block_shape((), 2**17) == ()
    assert block_shape((0, 5), 2**17) == (1, 5)


# ---------------------------------------------------------------------- lazy loading


def many_chunks(tmp_path: Path, n: int) -> zms.ManifestGroup:
    """An int32 array ``arange(n)`` of one-element chunks, its source written directly."""
    source = tmp_path / "v.bin"
    source.write_bytes(np.arange(n, dtype="<i4").tobytes())
    manifest = zms.ChunkManifest(
        paths=[str(source)],
        path_index=np.zeros(n, dtype=np.uint32),
        offsets=np.arange(n, dtype=np.uint64) * 4,
        lengths=np.full(n, 4, dtype=np.uint64),
    )
    metadata = {
        "shape": [n],
        "data_type": "int32",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1]}},
        "chunk_key_encoding": {"name": "default"},
        "fill_value": 0,
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
    }
    return zms.ManifestGroup(arrays={"v": zms.ManifestArray(metadata=metadata, manifest=manifest)})


def test_opening_reads_no_manifest(tmp_path):
    g, _ = sample_group(tmp_path / "data")
    zms.write_manifest(g, tmp_path / "json.zarr", encoding="json")
    zms.write_manifest(g, tmp_path / "columnar.zarr", encoding="columnar")
    os.remove(tmp_path / "json.zarr/t2m/manifest.json")
    shutil.rmtree(tmp_path / "columnar.zarr/t2m/manifest")

    for name in ("json", "columnar"):
        store = zms.ManifestStore.open(tmp_path / f"{name}.zarr", allow=[str(tmp_path / "data")])
        manifest = store.root["t2m"].manifest
        assert isinstance(manifest, LazyChunkManifest)
        assert not manifest.loaded
        assert manifest.shape == (3, 2)
        group = zarr.open_group(store, mode="r")
        assert group["t2m"].shape == (12, 10)  # metadata needs no manifest
        np.testing.assert_array_equal(group["sub/codes"][:], np.arange(24).reshape(4, 6))
        with pytest.raises(zms.ManifestError, match=r"t2m/manifest.*not found"):
            group["t2m"][:]


def test_reading_one_chunk_reads_one_block_of_a_columnar_manifest(tmp_path, monkeypatch):
    monkeypatch.setattr("zarr_manifest_store.document.columnar.BLOCK_REFERENCES", 1000)
    g = many_chunks(tmp_path, 40_000)
    zms.write_manifest(g, tmp_path / "out.zarr", encoding="columnar")
    # every other block of the manifest is gone: a chunk of block 0 still reads
    for name in ("path_index", "offset", "length"):
        os.remove(tmp_path / f"out.zarr/v/manifest/{name}/c/7")

    store = zms.ManifestStore.open(tmp_path / "out.zarr", allow=[str(tmp_path)])
    array = zarr.open_group(store, mode="r")["v"]
    assert array[5] == 5
    assert array[39_999] == 39_999
    manifest = store.root["v"].manifest
    assert not manifest.loaded
    assert manifest.paths == (str((tmp_path / "v.bin").resolve()),)
    with pytest.raises(zms.ManifestError, match=r"v/manifest/path_index/c/7: file not found"):
        array[7_500]
    with pytest.raises(zms.ManifestError, match="not found"):
        manifest.load()


def test_a_whole_load_behaves_like_the_written_manifest(tmp_path):
    g = many_chunks(tmp_path, 3000)
    zms.write_manifest(g, tmp_path / "out.zarr", encoding="columnar")
    store = zms.ManifestStore.open(tmp_path / "out.zarr", allow=[str(tmp_path)])
    lazy = store.root["v"].manifest
    original = g["v"].manifest

    assert lazy.nchunks == 3000
    assert lazy.loaded
    assert lazy.equals(original)
    assert original.equals(lazy)
    np.testing.assert_array_equal(lazy.offsets, original.offsets)
    assert lazy.get((7,)) == original.get((7,))
    assert "LazyChunkManifest(shape=(3000,), chunks=3000" in repr(lazy)
    assert list(lazy.items())[:2] == list(original.items())[:2]


def test_threads_reading_one_lazy_store_agree(tmp_path, monkeypatch):
    monkeypatch.setattr("zarr_manifest_store.document.columnar.BLOCK_REFERENCES", 250)
    g = many_chunks(tmp_path, 6000)
    zms.write_manifest(g, tmp_path / "out.zarr", encoding="columnar")
    store = zms.ManifestStore.open(tmp_path / "out.zarr", allow=[str(tmp_path)])
    array = zarr.open_group(store, mode="r")["v"]
    starts = list(range(0, 6000, 250))

    def read(start: int) -> np.ndarray:
        return array[start : start + 250]

    with ThreadPoolExecutor(8) as pool:
        for start, values in zip(starts, pool.map(read, starts), strict=True):
            np.testing.assert_array_equal(values, np.arange(start, start + 250))
    assert store.root["v"].manifest.loaded  # past 16 blocks, the whole manifest was read once


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_an_opened_document_can_be_written_elsewhere_and_in_place(tmp_path, encoding):
    g, expected = sample_group(tmp_path / "doc.zarr" / "data")
    zms.write_manifest(g, tmp_path / "doc.zarr", encoding=encoding)
    opened = zms.ManifestStore.open(tmp_path / "doc.zarr")

    zms.write_manifest(opened, tmp_path / "copy.zarr", encoding=encoding)
    copy = json.loads((tmp_path / "copy.zarr/zarr.json").read_text())
    assert copy["consolidated_metadata"]["metadata"].keys() == {"t2m", "sub", "sub/codes"}
    reopened = zms.ManifestStore.open(tmp_path / "copy.zarr", allow=[str(tmp_path / "doc.zarr")])
    assert reopened.root.equals(opened.root)
    np.testing.assert_array_equal(read_all(reopened, ["t2m"])["t2m"], expected["t2m"])

    zms.write_manifest(
        zms.ManifestStore.open(tmp_path / "doc.zarr"), tmp_path / "doc.zarr", mode="w"
    )
    np.testing.assert_array_equal(
        read_all(zms.ManifestStore.open(tmp_path / "doc.zarr"), ["t2m"])["t2m"], expected["t2m"]
    )


def test_open_with_load_validates_every_manifest_now(tmp_path):
    g, _ = sample_group(tmp_path / "data")
    zms.write_manifest(g, tmp_path / "out.zarr")
    (tmp_path / "out.zarr/sub/codes/manifest.json").write_text("{")
    zms.ManifestStore.open(tmp_path / "out.zarr")  # lazily: fine
    with pytest.raises(zms.ManifestError, match=r"sub/codes/manifest.json: not valid JSON"):
        zms.ManifestStore.open(tmp_path / "out.zarr", load=True, allow=[str(tmp_path / "data")])


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_pickled_store_stays_lazy_and_reads(tmp_path, encoding):
    g, expected = sample_group(tmp_path / "data")
    zms.write_manifest(g, tmp_path / "out.zarr", encoding=encoding)
    store = zms.ManifestStore.open(tmp_path / "out.zarr", allow=[str(tmp_path / "data")])

    clone = pickle.loads(pickle.dumps(store))
    assert not clone.root["t2m"].manifest.loaded
    np.testing.assert_array_equal(read_all(clone, ["t2m"])["t2m"], expected["t2m"])
    assert clone.sources.allow == store.sources.allow
