"""The chunk-manifest document: write_manifest and ManifestStore.open, both encodings."""

from __future__ import annotations

import json
import math
import os
import pickle
import re
import shutil
import struct
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import google_crc32c
import numpy as np
import pytest
import xarray as xr
import zarr
from numcodecs import Blosc, GZip, Zstd

import zarr_manifest_store as zms
from conformance.build import source_array
from zarr_manifest_store.document import LazyChunkManifest
from zarr_manifest_store.document.columnar import block_shape
from zarr_manifest_store.io.allow import AllowList

ENCODINGS = ["json", "columnar"]


def t2m_data() -> np.ndarray:
    return np.random.default_rng(0).normal(280, 10, size=(12, 10)).astype("float32")


def sample_group(folder: Path, **options) -> tuple[zms.ManifestGroup, dict[str, np.ndarray]]:
    """A nested hierarchy over sources in ``folder``: compression, a missing and an inline chunk."""
    t2m = t2m_data()
    expected_t2m = t2m.copy()
    expected_t2m[8:, 5:] = -9999.0  # chunk (2, 1) is missing: the fill value
    codes = np.arange(24, dtype="int16").reshape(4, 6)
    g = zms.ManifestGroup(
        arrays={
            "t2m": source_array(
                folder / "t2m.bin",
                t2m,
                chunks=(4, 5),
                missing={(2, 1)},
                inline={(0, 1)},
                fill_value=-9999.0,
                compressors=zarr.codecs.GzipCodec(level=1),
                dimension_names=["y", "x"],
                attributes={"units": "K", "scale": 1.5},
                **options,
            )
        },
        groups={
            "sub": zms.ManifestGroup(
                arrays={
                    "codes": source_array(
                        folder / "sub" / "codes.bin",
                        codes,
                        chunks=(2, 3),
                        dimension_names=["a", "b"],
                    )
                },
                attributes={"level": 2},
            )
        },
        attributes={"title": "demo"},
    )
    return g, {"t2m": expected_t2m, "sub/codes": codes}


def read_all(store: zms.ManifestStore, names) -> dict[str, np.ndarray]:
    group = zarr.open_group(store, mode="r")
    return {name: group[name][...] for name in names}


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


# ---------------------------------------------------------------------- paths


def test_sources_inside_the_document_are_relative_and_move_with_it(tmp_path):
    g, expected = sample_group(tmp_path / "doc.zarr" / "data")
    zms.write_manifest(g, tmp_path / "doc.zarr")
    manifest = json.loads((tmp_path / "doc.zarr/t2m/manifest.json").read_text())
    assert manifest["0.0"]["path"] == "data/t2m.bin"

    shutil.move(tmp_path / "doc.zarr", tmp_path / "moved.zarr")
    store = zms.ManifestStore.open(tmp_path / "moved.zarr")  # nothing to allow: all inside
    got = read_all(store, expected)
    np.testing.assert_array_equal(got["sub/codes"], expected["sub/codes"])
    assert store.root["t2m"].manifest.paths == (str(tmp_path / "moved.zarr/data/t2m.bin"),)


def test_path_modes(tmp_path):
    inside, _ = sample_group(tmp_path / "doc.zarr" / "data")
    zms.write_manifest(inside, tmp_path / "doc.zarr", paths="absolute")
    manifest = json.loads((tmp_path / "doc.zarr/t2m/manifest.json").read_text())
    assert manifest["0.0"]["path"] == str((tmp_path / "doc.zarr/data/t2m.bin").resolve())

    outside, _ = sample_group(tmp_path / "data")
    with pytest.raises(ValueError, match=r"t2m\.bin' lies outside the document folder"):
        zms.write_manifest(outside, tmp_path / "other.zarr", paths="relative")
    with pytest.raises(ValueError, match="paths must be"):
        zms.write_manifest(outside, tmp_path / "other.zarr", paths="posix")


def test_relative_paths_given_in_memory_are_relative_to_the_working_directory(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    a = source_array(tmp_path / "a.bin", np.arange(4.0), chunks=(2,), written_as="a.bin")
    zms.write_manifest(zms.ManifestGroup(arrays={"a": a}), "out.zarr", paths="absolute")
    manifest = json.loads((tmp_path / "out.zarr/a/manifest.json").read_text())
    assert manifest["0"]["path"] == str(tmp_path / "a.bin")


def test_absolute_sources_need_an_allowed_prefix(tmp_path):
    g, expected = sample_group(tmp_path / "data")
    zms.write_manifest(g, tmp_path / "out.zarr")

    store = zms.ManifestStore.open(tmp_path / "out.zarr")
    with pytest.raises(PermissionError) as info:
        zarr.open_group(store, mode="r")["t2m"][:]
    message = str(info.value)
    assert str((tmp_path / "data" / "t2m.bin").resolve()) in message  # the source
    assert str(tmp_path / "out.zarr") in message  # what is allowed: the document's folder
    assert "allow=[" in message  # and how to allow more
    assert re.search(r"chunk 't2m/c/\d/\d'", message)  # and which chunk was being read

    with pytest.raises(PermissionError):
        read_all(
            zms.ManifestStore.open(tmp_path / "out.zarr", allow=[str(tmp_path / "elsewhere")]),
            ["t2m"],
        )
    allowed = zms.ManifestStore.open(tmp_path / "out.zarr", allow=[str(tmp_path / "data")])
    np.testing.assert_array_equal(read_all(allowed, ["t2m"])["t2m"], expected["t2m"])
    one = zms.ManifestStore.open(tmp_path / "out.zarr", allow=tmp_path / "data")  # not a list
    assert one.sources.allow == (str(tmp_path / "out.zarr"), str(tmp_path / "data"))
    listed = zms.ManifestStore.open(tmp_path / "out.zarr", allow=AllowList([tmp_path / "data"]))
    assert listed.sources.allow == one.sources.allow
    np.testing.assert_array_equal(read_all(listed, ["t2m"])["t2m"], expected["t2m"])


def write_with_path(tmp_path: Path, path: str, encoding: str = "json") -> Path:
    """A one-chunk document whose single reference is rewritten to ``path``."""
    doc = tmp_path / "doc.zarr"
    a = source_array(doc / "data" / "a.bin", np.arange(4.0), chunks=(4,), fingerprint=False)
    zms.write_manifest(zms.ManifestGroup(arrays={"a": a}), doc, encoding=encoding)
    if encoding == "json":
        file = doc / "a/manifest.json"
        manifest = json.loads(file.read_text())
        manifest["0"]["path"] = path
        file.write_text(json.dumps(manifest))
    else:
        file = doc / "a/manifest/zarr.json"
        group = json.loads(file.read_text())
        group["attributes"]["paths"] = [path]
        file.write_text(json.dumps(group))
    return doc


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(
    "path",
    [
        "../outside.bin",
        "data/../../outside.bin",
        "%2e%2e/outside.bin",
        "data/%2E%2E/%2e%2e/x",
        "a/%2f/b",
        "./data/a.bin",
    ],
)
def test_relative_paths_cannot_leave_the_document(tmp_path, path, encoding):
    (tmp_path / "outside.bin").write_bytes(bytes(64))
    doc = write_with_path(tmp_path, path, encoding)
    store = zms.ManifestStore.open(doc, allow=[str(tmp_path)])  # even with the parent allowed
    with pytest.raises(PermissionError, match="leave the document folder"):
        zarr.open_group(store, mode="r")["a"][:]


@pytest.mark.parametrize("path", ["a\\b.bin", "data//a.bin", "data/a.bin/", "da\x00ta/a.bin"])
def test_malformed_relative_paths_are_manifest_errors(tmp_path, path):
    doc = write_with_path(tmp_path, path)
    with pytest.raises(zms.ManifestError, match="relative path"):
        zms.ManifestStore.open(doc, load=True)


def test_a_symlink_cannot_lead_a_relative_path_out(tmp_path):
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "a.bin").write_bytes(np.arange(4.0).tobytes())
    doc = write_with_path(tmp_path, "link/a.bin")
    os.symlink(tmp_path / "secret", doc / "link")
    store = zms.ManifestStore.open(doc, allow=[str(tmp_path / "secret")])
    with pytest.raises(PermissionError, match="resolves outside the document folder"):
        zarr.open_group(store, mode="r")["a"][:]


@pytest.mark.parametrize("path", ["/etc/passwd", "file:///etc/passwd", "s3://other-bucket/x.nc"])
def test_absolute_hostile_paths_are_refused(tmp_path, path):
    doc = write_with_path(tmp_path, path)
    store = zms.ManifestStore.open(doc, allow=[str(tmp_path)])
    with pytest.raises(PermissionError, match=r"outside the allowed prefixes.*allow=\["):
        zarr.open_group(store, mode="r")["a"][:]


# ---------------------------------------------------------------------- modes


def test_mode_w_minus_refuses_and_w_replaces_keeping_other_files(tmp_path):
    doc = tmp_path / "doc.zarr"
    g, expected = sample_group(doc / "data")
    zms.write_manifest(g, doc, encoding="columnar")
    with pytest.raises(FileExistsError, match="mode='w'"):
        zms.write_manifest(g, doc)

    only_sub = zms.ManifestGroup(groups={"sub": g["sub"]})
    zms.write_manifest(only_sub, doc, mode="w", encoding="json")

    assert not (doc / "t2m").exists() or not any((doc / "t2m").rglob("*.json"))
    assert (doc / "data/t2m.bin").is_file()  # sources kept in the folder are left alone
    store = zms.ManifestStore.open(doc)
    assert list(store.root) == ["sub"]
    np.testing.assert_array_equal(
        read_all(store, ["sub/codes"])["sub/codes"], expected["sub/codes"]
    )


def test_writing_into_a_folder_that_holds_only_sources_is_fine(tmp_path):
    g, expected = sample_group(tmp_path / "doc.zarr" / "data")
    zms.write_manifest(g, tmp_path / "doc.zarr")  # mode "w-": the folder exists, but no document
    store = zms.ManifestStore.open(tmp_path / "doc.zarr")
    np.testing.assert_array_equal(read_all(store, ["t2m"])["t2m"], expected["t2m"])


# ---------------------------------------------------------------------- fingerprints


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_fingerprints_round_trip_keyed_by_resolved_path(tmp_path, encoding):
    doc = tmp_path / "doc.zarr"
    a = source_array(doc / "data" / "a.bin", np.arange(8.0), chunks=(4,))
    fp = zms.manifest.Fingerprint(
        size=(doc / "data" / "a.bin").stat().st_size, mtime_ns=123, etag="abc"
    )
    a = a.with_manifest(
        zms.ChunkManifest(
            paths=a.manifest.paths,
            path_index=a.manifest.path_index,
            offsets=a.manifest.offsets,
            lengths=a.manifest.lengths,
            fingerprints={a.manifest.paths[0]: fp},
        )
    )
    zms.write_manifest(zms.ManifestGroup(arrays={"a": a}), doc, encoding=encoding)

    manifest = zms.ManifestStore.open(doc).root["a"].manifest
    assert dict(manifest.fingerprints) == {str(doc / "data/a.bin"): fp}
    assert not manifest.loaded  # fingerprints come without loading the manifest
    assert dict(manifest.load().fingerprints) == {str(doc / "data/a.bin"): fp}


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_reference_past_the_recorded_size_is_refused(tmp_path, encoding):
    doc = tmp_path / "doc.zarr"
    a = source_array(doc / "data" / "a.bin", np.arange(8.0), chunks=(4,))
    size = (doc / "data" / "a.bin").stat().st_size
    bad = zms.ChunkManifest(
        paths=a.manifest.paths,
        path_index=a.manifest.path_index,
        offsets=a.manifest.offsets,
        lengths=a.manifest.lengths,
        fingerprints={a.manifest.paths[0]: zms.manifest.Fingerprint(size=size - 1)},
    )
    zms.write_manifest(
        zms.ManifestGroup(arrays={"a": a.with_manifest(bad)}), doc, encoding=encoding
    )
    store = zms.ManifestStore.open(doc)
    with pytest.raises(
        zms.ManifestError, match=rf"chunk '1': offset \+ length = {size} lies past the end"
    ):
        zarr.open_group(store, mode="r")["a"][:]


# ---------------------------------------------------------------------- versions and prior art


def edit_transformer(doc: Path, array: str, **changes) -> None:
    """Change the transformer configuration in both the array's zarr.json and the root's copy."""
    for file, keys in (
        (doc / array / "zarr.json", []),
        (doc / "zarr.json", ["consolidated_metadata", "metadata", array]),
    ):
        document = json.loads(file.read_text())
        node = document
        for key in keys:
            node = node[key]
        node["storage_transformers"][0]["configuration"].update(changes)
        file.write_text(json.dumps(document))


def test_newer_minor_versions_are_read_and_unknown_fields_ignored(tmp_path):
    g, expected = sample_group(tmp_path / "doc.zarr" / "data")
    zms.write_manifest(g, tmp_path / "doc.zarr")
    edit_transformer(tmp_path / "doc.zarr", "t2m", version="1.7", compression_hint="none")
    np.testing.assert_array_equal(
        read_all(zms.ManifestStore.open(tmp_path / "doc.zarr"), ["t2m"])["t2m"], expected["t2m"]
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": "2.0"}, "version '2.0' is not supported"),
        ({"version": "1"}, r"\]\.storage_transformers\[0\].configuration.version: Expected"),
        ({"encoding": "parquet"}, r"configuration.encoding: Invalid enum value 'parquet'"),
        ({"version": 1.0}, r"version: Expected `str`, got `float`"),
    ],
)
def test_unknown_versions_and_encodings_are_refused(tmp_path, change, message):
    g, _ = sample_group(tmp_path / "doc.zarr" / "data")
    zms.write_manifest(g, tmp_path / "doc.zarr")
    edit_transformer(tmp_path / "doc.zarr", "t2m", **change)
    with pytest.raises(zms.ManifestError, match=message) as info:
        zms.ManifestStore.open(tmp_path / "doc.zarr")
    assert "doc.zarr/zarr.json: field consolidated_metadata.metadata['t2m']" in str(info.value)


def test_prior_art_chunk_manifest_json_documents_are_read(tmp_path):
    """As VirtualiZarr's early ``dataset_to_zarr`` wrote them: no consolidated metadata."""
    doc = tmp_path / "prior.zarr"
    a = source_array(
        tmp_path / "data" / "t.bin", t2m_data(), chunks=(4, 5), dimension_names=["y", "x"]
    )
    doc.mkdir()
    (doc / "zarr.json").write_text(
        json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {"a": 1}})
    )
    meta = a.metadata.to_dict()
    meta["storage_transformers"] = [
        {"name": "chunk-manifest-json", "configuration": {"manifest": "./manifest.json"}}
    ]
    (doc / "t2m").mkdir()
    (doc / "t2m" / "zarr.json").write_text(json.dumps(meta))
    (doc / "t2m" / "manifest.json").write_text(json.dumps(a.manifest.to_dict()))

    store = zms.ManifestStore.open(doc, allow=[str(tmp_path / "data")])
    assert store.root.attributes == {"a": 1}
    np.testing.assert_array_equal(read_all(store, ["t2m"])["t2m"], t2m_data())


# ---------------------------------------------------------------------- remote documents


def test_a_document_on_s3_opens_in_one_request_and_reads_lazily(s3, tmp_path):
    fs, bucket, server = s3
    g, expected = sample_group(tmp_path / "data")
    # sources on S3 too: upload them and point the manifests there
    for local in (tmp_path / "data").rglob("*.bin"):
        fs.put_file(str(local), f"{bucket}/data/{local.relative_to(tmp_path / 'data')}")
    prefix = str((tmp_path / "data").resolve())
    moved = zms.ManifestGroup(
        arrays={
            "t2m": g["t2m"].with_manifest(
                g["t2m"].manifest.rename_paths(lambda p: p.replace(prefix, f"s3://{bucket}/data"))
            )
        },
        attributes=g.attributes,
    )
    url = f"s3://{bucket}/doc.zarr"
    zms.write_manifest(moved, url, storage_options=server.storage_options, encoding="columnar")
    assert fs.exists(f"{bucket}/doc.zarr/t2m/manifest/offset/c/0/0")

    server.requests.clear()
    store = zms.ManifestStore.open(
        url, storage_options=server.storage_options, allow=[f"s3://{bucket}/data/"]
    )
    # one GET of the root zarr.json (s3fs adds a HEAD to size it), no listing, no manifest
    assert server.requests.count("GET") == 1
    assert server.requests.count("GET", "/doc.zarr/zarr.json") == 1
    assert server.requests.count() == server.requests.count(path_contains="/doc.zarr/zarr.json")
    group = zarr.open_group(store, mode="r")
    np.testing.assert_array_equal(group["t2m"][:4, :5], expected["t2m"][:4, :5])
    # the manifest group, the block of its 3 columns, and the inline bytes of chunk (0, 1)
    assert server.requests.count("GET", "/doc.zarr/t2m/manifest/") == 5
    np.testing.assert_array_equal(group["t2m"][:], expected["t2m"])


def test_a_document_over_http_opens_without_listing(http_server, tmp_path):
    doc = http_server.root / "doc.zarr"
    g, expected = sample_group(doc / "data")
    zms.write_manifest(g, doc)
    url = f"{http_server.url}/doc.zarr"
    store = zms.ManifestStore.open(url, storage_options={"skip_instance_cache": True})
    assert store.root["t2m"].manifest.paths[0] == f"{url}/data/t2m.bin"
    np.testing.assert_array_equal(read_all(store, ["t2m"])["t2m"], expected["t2m"])
