"""Arrays of many small uncompressed row chunks, served in chunks of many rows.

A netCDF-3 record variable stores one slab per record, interleaved with the
other record variables, so its manifest has one chunk per record: reading
5,000 records is 5,000 chunk reads through zarr (and through dask 5,000
tasks), each costing far more than its few hundred bytes. Where chunks are
stored uncompressed (the ``bytes`` codec alone) and each spans the array's
whole extent on the other axes, a run of consecutive chunks along the first
axis *is* one larger chunk: their bytes joined in order. :func:`served_array`
serves such an array, if it has at least :data:`MIN_ROW_CHUNKS` chunks and its
manifest is in memory (a stored columnar manifest not yet loaded keeps serving a
chunk by reading only the block that holds it), in chunks of about
:data:`ROW_CHUNK_BYTES`; the store reads a served chunk's rows
(one read when they lie evenly spaced in one file, as records do) and joins
them. Missing rows read as the fill value, as zarr would give them. The
document is unchanged: only the chunk grid the store serves differs.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Iterator
from typing import Any

import numpy as np
from zarr.codecs import BytesCodec

from zarr_manifest_store._zarr import ArrayV3Metadata, RegularChunkGridMetadata
from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.document.lazy import LazyChunkManifest
from zarr_manifest_store.errors import ManifestError
from zarr_manifest_store.io.sources import ByteData, Sources
from zarr_manifest_store.manifest import INLINE, MISSING, ChunkCoords
from zarr_manifest_store.served import ServedArray

__all__ = ["MIN_ROW_CHUNKS", "ROW_CHUNK_BYTES", "Rows", "ServedRows", "served_array"]

ROW_CHUNK_BYTES = 1 << 18
"""About this many bytes per served chunk of an array served in rows."""
MIN_ROW_CHUNKS = 64
"""Arrays with fewer chunks along their first axis are served as stored."""


def served_array(path: str, array: ManifestArray) -> ServedArray:
    """How the store serves ``array``: in chunks of many rows if that is exact, else as stored."""
    factor = _row_factor(array)
    return ServedRows(path, array, factor) if factor > 1 else ServedArray(path, array)


def _row_factor(array: ManifestArray) -> int:
    """How many stored chunks along the first axis one served chunk joins (1: none)."""
    if isinstance(array.manifest, LazyChunkManifest) and not array.manifest.loaded:
        return 1  # a stored columnar manifest serves a chunk reading only the block holding it
    meta = array.metadata
    if (
        not isinstance(meta, ArrayV3Metadata)
        or not isinstance(meta.chunk_grid, RegularChunkGridMetadata)
        or len(meta.codecs) != 1
        or not isinstance(meta.codecs[0], BytesCodec)
    ):
        return 1
    shape, chunks = tuple(meta.shape), tuple(meta.chunk_grid.chunk_shape)
    if not shape or chunks[1:] != shape[1:] or -(-shape[0] // chunks[0]) < MIN_ROW_CHUNKS:
        return 1
    dtype = meta.data_type.to_native_dtype()
    if dtype.kind not in "biufcSV":
        return 1
    return max(1, ROW_CHUNK_BYTES // max(1, math.prod(chunks) * dtype.itemsize))


class ServedRows(ServedArray):
    """An array served with ``factor`` stored chunks joined along the first axis per chunk."""

    __slots__ = ("_columns", "_fill", "factor")

    def __init__(self, path: str, array: ManifestArray, factor: int) -> None:
        super().__init__(path, array)
        self.factor = factor
        self._columns: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._fill: bytes | None = None

    @property
    def grid(self) -> tuple[int, ...]:
        stored = self.array.manifest.shape
        return (-(-stored[0] // self.factor), *stored[1:])

    def served_metadata(self, metadata: dict[str, Any]) -> dict[str, Any]:
        """The array's ``zarr.json`` with the served chunk shape."""
        grid = metadata["chunk_grid"]
        chunks = list(grid["configuration"]["chunk_shape"])
        chunks[0] *= self.factor
        return {**metadata, "chunk_grid": {**grid, "configuration": {"chunk_shape": chunks}}}

    def chunk(self, chunk_key: str) -> Rows | None:
        coords = self.decode(chunk_key)
        if coords is None:
            return None
        index = self._rows()[0]
        first = coords[0] * self.factor
        last = min(first + self.factor, len(index))
        if (index[first:last] == MISSING).all():
            return None
        return Rows(self, chunk_key, first, last)

    def present(self) -> Iterator[ChunkCoords]:
        """The served chunks that hold at least one stored chunk."""
        index = self._rows()[0]
        rest = (0,) * (self.array.manifest.ndim - 1)
        for i in range(self.grid[0]):
            if (index[i * self.factor : (i + 1) * self.factor] != MISSING).any():
                yield (i, *rest)

    def _rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Path index, offset and length of each stored chunk along the first axis."""
        if self._columns is None:
            refs = self.array.manifest.entries()
            n = self.array.manifest.shape[0]
            index = np.full(n, MISSING, dtype=np.int64)
            offsets = np.zeros(n, dtype=np.int64)
            lengths = np.zeros(n, dtype=np.int64)
            rows = np.asarray(refs.flat)
            index[rows] = refs.path_index
            offsets[rows] = refs.offsets
            lengths[rows] = refs.lengths
            self._columns = (index, offsets, lengths)
        return self._columns

    @property
    def fill_row(self) -> bytes:
        """One stored chunk of fill values, encoded as the ``bytes`` codec stores it."""
        if self._fill is None:
            self._fill = self._encoded_fill()
        return self._fill

    def _encoded_fill(self) -> bytes:
        meta = self.array.metadata
        endian = meta.codecs[0].endian
        dtype = meta.data_type.to_native_dtype()
        if endian is not None:
            dtype = dtype.newbyteorder("<" if endian == "little" else ">")
        return np.full(meta.chunk_grid.chunk_shape, meta.fill_value, dtype=dtype).tobytes()


class Rows:
    """The stored chunks ``[first, last)`` along the first axis that one served chunk joins."""

    __slots__ = ("first", "key", "last", "served")

    def __init__(self, served: ServedRows, key: str, first: int, last: int) -> None:
        self.served, self.key, self.first, self.last = served, key, first, last

    @property
    def nbytes(self) -> int:
        return self.served.factor * len(self.served.fill_row)

    async def read(self, sources: Sources) -> bytes:
        """The served chunk's bytes, its rows read concurrently (gathered into few reads)."""
        span = self._span(sources)
        if span is not None:
            path, start, stop, stride = span
            return self._join_span(await sources.read(path, start, stop - start), stride)
        pieces = self._pieces()
        reads = [sources.read(*p) if isinstance(p, tuple) else _done(p) for p in pieces]
        return self._join(await asyncio.gather(*reads))

    def read_sync(self, sources: Sources) -> bytes:
        """The served chunk's bytes, blocking."""
        span = self._span(sources)
        if span is not None:
            path, start, stop, stride = span
            return self._join_span(sources.read_sync(path, start, stop - start), stride)
        return self._join(
            [sources.read_sync(*p) if isinstance(p, tuple) else p for p in self._pieces()]
        )

    def _span(self, sources: Sources) -> tuple[str, int, int, int] | None:
        """``(path, start, stop, stride)`` when the rows lie evenly spaced in one file, close
        enough to be read as one range (the sources' ``max_gap_bytes`` and
        ``max_coalesced_bytes``, as their gathering would merge them); else None."""
        index, offsets, lengths = (c[self.first : self.last] for c in self.served._rows())
        self._check_lengths(index, lengths)
        size = len(self.served.fill_row)
        if index[0] >= INLINE or (index != index[0]).any():
            return None
        steps = np.diff(offsets)
        stride = int(steps[0]) if len(steps) else size
        if (steps != stride).any() or stride < size:
            return None
        start, stop = int(offsets[0]), int(offsets[-1]) + size
        tuning = sources.options
        if stride - size > tuning["max_gap_bytes"] or stop - start > tuning["max_coalesced_bytes"]:
            return None
        return self.served.array.manifest.paths[int(index[0])], start, stop, stride

    def _check_lengths(self, index: np.ndarray, lengths: np.ndarray) -> None:
        size = len(self.served.fill_row)
        wrong = np.flatnonzero((index != MISSING) & (index != INLINE) & (lengths != size))
        if len(wrong):
            row = self.first + int(wrong[0])
            raise ManifestError(
                f"array {self.served.path or '/'!r}, chunk {row} along its first axis: its "
                f"reference is {int(lengths[wrong[0]])} bytes, but an uncompressed chunk of the "
                f"array is {size}; its reference in the document points at the wrong bytes"
            )

    def _pieces(self) -> list[tuple[str, int, int] | bytes]:
        """Each row: ``(path, offset, length)`` to read, or its bytes (inline or fill)."""
        index, offsets, lengths = (c[self.first : self.last] for c in self.served._rows())
        manifest, rest = self.served.array.manifest, (0,) * (self.served.array.manifest.ndim - 1)
        pieces: list[tuple[str, int, int] | bytes] = []
        for row, (i, offset, length) in enumerate(zip(index, offsets, lengths, strict=True)):
            if i == MISSING:
                pieces.append(self.served.fill_row)
            elif i == INLINE:
                pieces.append(bytes(manifest.inline[(self.first + row, *rest)]))
            else:
                pieces.append((manifest.paths[int(i)], int(offset), int(length)))
        return pieces

    def _join(self, parts: list[ByteData]) -> bytes:
        padding = self.served.fill_row * (self.served.factor - len(parts))
        return b"".join([*(bytes(p) if not isinstance(p, bytes) else p for p in parts), padding])

    def _join_span(self, data: ByteData, stride: int) -> bytes:
        """The rows of a range read at once: every ``stride`` bytes, one row; then the padding."""
        size, count = len(self.served.fill_row), self.last - self.first
        raw = np.frombuffer(data, dtype=np.uint8)
        if stride != size:
            raw = np.lib.stride_tricks.as_strided(raw, shape=(count, size), strides=(stride, 1))
        return raw.tobytes() + self.served.fill_row * (self.served.factor - count)


async def _done(value: bytes) -> bytes:
    return value
