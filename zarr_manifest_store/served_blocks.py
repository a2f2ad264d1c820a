"""Blocks of a source file read for one array served in rows, kept for the others.

The record variables of a netCDF-3 file interleave: each record holds one row of
every record variable, so reading one variable's rows reads the record section
(one range per served chunk, cheaper than a read per row), and every other one
needs the same bytes. :class:`RowBlocks` keeps what was read, in blocks of
:data:`BLOCK_BYTES` aligned in the file, until every row of the arrays served in
rows in a block has been taken from it (a block being read for one array is
waited for by the others, not read again), within the store's
``read_ahead_bytes`` (0, or ``verify="always"``, turns the keeping off).

Where the arrays' rows lie at the same places of one file but for a shift each
(the record variables of a netCDF-3 file: a *family*), a served chunk is not
read through blocks at all. In a local file it is cut (a strided copy, straight
into zarr's output where the store is asked to: ``ManifestStore._read_into``)
from the file's memory map (``Sources.read_mapped``): nothing is read or kept.
Elsewhere the records it spans are read in one range, the reading member's
chunk is cut from them, and they are kept, within the same budget, until every
other member has cut its own: loading every record variable reads the record
section once and copies each byte once, as scipy's engine does.

Both reads (records, blocks) are written once, as generators of their steps; the
asynchronous and the blocking method differ only in how they run a step.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import threading
from collections.abc import Generator, Iterable, Iterator
from concurrent.futures import Future, InvalidStateError
from typing import Any

import numpy as np

from zarr_manifest_store.io.sources import ByteData, Sources
from zarr_manifest_store.served_families import Family, RowArray, families_of

__all__ = ["BLOCK_BYTES", "RowBlocks"]

BLOCK_BYTES = 1 << 20
"""The blocks a source file is read in and kept in (aligned at multiples of this)."""

Key = tuple[str, int]
"""A block: its source's path and its number in the file."""

type Step = tuple[str, int, int] | Future[None]
"""What a read of rows or records asks its caller for: the range ``(path, start, span)`` read
(its bytes are sent back), or the end of another array's read of the same bytes."""
type Steps[T] = Generator[Step, Any, T]
"""A read as its steps: the same logic, awaited by the async method and run by the blocking one."""


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
        self._families: dict[str, Family] | None = None  # by array
        self._kept: dict[tuple[int, int], ByteData] = {}  # records by (family, chunk)
        self._took: dict[tuple[int, int], int] = {}  # which members cut it: bits of Family.bit
        self._cutting: dict[tuple[int, int], Future[None]] = {}  # being read
        self._held = 0
        self._lock = threading.Lock()
        self._pid = os.getpid()

    @property
    def held_bytes(self) -> int:
        """The bytes of the blocks and records kept now."""
        return self._held

    async def chunk_into(
        self, sources: Sources, served: RowArray, number: int, out: np.ndarray
    ) -> bool:
        """Write served chunk ``number`` of ``served`` into ``out`` (see :meth:`Family.cut`)
        if its family cuts it (see the module's docstring): from the records kept from a
        read for another member, else read now (and kept for the others); False if the chunk
        is not cut so (read it row by row)."""
        return await _run(self._cut(sources, served, number, out), sources)

    def chunk_into_sync(
        self, sources: Sources, served: RowArray, number: int, out: np.ndarray
    ) -> bool:
        """:meth:`chunk_into`, blocking."""
        return _run_sync(self._cut(sources, served, number, out), sources)

    def _cut(self, sources: Sources, served: RowArray, number: int, out: np.ndarray) -> Steps[bool]:
        """:meth:`chunk_into` as steps (see :data:`Steps`): each read of the records, or wait
        for another member's, handed to the caller to await or block on."""
        plan = self._region(sources, served, number)
        if plan is None:
            return False
        family, start, span = plan
        if sources.read_mapped(
            family.path, start, span, functools.partial(family.cut, served, number, out=out)
        ):
            return True
        while True:
            kept, reading = self._claim_records(family, served.path, number)
            if kept is None and reading is None:
                with self._reading((family.id, number), self._cutting) as done:
                    kept = yield family.path, start, span
                    family.cut(served, number, kept, out)  # refuses bytes not of the records
                    self._keep_records(family, served.path, number, kept, sources, done)
                return True
            if kept is None:
                try:
                    yield reading
                    continue
                except Exception:  # that read failed, was abandoned or was slow: read them here
                    kept = yield family.path, start, span
                    self._took_alone(family, served.path, number)
            family.cut(served, number, kept, out)
            return True

    def _region(
        self, sources: Sources, served: RowArray, number: int
    ) -> tuple[Family, int, int] | None:
        """``served``'s family and the range of its file holding served chunk ``number`` of
        every member; None unless it has a family and the chunk's rows are evenly spaced
        within at most ``max_coalesced_bytes``."""
        with self._locked():
            if self._families is None:
                self._families = families_of(self._arrays)
        family = self._families.get(served.path)
        if family is None:
            return None
        region = family.region(number)
        if region is None or region[1] > sources.options["max_coalesced_bytes"]:
            return None
        return family, *region

    def _claim_records(
        self, family: Family, reader: str, number: int
    ) -> tuple[ByteData | None, Future[None] | None]:
        """The records of chunk ``number`` if kept, counted taken by ``reader`` (dropped once
        every member took its chunk); else the read of them under way; else ``(None, None)``:
        the caller reads them, within :meth:`_reading`."""
        key = (family.id, number)
        with self._locked():
            kept = self._kept.get(key)
            if kept is not None:
                if self._take(family, key, reader, read=False):
                    self._held -= len(self._kept.pop(key))
                return kept, None
            reading = self._cutting.get(key)
            if reading is None:
                self._cutting[key] = Future()
            return None, reading

    def _keep_records(
        self,
        family: Family,
        reader: str,
        number: int,
        data: ByteData,
        sources: Sources,
        done: Future[None],
    ) -> None:
        """Keep ``data``, the records of chunk ``number`` just read for ``reader``, for the
        members yet to cut theirs, if it fits within ``read_ahead_bytes`` (else they read it
        again); then tell those waiting."""
        options, key = sources.options, (family.id, number)
        budget = options["read_ahead_bytes"] if options["verify"] != "always" else 0
        with self._locked():
            everyone = self._take(family, key, reader, read=True)
            if not everyone and key not in self._kept and self._held + len(data) <= budget:
                self._kept[key] = data
                self._held += len(data)
            self._cutting.pop(key, None)
        with contextlib.suppress(InvalidStateError):
            done.set_result(None)

    def _took_alone(self, family: Family, reader: str, number: int) -> None:
        """Count chunk ``number`` cut by ``reader`` from records it read for itself alone."""
        key = (family.id, number)
        with self._locked():
            if self._take(family, key, reader, read=True) and key in self._kept:
                self._held -= len(self._kept.pop(key))

    def _take(self, family: Family, key: tuple[int, int], reader: str, read: bool) -> bool:
        """Count chunk ``key`` cut by ``reader`` (the lock held), from records kept or, if
        ``read``, just read; whether every member has cut its own now. A member reading a
        chunk it cut before starts a new round (the store is read again): the records it
        read are kept for the others again."""
        bit = family.bit[reader]
        took = self._took.get(key, 0)
        took = bit if read and took & bit else took | bit
        self._took[key] = took
        return took == family.everyone

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
        return await _run(self._rows(sources, reader, path, start, span, rows), sources)

    def read_sync(
        self, sources: Sources, reader: str, path: str, start: int, span: int, rows: int
    ) -> ByteData:
        """:meth:`read`, blocking."""
        return _run_sync(self._rows(sources, reader, path, start, span, rows), sources)

    def _rows(
        self, sources: Sources, reader: str, path: str, start: int, span: int, rows: int
    ) -> Steps[ByteData]:
        """:meth:`read` as steps (see :data:`Steps`): each read of a block or of the rows, or
        wait for another array's read of the block, handed to the caller to await or block on."""
        plan = self._plan(sources, path, start, span)
        while plan is not None:
            key, block_start, block_stop = plan
            block, reading = self._claim(key, reader, rows)
            if block is not None:
                return block.data[start - block_start : start - block_start + span]
            if reading is not None:
                try:
                    yield reading
                except Exception:  # that read failed, was abandoned or was slow: read the rows here
                    break
                continue  # taken from the block now kept, or read again if it was not kept
            with self._reading(key, self._pending) as done:
                data = yield path, block_start, block_stop - block_start
                block = self._keep(key, data, reader, rows, sources, done)
            return block.data[start - block_start : start - block_start + span]
        return (yield path, start, span)

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
            self._kept, self._took, self._cutting = {}, {}, {}
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


async def _run[T](steps: Steps[T], sources: Sources) -> T:
    """Take ``steps`` to their end, awaiting each read and wait they ask for; what fails is
    raised in the steps, which may recover."""
    send, value = steps.send, None
    while True:
        try:
            step = send(value)
        except StopIteration as end:
            return end.value
        try:
            if isinstance(step, Future):  # shielded: a cancelled waiter must not cancel the read
                value = await asyncio.shield(asyncio.wrap_future(step))
            else:
                value = await sources.read(*step)
            send = steps.send
        except BaseException as error:  # a cancellation included: the steps end their reads
            send, value = steps.throw, error


def _run_sync[T](steps: Steps[T], sources: Sources) -> T:
    """:func:`_run`, blocking: a wait for another array's read ends at ``deadline``."""
    send, value = steps.send, None
    while True:
        try:
            step = send(value)
        except StopIteration as end:
            return end.value
        try:
            if isinstance(step, Future):
                value = step.result(timeout=sources.options["deadline"])
            else:
                value = sources.read_sync(*step)
            send = steps.send
        except BaseException as error:
            send, value = steps.throw, error
