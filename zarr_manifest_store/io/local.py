"""Local source files: read-only descriptors kept open, ``pread``, and cached reads.

A file is opened once (read-only, close-on-exec, without blocking), checked on
that very descriptor — a regular file, inside the allow-list, matching its
fingerprint — and kept open for later reads; at most :data:`MAX_OPEN_FILES`
idle descriptors stay open, the least recently used closing first. Unless
``verify="never"``, every read ends with an ``fstat`` of its descriptor: a
file whose size or modification time moved since it was opened is refused
with ``SourceChangedError``. A read
whose bytes are all in the page cache is served on the spot with
``preadv(RWF_NOWAIT)`` (no thread hop); every other read blocks, so the
caller runs it in a worker thread.

A reader that only copies bytes out (:meth:`LocalFiles.read_mapped`) reads them
from a read-only memory map of the file instead, made once per descriptor and
closed with it (Python's map holds a duplicate of the descriptor: a mapped file
takes two): no buffer is filled for it to copy from. A file that shrank
under a mapping would kill the process (``SIGBUS``) at the first byte past its
new end, so every mapped read first checks the file's size with ``fstat`` (a
shorter file is refused, naming it) and, unless ``verify="never"``, that it is
unchanged, before and after the copy. What no check can catch is a file cut
short *during* a copy (a fraction of a millisecond): that ends the process, as
it does scipy's and numpy's memory-mapped readers.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import numpy as np

from zarr_manifest_store.errors import SourceChangedError
from zarr_manifest_store.io.allow import AllowList
from zarr_manifest_store.io.fingerprints import Verify, differences, local_fingerprint
from zarr_manifest_store.manifest import Fingerprint

__all__ = ["INLINE_READ_BYTES", "MAX_OPEN_FILES", "LocalFiles", "open_source", "too_short"]

MAX_OPEN_FILES = 128
"""Descriptors kept open at once; the least recently used idle one is closed beyond this."""
INLINE_READ_BYTES = 4 << 20
"""Largest cached local read served on the event loop itself; bigger ones go to a thread."""

_RWF_NOWAIT: int | None = getattr(os, "RWF_NOWAIT", None)


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
    """An open file descriptor shared by readers, and its memory map once one is made;
    both closed once evicted and idle."""

    __slots__ = ("evicted", "fd", "identity", "mappable", "mapping", "nowait", "stamp", "users")

    def __init__(self, fd: int, st: os.stat_result) -> None:
        self.fd = fd
        self.identity = (st.st_dev, st.st_ino)  # which file the descriptor reads
        self.stamp = _stamp(st)  # what it looked like when opened
        self.users = 0
        self.evicted = False
        self.nowait = _RWF_NOWAIT is not None
        self.mapping: mmap.mmap | None = None
        self.mappable = st.st_size > 0

    def mapped(self) -> mmap.mmap | None:
        """The file's bytes as they were when it was opened, memory-mapped read-only (made
        on first use, with the lock of the descriptors held); None for an empty file or
        where none can be made (no address space left, say): then it is read."""
        if self.mapping is None and self.mappable:
            try:
                self.mapping = mmap.mmap(self.fd, self.stamp[2], prot=mmap.PROT_READ)
            except (OSError, ValueError):
                self.mappable = False
        return self.mapping

    def close(self) -> None:
        """Close the map (unless a view of it is still alive: it then closes with the last
        one) and the descriptor."""
        if self.mapping is not None:
            with contextlib.suppress(BufferError):
                self.mapping.close()
            self.mapping = None
        os.close(self.fd)


class _Descriptors:
    """Read-only descriptors of local files by source path, at most ``MAX_OPEN_FILES`` idle ones."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.opening = threading.Lock()
        self._open: OrderedDict[str, _Descriptor] = OrderedDict()

    def acquire(self, path: str, opener: Callable[[], tuple[int, os.stat_result]]) -> _Descriptor:
        """The descriptor of source ``path``, opened (and checked) by ``opener`` if need be.

        One thread at a time opens files, so that a file is opened (and
        checked) once however many threads ask for it together.
        """
        desc = self._hit(path)
        if desc is not None:
            return desc
        with self.opening:
            desc = self._hit(path)  # opened by the thread that held the lock before us
            if desc is not None:
                return desc
            fd, st = opener()
            with self.lock:
                desc = self._open[path] = _Descriptor(fd, st)
                desc.users += 1
                self._evict()
                return desc

    def read_cached(self, path: str, offset: int, length: int, stamped: bool) -> np.ndarray | None:
        """``length`` bytes of ``path`` from ``offset``, read without blocking: None unless
        the file is open already and every byte is in the page cache (and, if
        ``stamped``, the file's size and modification time are still those it was
        opened with).

        The read is done under the lock (it only copies from the page cache),
        so the descriptor cannot be closed under it and needs no user count.
        The ``fstat`` after it is not: other readers need not wait for it, and a
        descriptor closed (or its number reused) meanwhile fails the comparison,
        which includes the file's identity.
        """
        lock = self.lock
        lock.acquire()  # not `with`: this is the whole of a cached read, and `with` costs more
        try:
            desc = self._open.get(path)
            if desc is None or not desc.nowait:
                return None
            self._open.move_to_end(path)
            data = _preadv_nowait(desc.fd, offset, length)
            if data is None or not stamped:
                return data
            fd, stamp = desc.fd, desc.stamp
        except OSError as e:  # errors are reported by the blocking read that follows
            if e.errno in (errno.EOPNOTSUPP, errno.EINVAL):
                desc.nowait = False  # this file system cannot tell: always read in a thread
            return None
        finally:
            lock.release()
        # After the read: a write begun before it shows here. A change is reported by the
        # blocking read that follows.
        return data if _stamp_of(fd) == stamp else None

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
                desc.close()
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
            desc.close()

    def _evict(self) -> None:
        """Close the least recently used idle descriptors beyond ``MAX_OPEN_FILES`` (lock held)."""
        excess = len(self._open) - MAX_OPEN_FILES
        for path in list(self._open):
            if excess <= 0:
                break
            if self._open[path].users == 0:
                self._retire(self._open.pop(path))
                excess -= 1


_OPEN_FLAGS = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
_KINDS = {
    stat.S_IFIFO: "a FIFO (named pipe)",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
}


def open_source(path: str, lpath: str, allow: AllowList) -> tuple[int, os.stat_result]:
    """A read-only descriptor of source ``path`` (the local file ``lpath``) and its ``fstat``.

    Only a regular file inside ``allow`` is opened: anything else is refused
    before it is opened where its name tells, and from its descriptor (opened
    non-blocking, so a FIFO cannot hang) where it was swapped in since.
    """
    _refuse_irregular(path, _stat(path, lpath))
    fd = _open_readonly(lpath)
    try:
        st = os.fstat(fd)
        _refuse_irregular(path, st)
        allow.check_opened(path, st)
        os.set_blocking(fd, True)
    except BaseException:
        os.close(fd)
        raise
    return fd, st


def _refuse_irregular(path: str, st: os.stat_result) -> None:
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(errno.EISDIR, f"source {path!r} is a directory, not a file")
    if not stat.S_ISREG(st.st_mode):
        kind = _KINDS.get(stat.S_IFMT(st.st_mode), "not a regular file")
        raise OSError(
            errno.EINVAL, f"source {path!r} is {kind}; only regular files are read as sources"
        )


def _stat(path: str, lpath: str) -> os.stat_result:
    try:
        return os.stat(lpath)
    except FileNotFoundError as e:
        raise FileNotFoundError(e.errno, f"source file {path!r} not found") from None
    except PermissionError as e:
        raise PermissionError(
            e.errno, f"source file {path!r} cannot be opened: permission denied"
        ) from None


def _open_readonly(path: str) -> int:
    try:
        return os.open(path, _OPEN_FLAGS)
    except FileNotFoundError as e:
        raise FileNotFoundError(e.errno, f"source file {path!r} not found") from None
    except IsADirectoryError as e:
        raise IsADirectoryError(e.errno, f"source {path!r} is a directory, not a file") from None
    except PermissionError as e:
        raise PermissionError(
            e.errno, f"source file {path!r} cannot be opened: permission denied"
        ) from None
    except OSError as e:
        raise OSError(e.errno, f"source file {path!r} cannot be opened: {e.strerror}") from None


def _pread_full(fd: int, length: int, offset: int) -> bytes:
    """``length`` bytes from ``offset``, blocking; fewer only at the end of the file."""
    data = os.pread(fd, length, offset)
    while 0 < len(data) < length:  # a short read (rare for regular files): read the rest
        more = os.pread(fd, length - len(data), offset + len(data))
        if not more:
            break
        data += more
    return data


def too_short(path: str, start: int, stop: int, got: int) -> SourceChangedError:
    """The error of a source that ends before the bytes a chunk needs: it changed since
    the scan (or the manifest was wrong about it)."""
    return SourceChangedError(
        errno.EIO,
        f"source file {path!r} is too short: bytes {start}..{stop} were expected, "
        f"{got} could be read; it changed since it was scanned: scan it again",
    )


class LocalFiles:
    """Reads local source files through shared descriptors, checking each file as it opens.

    ``check(path, fingerprint)`` raises if a file no longer looks as it should;
    ``verify`` says when it runs (see :data:`~zarr_manifest_store.io.fingerprints.Verify`).
    """

    def __init__(
        self, check: Callable[[str, Fingerprint], None], verify: Verify, allow: AllowList
    ) -> None:
        self._check = check
        self._verify = verify
        self._allow = allow
        self.descriptors = _Descriptors()

    def after_fork(self) -> None:
        """New locks in a forked child (the parent's may be held by threads it does not have)."""
        self.descriptors.lock = threading.Lock()
        self.descriptors.opening = threading.Lock()

    def read_cached(self, path: str, offset: int, length: int) -> np.ndarray | None:
        """The bytes if ``path`` is open and every byte is in the page cache, else None."""
        if length > INLINE_READ_BYTES or self._verify == "always":
            return None
        return self.descriptors.read_cached(path, offset, length, self._verify != "never")

    def read(self, path: str, lpath: str, start: int, stop: int) -> bytes:
        """Bytes ``[start, stop)`` of source ``path`` (the local file ``lpath``), blocking."""
        desc = self.descriptors.acquire(path, lambda: self._open(path, lpath))
        try:
            if self._verify == "always":
                desc = self._recheck(path, lpath, desc)
            end = stop if stop <= desc.stamp[2] else min(stop, os.fstat(desc.fd).st_size)
            data = _pread_full(desc.fd, max(0, end - start), start)  # never allocate past the end
            if self._verify != "never":
                _check_stamp(path, desc)
        except (SourceChangedError, FileNotFoundError):
            raise
        except OSError as e:
            if e.filename is not None or path in str(e):
                raise
            raise type(e)(e.errno, f"reading source file {path!r} failed: {e.strerror}") from None
        finally:
            self.descriptors.release(desc)
        if len(data) != stop - start:
            raise too_short(path, start, stop, len(data))
        return data

    def read_mapped(
        self, path: str, lpath: str, start: int, stop: int, copy: Callable[[np.ndarray], None]
    ) -> bool:
        """Call ``copy`` with bytes ``[start, stop)`` of source ``path`` (the local file
        ``lpath``): a read-only ``uint8`` view of the file's memory map, valid only during
        the call (page faults read what is not cached: this blocks). False, having done
        nothing, where the file is not mapped (``verify="always"``, which follows the path
        on every read; an empty file, or a range past the end the file had when opened, or
        no map to be had): :meth:`read` it then."""
        if self._verify == "always":
            return False
        descriptors = self.descriptors
        desc = descriptors.acquire(path, lambda: self._open(path, lpath))
        try:
            with descriptors.lock:
                mapping = desc.mapped()
            if mapping is None or stop > len(mapping):
                return False
            _check_mappable(path, desc, start, stop, stamped=self._verify != "never")
            copy(np.frombuffer(mapping, np.uint8, stop - start, start))
            if self._verify != "never":
                _check_stamp(path, desc)
        finally:
            descriptors.release(desc)
        return True

    def read_batch(self, path: str, lpath: str, reads: list[tuple[int, int]]) -> list[Any]:
        """Blocking reads of one file (in a worker thread): bytes or the exception, per read."""
        out: list[Any] = []
        for start, stop in reads:
            try:
                out.append(self.read(path, lpath, start, stop))
            except Exception as e:
                out.append(e)
        return out

    def close(self) -> None:
        """Close every idle descriptor (those in use close when released)."""
        self.descriptors.close()

    def _open(self, path: str, lpath: str) -> tuple[int, os.stat_result]:
        """Open ``path`` (see :func:`open_source`) and check it against its fingerprint
        unless verification is off."""
        fd, st = open_source(path, lpath, self._allow)
        if self._verify != "never":
            try:
                self._check(path, local_fingerprint(st))
            except BaseException:
                os.close(fd)
                raise
        return fd, st

    def _recheck(self, path: str, lpath: str, desc: _Descriptor) -> _Descriptor:
        """``verify="always"``: the path must still match; follow it if it names a new file."""
        try:
            st = os.stat(lpath)
        except FileNotFoundError as e:
            raise FileNotFoundError(e.errno, f"source file {path!r} not found") from None
        self._check(path, local_fingerprint(st))
        if (st.st_dev, st.st_ino) == desc.identity:
            return desc
        self.descriptors.discard(path)
        fresh = self.descriptors.acquire(path, lambda: self._open(path, lpath))
        self.descriptors.release(desc)
        return fresh


def _stamp(st: os.stat_result) -> tuple[int, int, int, int]:
    """Which file a descriptor reads and what it looks like: inode, device, size, mtime."""
    return (st.st_ino, st.st_dev, st.st_size, st.st_mtime_ns)


def _stamp_of(fd: int) -> tuple[int, int, int, int] | None:
    try:
        return _stamp(os.fstat(fd))
    except OSError:
        return None


def _check_stamp(path: str, desc: _Descriptor) -> None:
    """Refuse a read if the file's size or modification time moved since it was opened
    (an ``fstat`` after the read: a write begun before it shows here)."""
    st = os.fstat(desc.fd)
    if _stamp(st) != desc.stamp:
        raise _changed(path, desc, st)


def _check_mappable(path: str, desc: _Descriptor, start: int, stop: int, stamped: bool) -> None:
    """Refuse to copy ``[start, stop)`` out of the map of a file now shorter than ``stop``
    (the copy would end the process with ``SIGBUS``) or, if ``stamped``, changed since it
    was opened."""
    st = os.fstat(desc.fd)
    if st.st_size < stop:
        raise too_short(path, start, stop, max(0, st.st_size - start))
    if stamped and _stamp(st) != desc.stamp:
        raise _changed(path, desc, st)


def _changed(path: str, desc: _Descriptor, st: os.stat_result) -> SourceChangedError:
    opened = Fingerprint(size=desc.stamp[2], mtime_ns=desc.stamp[3])
    return SourceChangedError(
        errno.ESTALE,
        f"source file {path!r} changed while it was being read "
        f"({differences(opened, local_fingerprint(st))}); reopen the store to read its "
        f"new content, or rescan it",
    )


def fingerprint(path: str, lpath: str, allow: AllowList) -> Fingerprint:
    """What source ``path`` (the local file ``lpath``) looks like now: size and mtime, from
    the descriptor of the file itself (a regular file inside ``allow``)."""
    fd, st = open_source(path, lpath, allow)
    os.close(fd)
    return local_fingerprint(st)


def status_fingerprint(path: str, lpath: str, allow: AllowList) -> Fingerprint | BaseException:
    """A local file's fingerprint for a report, or why it cannot be read."""
    try:
        return fingerprint(path, lpath, allow)
    except OSError as e:
        return e
