"""Byte-range reading of the original source files.

:class:`Sources` is the one place every chunk read goes through. It enforces
the allow-list, checks each source against the fingerprint recorded when it
was scanned, and reads:

- **local files** with ``pread`` on cached descriptors. A read of a file
  already open whose bytes are in the page cache is served on the spot
  (``preadv`` with ``RWF_NOWAIT``, no thread hop); any other read, and the
  opening and checking of a file, goes to a worker thread, off the event loop;
- **remote objects** (``s3://``, ``gs://``, ``az://``, ``https://`` …) through fsspec's
  asynchronous file systems on fsspec's I/O loop, with bounded concurrency,
  a timeout per attempt, and retries with backoff for transient failures.

Reads that arrive together — the concurrent ``store.get`` calls zarr makes
for a slice, or one ``get_partial_values`` call — are gathered, and nearby
ranges of one file are coalesced into one request.

Every failure names the source file; a missing, truncated or unreadable file
raises, it never reads as zeros or fill values.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import functools
import json
import os
import random
import stat
import threading
import weakref
from collections import OrderedDict, defaultdict
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from concurrent.futures import Future as ConcurrentFuture
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple
from urllib.parse import unquote

import fsspec
import fsspec.asyn
import numpy as np

from zarr_manifest_store.errors import SourceChangedError
from zarr_manifest_store.io.fingerprints import (
    differences,
    fingerprint_from_info,
    local_fingerprint,
    normalised_etag,
)
from zarr_manifest_store.io.paths import is_local, local_path, options_for, protocol_of
from zarr_manifest_store.manifest import Fingerprint

__all__ = ["SourceStatus", "Sources", "VerifyReport", "coalesce"]

Verify = Literal["first-use", "always", "never"]
VERIFY_MODES: tuple[Verify, ...] = ("first-use", "always", "never")

ByteData = bytes | bytearray | memoryview | np.ndarray

MAX_OPEN_FILES = 128
"""Descriptors kept open at once; the least recently used idle one is closed beyond this."""
INLINE_READ_BYTES = 4 << 20
"""Largest cached local read served on the event loop itself; bigger ones go to a thread."""
RETRY_BACKOFF = 0.1
"""Seconds before the first retry of a remote read; doubled for each further attempt."""
RETRY_BACKOFF_MAX = 5.0

_RWF_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)

_TRANSIENT_ERRNOS = {
    errno.EAGAIN,
    errno.EBUSY,
    errno.ECONNABORTED,
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.EIO,
    errno.EPIPE,
    errno.ETIMEDOUT,
    getattr(errno, "EREMOTEIO", errno.EIO),
}


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


# ---------------------------------------------------------------------- verification report


class SourceStatus(NamedTuple):
    """The outcome of checking one source file (see :meth:`Sources.verify`).

    ``status`` is ``"ok"``, ``"changed"`` (fingerprint mismatch),
    ``"truncated"`` (shorter than the chunks it should hold), ``"missing"``,
    ``"forbidden"`` (outside the allow-list) or ``"unreadable"``.

    >>> import zarr_manifest_store as zms
    >>> zms.write_manifest(zms.scan("data/era_2026-01-02.nc"), "checked.zarr", mode="w")
    >>> [status] = zms.ManifestStore.open("checked.zarr", allow=["data/"]).verify().sources
    >>> status.status, status.path.endswith("era_2026-01-02.nc"), status.recorded == status.current
    ('ok', True, True)
    """

    path: str
    status: Literal["ok", "changed", "truncated", "missing", "forbidden", "unreadable"]
    detail: str
    recorded: Fingerprint | None = None
    current: Fingerprint | None = None


@dataclass(frozen=True)
class VerifyReport:
    """Every source of a store, checked: ``report.ok`` is True when all can be read as scanned.

    >>> report = VerifyReport((SourceStatus("/data/a.nc", "missing", "not found"),))
    >>> report.ok, [s.path for s in report.problems]
    (False, ['/data/a.nc'])
    """

    sources: tuple[SourceStatus, ...]

    @property
    def ok(self) -> bool:
        """True when every source can be read as it was scanned."""
        return not self.problems

    @property
    def problems(self) -> tuple[SourceStatus, ...]:
        """The sources whose status is not ``"ok"``."""
        return tuple(s for s in self.sources if s.status != "ok")

    def __str__(self) -> str:
        lines = [
            f"{len(self.sources)} source(s) checked, {len(self.problems)} problem(s)",
            *(f"{s.status:>10}  {s.path}: {s.detail}" for s in self.sources),
        ]
        return "\n".join(lines)


# ---------------------------------------------------------------------- local descriptors


def _preadv_nowait(fd: int, offset: int, length: int) -> np.ndarray | None:
    """A new ``uint8`` array of the bytes if every one is in the page cache; None when one
    is not or the file ends before; OSError otherwise (``EOPNOTSUPP`` where the file
    system cannot tell)."""
    buf = np.empty(length, np.uint8)
    try:
        got = os.preadv(fd, (buf,), offset, _RWF_NOWAIT)  # type: ignore[arg-type]
    except BlockingIOError:
        return None
    return buf if got == length else None


class _Descriptor:
    """An open file descriptor shared by readers; closed once evicted and idle."""

    __slots__ = ("evicted", "fd", "identity", "nowait", "users")

    def __init__(self, fd: int, identity: tuple[int, int]) -> None:
        self.fd = fd
        self.identity = identity  # (st_dev, st_ino): which file the descriptor reads
        self.users = 0
        self.evicted = False
        self.nowait = _RWF_NOWAIT is not None


class _Descriptors:
    """Read-only descriptors of local files by source path, at most ``MAX_OPEN_FILES`` idle ones."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.opening = threading.Lock()
        self._open: OrderedDict[str, _Descriptor] = OrderedDict()

    def acquire(
        self, path: str, lpath: str, on_open: Callable[[str, os.stat_result], None]
    ) -> _Descriptor:
        """The descriptor of source ``path`` (the local file ``lpath``), opened if need be.

        ``on_open(path, stat)`` runs for every newly opened descriptor, so a
        file is checked on the very descriptor it is then read from. One
        thread at a time opens files, so that a file is opened (and checked)
        once however many threads ask for it together.
        """
        desc = self._hit(path)
        if desc is not None:
            return desc
        with self.opening:
            desc = self._hit(path)  # opened by the thread that held the lock before us
            if desc is not None:
                return desc
            fd = _open_readonly(lpath)
            try:
                st = os.fstat(fd)
                if stat.S_ISDIR(st.st_mode):
                    raise IsADirectoryError(
                        errno.EISDIR, f"source {path!r} is a directory, not a file"
                    )
                on_open(path, st)
            except BaseException:
                os.close(fd)
                raise
            with self.lock:
                desc = self._open[path] = _Descriptor(fd, (st.st_dev, st.st_ino))
                desc.users += 1
                self._evict()
                return desc

    def read_cached(self, path: str, offset: int, length: int) -> np.ndarray | None:
        """``length`` bytes of ``path`` from ``offset``, read without blocking: None unless
        the file is open already and every byte is in the page cache.

        The read is done under the lock (it only copies from the page cache),
        so the descriptor cannot be closed under it and needs no user count.
        """
        lock = self.lock
        lock.acquire()  # not `with`: this is the whole of a cached read, and `with` costs more
        try:
            desc = self._open.get(path)
            if desc is None or not desc.nowait:
                return None
            self._open.move_to_end(path)
            return _preadv_nowait(desc.fd, offset, length)
        except OSError as e:  # errors are reported by the blocking read that follows
            if e.errno in (errno.EOPNOTSUPP, errno.EINVAL):
                desc.nowait = False  # this file system cannot tell: always read in a thread
            return None
        finally:
            lock.release()

    def _hit(self, path: str) -> _Descriptor | None:
        """The open descriptor of ``path``, now in use by one more reader; None if closed."""
        with self.lock:
            desc = self._open.get(path)
            if desc is not None:
                self._open.move_to_end(path)
                desc.users += 1
            return desc

    def release(self, desc: _Descriptor) -> None:
        with self.lock:
            desc.users -= 1
            if desc.evicted and desc.users == 0:
                os.close(desc.fd)
            elif len(self._open) > MAX_OPEN_FILES:
                self._evict()  # the limit was exceeded while every descriptor was in use

    def discard(self, path: str) -> None:
        """Stop reusing the descriptor of ``path``; it closes once idle."""
        with self.lock:
            desc = self._open.pop(path, None)
            if desc is not None:
                self._retire(desc)

    def close(self) -> None:
        with self.lock:
            for desc in self._open.values():
                self._retire(desc)
            self._open.clear()

    def __len__(self) -> int:
        return len(self._open)

    def _retire(self, desc: _Descriptor) -> None:
        desc.evicted = True
        if desc.users == 0:
            os.close(desc.fd)

    def _evict(self) -> None:
        """Close the least recently used idle descriptors beyond ``MAX_OPEN_FILES`` (lock held)."""
        excess = len(self._open) - MAX_OPEN_FILES
        for path in list(self._open):
            if excess <= 0:
                break
            if self._open[path].users == 0:
                self._retire(self._open.pop(path))
                excess -= 1


def _open_readonly(path: str) -> int:
    try:
        return os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError as e:
        raise FileNotFoundError(e.errno, f"source file {path!r} not found") from None
    except IsADirectoryError as e:
        raise IsADirectoryError(e.errno, f"source {path!r} is a directory, not a file") from None
    except PermissionError as e:
        raise PermissionError(
            e.errno, f"source file {path!r} cannot be opened: permission denied"
        ) from None


def _pread_full(fd: int, length: int, offset: int) -> bytes:
    """``length`` bytes from ``offset``, blocking; fewer only at the end of the file."""
    data = os.pread(fd, length, offset)
    while 0 < len(data) < length:  # a short read (rare for regular files): read the rest
        more = os.pread(fd, length - len(data), offset + len(data))
        if not more:
            break
        data += more
    return data


# ---------------------------------------------------------------------- the reader


class _Pending(NamedTuple):
    path: str
    start: int
    stop: int
    future: asyncio.Future[ByteData]


class Sources:
    """Reads byte ranges of source files, local or remote; every read passes through here.

    ``storage_options`` configure fsspec for remote sources: one dict for
    every protocol, or a mapping from URL prefix (``"s3://bucket-a/"``) to
    options, the longest matching prefix winning. ``allow`` lists the
    prefixes (folders or URL prefixes) that may be read; ``None`` allows
    everything. ``fingerprints`` are what each source looked like when it
    was scanned (several per path if it was recorded more than once); with
    ``verify="first-use"`` a source is checked against them when it is first
    opened, with ``"always"`` before every read, with ``"never"`` not at all.
    A source without a recorded fingerprint is checked against what it
    looked like when this reader first opened it.

    Tuning: ``max_concurrency`` remote requests in flight; reads of one file
    at most ``max_gap_bytes`` apart are merged into one request of at most
    ``max_coalesced_bytes``; a remote attempt that takes longer than
    ``timeout`` seconds, fails with a 5xx, a reset connection or a short
    body is retried up to ``retries`` times with exponential backoff.

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
        allow: Sequence[str] | None = None,
        fingerprints: Mapping[str, Iterable[Fingerprint]] | None = None,
        verify: Verify = "first-use",
        max_concurrency: int = 16,
        max_gap_bytes: int = 1 << 20,
        max_coalesced_bytes: int = 16 << 20,
        retries: int = 4,
        timeout: float = 60.0,
    ) -> None:
        if verify not in VERIFY_MODES:
            raise ValueError(f"verify must be one of {VERIFY_MODES}, got {verify!r}")
        for name, value in {
            "max_concurrency": max_concurrency,
            "max_coalesced_bytes": max_coalesced_bytes,
        }.items():
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        for name, value in {"max_gap_bytes": max_gap_bytes, "retries": retries}.items():
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"{name} must be a non-negative integer, got {value!r}")
        if not timeout > 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self._storage_options = dict(storage_options or {})
        if isinstance(allow, str | os.PathLike):
            allow = [allow]  # one prefix, not its characters
        self._allow = None if allow is None else tuple(os.fspath(a) for a in allow)
        self._allowed = None if allow is None else tuple(_resolved(a) for a in self._allow)
        self._recorded = {p: tuple(dict.fromkeys(fps)) for p, fps in (fingerprints or {}).items()}
        self._tuning = {
            "verify": verify,
            "max_concurrency": max_concurrency,
            "max_gap_bytes": max_gap_bytes,
            "max_coalesced_bytes": max_coalesced_bytes,
            "retries": retries,
            "timeout": timeout,
        }
        self._verify = verify
        self._gap = max_gap_bytes
        self._max_read = max_coalesced_bytes
        self._max_concurrency = max_concurrency
        self._retries = retries
        self._timeout = timeout

        self._routes: dict[str, str | None] = {}  # admitted path -> local path, or None if remote
        self._seen: dict[str, Fingerprint] = {}  # what a source looked like at first use
        self._files = _Descriptors()
        self._finalizer = weakref.finalize(self, _Descriptors.close, self._files)
        self._start_threads_state()
        _LIVE.add(self)

    def _start_threads_state(self) -> None:
        """Locks, file systems and event-loop state: made anew in a forked child process,
        where the parent's threads (fsspec's I/O loop among them) do not exist."""
        self._lock = threading.Lock()
        self._files.lock = threading.Lock()
        self._files.opening = threading.Lock()
        self._filesystems: dict[tuple[str, str], fsspec.AbstractFileSystem] = {}
        self._queued: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, list[_Pending]] = (
            weakref.WeakKeyDictionary()  # reads waiting for this turn of each event loop
        )
        # State used only on fsspec's I/O loop thread:
        self._remote_checks: dict[str, asyncio.Future[None]] = {}
        self._semaphore: asyncio.Semaphore | None = None

    @property
    def storage_options(self) -> dict[str, Any]:
        return self._storage_options

    @property
    def allow(self) -> tuple[str, ...] | None:
        return self._allow

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
            try:
                return local_fingerprint(os.stat(lpath))
            except FileNotFoundError as e:
                raise FileNotFoundError(e.errno, f"source file {path!r} not found") from None
        return fsspec.asyn.sync(_io_loop(), self._remote_fingerprint, self._filesystem(path), path)

    async def read(self, path: str, offset: int, length: int) -> ByteData:
        """``length`` bytes of ``path`` from ``offset``.

        Reads of one event loop that arrive together are gathered and nearby
        ranges of a file coalesced. Local bytes already in the page cache, of a
        file opened (and checked) before, are returned at once without
        blocking; everything else is opened and read off the event loop.
        """
        lpath = self._admit(path)
        if length == 0:
            return b""
        if lpath is not None and length <= INLINE_READ_BYTES and self._verify != "always":
            data = self._files.read_cached(path, offset, length)
            if data is not None:
                return data
        loop = asyncio.get_running_loop()
        future: asyncio.Future[ByteData] = loop.create_future()
        queue = self._queued.get(loop)
        if queue is None:
            queue = self._queued[loop] = []
            loop.call_soon(self._dispatch, loop)
        queue.append(_Pending(path, offset, offset + length, future))
        return await future

    def read_sync(self, path: str, offset: int, length: int) -> ByteData:
        """``length`` bytes of ``path`` from ``offset``, blocking; for synchronous callers."""
        lpath = self._admit(path)
        if length == 0:
            return b""
        if lpath is not None:
            return self._read_local(path, lpath, offset, offset + length)
        reads = [(offset, offset + length)]
        (result,) = fsspec.asyn.sync(
            _io_loop(), self._read_remote, self._filesystem(path), path, reads
        )
        if isinstance(result, BaseException):
            raise result
        return result

    def verify(self, extents: Mapping[str, int]) -> VerifyReport:
        """Check each source of ``extents`` (path -> end of its last referenced byte).

        A source is ``"ok"`` when it exists, may be read, matches its recorded
        fingerprints and is long enough for every chunk referenced in it.
        """
        statuses: dict[str, SourceStatus] = {}
        remote: list[tuple[fsspec.AbstractFileSystem, str]] = []
        for path in extents:
            try:
                lpath = self._admit(path)
            except PermissionError as e:
                statuses[path] = SourceStatus(path, "forbidden", str(e))
                continue
            if lpath is None:
                remote.append((self._filesystem(path), path))
            else:
                statuses[path] = self._status(path, extents[path], _local_status_fingerprint(lpath))
        if remote:
            checked = fsspec.asyn.sync(_io_loop(), self._remote_statuses, remote, extents)
            statuses.update((s.path, s) for s in checked)
        return VerifyReport(tuple(statuses[p] for p in extents))

    def close(self) -> None:
        """Close every cached descriptor that is not in use (in-use ones close when released)."""
        self._files.close()

    def __getstate__(self) -> dict[str, Any]:
        return {
            "storage_options": self._storage_options,
            "allow": self._allow,
            "fingerprints": self._recorded,
            **self._tuning,
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state.pop("storage_options"), **state)  # type: ignore[misc]

    # ------------------------------------------------------------------ admission

    def _admit(self, path: str) -> str | None:
        """Enforce the allow-list for ``path``; its local file path, or None if it is remote."""
        try:
            return self._routes[path]
        except KeyError:
            pass
        if self._allowed is not None and not any(_under(path, p) for p in self._allowed):
            folder = _resolved(path).rsplit("/", 1)[0] + "/"
            raise PermissionError(
                f"source {path!r} is outside the allowed prefixes {list(self._allow)}; "
                f"to read it, allow its folder: allow=[..., {folder!r}]"
            )
        route = local_path(path) if is_local(path) else None
        self._routes[path] = route
        return route

    # ------------------------------------------------------------------ fingerprints

    def record(self, fingerprints: Mapping[str, Fingerprint]) -> None:
        """Add what sources looked like when scanned (a manifest's ``fingerprints``).

        A store records an array's fingerprints when that array is first read,
        so that opening a document loads no manifest. Two different
        fingerprints for one file cannot both hold: that raises
        ``SourceChangedError``.
        """
        with self._lock:
            for path, fp in fingerprints.items():
                known = self._recorded.get(path, ())
                if fp in known:
                    continue
                for other in known:
                    if diff := differences(other, fp):
                        raise SourceChangedError(
                            errno.ESTALE,
                            f"source file {path!r} was recorded with two different fingerprints "
                            f"({diff}): it changed between scans; rescan it",
                        )
                self._recorded[path] = (*known, fp)

    def filesystem(self, path: str) -> fsspec.AbstractFileSystem:
        """The fsspec file system that reads the remote ``path``, created once and reused."""
        self.check_allowed(path)
        return self._filesystem(path)

    def _check(self, path: str, current: Fingerprint) -> None:
        """Raise ``SourceChangedError`` if ``current`` differs from what ``path`` should be."""
        recorded = self._recorded.get(path)
        if recorded:
            for fp in recorded:
                if diff := differences(fp, current):
                    raise SourceChangedError(
                        errno.ESTALE,
                        f"source file {path!r} changed since it was scanned ({diff}); its "
                        f"chunks can no longer be read as recorded. Rescan it, or open the "
                        f"store with verify='never' if the change is known to be harmless",
                    )
            return
        with self._lock:
            seen = self._seen.setdefault(path, current)
        if diff := differences(seen, current):
            raise SourceChangedError(
                errno.ESTALE,
                f"source file {path!r} changed while it was being read ({diff}); "
                f"reopen the store to read its new content",
            )

    def _check_opened(self, path: str, st: os.stat_result) -> None:
        """Check a freshly opened local descriptor (its ``fstat``) unless verification is off."""
        if self._verify != "never":
            self._check(path, local_fingerprint(st))

    def _status(self, path: str, extent: int, current: Fingerprint | BaseException) -> SourceStatus:
        recorded = self._recorded.get(path, ())
        first = recorded[0] if recorded else None
        if isinstance(current, FileNotFoundError):
            return SourceStatus(path, "missing", "not found", first)
        if isinstance(current, BaseException):
            return SourceStatus(path, "unreadable", str(current) or repr(current), first)
        for fp in recorded:
            if diff := differences(fp, current):
                return SourceStatus(path, "changed", diff, fp, current)
        if current.size is not None and current.size < extent:
            return SourceStatus(
                path,
                "truncated",
                f"{current.size} bytes, but chunks are referenced up to byte {extent}",
                first,
                current,
            )
        detail = "matches its fingerprint" if recorded else "no fingerprint recorded; long enough"
        return SourceStatus(path, "ok", detail, first, current)

    # ------------------------------------------------------------------ local files

    def _read_local(self, path: str, lpath: str, start: int, stop: int) -> ByteData:
        """Bytes ``[start, stop)`` of a local file, blocking."""
        desc = self._files.acquire(path, lpath, self._check_opened)
        try:
            if self._verify == "always":
                desc = self._recheck_local(path, lpath, desc)
            data = _pread_full(desc.fd, stop - start, start)
        except (SourceChangedError, FileNotFoundError):
            raise
        except OSError as e:
            if e.filename is not None or path in str(e):
                raise
            raise type(e)(e.errno, f"reading source file {path!r} failed: {e.strerror}") from None
        finally:
            self._files.release(desc)
        if len(data) != stop - start:
            raise _too_short(path, start, stop, len(data))
        return data

    def _recheck_local(self, path: str, lpath: str, desc: _Descriptor) -> _Descriptor:
        """``verify="always"``: the path must still match; follow it if it names a new file."""
        try:
            st = os.stat(lpath)
        except FileNotFoundError as e:
            raise FileNotFoundError(e.errno, f"source file {path!r} not found") from None
        self._check(path, local_fingerprint(st))
        if (st.st_dev, st.st_ino) == desc.identity:
            return desc
        self._files.discard(path)
        fresh = self._files.acquire(path, lpath, self._check_opened)
        self._files.release(desc)
        return fresh

    def _read_local_batch(self, path: str, lpath: str, reads: list[tuple[int, int]]) -> list[Any]:
        """Blocking reads of one file (in a worker thread): bytes or the exception, per read."""
        out: list[Any] = []
        for start, stop in reads:
            try:
                out.append(self._read_local(path, lpath, start, stop))
            except Exception as e:
                out.append(e)
        return out

    # ------------------------------------------------------------------ gathering

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
                deliver(e)

    def _submit(
        self,
        loop: asyncio.AbstractEventLoop,
        path: str,
        reads: list[tuple[int, int]],
        deliver: Callable[[list[Any] | BaseException], None],
    ) -> None:
        """Start one job reading ``reads`` of ``path``; ``deliver`` gets its results on ``loop``."""
        lpath = self._routes[path]
        if lpath is not None:
            job = loop.run_in_executor(None, self._read_local_batch, path, lpath, reads)
            job.add_done_callback(lambda job: deliver(_outcome(job)))
            return
        coro = self._read_remote(self._filesystem(path), path, reads)
        remote = asyncio.run_coroutine_threadsafe(coro, _io_loop())
        remote.add_done_callback(lambda job: _call_soon(loop, deliver, _outcome(job)))

    # ------------------------------------------------------------------ remote objects

    async def _read_remote(
        self, fs: fsspec.AbstractFileSystem, path: str, reads: list[tuple[int, int]]
    ) -> list[Any]:
        """Fetch ``reads`` of one remote object concurrently (on fsspec's I/O loop).

        Returns the bytes, or the exception, of each read.
        """
        try:
            await self._check_remote(fs, path)
        except Exception as e:
            return [e] * len(reads)
        return list(
            await asyncio.gather(
                *(self._fetch(fs, path, start, stop) for start, stop in reads),
                return_exceptions=True,
            )
        )

    async def _fetch(
        self, fs: fsspec.AbstractFileSystem, path: str, start: int, stop: int
    ) -> bytes:
        """One remote range; a body shorter than asked for is retried, then reported.

        Unless ``verify="never"``, the ETag the range was served with (S3, GCS, Azure, HTTP)
        must be the source's: an object replaced after it was checked is refused.
        """

        async def attempt() -> bytes:
            data, etag = await _get_range(fs, path, start, stop)
            if etag and self._verify != "never":  # before the length: a new object may differ
                self._check(path, Fingerprint(etag=normalised_etag(etag)))
            return data

        def complete(data: bytes) -> bool:
            if len(data) > stop - start:
                raise OSError(
                    errno.EIO,
                    f"source {path!r} answered {len(data)} bytes for the {stop - start}-byte "
                    f"range {start}..{stop}: the server does not honour byte ranges",
                )
            return len(data) == stop - start

        data = await self._retrying(path, f"bytes {start}..{stop}", attempt, complete)
        if len(data) != stop - start:
            raise _too_short(path, start, stop, len(data))
        return data

    async def _retrying(
        self,
        path: str,
        what: str,
        attempt: Callable[[], Awaitable[Any]],
        complete: Callable[[Any], bool] = lambda result: True,
    ) -> Any:
        """Run ``attempt`` under the concurrency bound and timeout, retrying transient failures.

        An incomplete result (``complete`` is False) is retried too, and
        returned as it is if every attempt comes back incomplete.
        """
        if self._semaphore is None:
            self._semaphore = asyncio.Semaphore(self._max_concurrency)
        error: Exception | None = None
        result: Any = None
        for n in range(self._retries + 1):
            if n:
                delay = min(RETRY_BACKOFF_MAX, RETRY_BACKOFF * 2 ** (n - 1))
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
            try:
                async with self._semaphore:
                    result = await asyncio.wait_for(attempt(), self._timeout)
            except Exception as e:
                if not _transient(e):
                    raise _named(e, path) from e
                error = e
                continue
            if complete(result):
                return result
            error = None
        if error is None:
            return result
        raise OSError(
            errno.EIO,
            f"reading {what} of source {path!r} failed after {self._retries + 1} attempt(s): "
            f"{_describe(error)}",
        ) from error

    async def _check_remote(self, fs: fsspec.AbstractFileSystem, path: str) -> None:
        """Check a remote object's fingerprint: once per source, or before every read."""
        if self._verify == "never":
            return
        if self._verify == "always":
            self._check(path, await self._remote_fingerprint(fs, path))
            return
        check = self._remote_checks.get(path)
        if check is None:
            check = self._remote_checks[path] = asyncio.ensure_future(self._first_check(fs, path))
        await asyncio.shield(check)

    async def _first_check(self, fs: fsspec.AbstractFileSystem, path: str) -> None:
        try:
            self._check(path, await self._remote_fingerprint(fs, path))
        except SourceChangedError:
            raise  # stays failed: every read of this source refuses
        except BaseException:
            del self._remote_checks[path]  # undecided: the next read checks again
            raise

    async def _remote_fingerprint(self, fs: fsspec.AbstractFileSystem, path: str) -> Fingerprint:
        async def info() -> dict[str, Any]:
            fs.invalidate_cache(path)
            if protocol_of(path) in ("gs", "gcs") and hasattr(fs, "_get_object"):
                # gcsfs: the object's metadata in one request (its _info races a listing too)
                return await fs._get_object(path)
            if fs.async_impl:
                return await fs._info(path)
            return await asyncio.to_thread(fs.info, path)

        return fingerprint_from_info(await self._retrying(path, "the size and ETag", info))

    async def _remote_statuses(
        self, sources: list[tuple[fsspec.AbstractFileSystem, str]], extents: Mapping[str, int]
    ) -> list[SourceStatus]:
        async def one(fs: fsspec.AbstractFileSystem, path: str) -> SourceStatus:
            try:
                current: Fingerprint | BaseException = await self._remote_fingerprint(fs, path)
            except Exception as e:
                current = e
            return self._status(path, extents[path], current)

        return list(await asyncio.gather(*(one(fs, p) for fs, p in sources)))

    def _filesystem(self, path: str) -> fsspec.AbstractFileSystem:
        protocol = protocol_of(path)
        options = options_for(path, self._storage_options)
        if protocol in ("http", "https"):
            # Honour HTTP(S)_PROXY / NO_PROXY and ~/.netrc, as curl and requests do.
            client = {"trust_env": True, **options.get("client_kwargs", {})}
            options = {**options, "client_kwargs": client}
        key = (protocol, json.dumps(options, sort_keys=True, default=repr))
        with self._lock:
            fs = self._filesystems.get(key)
            if fs is None:
                fs = self._filesystems[key] = fsspec.filesystem(protocol, **options)
            return fs


def _deliverer(
    plan: list[tuple[int, int, list[int]]], pendings: list[_Pending]
) -> Callable[[list[Any] | BaseException], None]:
    """Hands each planned read's bytes (or error) to the queued reads it serves (on their loop)."""

    def deliver(results: list[Any] | BaseException) -> None:
        for i, (start, stop, members) in enumerate(plan):
            result = results if isinstance(results, BaseException) else results[i]
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


def _outcome(job: asyncio.Future[Any] | ConcurrentFuture[Any]) -> Any:
    """A finished job's result, or its exception."""
    try:
        return job.result()
    except BaseException as e:
        return e


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[Any], None], arg: Any) -> None:
    """Run ``callback(arg)`` on ``loop`` from another thread, unless that loop is closed."""
    with contextlib.suppress(RuntimeError):  # closed: nobody waits for the result any more
        loop.call_soon_threadsafe(callback, arg)


_LIVE: weakref.WeakSet[Sources] = weakref.WeakSet()


def _after_fork_in_child() -> None:
    for sources in list(_LIVE):
        sources._start_threads_state()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def _io_loop() -> asyncio.AbstractEventLoop:
    """fsspec's I/O loop (its own thread), where every remote request runs."""
    return fsspec.asyn.get_loop()


def _too_short(path: str, start: int, stop: int, got: int) -> OSError:
    return OSError(
        errno.EIO,
        f"source file {path!r} is too short: bytes {start}..{stop} were expected, "
        f"{got} could be read",
    )


async def _get_range(
    fs: fsspec.AbstractFileSystem, path: str, start: int, stop: int
) -> tuple[bytes, str | None]:
    """Bytes ``[start, stop)`` of a remote object, and the ETag they were served with
    (None where the file system does not tell: S3, GCS, Azure and HTTP do)."""
    protocol = protocol_of(path)
    if protocol in ("http", "https"):  # fsspec's HTTPFileSystem, which hides the headers
        options = dict(fs.kwargs)
        headers = {**options.pop("headers", {}), "Range": f"bytes={start}-{stop - 1}"}
        session = await fs.set_session()
        async with session.get(fs.encode_url(path), headers=headers, **options) as response:
            data = await response.read()
            fs._raise_not_found_for_status(response, path)
            return data, response.headers.get("ETag")
    if protocol in ("s3", "s3a") and hasattr(fs, "_call_s3"):  # s3fs
        bucket, key, version = fs.split_path(path)
        response = await fs._call_s3(
            "get_object",
            Bucket=bucket,
            Key=key,
            Range=f"bytes={start}-{stop - 1}",
            **({"VersionId": version} if version else {}),
        )
        try:
            data = await response["Body"].read()
        finally:
            response["Body"].close()
        return data, response.get("ETag")
    if protocol in ("gs", "gcs") and hasattr(fs, "_call"):  # gcsfs, as its _cat_file does
        zonal = getattr(fs, "_is_zonal_bucket", None)  # zonal buckets are read over gRPC
        if zonal is None or not await zonal(fs.split_path(path)[0]):
            headers = {"Range": f"bytes={start}-{stop - 1}"}
            response_headers, data = await fs._call("GET", fs.url(path), headers=headers)
            return data, response_headers.get("ETag")
    if protocol in ("az", "abfs", "abfss") and hasattr(fs, "service_client"):  # adlfs, likewise
        container, blob, version = fs.split_path(path)
        async with fs.service_client.get_blob_client(container=container, blob=blob) as client:
            stream = await client.download_blob(
                offset=start, length=stop - start, version_id=version, **fs._timeout_kwargs
            )
            return await stream.readall(), stream.properties.etag
    if fs.async_impl:
        return await fs._cat_file(path, start=start, end=stop), None
    return await asyncio.to_thread(fs.cat_file, path, start=start, end=stop), None


def _transient(error: BaseException) -> bool:
    """Whether a remote failure may go away on retry: timeouts, resets, 5xx, broken bodies."""
    if isinstance(
        error, FileNotFoundError | PermissionError | IsADirectoryError | SourceChangedError
    ):
        return False
    status = _http_status(error)
    if status is not None:
        return status >= 500 or status in (408, 429)
    if isinstance(error, (TimeoutError, ConnectionError, *_connection_errors())):
        return True
    return isinstance(error, OSError) and error.errno in _TRANSIENT_ERRNOS


def _http_status(error: BaseException) -> int | None:
    """The HTTP status of a failed request, as aiohttp, gcsfs or azure-core report it."""
    for attribute in ("status", "code", "status_code"):
        status = getattr(error, attribute, None)
        if isinstance(status, int) and 100 <= status < 600:
            return status
    return None


@functools.cache
def _connection_errors() -> tuple[type[BaseException], ...]:
    """The HTTP clients' own errors for broken connections and bodies (when installed)."""
    found: list[type[BaseException]] = []
    try:
        import aiohttp

        found.append(aiohttp.ClientError)  # disconnects, payload errors (short bodies), resets
    except ImportError:
        pass
    try:
        from botocore.exceptions import HTTPClientError

        found.append(HTTPClientError)  # connection and read timeouts, closed connections
    except ImportError:
        pass
    try:
        from azure.core.exceptions import ServiceRequestError, ServiceResponseError

        found += [ServiceRequestError, ServiceResponseError]  # could not connect | no answer
    except ImportError:
        pass
    return tuple(found)


def _named(error: Exception, path: str) -> OSError:
    """``error`` as an ``OSError`` of the kind a caller catches, naming the source."""
    if path in str(error) and isinstance(error, OSError):
        return error
    status = _http_status(error)
    if isinstance(error, FileNotFoundError) or status == 404:
        return FileNotFoundError(errno.ENOENT, f"source file {path!r} not found")
    if isinstance(error, PermissionError) or status in (401, 403):
        return PermissionError(errno.EACCES, f"source {path!r} may not be read: {_describe(error)}")
    if status == 416:
        return OSError(
            errno.EIO, f"source file {path!r} is too short for the byte range asked (HTTP 416)"
        )
    return OSError(
        getattr(error, "errno", None) or errno.EIO,
        f"reading source {path!r} failed: {_describe(error)}",
    )


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "unknown error"
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


def _local_status_fingerprint(lpath: str) -> Fingerprint | BaseException:
    """A local file's fingerprint for a report, or why it cannot be read."""
    try:
        os.close(_open_readonly(lpath))
        return local_fingerprint(os.stat(lpath))
    except OSError as e:
        return e


def _resolved(path: str) -> str:
    """``path`` as the allow-list compares it: local paths real (``..`` and symlinks
    resolved), URLs percent-decoded."""
    if is_local(path):
        return os.path.realpath(local_path(path))
    return unquote(path)


def _under(path: str, prefix: str) -> bool:
    """Whether ``path`` lies at or below the resolved ``prefix`` (see ``_resolved``).

    Local paths are compared after ``realpath``, so ``..`` and symlinks cannot
    escape; URLs after percent-decoding, with any ``..`` segment refused.
    """
    if is_local(path) != is_local(prefix):
        return False
    resolved = _resolved(path)
    if not is_local(path) and ".." in resolved.split("/"):
        return False
    sep = os.sep if is_local(path) else "/"
    return resolved == prefix.rstrip(sep) or resolved.startswith(prefix.rstrip(sep) + sep)
