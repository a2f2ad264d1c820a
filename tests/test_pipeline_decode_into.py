"""Chunks decoded straight into the output array (codecs.IntoDecoder), and libdeflate's zlib.

Every chain is written by zarr itself to a local Zarr v3 store, scanned, and read back through
ManifestStore: the values must equal the data written, whichever path decoded each chunk.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from read_fixtures import count_calls
from zarr.codecs import BytesCodec, TransposeCodec
from zarr.codecs import numcodecs as nc

import zarr_manifest_store as zms
from zarr_manifest_store import codecs, guards
from zarr_manifest_store.codecs import IntoDecoder, unshuffle
from zarr_manifest_store.errors import ManifestError

pytestmark = pytest.mark.filterwarnings(
    "ignore::zarr.errors.ZarrUserWarning", "ignore::zarr.errors.UnstableSpecificationWarning"
)

SHAPE, CHUNKS = (7, 10, 9), (2, 4, 9)  # edge chunks along the first two dimensions


def chain(*compressors: Any, shuffle: bool = True, endian: str = "little") -> dict[str, Any]:
    filters = [nc.Shuffle()] if shuffle else []
    return {"serializer": BytesCodec(endian=endian), "compressors": [*filters, *compressors]}


CHAINS = {
    "zlib+shuffle": chain(nc.Zlib(level=1)),
    "zlib": chain(nc.Zlib(level=1), shuffle=False),
    "zlib+shuffle+fletcher32": chain(nc.Zlib(level=1), nc.Fletcher32()),
    "gzip+shuffle": chain(nc.GZip(level=1)),
    "zstd+shuffle": chain(nc.Zstd(level=1)),
    "blosc": chain(nc.Blosc(cname="lz4"), shuffle=False),
    "lz4+shuffle": chain(nc.LZ4()),
    "raw": chain(shuffle=False),
    "shuffle only": chain(),
    "big-endian zlib+shuffle": chain(nc.Zlib(level=1), endian="big"),
    "transpose, zlib": {
        "filters": [TransposeCodec(order=(2, 1, 0))],
        "compressors": [nc.Zlib(level=1)],
    },
}
DTYPES = ["float32", "int16", "uint8", "float64", "bool", "datetime64[s]"]


def values(dtype: str) -> np.ndarray:
    rng = np.random.default_rng(len(dtype))
    data = rng.normal(100, 30, SHAPE)
    if dtype == "bool":
        return data > 100
    if dtype.startswith("datetime64"):
        return (1_700_000_000 + data * 1000).astype("int64").astype(dtype)
    return data.astype(dtype)


def served(
    tmp_path: Path, data: np.ndarray, fill_value: Any = None, chunks=CHUNKS, **codecs: Any
) -> zarr.Array:
    """``data`` written by zarr with ``codecs`` to a local store, scanned, served by zms."""
    path = tmp_path / "a.zarr"
    written = zarr.create_array(
        path, shape=data.shape, chunks=chunks, dtype=data.dtype, fill_value=fill_value, **codecs
    )
    written[...] = data
    return zarr.open_group(zms.ManifestStore(zms.scan(path)), mode="r")["a"]


def into_calls(monkeypatch: Any) -> list[Any]:
    """The chunks decoded by IntoDecoder, straight into the output or into an array of their own."""
    return count_calls(monkeypatch, IntoDecoder, "decode_into")


@pytest.mark.parametrize(
    ("name", "dtype"),
    [
        (name, dtype)
        for name in CHAINS
        for dtype in DTYPES
        # one-byte items have no byte order
        if not (dtype in ("uint8", "bool") and name.startswith("big-endian"))
    ],
)
def test_every_chain_reads_exactly_whole_sliced_and_indexed(tmp_path, monkeypatch, name, dtype):
    data = values(dtype)
    arr = served(tmp_path, data, **CHAINS[name])
    calls = into_calls(monkeypatch)
    np.testing.assert_array_equal(arr[...], data)  # whole and edge chunks
    np.testing.assert_array_equal(arr[1:6, 3:9, 2:5], data[1:6, 3:9, 2:5])  # parts of chunks
    np.testing.assert_array_equal(arr[3, 5], data[3, 5])  # dropped axes
    np.testing.assert_array_equal(arr[4:6, 4:8], data[4:6, 4:8])  # exactly one chunk (one read)
    np.testing.assert_array_equal(arr.oindex[[0, 6], :, [1, 8]], data[[0, 6]][:, :, [1, 8]])
    # zarr's own chunk transform decodes a transposed or byte-swapped chain
    assert bool(calls) == (not name.startswith(("big-endian", "transpose")))


def test_whole_chunks_decode_into_the_output_and_the_others_into_their_own_array(
    tmp_path, monkeypatch
):
    data = values("float32")
    arr = served(tmp_path, data, chunks=(2, 10, 9), **CHAINS["zlib+shuffle"])
    calls = into_calls(monkeypatch)
    np.testing.assert_array_equal(arr[...], data)
    # 4 chunks, each a C-contiguous block of the output: the 3 whole ones are decoded into
    # it; the edge chunk (1 of its 2 rows) into an array of its own, then copied
    assert len(calls) == 4
    assert sum(dest.base is not None for _, _, _, dest in calls) == 3
    calls.clear()
    np.testing.assert_array_equal(arr[:, 2:], data[:, 2:])  # no chunk's block of the output
    assert len(calls) == 4
    assert not any(dest.base is not None for _, _, _, dest in calls)


def test_missing_chunks_read_as_the_fill_value(tmp_path, monkeypatch):
    data = values("float32")
    data[2:4, 4:8] = -1.5  # one whole chunk of fill values: zarr does not store it
    arr = served(tmp_path, data, fill_value=-1.5, **CHAINS["zlib+shuffle"])
    calls = into_calls(monkeypatch)
    np.testing.assert_array_equal(arr[...], data)
    assert len(calls) == 11


def test_a_chunk_of_the_wrong_size_is_refused_naming_it(tmp_path):
    data = values("float32")
    path = tmp_path / "a.zarr"
    zarr.create_array(path, shape=SHAPE, chunks=CHUNKS, dtype="float32", **CHAINS["zlib"])[...] = (
        data
    )
    short = np.zeros(CHUNKS, "float32").tobytes()[:-4]
    (path / "c/1/1/0").write_bytes(zlib.compress(short))  # one element short
    arr = zarr.open_group(zms.ManifestStore(zms.scan(path)), mode="r")["a"]
    with pytest.raises(ManifestError, match=r"array 'a', chunk 'c/1/1/0'.* 284 bytes"):
        arr[...]
    np.testing.assert_array_equal(arr[:2], data[:2])  # the other chunks still read


def test_a_corrupt_stream_is_refused_with_the_standard_librarys_reason(tmp_path):
    data = values("float32")
    path = tmp_path / "a.zarr"
    zarr.create_array(path, shape=SHAPE, chunks=CHUNKS, dtype="float32", **CHAINS["zlib"])[...] = (
        data
    )
    stored = (path / "c/0/0/0").read_bytes()
    (path / "c/0/0/0").write_bytes(stored[: len(stored) // 2])
    arr = zarr.open_group(zms.ManifestStore(zms.scan(path)), mode="r")["a"]
    with pytest.raises(ManifestError, match=r"chunk 'c/0/0/0': the zlib data stream is truncated"):
        arr[:2, :4]


@pytest.mark.parametrize("elementsize", [1, 2, 4, 8, 24])
def test_unshuffle_is_numcodecs_shuffle_undone(elementsize):
    items = np.random.default_rng(elementsize).integers(0, 256, 30 * elementsize, dtype=np.uint8)
    shuffled = np.frombuffer(nc.Shuffle(elementsize=elementsize)._codec.encode(items), np.uint8)
    out = np.empty_like(items)
    unshuffle(shuffled, out, elementsize)
    np.testing.assert_array_equal(out, items)


def test_unshuffle_refuses_a_partial_element():
    with pytest.raises(guards.ChunkRefused, match="not a whole number of 4-byte elements"):
        unshuffle(np.zeros(10, np.uint8), np.zeros(10, np.uint8), 4)


def test_zlib_of_a_sized_chunk_inflates_with_libdeflate_within_its_size(monkeypatch):
    """A chunk of known size inflates into a buffer of exactly that size (libdeflate); a
    stream that would go past it, or a broken one, is refused by the standard library's
    decoder with its reason."""
    found = guards._libdeflate()
    assert found is not None  # imagecodecs is a test dependency
    error, decode = found
    inflated = []

    def counted(*args: Any, **kwargs: Any) -> Any:
        inflated.append(args)
        return decode(*args, **kwargs)

    monkeypatch.setattr(guards, "_libdeflate", lambda: (error, counted))
    raw = np.arange(100, dtype="<f4").tobytes()
    data = np.frombuffer(zlib.compress(raw, 1), np.uint8)
    assert bytes(guards._zlib(None, data, 400, True)) == raw
    assert len(inflated) == 1
    with pytest.raises(guards.ChunkRefused, match="inflates past 399 bytes"):
        guards._zlib(None, data, 399, True)
    with pytest.raises(guards.ChunkRefused, match="truncated"):
        guards._zlib(None, data[:-8], 400, True)
    assert bytes(guards._zlib(None, data, 4000, False)) == raw  # unsized: the standard library
    assert len(inflated) == 3


def test_without_imagecodecs_the_standard_library_inflates(tmp_path, monkeypatch):
    data = values("float32")
    arr = served(tmp_path, data, **CHAINS["zlib+shuffle"])
    monkeypatch.setattr(guards, "_libdeflate", lambda: None)
    np.testing.assert_array_equal(arr[...], data)


def test_chains_the_decoder_takes_and_leaves():
    assert IntoDecoder.of([BytesCodec(), nc.Shuffle(elementsize=4), nc.Zlib()]) is not None
    assert IntoDecoder.of([BytesCodec()]) is not None
    assert IntoDecoder.of([TransposeCodec(order=(1, 0)), BytesCodec()]) is None
    assert IntoDecoder.of([BytesCodec(), nc.Zlib(), nc.Shuffle(elementsize=4)]) is None
    assert IntoDecoder.of([zarr.codecs.VLenUTF8Codec()]) is None
    assert codecs.IntoDecoder.of([BytesCodec(), nc.Shuffle()]) is None  # elementsize unknown


def test_a_chunk_read_whole_by_an_index_decodes_into_the_output(tmp_path, monkeypatch):
    """A random read of one (1, y, x) chunk: the output drops the indexed axis, and is still
    the chunk's block."""
    data = values("float32")
    arr = served(tmp_path, data, chunks=(1, 10, 9), **CHAINS["zlib+shuffle"])
    calls = into_calls(monkeypatch)
    np.testing.assert_array_equal(arr[3], data[3])
    np.testing.assert_array_equal(arr[5, :, :], data[5])
    assert [dest.shape for _, _, _, dest in calls] == [(1, 10, 9)] * 2
    assert all(dest.base is not None for _, _, _, dest in calls)
