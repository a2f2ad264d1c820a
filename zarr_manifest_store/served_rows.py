"""Arrays of many small uncompressed row chunks, served in chunks of many rows.

A netCDF-3 record variable stores one slab per record, interleaved with the
other record variables, so its manifest has one chunk per record: reading
5,000 records is 5,000 chunk reads through zarr (and through dask 5,000
tasks), each costing far more than its few hundred bytes. Where chunks are
stored uncompressed (the ``bytes`` codec alone) and each spans the array's
whole extent on the other axes, a run of consecutive chunks along the first
axis *is* one larger chunk: their bytes joined in order. :func:`served_array`
serves such an array, if it has at least :data:`MIN_ROW_CHUNKS` chunks (two of small
interleaved rows: :data:`SMALL_ROW_BYTES`) and its
manifest is in memory (a stored columnar manifest not yet loaded keeps serving a
chunk by reading only the block that holds it), in chunks of the rows that lie
within about :data:`ROW_SPAN_BYTES` of their file, so that every record variable
of a file is served in chunks of the same records, each cut from one read of
those records (:mod:`.served_blocks`). Otherwise the store copies a served
chunk's runs of evenly spaced rows each out of the memory map of a local file,
or reads each as one range within a block of the file,
through the blocks the arrays of a store share (:mod:`.served_blocks`), and
joins them, turning numbers stored big-endian (as netCDF-3 stores them) to the
machine's order in that same copy, so that zarr takes the served chunk as it is
(no byte swap of its own); where zarr's output takes a chunk from its start, the
store writes it there itself (:meth:`Rows.read_into`, through
``ManifestStore._read_into``), so that no chunk is made for zarr to copy. Missing rows read as the fill value, as zarr would
give them. The document is unchanged: only the chunk grid (and the ``bytes``
codec's ``endian``) the store serves differ.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import sys
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import numpy as np
from zarr.codecs import BytesCodec

from zarr_manifest_store._zarr import ArrayV3Metadata, RegularChunkGridMetadata
from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.document.lazy import LazyChunkManifest
from zarr_manifest_store.errors import ManifestError
from zarr_manifest_store.io.sources import ByteData, Sources
from zarr_manifest_store.manifest import INLINE, MISSING, ChunkCoords, ChunkManifest
from zarr_manifest_store.served import ServedArray
from zarr_manifest_store.served_blocks import RowBlocks

__all__ = [
    "MIN_ROW_CHUNKS",
    "ROW_SPAN_BYTES",
    "SMALL_ROW_BYTES",
    "Rows",
    "ServedRows",
    "served_array",
    "served_arrays",
]

ROW_SPAN_BYTES = 16 << 20
"""A served chunk joins the rows that lie within about this many bytes of their file (so it
holds at most as many): every record variable of a netCDF-3 file is served in chunks of the
same records, as few as a remote file's records can be read in (one read coalesces at most
``max_coalesced_bytes``, 16 MiB by default): zarr's and dask's cost per chunk is most of what
reading a small file's records costs."""
MIN_ROW_CHUNKS = 64
"""Arrays with fewer chunks along their first axis are served as stored, unless their rows are
small (:data:`SMALL_ROW_BYTES`)."""
SMALL_ROW_BYTES = 64 << 10
"""Arrays of two rows or more of at most this many bytes, evenly spaced in one file among
other bytes (netCDF-3 records), are served in chunks of many rows however few their rows: a
small netCDF-3 file of a few records and many record variables would cost zarr (and dask) a
chunk a record of each."""


def served_arrays(arrays: Mapping[str, ManifestArray]) -> dict[str, ServedArray]:
    """How a store serves each of ``arrays`` (by path): in chunks of many rows where that is
    exact, sharing the blocks of the files they read, else as stored."""
    blocks = RowBlocks()
    return {path: served_array(path, array, blocks) for path, array in arrays.items()}


def served_array(path: str, array: ManifestArray, blocks: RowBlocks) -> ServedArray:
    """How the store serves ``array``: in chunks of many rows if that is exact, else as stored."""
    if _joins_rows(array):
        return ServedRows(path, array, blocks)
    return ServedArray(path, array)


def _joins_rows(array: ManifestArray) -> bool:
    """Whether ``array`` is served in chunks of many rows: its metadata says stored chunks
    along the first axis join exactly (uncompressed whole rows of a fixed-size type), and
    there are many of them, or a few small ones among other bytes (:data:`SMALL_ROW_BYTES`)."""
    if isinstance(array.manifest, LazyChunkManifest) and not array.manifest.loaded:
        return False  # a stored columnar manifest serves a chunk reading only the block holding it
    meta = array.metadata
    if (
        not isinstance(meta, ArrayV3Metadata)
        or not isinstance(meta.chunk_grid, RegularChunkGridMetadata)
        or len(meta.codecs) != 1
        or not isinstance(meta.codecs[0], BytesCodec)
    ):
        return False
    shape, chunks = tuple(meta.shape), tuple(meta.chunk_grid.chunk_shape)
    if not shape or chunks[1:] != shape[1:]:
        return False
    dtype = meta.data_type.to_native_dtype()
    row_bytes = math.prod(chunks) * dtype.itemsize
    if dtype.kind not in "biufcSV" or not 0 < row_bytes <= ROW_SPAN_BYTES // 2:
        return False
    rows = -(-shape[0] // chunks[0])
    if rows >= MIN_ROW_CHUNKS:
        return True
    return rows >= 2 and row_bytes <= SMALL_ROW_BYTES and _interleaved(array.manifest, row_bytes)


def _interleaved(manifest: ChunkManifest, row_bytes: int) -> bool:
    """Whether the rows lie evenly spaced in one file with other bytes between them, near
    enough for a served chunk to join them: the records of a netCDF-3 record variable,
    interleaved with the other record variables'."""
    index, offsets, lengths = _columns(manifest)
    step = _even_step(index, np.diff(offsets), row_bytes)
    return (
        step is not None
        and row_bytes < step <= ROW_SPAN_BYTES // 2
        and bool((lengths == row_bytes).all())
    )


class ServedRows(ServedArray):
    """An array served with ``factor`` stored chunks joined along the first axis per chunk."""

    __slots__ = ("_columns", "_factor", "_fill", "blocks", "served_dtype", "stored_dtype")

    def __init__(self, path: str, array: ManifestArray, blocks: RowBlocks) -> None:
        super().__init__(path, array)
        self.blocks = blocks
        self._columns: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None
        self._factor: int | None = None
        self._fill: np.ndarray | None = None
        self.stored_dtype, self.served_dtype = _row_dtypes(array.metadata)
        blocks.add(self)

    @property
    def swaps(self) -> bool:
        """Whether the store serves the numbers in the machine's byte order, not as stored."""
        return self.served_dtype != self.stored_dtype

    @property
    def row_bytes(self) -> int:
        """The bytes of one stored chunk (one row along the first axis)."""
        return self.fill_row.nbytes

    @property
    def factor(self) -> int:
        """Stored chunks per served chunk: as many as lie within ``ROW_SPAN_BYTES`` of their
        file (a row a usual step from the one before), the rows shared evenly between the
        served chunks; worked out when first needed."""
        if self._factor is None:
            index, offsets, _ = self.rows()
            stride = _usual_step(index, offsets, self.row_bytes)
            most = max(1, ROW_SPAN_BYTES // stride)
            self._factor = -(-len(index) // -(-len(index) // most))
        return self._factor

    @property
    def grid(self) -> tuple[int, ...]:
        stored = self.array.manifest.shape
        return (-(-stored[0] // self.factor), *stored[1:])

    def served_metadata(self, metadata: dict[str, Any]) -> dict[str, Any]:
        """The array's ``zarr.json`` with the served chunk shape and byte order."""
        grid = metadata["chunk_grid"]
        chunks = list(grid["configuration"]["chunk_shape"])
        chunks[0] *= self.factor
        served = {**metadata, "chunk_grid": {**grid, "configuration": {"chunk_shape": chunks}}}
        if self.swaps:
            served["codecs"] = [{"name": "bytes", "configuration": {"endian": sys.byteorder}}]
        return served

    def served_parsed(self, metadata: ArrayV3Metadata) -> ArrayV3Metadata:
        """:meth:`served_metadata`, parsed: the metadata with the served chunk shape and byte order."""
        chunks = (
            metadata.chunk_grid.chunk_shape[0] * self.factor,
            *metadata.chunk_grid.chunk_shape[1:],
        )
        codecs = (BytesCodec(endian=sys.byteorder),) if self.swaps else metadata.codecs
        return dataclasses.replace(
            metadata, chunk_grid=RegularChunkGridMetadata(chunk_shape=chunks), codecs=codecs
        )

    def chunk(self, chunk_key: str) -> Rows | None:
        coords = self.decode(chunk_key)
        if coords is None:
            return None
        index = self.rows()[0]
        first = coords[0] * self.factor
        last = min(first + self.factor, len(index))
        if (index[first:last] == MISSING).all():
            return None
        return Rows(self, chunk_key, first, last)

    def present(self) -> Iterator[ChunkCoords]:
        """The served chunks that hold at least one stored chunk."""
        index = self.rows()[0]
        rest = (0,) * (self.array.manifest.ndim - 1)
        for i in range(self.grid[0]):
            if (index[i * self.factor : (i + 1) * self.factor] != MISSING).any():
                yield (i, *rest)

    def rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Path index, offset and length of each stored chunk along the first axis."""
        if self._columns is None:
            self._columns = _columns(self.array.manifest)
        return self._columns

    @property
    def fill_row(self) -> np.ndarray:
        """One stored chunk of fill values as the store serves it: flat, of ``served_dtype``."""
        if self._fill is None:
            meta = self.array.metadata
            shape, dtype = meta.chunk_grid.chunk_shape, _encoded(meta, self.swaps)
            fill = np.full(shape, meta.fill_value, dtype=dtype).reshape(-1)
            self._fill = fill if self.served_dtype == dtype else fill.view(self.served_dtype)
        return self._fill


def _usual_step(index: np.ndarray, offsets: np.ndarray, size: int) -> int:
    """The usual step from a row of ``size`` bytes to the next in its file: the step between
    every two rows where all are evenly spaced in one file (netCDF-3 records: found at once,
    this is worked out for each record variable as a store opens), else the median step
    between rows of one file at least a row apart (``size`` if none are)."""
    steps = np.diff(offsets)
    step = _even_step(index, steps, size)
    if step is not None:
        return step
    steps = steps[(index[1:] == index[:-1]) & (index[1:] < INLINE)]
    steps = steps[steps >= size]
    return int(np.median(steps)) if len(steps) else size


def _even_step(index: np.ndarray, steps: np.ndarray, size: int) -> int | None:
    """The step between every two rows (``steps``: between their offsets) where all lie in
    one file, evenly spaced at least ``size`` bytes apart; None where they do not."""
    if not len(steps) or steps[0] < size or index[0] >= INLINE:
        return None
    if (steps != steps[0]).any() or (index != index[0]).any():
        return None
    return int(steps[0])


def _row_dtypes(meta: ArrayV3Metadata) -> tuple[np.dtype, np.dtype]:
    """The element type a row is copied as, as stored and as served: numbers stored in the
    other byte order are served in the machine's (swapped in the copy); anything else is
    copied as bytes."""
    stored = _encoded(meta, swapped=False)
    if stored.kind in "iufc" and stored.itemsize > 1 and not stored.isnative:
        return stored, stored.newbyteorder("=")
    return np.dtype(np.uint8), np.dtype(np.uint8)


def _encoded(meta: ArrayV3Metadata, swapped: bool) -> np.dtype:
    """The array's type with the byte order of its ``bytes`` codec (``swapped``: the machine's)."""
    dtype = meta.data_type.to_native_dtype()
    endian = meta.codecs[0].endian
    if endian is None or swapped:
        return dtype
    return dtype.newbyteorder("<" if endian == "little" else ">")


def _columns(manifest: ChunkManifest) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Path index, offset and length of each chunk of a grid of ``(rows, 1, ...)`` chunks."""
    if not manifest.sparse:
        columns = (manifest.path_index, manifest.offsets, manifest.lengths)
        index, offsets, lengths = (np.asarray(c, np.int64).reshape(-1) for c in columns)
        return index, offsets, lengths
    refs = manifest.entries()
    n = manifest.shape[0]
    index = np.full(n, MISSING, dtype=np.int64)
    offsets = np.zeros(n, dtype=np.int64)
    lengths = np.zeros(n, dtype=np.int64)
    rows = np.asarray(refs.flat)
    index[rows] = refs.path_index
    offsets[rows] = refs.offsets
    lengths[rows] = refs.lengths
    return index, offsets, lengths


class Rows:
    """The stored chunks ``[first, last)`` along the first axis that one served chunk joins."""

    __slots__ = ("first", "key", "last", "served")

    def __init__(self, served: ServedRows, key: str, first: int, last: int) -> None:
        self.served, self.key, self.first, self.last = served, key, first, last

    @property
    def nbytes(self) -> int:
        return self.served.factor * self.served.row_bytes

    async def read(self, sources: Sources) -> np.ndarray:
        """The served chunk's bytes."""
        out = self._empty()
        await self.read_into(sources, out)
        return out.view(np.uint8).reshape(-1)

    def read_sync(self, sources: Sources) -> np.ndarray:
        """The served chunk's bytes, blocking."""
        out = self._empty()
        self.read_into_sync(sources, out)
        return out.view(np.uint8).reshape(-1)

    async def read_into(self, sources: Sources, out: np.ndarray) -> None:
        """Write the served chunk into ``out`` (rows of ``served_dtype``, as many as the chunk
        has or more: those take the fill value): cut with the rest of its family's (see
        :mod:`.served_blocks`), else read row by row, the ranges going to the sources
        together (so that nearby ones coalesce), in batches of at most
        ``max_coalesced_bytes``."""
        served = self.served
        if await served.blocks.chunk_into(sources, served, self.first // served.factor, out):
            return
        runs = self._unmapped(sources, self._plan(sources, out), out)
        blocks, reader, dtype = served.blocks, served.path, served.stored_dtype
        for batch in _batches(runs, sources.options["max_coalesced_bytes"]):
            reads = (blocks.read(sources, reader, r.path, r.start, r.span, r.count) for r in batch)
            for run, data in zip(batch, await asyncio.gather(*reads), strict=True):
                run.place(out, data, dtype)

    def read_into_sync(self, sources: Sources, out: np.ndarray) -> None:
        """:meth:`read_into`, blocking: one range at a time."""
        served = self.served
        if served.blocks.chunk_into_sync(sources, served, self.first // served.factor, out):
            return
        runs = self._unmapped(sources, self._plan(sources, out), out)
        blocks, reader, dtype = served.blocks, served.path, served.stored_dtype
        for run in runs:
            data = blocks.read_sync(sources, reader, run.path, run.start, run.span, run.count)
            run.place(out, data, dtype)

    def rows_of(self, region: np.ndarray) -> np.ndarray | None:
        """``region`` (where zarr's output takes this chunk from its start: all of it, or
        the rows the array has) as the rows :meth:`read_into` writes; None if it is not
        such a place (C-contiguous, of the array's type)."""
        served = self.served
        shape = served.array.metadata.chunk_grid.chunk_shape
        if (
            region.shape[1:] != tuple(shape[1:])
            or len(region) not in (self.last - self.first, served.factor)
            or region.dtype != served.array.dtype
            or not region.flags.c_contiguous
            or not region.flags.writeable
        ):
            return None
        return region.view(np.uint8).reshape(len(region), -1).view(served.served_dtype)

    def _empty(self) -> np.ndarray:
        return np.empty((self.served.factor, len(self.served.fill_row)), self.served.served_dtype)

    def _plan(self, sources: Sources, out: np.ndarray) -> list[_Run]:
        """Put the fill and inline rows in place in ``out``, and the ranges to read into it:
        each run of rows evenly spaced in one file (at most ``max_gap_bytes`` apart) within
        one of the file's blocks as one range."""
        served = self.served
        index, offsets, lengths = (c[self.first : self.last] for c in served.rows())
        self._check_lengths(index, lengths)
        fill, size = served.fill_row, served.row_bytes
        out[len(index) :] = fill
        out[: len(index)][index == MISSING] = fill
        manifest, rest = served.array.manifest, (0,) * (served.array.manifest.ndim - 1)
        for row in np.flatnonzero(index == INLINE):
            out[row] = self._inline(manifest.inline[(self.first + int(row), *rest)], int(row))
        gap, block = sources.options["max_gap_bytes"], served.blocks.block_bytes(sources)
        return [
            _Run(manifest.paths[int(index[a])], a, b - a, int(offsets[a]), stride, size)
            for a, b, stride in _runs(index, offsets, size, gap, block)
        ]

    def _unmapped(self, sources: Sources, runs: list[_Run], out: np.ndarray) -> list[_Run]:
        """Place each run in ``out`` straight from its file's memory map where it has one;
        the runs left to read."""
        dtype = self.served.stored_dtype
        return [run for run in runs if not sources.read_mapped(*run.extent, run.placer(out, dtype))]

    def _inline(self, data: bytes, row: int) -> np.ndarray:
        """An inline row's values, as stored."""
        if len(data) != self.served.row_bytes:
            raise ManifestError(self._wrong_length(row, len(data), "inline chunk"))
        return np.frombuffer(data, self.served.stored_dtype)

    def _check_lengths(self, index: np.ndarray, lengths: np.ndarray) -> None:
        size = self.served.row_bytes
        wrong = np.flatnonzero((index != MISSING) & (index != INLINE) & (lengths != size))
        if len(wrong):
            raise ManifestError(
                self._wrong_length(int(wrong[0]), int(lengths[wrong[0]]), "reference")
            )

    def _wrong_length(self, row: int, length: int, what: str) -> str:
        return (
            f"array {self.served.path or '/'!r}, chunk {self.first + row} along its first axis: "
            f"its {what} is {length} bytes, but an uncompressed chunk of the array is "
            f"{self.served.row_bytes}; its reference in the document points at the wrong bytes"
        )


class _Run:
    """``count`` rows of ``size`` bytes, ``stride`` bytes apart in ``path`` from ``start``:
    rows ``[row, row + count)`` of a served chunk, read as one range."""

    __slots__ = ("count", "path", "row", "size", "start", "stride")

    def __init__(self, path: str, row: int, count: int, start: int, stride: int, size: int):
        self.path, self.row, self.count = path, row, count
        self.start, self.stride, self.size = start, stride, size

    @property
    def span(self) -> int:
        return (self.count - 1) * self.stride + self.size

    @property
    def extent(self) -> tuple[str, int, int]:
        """The run's range: path, start and span."""
        return self.path, self.start, self.span

    def placer(self, out: np.ndarray, dtype: np.dtype) -> Callable[[ByteData], None]:
        """:meth:`place` into ``out``, given the data."""
        return lambda data: self.place(out, data, dtype)

    def place(self, out: np.ndarray, data: ByteData, dtype: np.dtype) -> None:
        """Copy the rows out of ``data``, the bytes of the run's range, as elements of
        ``dtype`` (stored) into ``out`` (served: the copy swaps their bytes if they differ)."""
        if len(data) != self.span:
            raise OSError(f"reading {self.path!r} gave {len(data)} bytes, not {self.span}")
        shape, strides = (self.count, out.shape[1]), (self.stride, dtype.itemsize)
        out[self.row : self.row + self.count] = np.ndarray(shape, dtype, data, 0, strides)


def _runs(
    index: np.ndarray, offsets: np.ndarray, size: int, max_gap: int, block: int
) -> Iterator[tuple[int, int, int]]:
    """``(first, stop, stride)`` of each run of rows read as one range: rows of one file,
    evenly spaced (``stride`` bytes apart, at most ``max_gap`` between them), within one
    aligned block of ``block`` bytes of it (a row across two blocks is a run of its own).
    Missing and inline rows are in no run."""
    present = index < INLINE
    steps = np.diff(offsets)
    home = offsets // block
    within = home == (offsets + (size - 1)) // block
    joins = present[:-1] & present[1:] & (index[1:] == index[:-1])
    joins &= (steps >= size) & (steps - size <= max_gap)
    joins &= within[:-1] & within[1:] & (home[1:] == home[:-1])
    # a row continues the run of the row before unless the step to it differs from the last
    continues = joins.copy()
    continues[1:] &= ~(joins[:-1] & (steps[1:] != steps[:-1]))
    starts = np.flatnonzero(np.concatenate(([True], ~continues)))
    stops = np.append(starts[1:], len(index))
    for a, b in zip(starts.tolist(), stops.tolist(), strict=True):
        if present[a]:
            yield a, b, int(steps[a]) if b - a > 1 else size


def _batches(runs: list[_Run], limit: int) -> Iterator[list[_Run]]:
    """``runs`` in consecutive batches spanning at most ``limit`` bytes between them (a
    larger run is a batch of its own)."""
    batch: list[_Run] = []
    held = 0
    for run in runs:
        if batch and held + run.span > limit:
            yield batch
            batch, held = [], 0
        batch.append(run)
        held += run.span
    if batch:
        yield batch
