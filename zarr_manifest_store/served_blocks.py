"""Blocks of a source file read for one array served in rows, kept for the others.

The record variables of a netCDF-3 file interleave: each record holds one row of
every record variable, so the rows of one variable lie a record apart and reading
them reads the whole record section of the file (one range per served chunk,
cheaper than a read per row). Every other record variable needs the same bytes:
:class:`RowBlocks` keeps what was read, in blocks of :data:`BLOCK_BYTES` aligned
in the file, until every row that the arrays served in rows from that file have
in the block has been taken from it, so that loading all of them reads the file
once, not once per variable, and holds nothing once done. The blocks held never exceed the store's ``read_ahead_bytes`` (0, or
``verify="always"``, turns the keeping off: every read then goes to the file); a
block that does not fit is not kept.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import Protocol

import numpy as np

from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.io.sources import ByteData, Sources

__all__ = ["BLOCK_BYTES", "RowArray", "RowBlocks"]

BLOCK_BYTES = 1 << 20
"""The blocks a source file is read in and kept in (aligned at multiples of this)."""


class RowArray(Protocol):
    """An array served in rows, as the blocks see it."""

    array: ManifestArray

    def rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Path index, offset and length of each stored chunk along the first axis."""
        ...


class _Block:
    """The bytes of one block, and how many rows were taken from it."""

    __slots__ = ("data", "taken")

    def __init__(self, data: ByteData) -> None:
        self.data = np.frombuffer(data, dtype=np.uint8)
        self.taken = 0


class RowBlocks:
    """The blocks of source files one store's arrays served in rows share (thread-safe)."""

    def __init__(self) -> None:
        self._arrays: list[RowArray] = []
        self._files: dict[str, _File] = {}
        self._blocks: dict[tuple[str, int], _Block] = {}
        self._held = 0
        self._lock = threading.Lock()

    def add(self, served: RowArray) -> None:
        """Count ``served`` among the arrays that read their rows through these blocks."""
        self._arrays.append(served)

    def block_bytes(self, sources: Sources) -> int:
        """The size of a block (never more than a coalesced read of ``sources``)."""
        return min(BLOCK_BYTES, sources.options["max_coalesced_bytes"])

    async def read(self, sources: Sources, path: str, start: int, span: int, rows: int) -> ByteData:
        """``span`` bytes of ``path`` from ``start``, holding ``rows`` rows: from a block
        kept, else read with the rest of its block (kept if other rows lie in it)."""
        plan = self._plan(sources, path, start, span)
        if plan is None:
            return await sources.read(path, start, span)
        key, block_start, block_stop = plan
        block = self._take(key, rows)
        if block is None:
            data = await sources.read(path, block_start, block_stop - block_start)
            block = self._keep(key, data, rows, sources)
        return block.data[start - block_start : start - block_start + span]

    def read_sync(self, sources: Sources, path: str, start: int, span: int, rows: int) -> ByteData:
        """:meth:`read`, blocking."""
        plan = self._plan(sources, path, start, span)
        if plan is None:
            return sources.read_sync(path, start, span)
        key, block_start, block_stop = plan
        block = self._take(key, rows)
        if block is None:
            data = sources.read_sync(path, block_start, block_stop - block_start)
            block = self._keep(key, data, rows, sources)
        return block.data[start - block_start : start - block_start + span]

    def _plan(
        self, sources: Sources, path: str, start: int, span: int
    ) -> tuple[tuple[str, int], int, int] | None:
        """The block holding ``[start, start + span)`` and its extent in the file; None when
        the bytes are read directly (keeping is off, one array reads the file, or they
        cross a block's end)."""
        options = sources.options
        if not options["read_ahead_bytes"] or options["verify"] == "always":
            return None
        size = self.block_bytes(sources)
        first = start // size
        if (start + span - 1) // size != first:
            return None
        found = self._file(path, size)
        if found.readers < 2:
            return None
        block_start = first * size
        return (path, first), block_start, max(start + span, min(block_start + size, found.end))

    def _file(self, path: str, size: int) -> _File:
        """What the arrays served in rows read of ``path``, worked out once."""
        found = self._files.get(path)
        if found is None:
            found = self._files[path] = _File(path, self._arrays, size)
        return found

    def _take(self, key: tuple[str, int], rows: int) -> _Block | None:
        """The block kept under ``key``, ``rows`` more of its rows taken (dropped once all
        are); None when it is not kept."""
        with self._lock:
            block = self._blocks.get(key)
            if block is not None:
                block.taken += rows
                if block.taken >= self._files[key[0]].rows[key[1]]:
                    self._held -= len(self._blocks.pop(key).data)
            return block

    def _keep(self, key: tuple[str, int], data: ByteData, rows: int, sources: Sources) -> _Block:
        """A block just read, ``rows`` of its rows taken: kept if more lie in it and it fits
        within ``read_ahead_bytes``."""
        block = _Block(data)
        block.taken = rows
        with self._lock:
            budget = sources.options["read_ahead_bytes"]
            if (
                key not in self._blocks
                and rows < self._files[key[0]].rows[key[1]]
                and self._held + len(block.data) <= budget
            ):
                self._blocks[key] = block
                self._held += len(block.data)
        return block


class _File:
    """A source file as the arrays served in rows read it in blocks of ``size`` bytes: how
    many arrays read it, where their last row ends, and how many of their rows lie within
    each block (a row across two blocks is read on its own, in no block)."""

    __slots__ = ("end", "readers", "rows")

    def __init__(self, path: str, arrays: Iterable[RowArray], size: int) -> None:
        starts, ends = [], []
        for served in arrays:
            paths = served.array.manifest.paths
            if path in paths:
                index, offsets, lengths = served.rows()
                mine = index == paths.index(path)
                if mine.any():
                    starts.append(offsets[mine])
                    ends.append(offsets[mine] + lengths[mine])
        self.readers = len(starts)
        first = np.concatenate(starts) if starts else np.zeros(0, np.int64)
        last = np.concatenate(ends) if ends else np.zeros(0, np.int64)
        self.end = int(last.max()) if len(last) else 0
        home = first // size
        self.rows = np.bincount(home[home == (last - 1) // size])
