"""Byte-range reading of the original source files: the :class:`Sources` facade.

Every chunk read goes through a ``Sources``. It asks the allow-list
(:mod:`~zarr_manifest_store.io.allow`) before a source is first read, checks
sources against their fingerprints (:mod:`~zarr_manifest_store.io.fingerprints`),
gathers the reads that arrive together and coalesces nearby ranges
(:mod:`~zarr_manifest_store.io.gather`), and reads:

- **local files** with ``pread`` on cached descriptors
  (:mod:`~zarr_manifest_store.io.local`): bytes already in the page cache of a
  file already open are served on the spot, everything else in a worker thread;
- **remote objects** (:mod:`~zarr_manifest_store.io.remote`): ``s3://``,
  ``gs://``, ``az://`` and ``http(s)://`` through obstore, every range
  fetched with the ETag its object was checked with; other protocols through
  fsspec. Requests run on one I/O loop with bounded concurrency, a timeout
  per attempt and retries with backoff for transient failures.

Every failure names the source file; a missing, truncated or unreadable file
raises, it never reads as zeros or fill values.
"""

from __future__ import annotations

import asyncio
import contextvars
import functools
import os
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future as ConcurrentFuture
from typing import Any

import fsspec
import fsspec.asyn
import numpy as np

from zarr_manifest_store.errors import SourceChangedError
from zarr_manifest_store.io import local
from zarr_manifest_store.io.allow import AllowList
from zarr_manifest_store.io.fingerprints import VERIFY_MODES, FingerprintRegistry, Verify
from zarr_manifest_store.io.gather import (
    MAX_COALESCED_BYTES,
    MAX_GAP_BYTES,
    ByteData,
    Deliver,
    Gatherer,
    call_soon,
    coalesce,
    outcome,
)
from zarr_manifest_store.io.paths import is_local, local_path
from zarr_manifest_store.io.readahead import READ_AHEAD_BYTES, ReadAhead
from zarr_manifest_store.io.remote import RemoteReader, io_loop
from zarr_manifest_store.io.report import SourceStatus, VerifyReport
from zarr_manifest_store.manifest import ChunkManifest, Fingerprint

__all__ = [
    "MAX_CONCURRENCY",
    "READ_ALONE",
    "READ_BUDGET_BYTES",
    "ByteData",
    "SourceStatus",
    "Sources",
    "Verify",
    "VerifyReport",
    "coalesce",
]


READ_ALONE: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "zarr_manifest_store_read_alone", default=False
)
"""Set while a read has nothing to be gathered with: the codec pipeline sets it in its own
context while it reads a selection of one chunk (a random access, a dask task's chunk), so
the store's calls (and zarr's ``Store.get``) keep their signatures."""

MAX_CONCURRENCY = 64
"""Remote requests in flight to one host at most: object stores serve many at once, and at
tens of milliseconds a round trip, a read's speed is its concurrency."""
READ_BUDGET_BYTES = 256 << 20
"""The stored bytes of remote chunks one read holds at most (fetched, or on the way)."""


class Sources:
    """Reads byte ranges of source files, local or remote; every read passes through here.

    ``storage_options`` configure remote access the way fsspec takes them: one
    dict for every protocol, or a mapping from URL prefix (``"s3://bucket-a/"``)
    to options, the longest matching prefix winning. ``allow`` (an
    :class:`~zarr_manifest_store.io.allow.AllowList` or its prefixes: folders or
    URL prefixes) says what may be read; ``None`` allows everything.
    ``fingerprints`` are what each source looked like when it was scanned
    (several per path if it was recorded more than once); with
    ``verify="first-use"`` a source is checked against them when it is first
    opened, with ``"always"`` before every read, with ``"never"`` not at all.
    A source without a recorded fingerprint is checked against what it
    looked like when this reader first opened it.

    Tuning: ``max_concurrency`` remote requests in flight to each host (bucket,
    container or HTTP origin); reads of one file
    at most ``max_gap_bytes`` apart are merged into one request of at most
    ``max_coalesced_bytes``; a read of many remote chunks holds at most
    ``read_budget_bytes`` of their stored bytes at once (fetched or on the way); a remote attempt that takes longer than
    ``timeout`` seconds, fails with a 5xx, a reset connection or a short
    body is retried up to ``retries`` times with exponential backoff, within
    ``deadline`` seconds for each request and its retries (so a stalling server costs at most that).
    A remote file read chunk after chunk (dask's one task per chunk) is read
    ahead (:mod:`~zarr_manifest_store.io.readahead`): the run of chunks that
    follows is fetched in one request and held, within ``read_ahead_bytes`` of
    memory (0 turns read-ahead off; so does ``verify="always"``).

    >>> import tempfile, pathlib
    >>> f = pathlib.Path(tempfile.mkdtemp()) / "a.bin"
    >>> _ = f.write_bytes(b"0123456789")
    >>> bytes(Sources(allow=[str(f.parent)]).read_sync(str(f), 2, 3))
    b'234'
    """

    def __init__(
        self,
        storage_options: Mapping[str, Any] | None = None,
        *,
        allow: AllowList | Sequence[str] | str | None = None,
        fingerprints: Mapping[str, Iterable[Fingerprint]] | None = None,
        verify: Verify = "first-use",
        max_concurrency: int = MAX_CONCURRENCY,
        max_gap_bytes: int = MAX_GAP_BYTES,
        max_coalesced_bytes: int = MAX_COALESCED_BYTES,
        read_budget_bytes: int = READ_BUDGET_BYTES,
        retries: int = 4,
        timeout: float = 15.0,
        deadline: float = 25.0,
        read_ahead_bytes: int = READ_AHEAD_BYTES,
    ) -> None:
        _check_tuning(
            verify,
            {
                "max_concurrency": max_concurrency,
                "max_coalesced_bytes": max_coalesced_bytes,
                "read_budget_bytes": read_budget_bytes,
            },
            {"max_gap_bytes": max_gap_bytes, "retries": retries},
            {"timeout": timeout, "deadline": deadline},
        )
        if not isinstance(read_ahead_bytes, int) or read_ahead_bytes < 0:
            raise ValueError(
                f"read_ahead_bytes must be a non-negative integer, got {read_ahead_bytes!r}"
            )
        self._storage_options = dict(storage_options or {})
        self._allow = AllowList.of(allow)
        self._registry = FingerprintRegistry(fingerprints)
        self._tuning = {
            "verify": verify,
            "max_concurrency": max_concurrency,
            "max_gap_bytes": max_gap_bytes,
            "max_coalesced_bytes": max_coalesced_bytes,
            "read_budget_bytes": read_budget_bytes,
            "retries": retries,
            "timeout": timeout,
            "deadline": deadline,
            "read_ahead_bytes": read_ahead_bytes,
        }
        self._routes: dict[str, str | None] = {}  # admitted path -> local path, or None if remote
        self._local = local.LocalFiles(self._registry.check, verify, self._allow)
        self._remote = RemoteReader(
            self._storage_options,
            self._registry,
            verify=verify,
            max_concurrency=max_concurrency,
            retries=retries,
            timeout=timeout,
            deadline=deadline,
        )
        self._gatherer = Gatherer(
            self._submit, max_gap_bytes=max_gap_bytes, max_coalesced_bytes=max_coalesced_bytes
        )
        self._read_ahead = (
            ReadAhead(
                self._fetch_block,
                lambda path: not is_local(path),
                budget_bytes=read_ahead_bytes,
                max_gap_bytes=max_gap_bytes,
                max_block_bytes=max_coalesced_bytes,
            )
            if read_ahead_bytes and verify != "always"
            else None
        )
        self._requests: set[asyncio.Task[Any]] = set()  # remote reads running on callers' loops
        self._reading: dict[asyncio.AbstractEventLoop, int] = {}  # remote reads under way, per loop
        self._finalizer = weakref.finalize(self, local.LocalFiles.close, self._local)
        _LIVE.add(self)

    @property
    def storage_options(self) -> dict[str, Any]:
        return self._storage_options

    @property
    def allow(self) -> tuple[str, ...] | None:
        """The allowed prefixes as given (None: everything)."""
        return self._allow.prefixes

    @property
    def allow_list(self) -> AllowList:
        return self._allow

    @property
    def read_budget_bytes(self) -> int:
        """The most stored bytes of remote chunks one read holds at once."""
        return self._tuning["read_budget_bytes"]

    @property
    def options(self) -> dict[str, Any]:
        """``verify`` and the I/O tuning, as keyword arguments that recreate this reader."""
        return dict(self._tuning)

    # ------------------------------------------------------------------ public API

    def check_allowed(self, path: str) -> None:
        """Raise ``PermissionError`` unless ``path`` lies under an allowed prefix."""
        self._admit(path)

    def fingerprint(self, path: str) -> Fingerprint:
        """What ``path`` looks like now: size and mtime (local) or size and ETag (remote)."""
        lpath = self._admit(path)
        if lpath is not None:
            return local.fingerprint(path, lpath, self._allow)
        return fsspec.asyn.sync(io_loop(), self._remote.fingerprint, path)

    def read_head(self, path: str, length: int) -> tuple[ByteData, Fingerprint]:
        """The first ``length`` bytes of ``path`` (fewer if it is shorter) and its fingerprint
        now, blocking: for a remote source one request where the client reports both."""
        lpath = self._admit(path)
        if lpath is not None:
            fingerprint = local.fingerprint(path, lpath, self._allow)
            size = fingerprint.size if fingerprint.size is not None else length
            return self._local.read(path, lpath, 0, min(length, size)), fingerprint
        return fsspec.asyn.sync(io_loop(), self._remote.read_head, path, length)

    async def read(self, path: str, offset: int, length: int) -> ByteData:
        """``length`` bytes of ``path`` from ``offset``.

        Reads of one event loop that arrive together are gathered and nearby
        ranges of a file coalesced. Local bytes already in the page cache, of a
        file opened (and checked) before, are returned at once without
        blocking; everything else is opened and read off the event loop. A
        remote read made while :data:`READ_ALONE` is set (a selection of one
        chunk) is sent at once, unless other remote reads of this event loop are
        under way: it waits no turn of the loop for reads to gather it with.
        """
        lpath = self._admit(path)
        if length == 0:
            return b""
        if lpath is None:
            return await self._read_remote(path, offset, length)
        data = self._local.read_cached(path, offset, length)
        if data is not None:
            return data
        return await self._gatherer.read(path, offset, offset + length)

    async def _read_remote(self, path: str, offset: int, length: int) -> ByteData:
        """:meth:`read` of a remote ``path``: from read-ahead, alone, or gathered."""
        loop = asyncio.get_running_loop()
        reading = self._reading
        quiet = READ_ALONE.get() and loop not in reading  # no other read of this loop under way
        reading[loop] = reading.get(loop, 0) + 1
        try:
            if self._read_ahead is not None:
                data, alone = await self._read_ahead.read(path, offset, length, alone=quiet)
                if data is not None:
                    return data
            else:
                alone = quiet
            if alone and self._remote.on_any_loop(path):
                # Nothing to gather it with (a random chunk): its request is sent now, from
                # this coroutine, without the gatherer's turn of the loop or a task of its own.
                stop = offset + length
                return await self._remote.read(path, offset, stop, at_once=quiet)
            return await self._gatherer.read(path, offset, offset + length)
        except SourceChangedError:
            if self._read_ahead is not None:  # never serve what was read before the change
                self._read_ahead.forget(path)
            raise
        finally:
            left = reading.pop(loop) - 1
            if left:
                reading[loop] = left

    def read_sync(self, path: str, offset: int, length: int) -> ByteData:
        """``length`` bytes of ``path`` from ``offset``, blocking; for synchronous callers."""
        lpath = self._admit(path)
        if length == 0:
            return b""
        if lpath is not None:
            return self._local.read(path, lpath, offset, offset + length)
        return fsspec.asyn.sync(io_loop(), self._remote.read, path, offset, offset + length)

    def read_mapped(
        self, path: str, offset: int, length: int, copy: Callable[[np.ndarray], None]
    ) -> bool:
        """Call ``copy`` with ``length`` bytes of the local file ``path`` from ``offset``,
        a read-only view of its memory map valid during the call, blocking: for a reader
        that only copies bytes out (no buffer is filled for it). False, having done nothing,
        for a remote source or one not mapped (see ``LocalFiles.read_mapped``): ``read``
        it then."""
        lpath = self._admit(path)
        if lpath is None or length == 0:
            return False
        return self._local.read_mapped(path, lpath, offset, offset + length, copy)

    def verify(self, extents: Mapping[str, int]) -> VerifyReport:
        """Check each source of ``extents`` (path -> end of its last referenced byte).

        A source is ``"ok"`` when it exists, may be read, matches its recorded
        fingerprints and is long enough for every chunk referenced in it.
        """
        statuses: dict[str, SourceStatus] = {}
        remote: dict[str, int] = {}
        for path, extent in extents.items():
            try:
                lpath = self._admit(path)
            except PermissionError as e:
                statuses[path] = SourceStatus(path, "forbidden", str(e))
                continue
            if lpath is None:
                remote[path] = extent
            else:
                current = local.status_fingerprint(path, lpath, self._allow)
                statuses[path] = self._registry.status(path, extent, current)
        if remote:
            checked = fsspec.asyn.sync(io_loop(), self._remote.statuses, remote)
            statuses.update((s.path, s) for s in checked)
        return VerifyReport(tuple(statuses[p] for p in extents))

    def record(self, fingerprints: Mapping[str, Fingerprint]) -> None:
        """Add what sources looked like when scanned (a manifest's ``fingerprints``).

        A store records an array's fingerprints when that array is first read,
        so that opening a document loads no manifest. Two different
        fingerprints for one file cannot both hold: that raises
        ``SourceChangedError``.
        """
        self._registry.record(fingerprints)

    def add_chunks(self, manifest: ChunkManifest) -> None:
        """Tell the read-ahead where an array's chunks lie (a store does, when it first reads
        the array): a run of them in a remote file is what one read-ahead request fetches."""
        if self._read_ahead is not None:
            self._read_ahead.add_chunks(manifest)

    def filesystem(self, path: str) -> fsspec.AbstractFileSystem:
        """The fsspec file system that lists and scans the remote ``path``, made once and
        reused (chunks are read through obstore where it serves the protocol)."""
        self.check_allowed(path)
        return self._remote.filesystem(path)

    def close(self) -> None:
        """Close every cached descriptor that is not in use (in-use ones close when released)."""
        self._local.close()

    def __getstate__(self) -> dict[str, Any]:
        return {
            "storage_options": self._storage_options,
            "allow": self._allow.prefixes,
            "fingerprints": self._registry.recorded,
            **self._tuning,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state.pop("storage_options"), **state)  # type: ignore[misc]

    # ------------------------------------------------------------------ internals

    def _admit(self, path: str) -> str | None:
        """Enforce the allow-list for ``path``; its local file path, or None if it is remote."""
        try:
            return self._routes[path]
        except KeyError:
            pass
        self._allow.check(path)
        route = local_path(path) if is_local(path) else None
        self._routes[path] = route
        return route

    def _submit(
        self,
        loop: asyncio.AbstractEventLoop,
        path: str,
        reads: list[tuple[int, int]],
        deliver: Deliver,
    ) -> None:
        """Start the jobs reading ``reads`` of ``path``; ``deliver`` gets results on ``loop``.

        A local file is read in one job; each remote read is its own request, delivered
        as it arrives (so its chunks decode while the others are still on the way), run
        on ``loop`` itself where the client allows (no thread hop each way), else on the
        I/O loop.
        """
        lpath = self._routes[path]
        if lpath is not None:
            job = loop.run_in_executor(None, self._local.read_batch, path, lpath, reads)
            job.add_done_callback(lambda job: deliver(outcome(job), first=0))
            return
        here = self._remote.on_any_loop(path)
        for i, (start, stop) in enumerate(reads):
            request = self._remote.read(path, start, stop)
            if here:
                task = loop.create_task(request)
                self._requests.add(task)  # the loop holds tasks weakly
                task.add_done_callback(self._requests.discard)
                task.add_done_callback(functools.partial(_deliver_here, deliver, i))
            else:
                remote = asyncio.run_coroutine_threadsafe(request, io_loop())
                remote.add_done_callback(functools.partial(_deliver_one, loop, deliver, i))

    def _fetch_block(self, path: str, start: int, stop: int) -> ConcurrentFuture[ByteData]:
        """Start reading a read-ahead block of the remote ``path`` on the I/O loop."""
        return asyncio.run_coroutine_threadsafe(self._remote.read(path, start, stop), io_loop())

    def _after_fork(self) -> None:
        self._requests = set()  # they ran on the parent's loops
        self._reading = {}
        parts = (self._registry, self._local, self._remote, self._gatherer, self._read_ahead)
        for part in parts:
            if part is not None:
                part.after_fork()


def _deliver_one(
    loop: asyncio.AbstractEventLoop, deliver: Deliver, index: int, job: ConcurrentFuture[Any]
) -> None:
    """Hand the outcome of the job reading planned read ``index`` to ``deliver`` on ``loop``."""
    call_soon(loop, functools.partial(_deliver_here, deliver, index), job)


def _deliver_here(
    deliver: Deliver, index: int, job: asyncio.Future[Any] | ConcurrentFuture[Any]
) -> None:
    """Hand the outcome of the job reading planned read ``index`` to ``deliver``."""
    deliver([outcome(job)], first=index)


def _check_tuning(
    verify: str,
    positive: Mapping[str, Any],
    non_negative: Mapping[str, Any],
    seconds: Mapping[str, Any],
) -> None:
    """Refuse a verify mode or tuning value that cannot work, naming it."""
    if verify not in VERIFY_MODES:
        raise ValueError(f"verify must be one of {VERIFY_MODES}, got {verify!r}")
    for name, value in positive.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    for name, value in non_negative.items():
        if not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
    for name, value in seconds.items():
        if not value > 0:
            raise ValueError(f"{name} must be a positive number of seconds, got {value!r}")


_LIVE: weakref.WeakSet[Sources] = weakref.WeakSet()
"""Every ``Sources`` alive in this process, so that a forked child can renew their state."""


def _renew_after_fork() -> None:
    """In a forked child: give every live ``Sources`` new locks, queues and clients.

    ``fork`` copies only the calling thread, so locks another thread held stay
    held and fsspec's I/O loop and open connections are gone. Only this
    package's own objects change; no setting of the process or of another
    library is touched.
    """
    for sources in list(_LIVE):
        sources._after_fork()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_renew_after_fork)
