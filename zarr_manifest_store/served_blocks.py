"""Blocks of a source file read for one array served in rows, kept for the others.

The record variables of a netCDF-3 file interleave: each record holds one row of
every record variable, so the rows of one variable lie a record apart and reading
them reads the whole record section of the file (one range per served chunk,
cheaper than a read per row). Every other record variable needs the same bytes:
:class:`RowBlocks` keeps what was read, in blocks of :data:`BLOCK_BYTES` aligned
in the file, until every row that the arrays served in rows from that file have
in the block has been taken from it, so that loading all of them reads the file
once, not once per variable, and holds nothing once done; a block being read for
one array is waited for by the others (dask reads them at once), not read again.
The blocks held never exceed the store's ``read_ahead_bytes`` (0, or
``verify="always"``, turns the keeping off: every read then goes to the file); a
block that does not fit is not kept.

Where the arrays' rows lie at the same places of one file but for a shift each
(the record variables of a netCDF-3 file: a *family*), a served chunk is not
read through blocks at all: the records it spans are read in one range and every
member's served chunk is cut from them at once (a strided copy each), the others'
kept, within the same budget, until their array takes them. Loading every
record variable then copies each byte of the file once after reading it, as
scipy's engine does, instead of keeping the raw blocks and copying out of them
later.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, InvalidStateError
from typing import Any, Protocol

import numpy as np

from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.io.sources import ByteData, Sources
from zarr_manifest_store.manifest import INLINE

__all__ = ["BLOCK_BYTES", "RowArray", "RowBlocks"]

BLOCK_BYTES = 1 << 20
"""The blocks a source file is read in and kept in (aligned at multiples of this)."""

Key = tuple[str, int]
"""A block: its source's path and its number in the file."""


class RowArray(Protocol):
    """An array served in rows, as the blocks see it."""

    path: str
    array: ManifestArray
    stored_dtype: np.dtype
    served_dtype: np.dtype

    def rows(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Path index, offset and length of each stored chunk along the first axis."""
        ...

    @property
    def factor(self) -> int:
        """Stored chunks per served chunk."""
        ...

    @property
    def fill_row(self) -> np.ndarray:
        """One stored chunk of fill values as served."""
        ...


class _Block:
    """The bytes of one block, and how many of its rows each array took from it."""

    __slots__ = ("data", "done", "taken")

    def __init__(self, data: ByteData) -> None:
        self.data = np.frombuffer(data, dtype=np.uint8)
        self.taken: dict[str, int] = {}
        self.done = 0  # rows taken, each array's counted up to how many it has in the block

    def take(self, file: _File, number: int, reader: str, rows: int) -> bool:
        """Count ``rows`` rows of array ``reader`` taken; whether every row is taken now
        (an array reading its rows again counts once)."""
        had = self.taken.get(reader, 0)
        self.taken[reader] = had + rows
        self.done += max(0, min(rows, file.rows_in(number, reader) - had))
        return self.done >= file.rows_in(number)


class RowBlocks:
    """The blocks of source files one store's arrays served in rows share (thread-safe)."""

    def __init__(self) -> None:
        self._arrays: list[RowArray] = []
        self._files: dict[str, _File] = {}
        self._blocks: dict[Key, _Block] = {}
        self._pending: dict[Key, Future[None]] = {}  # blocks being read
        self._families: dict[str, _Family] | None = None  # by array
        self._cuts: dict[tuple[int, int], _Cut] = {}  # by (family, chunk): kept
        self._cutting: dict[tuple[int, int], Future[None]] = {}  # being cut
        self._held = 0
        self._lock = threading.Lock()
        self._pid = os.getpid()

    @property
    def held_bytes(self) -> int:
        """The bytes of the blocks and cut chunks kept now."""
        return self._held

    async def chunk(self, sources: Sources, served: RowArray, number: int) -> np.ndarray | None:
        """The bytes of served chunk ``number`` of ``served``, if its family cuts it (see the
        module's docstring): kept from a cut for another member, else cut now for every
        member from one read; None if the chunk is not cut so (read it row by row)."""
        plan = self._region(sources, served, number)
        if plan is None:
            return None
        family, start, span = plan
        while True:
            kept, cutting = self._claim_chunk(family, served.path, number)
            if kept is not None:
                return kept
            if cutting is None:
                with self._reading((family.id, number), self._cutting) as done:
                    data = await sources.read(family.path, start, span)
                    return self._cut_all(family, served, number, data, sources, done)
            try:  # shielded: a cancelled waiter must not cancel the read it waits for
                await asyncio.shield(asyncio.wrap_future(cutting))
            except Exception:  # that read failed or was abandoned: cut it here
                return family.cut(served, number, await sources.read(family.path, start, span))

    def chunk_sync(self, sources: Sources, served: RowArray, number: int) -> np.ndarray | None:
        """:meth:`chunk`, blocking."""
        plan = self._region(sources, served, number)
        if plan is None:
            return None
        family, start, span = plan
        while True:
            kept, cutting = self._claim_chunk(family, served.path, number)
            if kept is not None:
                return kept
            if cutting is None:
                with self._reading((family.id, number), self._cutting) as done:
                    data = sources.read_sync(family.path, start, span)
                    return self._cut_all(family, served, number, data, sources, done)
            try:
                cutting.result(timeout=sources.options["deadline"])
            except Exception:  # failed, abandoned or slow: cut it here
                return family.cut(served, number, sources.read_sync(family.path, start, span))

    def _region(
        self, sources: Sources, served: RowArray, number: int
    ) -> tuple[_Family, int, int] | None:
        """``served``'s family and the range of its file holding served chunk ``number`` of
        every member; None unless it has a family and the chunk's rows are evenly spaced
        within at most ``max_coalesced_bytes``."""
        with self._locked():
            if self._families is None:
                self._families = _families(self._arrays)
        family = self._families.get(served.path)
        if family is None:
            return None
        region = family.region(number)
        if region is None or region[1] > sources.options["max_coalesced_bytes"]:
            return None
        return family, *region

    def _claim_chunk(
        self, family: _Family, reader: str, number: int
    ) -> tuple[np.ndarray | None, Future[None] | None]:
        """Chunk ``number`` of ``reader`` if kept (dropped with the others once every member
        took its own); else the cut under way; else ``(None, None)``: the caller cuts it,
        within :meth:`_reading`."""
        key = (family.id, number)
        with self._locked():
            cut = self._cuts.get(key)
            if cut is not None and reader in cut.chunks:
                cut.taken.add(reader)
                if len(cut.taken) == len(family.members):
                    self._held -= cut.held_bytes
                    del self._cuts[key]
                return cut.chunks[reader], None
            cutting = self._cutting.get(key)
            if cutting is None:
                self._cutting[key] = Future()
            return None, cutting

    def _cut_all(
        self,
        family: _Family,
        served: RowArray,
        number: int,
        data: ByteData,
        sources: Sources,
        done: Future[None],
    ) -> np.ndarray:
        """Chunk ``number`` of ``served`` cut from ``data``, and of every member yet to take it
        (its own too, should it read it again), kept within ``read_ahead_bytes`` until every
        member took its own; then those waiting are told."""
        mine = family.cut(served, number, data)
        options, key = sources.options, (family.id, number)
        budget = options["read_ahead_bytes"] if options["verify"] != "always" else 0
        with self._locked():
            cut = self._cuts.setdefault(key, _Cut()) if budget else None
            if cut is not None:
                cut.taken.add(served.path)
        for member in family.members if cut is not None else ():
            if member.path in cut.chunks or (member is not served and member.path in cut.taken):
                continue
            if self._held + family.chunk_bytes(member) > budget:
                continue  # checked again below, with the lock held
            chunk = mine if member is served else family.cut(member, number, data)
            with self._locked():
                if self._cuts.get(key) is cut and self._held + chunk.nbytes <= budget:
                    chunk.flags.writeable = False  # handed out to each reader of it
                    cut.chunks[member.path] = chunk
                    self._held += chunk.nbytes
        with self._locked():
            finished = cut is not None and (not cut.chunks or len(cut.taken) == len(family.members))
            if finished and self._cuts.get(key) is cut:
                self._held -= cut.held_bytes
                del self._cuts[key]
            self._cutting.pop(key, None)
        with contextlib.suppress(InvalidStateError):
            done.set_result(None)
        return mine

    def add(self, served: RowArray) -> None:
        """Count ``served`` among the arrays that read their rows through these blocks."""
        self._arrays.append(served)

    def block_bytes(self, sources: Sources) -> int:
        """The size of a block (never more than a coalesced read of ``sources``)."""
        return min(BLOCK_BYTES, sources.options["max_coalesced_bytes"])

    async def read(
        self, sources: Sources, reader: str, path: str, start: int, span: int, rows: int
    ) -> ByteData:
        """``span`` bytes of ``path`` from ``start``, holding ``rows`` rows of array
        ``reader``: from a block kept, else read with the rest of its block (kept if other
        rows lie in it). A block being read for another array is waited for, not read again."""
        plan = self._plan(sources, path, start, span)
        while plan is not None:
            key, block_start, block_stop = plan
            block, reading = self._claim(key, reader, rows)
            if block is not None:
                return block.data[start - block_start : start - block_start + span]
            if reading is not None:
                try:  # shielded: a cancelled waiter must not cancel the read it waits for
                    await asyncio.shield(asyncio.wrap_future(reading))
                except Exception:  # that read failed or was abandoned: read the rows here
                    break
                continue  # taken from the block now kept, or read again if it was not kept
            with self._reading(key, self._pending) as done:
                data = await sources.read(path, block_start, block_stop - block_start)
                block = self._keep(key, data, reader, rows, sources, done)
            return block.data[start - block_start : start - block_start + span]
        return await sources.read(path, start, span)

    def read_sync(
        self, sources: Sources, reader: str, path: str, start: int, span: int, rows: int
    ) -> ByteData:
        """:meth:`read`, blocking."""
        plan = self._plan(sources, path, start, span)
        while plan is not None:
            key, block_start, block_stop = plan
            block, reading = self._claim(key, reader, rows)
            if block is not None:
                return block.data[start - block_start : start - block_start + span]
            if reading is not None:
                try:
                    reading.result(timeout=sources.options["deadline"])
                except Exception:  # failed, abandoned or slow: read the rows here
                    break
                continue
            with self._reading(key, self._pending) as done:
                data = sources.read_sync(path, block_start, block_stop - block_start)
                block = self._keep(key, data, reader, rows, sources, done)
            return block.data[start - block_start : start - block_start + span]
        return sources.read_sync(path, start, span)

    def _plan(
        self, sources: Sources, path: str, start: int, span: int
    ) -> tuple[Key, int, int] | None:
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

    def _claim(self, key: Key, reader: str, rows: int) -> tuple[_Block | None, Future[None] | None]:
        """The block kept under ``key``, ``rows`` more of its rows taken by ``reader``
        (dropped once all are); else the read of it under way for another array; else
        ``(None, None)``: the caller reads it, and must do so within :meth:`_reading`."""
        with self._locked():
            block = self._blocks.get(key)
            if block is not None:
                if block.take(self._files[key[0]], key[1], reader, rows):
                    self._held -= len(self._blocks.pop(key).data)
                return block, None
            reading = self._pending.get(key)
            if reading is None:
                self._pending[key] = Future()
            return None, reading

    @contextlib.contextmanager
    def _reading(
        self, key: tuple[Any, int], pending: dict[Any, Future[None]]
    ) -> Iterator[Future[None]]:
        """The read of block (or family chunk) ``key`` by the array that claimed it in
        ``pending``: whoever waits for it is told when it ends, however it ends."""
        done = pending[key]
        try:
            yield done
        finally:
            with self._locked():
                pending.pop(key, None)
            with contextlib.suppress(InvalidStateError):  # told already
                done.set_exception(OSError(f"the read of block {key} was abandoned"))

    def _keep(
        self,
        key: Key,
        data: ByteData,
        reader: str,
        rows: int,
        sources: Sources,
        done: Future[None],
    ) -> _Block:
        """A block just read, ``rows`` of its rows taken by ``reader``: kept if more lie in
        it and it fits within ``read_ahead_bytes``; then those waiting for it are told."""
        block = _Block(data)
        finished = block.take(self._files[key[0]], key[1], reader, rows)
        with self._locked():
            budget = sources.options["read_ahead_bytes"]
            if key not in self._blocks and not finished and self._held + len(block.data) <= budget:
                self._blocks[key] = block
                self._held += len(block.data)
            self._pending.pop(key, None)
        with contextlib.suppress(InvalidStateError):
            done.set_result(None)
        return block

    def _locked(self) -> threading.Lock:
        """The lock of the blocks; in a child forked since, a new one and no blocks (another
        thread may have held the old one when the process forked)."""
        if self._pid != os.getpid():
            self._lock, self._blocks, self._pending, self._held = threading.Lock(), {}, {}, 0
            self._cuts, self._cutting = {}, {}
            self._pid = os.getpid()
        return self._lock


class _File:
    """A source file as the arrays served in rows read it in blocks of ``size`` bytes: how
    many arrays read it, where their last row ends, and how many rows of each lie within
    each block (a row across two blocks is read on its own, in no block)."""

    __slots__ = ("end", "rows", "total")

    def __init__(self, path: str, arrays: Iterable[RowArray], size: int) -> None:
        self.rows: dict[str, np.ndarray] = {}
        self.end = 0
        for served in arrays:
            paths = served.array.manifest.paths
            if path in paths:
                index, offsets, lengths = served.rows()
                mine = index == paths.index(path)
                if mine.any():
                    first, last = offsets[mine], offsets[mine] + lengths[mine]
                    home = first // size
                    self.rows[served.path] = np.bincount(home[home == (last - 1) // size])
                    self.end = max(self.end, int(last.max()))
        blocks = max((len(r) for r in self.rows.values()), default=0)
        self.total = sum(
            (np.pad(r, (0, blocks - len(r))) for r in self.rows.values()),
            start=np.zeros(blocks, np.int64),
        )

    @property
    def readers(self) -> int:
        """How many arrays read rows of the file."""
        return len(self.rows)

    def rows_in(self, block: int, reader: str | None = None) -> int:
        """How many rows (of array ``reader``, or of all) lie within block number ``block``."""
        rows = self.total if reader is None else self.rows.get(reader, self.total[:0])
        return int(rows[block]) if block < len(rows) else 0


class _Cut:
    """The served chunks cut from one read of a family's records (by array), kept, and the
    arrays that took theirs."""

    __slots__ = ("chunks", "taken")

    def __init__(self) -> None:
        self.chunks: dict[str, np.ndarray] = {}
        self.taken: set[str] = set()

    @property
    def held_bytes(self) -> int:
        return sum(chunk.nbytes for chunk in self.chunks.values())


class _Family:
    """Arrays served in rows whose rows all lie in one file, at the same places but for a
    shift each: the record variables of a netCDF-3 file. A served chunk of every member is
    cut from one read of its records."""

    __slots__ = ("factor", "id", "members", "path", "shifts", "starts")

    def __init__(self, number: int, path: str, members: list[RowArray], starts: np.ndarray):
        self.id, self.path, self.members = number, path, members
        self.factor = members[0].factor
        first = min(int(m.rows()[1][0]) for m in members)
        self.shifts = {m.path: int(m.rows()[1][0]) - first for m in members}
        self.starts = starts - starts[0] + first  # where each record's first member row lies

    def region(self, number: int) -> tuple[int, int] | None:
        """Where the records of served chunk ``number`` lie, ``(start, span)``; None unless
        they are evenly spaced."""
        starts = self.starts[number * self.factor : (number + 1) * self.factor]
        steps = np.diff(starts)
        if len(starts) == 0 or (len(steps) and (steps[0] <= 0 or (steps != steps[0]).any())):
            return None
        return int(starts[0]), self._span(starts)

    def _span(self, starts: np.ndarray) -> int:
        """The bytes from the first member row of ``starts[0]`` to the last of ``starts[-1]``."""
        last = max(self.shifts[m.path] + m.fill_row.nbytes for m in self.members)
        return int(starts[-1] - starts[0]) + last

    def chunk_bytes(self, member: RowArray) -> int:
        return self.factor * member.fill_row.nbytes

    def cut(self, member: RowArray, number: int, data: ByteData) -> np.ndarray:
        """Served chunk ``number`` of ``member`` cut from ``data``, the bytes of its region."""
        first = number * self.factor
        starts = self.starts[first : first + self.factor]
        fill, dtype = member.fill_row, member.stored_dtype
        stride = int(starts[1] - starts[0]) if len(starts) > 1 else fill.nbytes
        span = self._span(starts)
        if len(data) != span:
            raise OSError(f"reading {self.path!r} gave {len(data)} bytes, not {span}")
        out = np.empty((self.factor, len(fill)), dtype=member.served_dtype)
        rows = np.ndarray(
            (len(starts), len(fill)),
            dtype,
            data,
            self.shifts[member.path],
            (stride, dtype.itemsize),
        )
        out[: len(starts)] = rows
        out[len(starts) :] = fill
        return out.view(np.uint8).reshape(-1)


def _families(arrays: Iterable[RowArray]) -> dict[str, _Family]:
    """The family of each array that has one (of two members or more), by array."""
    groups: dict[tuple[Any, ...], list[RowArray]] = {}
    for served in arrays:
        index, offsets, lengths = served.rows()
        size = served.fill_row.nbytes
        if not len(index) or index[0] >= INLINE or (index != index[0]).any():
            continue  # rows in several files, missing or inline: read row by row
        if (lengths != size).any():
            continue  # refused when read, naming the chunk
        path = served.array.manifest.paths[int(index[0])]
        key = (served.factor, path, (offsets - offsets[0]).tobytes())
        groups.setdefault(key, []).append(served)
    families: dict[str, _Family] = {}
    for number, ((_, path, _), members) in enumerate(groups.items()):
        if len(members) < 2:
            continue
        family = _Family(number, path, members, members[0].rows()[1])
        families.update((m.path, family) for m in members)
    return families
