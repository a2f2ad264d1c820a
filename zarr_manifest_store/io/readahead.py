"""Read-ahead for remote sources: reading on in a file that is read chunk after chunk.

A dask task reads one chunk, so the reads of a dask computation reach the
store one or two at a time and nothing is there to gather them: each would be
one request, paying the round trip. :class:`ReadAhead` notices a file being
read in order: a read that arrives alone and falls among the next two chunks
before or after the previous read of that file (by the byte ranges the
store's manifests reference), with few reads of other files between them. It
then fetches, in one request, the run of chunks that follows in that
direction: ranges at most ``max_gap_bytes`` apart, at most ``max_block_bytes``
in all. The reads that follow, of this array or of any other whose chunks lie
in that range (the records of a netCDF-3 file interleave its variables), are
served from the block. Reads that arrive together (a slice's) are gathered as
before.

Memory is bounded: a block is dropped once every chunk in it was served, and
blocks held and in flight together stay within ``budget_bytes``, the least
recently used going first. A random read is not
read ahead: only a read that follows another in its file is. A failed block
read fails every read waiting for it, with the same error a plain read would
raise, and drops every block of that file, so that a file that changed since
it was checked is never served from bytes read before.
"""

from __future__ import annotations

import asyncio
import bisect
import math
import threading
import weakref
from collections import OrderedDict, defaultdict
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import numpy as np

from zarr_manifest_store.io.gather import ByteData
from zarr_manifest_store.manifest import ChunkManifest

__all__ = [
    "FOLLOW_ON_CHUNKS",
    "READ_AHEAD_BYTES",
    "READ_AHEAD_MAX_CHUNKS",
    "RECENT_READS",
    "ReadAhead",
]

READ_AHEAD_BYTES = 64 << 20
"""Default memory budget of one store's read-ahead blocks (held and in flight)."""
RECENT_READS = 4
"""A read with at most this many reads of other files since the previous read of its file may
count as reading on (if it is among the :data:`FOLLOW_ON_CHUNKS` next to that read)."""
FOLLOW_ON_CHUNKS = 2
"""A read among this many chunks before or after the previous read of its file counts as reading
on: one or two threads reading in order step by one or two chunks, while random reads of a file
of a few dozen chunks seldom land this close (within eight, one random read in eleven started a
block, a request of the rest of its file that it waited for)."""
READ_AHEAD_MAX_CHUNKS = 1 << 22
"""Chunk grid cells indexed for read-ahead per store (16 bytes per chunk); arrays beyond it
are not read ahead."""

Fetch = Callable[[str, int, int], "Future[ByteData]"]
"""Starts the request for bytes ``[start, stop)`` of a path; its future gives the bytes."""


@dataclass
class _Block:
    """Bytes ``[start, stop)`` of one file: being fetched (``future``) or held (``data``)."""

    path: str
    start: int
    stop: int
    future: Future[ByteData]
    remaining: int  # bytes of the chunks in it not yet served: at 0 it is dropped
    data: ByteData | None = None


@dataclass
class _Runs:
    """The chunk ranges of one file, sorted by start: sizes, and ends as a running maximum."""

    starts: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    sizes: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    ends: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    last: int = -1  # index of the chunk the previous read of the file ended at (-1: none)
    tick: int = 0  # when that read was (the store's count of planned reads)

    def add(self, starts: list[np.ndarray], ends: list[np.ndarray]) -> None:
        starts_all = np.concatenate([self.starts, *starts])
        sizes_all = np.concatenate(
            [self.sizes, *(e - b for b, e in zip(starts, ends, strict=True))]
        )
        order = np.argsort(starts_all, kind="stable")
        self.starts, self.sizes = starts_all[order], sizes_all[order]
        self.ends = np.maximum.accumulate(self.starts + self.sizes)
        self.last = -1

    def index(self, offset: int) -> int:
        """The index of the chunk starting at ``offset``, or -1 if none does."""
        starts = self.starts
        i = int(starts.searchsorted(offset))
        return i if i < len(starts) and starts[i] == offset else -1

    def run_after(self, first: int, limit: int, max_gap: int, max_bytes: int) -> tuple[int, int]:
        """The last chunk and end of the run onwards from chunk ``first``: chunks at most
        ``max_gap`` apart, ending at most ``max_bytes`` after its start and at most at ``limit``."""
        starts, ends = self.starts, self.ends
        cap = min(limit, int(starts[first]) + max_bytes)
        hi = int(np.searchsorted(starts, cap, side="left"))
        k = np.arange(first + 1, max(first + 1, hi))
        bad = (starts[k] - ends[k - 1] > max_gap) | (ends[k] > cap)
        last = int(k[np.argmax(bad)]) - 1 if bad.any() else (int(k[-1]) if len(k) else first)
        return last, int(ends[last])

    def run_before(self, first: int, limit: int, max_gap: int, max_bytes: int) -> tuple[int, int]:
        """The first chunk and start of the run backwards from chunk ``first`` (whose end closes
        it): chunks at most ``max_gap`` apart, at most ``max_bytes`` in all, from ``limit`` on."""
        starts, ends = self.starts, self.ends
        cap = max(limit, int(ends[first]) - max_bytes)
        lo = int(np.searchsorted(starts, cap, side="left"))
        k = np.arange(lo, first)
        bad = starts[k + 1] - ends[k] > max_gap
        begin = int(k[len(k) - 1 - np.argmax(bad[::-1])]) + 1 if bad.any() else min(lo, first)
        return begin, int(starts[begin])


class ReadAhead:
    """Read-ahead blocks of one store's remote sources, within ``budget_bytes`` of memory.

    ``fetch(path, start, stop)`` starts a request (on any thread) whose future
    gives the bytes; ``remote(path)`` says whether a file is read ahead.
    :meth:`add_chunks` tells which byte ranges each array's chunks occupy;
    :meth:`read` answers a read from a block, or starts a block when the read
    follows on from the previous one in its file, or returns None: the caller
    then reads as it would without read-ahead. Thread-safe:
    the reads of several event loops and threads share the blocks.
    """

    def __init__(
        self,
        fetch: Fetch,
        remote: Callable[[str], bool],
        *,
        budget_bytes: int,
        max_gap_bytes: int,
        max_block_bytes: int,
    ) -> None:
        self._fetch = fetch
        self._remote = remote
        self._budget = budget_bytes
        self._gap = max_gap_bytes
        self._max_block = min(max_block_bytes, budget_bytes // 2)
        self._lock = threading.RLock()  # a done future's callback runs at once
        self._blocks: OrderedDict[tuple[str, int], _Block] = OrderedDict()  # least recent first
        self._by_path: dict[str, list[tuple[int, int]]] = {}  # sorted (start, stop) per file
        self._held = 0  # bytes of blocks held or in flight
        self._runs: dict[str, _Runs] = {}
        self._indexed = 0
        self._tick = 0  # reads planned so far: reading on means the file was read just now
        self._pending: list[ChunkManifest] = []
        self._turns: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, int]] = (
            weakref.WeakKeyDictionary()
        )  # reads of each file arriving in the current turn of each event loop

    @property
    def held_bytes(self) -> int:
        """Bytes of the blocks held or being fetched now (at most the budget)."""
        return self._held

    def add_chunks(self, manifest: ChunkManifest) -> None:
        """Index the chunk ranges ``manifest`` references in remote files, when a remote read
        first needs them (so that an array of local files costs nothing)."""
        with self._lock:
            self._pending.append(manifest)

    def after_fork(self) -> None:
        """In a forked child: a new lock, and no blocks (the parent's requests end there)."""
        self._lock = threading.RLock()
        self._blocks.clear()
        self._by_path.clear()
        self._turns.clear()
        self._held = 0

    async def read(
        self, path: str, offset: int, length: int, *, alone: bool = False
    ) -> tuple[ByteData | None, bool]:
        """Bytes ``[offset, offset + length)`` of ``path`` from a block, or None to read
        plainly, and whether the read came alone (the only read of ``path`` arriving in
        this turn of the event loop: there is nothing to gather it with).

        A read that arrives with others of its file (zarr's reads of one slice) is
        left to be gathered with them: only reads that come alone start blocks.
        ``alone`` says the caller knows it comes alone: no turn of the loop is waited.
        """
        stop = offset + length
        with self._lock:
            block = self._covering(path, offset, stop)
            if block is None and alone:
                block = self._plan(path, offset, stop)
                if block is None:
                    return None, True
        if block is None:
            if not await self._alone(path):
                return None, False
            with self._lock:
                block = self._covering(path, offset, stop) or self._plan(path, offset, stop)
            if block is None:
                return None, True
        data = block.data
        if data is None:  # shielded: a cancelled reader must not cancel the others' block
            data = await asyncio.shield(asyncio.wrap_future(block.future))
        self._consume(block, length)
        return memoryview(data)[offset - block.start : stop - block.start], False

    def _consume(self, block: _Block, length: int) -> None:
        """Count ``length`` bytes of ``block`` as served; drop it once all its chunks were."""
        with self._lock:
            block.remaining -= length
            key = (block.path, block.start)
            if block.remaining <= 0 and self._blocks.get(key) is block:
                self._drop(key)

    async def _alone(self, path: str) -> bool:
        """Whether this is the only read of ``path`` arriving in this turn of the event loop."""
        loop = asyncio.get_running_loop()
        with self._lock:
            turn = self._turns.get(loop)
            if turn is None:
                turn = self._turns[loop] = defaultdict(int)
                loop.call_soon(self._end_turn, loop)
            turn[path] += 1
        await asyncio.sleep(0)  # the other reads of this turn arrive meanwhile
        return turn[path] == 1

    def _end_turn(self, loop: asyncio.AbstractEventLoop) -> None:
        with self._lock:
            self._turns.pop(loop, None)

    def forget(self, path: str) -> None:
        """Drop every block of ``path`` (it failed to read, or changed)."""
        with self._lock:
            for start, _ in self._by_path.pop(path, []):
                self._release(self._blocks.pop((path, start)))

    # ------------------------------------------------------------------ internals (lock held)

    def _covering(self, path: str, start: int, stop: int) -> _Block | None:
        spans = self._by_path.get(path)
        if not spans:
            return None
        i = bisect.bisect_right(spans, (start, float("inf"))) - 1
        if i < 0 or spans[i][1] < stop:
            return None
        key = (path, spans[i][0])
        self._blocks.move_to_end(key)
        return self._blocks[key]

    def _plan(self, path: str, offset: int, stop: int) -> _Block | None:
        """Start a block at this read if it follows on from the previous read of ``path``
        (onwards, or backwards: dask often runs the tasks of an array last to first)."""
        runs = self._file_runs(path)
        first = -1 if runs is None else runs.index(offset)
        if runs is None or first < 0:
            return None
        previous, runs.last = runs.last, first
        self._tick += 1
        recent, runs.tick = self._tick - runs.tick <= RECENT_READS, self._tick
        step = first - previous
        if previous < 0 or not recent or step == 0 or abs(step) > FOLLOW_ON_CHUNKS:
            return None
        spans = self._by_path.get(path, [])
        i = bisect.bisect_right(spans, (offset, float("inf")))  # blocks never overlap
        if step > 0:
            limit = spans[i][0] if i < len(spans) else 1 << 63
            far, end = runs.run_after(first, limit, self._gap, self._max_block)
            begin, chunks = offset, slice(first, far + 1)
        else:
            limit = spans[i - 1][1] if i > 0 else 0
            far, begin = runs.run_before(first, limit, self._gap, self._max_block)
            end, chunks = max(stop, int(runs.ends[first])), slice(far, first + 1)
        if far == first or not self._make_room(end - begin):
            return None
        runs.last = far
        return self._start(path, begin, end, int(runs.sizes[chunks].sum()))

    def _make_room(self, size: int) -> bool:
        """Evict held blocks, least recent first, until ``size`` more bytes fit the budget."""
        for key in list(self._blocks):
            if self._held + size <= self._budget:
                break
            if self._blocks[key].data is not None:
                self._drop(key)
        return self._held + size <= self._budget

    def _start(self, path: str, start: int, stop: int, chunk_bytes: int) -> _Block:
        block = _Block(path, start, stop, self._fetch(path, start, stop), chunk_bytes)
        self._blocks[(path, start)] = block
        bisect.insort(self._by_path.setdefault(path, []), (start, stop))
        self._held += stop - start
        block.future.add_done_callback(lambda future: self._arrived(block, future))
        return block

    def _arrived(self, block: _Block, future: Future[ByteData]) -> None:
        """A block's request ended: keep its bytes, or forget its file if it failed."""
        if future.exception() is None:
            block.data = future.result()
        else:
            self.forget(block.path)

    def _drop(self, key: tuple[str, int]) -> None:
        block = self._blocks.pop(key)
        spans = self._by_path[block.path]
        spans.remove((block.start, block.stop))
        if not spans:
            del self._by_path[block.path]
        self._release(block)

    def _release(self, block: _Block) -> None:
        self._held -= block.stop - block.start

    def _file_runs(self, path: str) -> _Runs | None:
        """The indexed chunk ranges of ``path``, indexing the manifests added since."""
        if self._pending:
            pending, self._pending = self._pending, []
            for manifest in pending:
                self._index(manifest)
        return self._runs.get(path)

    def _index(self, manifest: ChunkManifest) -> None:
        """Add the ranges of ``manifest``'s chunks in remote files, block by block."""
        grid = math.prod(manifest.shape)
        if self._indexed + grid > READ_AHEAD_MAX_CHUNKS:
            return
        self._indexed += grid
        starts: dict[str, list[np.ndarray]] = defaultdict(list)
        ends: dict[str, list[np.ndarray]] = defaultdict(list)
        for _, block in manifest.blocks():
            refs = block.references()
            for i, path in enumerate(block.paths):
                mine = refs.path_index == i
                if self._remote(path) and mine.any():
                    first = np.asarray(refs.offsets)[mine].astype(np.int64)
                    starts[path].append(first)
                    ends[path].append(first + np.asarray(refs.lengths)[mine].astype(np.int64))
        for path in starts:
            self._runs.setdefault(path, _Runs()).add(starts[path], ends[path])
