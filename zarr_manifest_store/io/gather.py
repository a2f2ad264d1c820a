"""Gathering reads: what arrives together is read together, nearby ranges as one request.

zarr issues the ``get`` calls of one slice concurrently on one event loop.
:class:`Gatherer` queues the reads that arrive during one turn of that loop,
then hands each file's ranges, :func:`coalesce`-d, to one job. The knobs are
zarr's own (``Store.get_ranges``): ranges at most ``max_gap_bytes`` apart
merge into one read of at most ``max_coalesced_bytes``, with zarr's
defaults (1 MiB, 16 MiB).
"""

from __future__ import annotations

import asyncio
import contextlib
import weakref
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import Future as ConcurrentFuture
from typing import Any, NamedTuple

import numpy as np

__all__ = [
    "MAX_COALESCED_BYTES",
    "MAX_GAP_BYTES",
    "ByteData",
    "Deliver",
    "Gatherer",
    "call_soon",
    "coalesce",
    "outcome",
]

ByteData = bytes | bytearray | memoryview | np.ndarray
"""The bytes of a read: whatever the reader produced, without copying."""

MAX_GAP_BYTES = 1 << 20
"""Ranges of one file at most this far apart are read as one (zarr's default)."""
MAX_COALESCED_BYTES = 16 << 20
"""No merged read grows beyond this many bytes (zarr's default)."""

Deliver = Callable[..., None]
"""``deliver(results, first=i)`` receives, on the reads' event loop, the bytes or exception
of the planned reads from index ``i`` on (or one exception for all): a job may deliver
each read as it arrives."""


def coalesce(
    ranges: Sequence[tuple[int, int]], *, max_gap_bytes: int, max_coalesced_bytes: int
) -> list[tuple[int, int, list[int]]]:
    """Plan the reads of ``(start, stop)`` ranges of one file.

    Ranges at most ``max_gap_bytes`` apart merge into one read of at most
    ``max_coalesced_bytes`` (a single range longer than that is read alone).
    Returns ``(start, stop, indices of the ranges it serves)`` per read.

    >>> coalesce([(0, 10), (100, 110), (12, 20)], max_gap_bytes=4, max_coalesced_bytes=64)
    [(0, 20, [0, 2]), (100, 110, [1])]
    """
    reads: list[tuple[int, int, list[int]]] = []
    for i in sorted(range(len(ranges)), key=lambda i: ranges[i]):
        start, stop = ranges[i]
        if reads:
            first, last, members = reads[-1]
            end = max(last, stop)
            if start - last <= max_gap_bytes and end - first <= max_coalesced_bytes:
                members.append(i)
                reads[-1] = (first, end, members)
                continue
        reads.append((start, stop, [i]))
    return reads


class _Pending(NamedTuple):
    path: str
    start: int
    stop: int
    future: asyncio.Future[ByteData]


Submit = Callable[[asyncio.AbstractEventLoop, str, list[tuple[int, int]], Deliver], None]
"""Starts one job reading ``reads`` of a path; its results go to ``deliver`` on the loop."""


class Gatherer:
    """Queues the reads of each event loop for one turn, then submits them file by file.

    ``submit(loop, path, reads, deliver)`` starts the job that reads the
    coalesced ``reads`` of ``path``; ``deliver`` must be called on ``loop``.
    """

    def __init__(self, submit: Submit, *, max_gap_bytes: int, max_coalesced_bytes: int) -> None:
        self._submit = submit
        self._gap = max_gap_bytes
        self._max_read = max_coalesced_bytes
        self.after_fork()

    def after_fork(self) -> None:
        """Forget queues: a forked child has none of its parent's event loops running."""
        self._queued: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[_Pending]] = (
            weakref.WeakKeyDictionary()
        )

    async def read(self, path: str, start: int, stop: int) -> ByteData:
        """Bytes ``[start, stop)`` of ``path``, read with what else arrives this turn."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ByteData] = loop.create_future()
        queue = self._queued.get(loop)
        if queue is None:
            queue = self._queued[loop] = []
            loop.call_soon(self._dispatch, loop)
        queue.append(_Pending(path, start, stop, future))
        return await future

    def _dispatch(self, loop: asyncio.AbstractEventLoop) -> None:
        """Read everything queued on ``loop`` this turn: one job per file, nearby ranges merged."""
        by_path: dict[str, list[_Pending]] = defaultdict(list)
        for pending in self._queued.pop(loop, ()):
            if not pending.future.done():  # not cancelled meanwhile
                by_path[pending.path].append(pending)
        for path, pendings in by_path.items():
            plan = coalesce(
                [(p.start, p.stop) for p in pendings],
                max_gap_bytes=self._gap,
                max_coalesced_bytes=self._max_read,
            )
            reads = [(start, stop) for start, stop, _ in plan]
            deliver = _deliverer(plan, pendings)
            try:
                self._submit(loop, path, reads, deliver)
            except Exception as e:  # no job could start: the waiting reads must not hang
                deliver(e, first=0)


def _deliverer(plan: list[tuple[int, int, list[int]]], pendings: list[_Pending]) -> Deliver:
    """Hands each planned read's bytes (or error) to the queued reads it serves (on their loop)."""

    def deliver(results: list[Any] | BaseException, first: int) -> None:
        for i, (start, stop, members) in enumerate(plan):
            if isinstance(results, BaseException):
                result = results
            elif first <= i < first + len(results):
                result = results[i - first]
            else:
                continue
            for m in members:
                p = pendings[m]
                if p.future.done():
                    continue  # cancelled
                if isinstance(result, BaseException):
                    p.future.set_exception(result)
                elif (p.start, p.stop) == (start, stop):
                    p.future.set_result(result)
                else:
                    p.future.set_result(memoryview(result)[p.start - start : p.stop - start])

    return deliver


def outcome(job: asyncio.Future[Any] | ConcurrentFuture[Any]) -> Any:
    """A finished job's result, or its exception."""
    try:
        return job.result()
    except BaseException as e:
        return e


def call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[Any], None], arg: Any) -> None:
    """Run ``callback(arg)`` on ``loop`` from another thread, unless that loop is closed."""
    with contextlib.suppress(RuntimeError):  # closed: nobody waits for the result any more
        loop.call_soon_threadsafe(callback, arg)
