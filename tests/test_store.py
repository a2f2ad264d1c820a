"""ManifestStore: zarr and xarray read the original files' bytes through it."""

from __future__ import annotations

import asyncio
import json
import pickle
from pathlib import Path

import fsspec
import numpy as np
import pytest
import xarray as xr
import zarr
from helpers import GZIP_SHUFFLE_CODECS, array_metadata, hdf5_chunk_manifest
from zarr.abc.store import OffsetByteRequest, RangeByteRequest, SuffixByteRequest
from zarr.core.buffer import default_buffer_prototype

from zarr_manifest_store import ChunkManifest, ManifestArray, ManifestGroup, ManifestStore
from zarr_manifest_store import served as served_module
from zarr_manifest_store.served import DECIMAL_TABLE_LENGTH

PROTO = default_buffer_prototype()


def t2m_store(path: Path, skip: set[tuple[int, ...]] = frozenset()) -> ManifestStore:
    meta = array_metadata(
        (12, 10),
        (4, 5),
        fill_value=-9999.0,
        codecs=GZIP_SHUFFLE_CODECS,
        dimension_names=["y", "x"],
        attributes={"units": "K"},
    )
    array = ManifestArray(metadata=meta, manifest=hdf5_chunk_manifest(path, "t2m", skip))
    return ManifestStore(ManifestGroup(arrays={"t2m": array}, attributes={"title": "demo"}))


def bytes_file(tmp_path: Path, data: bytes, name: str = "blob.bin") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_hand_built_manifest_over_gzip_shuffle_reads_exactly(gzip_shuffle_file):
    path, data = gzip_shuffle_file
    store = t2m_store(path, skip={(2, 1)})
    expected = data.copy()
    expected[8:, 5:] = -9999.0  # the chunk left out of the manifest reads as the fill value

    got = zarr.open_group(store, mode="r")["t2m"][:]
    np.testing.assert_array_equal(got, expected)

    ds = xr.open_zarr(store)
    assert ds["t2m"].dims == ("y", "x")
    assert ds["t2m"].attrs["units"] == "K"
    assert ds.attrs["title"] == "demo"
    np.testing.assert_array_equal(ds["t2m"].values, expected)


def test_slices_read_only_the_chunks_they_touch(gzip_shuffle_file):
    path, data = gzip_shuffle_file
    store = t2m_store(path)
    arr = zarr.open_group(store, mode="r")["t2m"]
    np.testing.assert_array_equal(arr[5:7, 2:9], data[5:7, 2:9])
    np.testing.assert_array_equal(arr[11, :], data[11, :])


def test_missing_source_file_raises_naming_file_and_chunk(gzip_shuffle_file, tmp_path):
    path, _ = gzip_shuffle_file
    moved = tmp_path / "moved.h5"
    store = t2m_store(path)
    path.rename(moved)
    with pytest.raises(FileNotFoundError, match=r"gzip_shuffle\.h5.*chunk 't2m/c/0/0'"):
        zarr.open_group(store, mode="r")["t2m"][:4, :5]
    with pytest.raises(FileNotFoundError, match=r"gzip_shuffle\.h5"):
        xr.open_zarr(store)["t2m"].load()


def test_truncated_source_file_raises_instead_of_filling(gzip_shuffle_file):
    path, _ = gzip_shuffle_file
    store = t2m_store(path)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    with pytest.raises(OSError, match=r"too short.*chunk 't2m/c/"):
        zarr.open_group(store, mode="r")["t2m"][:]


def test_metadata_documents_and_v2_keys(gzip_shuffle_file):
    path, _ = gzip_shuffle_file
    store = t2m_store(path)

    async def get(key):
        return await store.get(key, PROTO)

    root = json.loads(asyncio.run(get("zarr.json")).to_bytes())
    assert root["node_type"] == "group"
    assert root["attributes"] == {"title": "demo"}
    assert root["consolidated_metadata"]["metadata"]["t2m"]["dimension_names"] == ["y", "x"]
    array_doc = json.loads(asyncio.run(get("t2m/zarr.json")).to_bytes())
    assert array_doc["shape"] == [12, 10]
    for v2_key in (".zgroup", ".zarray", ".zattrs", ".zmetadata", "t2m/.zarray"):
        assert asyncio.run(get(v2_key)) is None
    assert store._documents.document("zarr.json") is store._documents.document(
        "zarr.json"
    )  # built once


async def test_listing_a_nested_hierarchy():
    meta = array_metadata((4,), (2,))
    a = ManifestArray(
        metadata=meta,
        manifest=ChunkManifest.from_dict(
            {"1": {"path": "/nonexistent", "offset": 0, "length": 3}}, shape=(2,)
        ),
    )
    g = ManifestGroup(arrays={"a": a}, groups={"sub": ManifestGroup(arrays={"b": a})})
    store = ManifestStore(g)
    keys = sorted([k async for k in store.list()])
    assert keys == [
        "a/c/1",
        "a/zarr.json",
        "sub/b/c/1",
        "sub/b/zarr.json",
        "sub/zarr.json",
        "zarr.json",
    ]
    assert sorted([k async for k in store.list_prefix("sub/")]) == [
        "sub/b/c/1",
        "sub/b/zarr.json",
        "sub/zarr.json",
    ]
    assert sorted([k async for k in store.list_dir("")]) == ["a", "sub", "zarr.json"]
    assert sorted([k async for k in store.list_dir("sub/b")]) == ["c", "zarr.json"]
    assert not await store.is_empty("sub")
    assert await store.is_empty("nothing")
    assert await store.exists("a/c/1")
    assert not await store.exists("a/c/0")  # missing from the manifest: zarr fills it
    assert await store.getsize("a/c/1") == 3  # from the manifest, without reading the source
    with pytest.raises(FileNotFoundError):
        await store.getsize("a/c/0")


@pytest.mark.parametrize(
    ("encoding", "key", "bad_keys"),
    [
        (
            {"name": "default", "configuration": {"separator": "/"}},
            "c/1/0",
            ["c/1", "c/2/0", "c/01/0", "c.1.0", "c/ 1/0", "c/1/0/", "c/\u0661/0", "c/1/0/0"],
        ),
        (
            {"name": "default", "configuration": {"separator": "."}},
            "c.1.0",
            ["c/1/0", "c.1", "c.1.0.0"],
        ),
        (
            {"name": "v2", "configuration": {"separator": "."}},
            "1.0",
            ["1/0", "c.1.0", "1.0.0", "+1.0"],
        ),
        ({"name": "v2", "configuration": {"separator": "/"}}, "1/0", ["1.0", "1", "1/-0"]),
    ],
)
@pytest.mark.parametrize("table_length", [DECIMAL_TABLE_LENGTH, 1], ids=["table", "general"])
async def test_chunk_keys_use_the_arrays_own_encoding(
    tmp_path, monkeypatch, encoding, key, bad_keys, table_length
):
    """Keys decode through decimal tables, or zarr's decoder for grids longer than them."""
    monkeypatch.setattr(served_module, "DECIMAL_TABLE_LENGTH", table_length)
    src = bytes_file(tmp_path, bytes(range(16)))
    meta = {**array_metadata((4, 2), (2, 2), "uint8"), "chunk_key_encoding": encoding}
    manifest = ChunkManifest.from_dict(
        {"1.0": {"path": str(src), "offset": 4, "length": 4}}, shape=(2, 1)
    )
    store = ManifestStore(
        ManifestGroup(arrays={"x": ManifestArray(metadata=meta, manifest=manifest)})
    )
    assert (await store.get(f"x/{key}", PROTO)).to_bytes() == bytes([4, 5, 6, 7])
    for bad in bad_keys:
        assert await store.get(f"x/{bad}", PROTO) is None, bad
    values = zarr.open_group(store, mode="r")["x"][:]
    np.testing.assert_array_equal(values, [[0, 0], [0, 0], [4, 5], [6, 7]])


async def test_byte_ranges_are_clamped_to_the_chunk(tmp_path):
    src = bytes_file(tmp_path, b"HEADER" + b"0123456789" + b"TRAILER")
    manifest = ChunkManifest.from_dict({"0": {"path": str(src), "offset": 6, "length": 10}})
    store = ManifestStore(
        ManifestArray(metadata=array_metadata((10,), (10,), "uint8"), manifest=manifest)
    )
    cases = {
        None: b"0123456789",
        RangeByteRequest(2, 5): b"234",
        RangeByteRequest(8, 100): b"89",
        RangeByteRequest(50, 60): b"",
        OffsetByteRequest(7): b"789",
        OffsetByteRequest(70): b"",
        SuffixByteRequest(3): b"789",
        SuffixByteRequest(30): b"0123456789",
    }
    for byte_range, expected in cases.items():
        assert (await store.get("c/0", PROTO, byte_range)).to_bytes() == expected, byte_range
    with pytest.raises(TypeError, match="Unexpected byte_range"):
        await store.get("c/0", PROTO, (0, 2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="invalid byte range"):
        await store.get("c/0", PROTO, RangeByteRequest(5, 2))
    parts = await store.get_partial_values(
        PROTO, [("c/0", RangeByteRequest(0, 1)), ("zarr.json", None)]
    )
    assert parts[0].to_bytes() == b"0"
    assert json.loads(parts[1].to_bytes())["node_type"] == "array"


def test_root_array_and_inline_chunks(tmp_path):
    src = bytes_file(tmp_path, np.arange(4, dtype="<i4").tobytes())
    manifest = ChunkManifest.from_dict(
        {
            "0": {"path": str(src), "offset": 0, "length": 16},
            "1": {"data": np.arange(4, 8, dtype="<i4").tobytes()},
        }
    )
    store = ManifestStore(
        ManifestArray(metadata=array_metadata((8,), (4,), "int32"), manifest=manifest)
    )
    np.testing.assert_array_equal(zarr.open_array(store, mode="r")[:], np.arange(8))


def test_fsspec_memory_source():
    fs = fsspec.filesystem("memory")
    fs.pipe("/zms-test/data.bin", b"xx" + np.arange(6, dtype="<f8").tobytes())
    manifest = ChunkManifest.from_dict(
        {
            "0": {"path": "memory://zms-test/data.bin", "offset": 2, "length": 24},
            "1": {"path": "memory://zms-test/data.bin", "offset": 26, "length": 24},
        }
    )
    meta = array_metadata((6,), (3,), "float64", dimension_names=["t"])
    store = ManifestStore(
        ManifestGroup(arrays={"v": ManifestArray(metadata=meta, manifest=manifest)})
    )
    np.testing.assert_array_equal(xr.open_zarr(store)["v"].values, np.arange(6.0))
    missing = ChunkManifest.from_dict(
        {"0": {"path": "memory://zms-test/nope.bin", "offset": 0, "length": 24}}, shape=(2,)
    )
    bad = ManifestStore(ManifestGroup(arrays={"v": ManifestArray(metadata=meta, manifest=missing)}))
    with pytest.raises(FileNotFoundError, match=r"nope\.bin.*chunk 'v/c/0'"):
        zarr.open_group(bad, mode="r")["v"][:]


def test_store_pickles_and_reads_after_unpickling(gzip_shuffle_file):
    path, data = gzip_shuffle_file
    store = t2m_store(path)
    zarr.open_group(store, mode="r")["t2m"][:1]  # opens a descriptor, which must not be pickled
    clone = pickle.loads(pickle.dumps(store))
    assert clone == store
    np.testing.assert_array_equal(zarr.open_group(clone, mode="r")["t2m"][:], data)


async def test_store_is_read_only(gzip_shuffle_file):
    path, _ = gzip_shuffle_file
    store = t2m_store(path)
    assert store.read_only
    assert store.with_read_only(True) == store
    with pytest.raises(ValueError, match="read-only"):
        store.with_read_only(False)
    with pytest.raises(ValueError, match="read-only"):
        ManifestStore(ManifestGroup(), read_only=False)
    buf = PROTO.buffer.from_bytes(b"x")
    for write in (store.set("zarr.json", buf), store.delete("zarr.json")):
        with pytest.raises(ValueError, match="read-only mode"):
            await write
    with pytest.raises(ValueError, match="read-only"):
        zarr.open_group(store)  # zarr's default mode "a" wants to write
    assert zarr.open(store).attrs["title"] == "demo"  # zarr.open picks mode "r" itself


def test_nested_group_through_xarray(tmp_path):
    src = bytes_file(tmp_path, np.arange(6, dtype="<i2").tobytes())
    manifest = ChunkManifest.from_dict({"0": {"path": str(src), "offset": 0, "length": 12}})
    meta = array_metadata((6,), (6,), "int16", dimension_names=["x"])
    inner = ManifestGroup(
        arrays={"v": ManifestArray(metadata=meta, manifest=manifest)}, attributes={"level": 2}
    )
    store = ManifestStore(ManifestGroup(groups={"forecast": inner}))
    ds = xr.open_zarr(store, group="forecast")
    assert ds.attrs == {"level": 2}
    np.testing.assert_array_equal(ds["v"].values, np.arange(6))
