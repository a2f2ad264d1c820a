"""A remote source as a read-only file object, read in large cached blocks.

Scanners that hand a file object to a library (h5py) see many small reads:
the HDF5 library asks for superblock, object headers, B-tree nodes and heaps a
few hundred bytes at a time, and for some of them again and again. Each is a
round trip over the network unless it is served from memory. :class:`RemoteFile`
reads whole blocks (1 MiB by default) through :class:`~zarr_manifest_store.io.sources.Sources`
(so the allow-list, fingerprints, retries and deadlines apply), fetches all the
missing blocks a read spans in one request, and keeps the most recent ones.
:meth:`RemoteFile.open` reads the first block with the source's fingerprint in one
request, before any library opens the file: h5py serialises its calls process-wide,
so reads made beforehand are the ones that run concurrently across files.

Opening one file reads it several times: the format registry looks at its first
bytes, the scanner reads its metadata, the loaded variables (coordinates) their
chunks. Within :func:`sharing` (``zms.scan`` and the ``open_virtual_*`` functions
open each file in one), they share one RemoteFile (:func:`shared_remote_file`,
:func:`cached_bytes`): a small file costs one request in all.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import io
import json
import threading
from collections.abc import Iterator

from zarr_manifest_store.io.sources import Sources
from zarr_manifest_store.manifest import Fingerprint

__all__ = [
    "BLOCK_BYTES",
    "MAX_BLOCKS",
    "RemoteFile",
    "cached_bytes",
    "shared_remote_file",
    "sharing",
]

BLOCK_BYTES = 1 << 20
"""Bytes a remote file is read in: a request at tens of milliseconds costs what a megabyte does."""
MAX_BLOCKS = 64
"""Blocks a remote file keeps in memory at most (the least recently used go first)."""


class RemoteFile(io.RawIOBase):
    """``size`` bytes of the remote ``path``, read through ``sources`` in cached blocks;
    ``fingerprint`` is what the file looked like when it was opened (kept for its scan), and
    ``head``, its first bytes if already read, is kept as the first blocks."""

    def __init__(
        self,
        sources: Sources,
        path: str,
        size: int,
        *,
        fingerprint: Fingerprint,
        head: bytes = b"",
        block_bytes: int = BLOCK_BYTES,
        max_blocks: int = MAX_BLOCKS,
    ) -> None:
        super().__init__()
        self._sources, self._path, self._size = sources, path, size
        self.fingerprint = fingerprint
        self._block_bytes, self._max_blocks = block_bytes, max_blocks
        self._blocks: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        self._position = 0
        self._lock = threading.Lock()
        self.requests = 0
        """Requests made so far (for logging and tests)."""
        whole = len(head) if len(head) >= size else len(head) - len(head) % block_bytes
        for start in range(0, whole, block_bytes):
            self._blocks[start // block_bytes] = head[start : start + block_bytes]

    @classmethod
    def open(cls, sources: Sources, path: str) -> RemoteFile:
        """``path`` with its first block and fingerprint read in one request; ``sources``
        records the fingerprint, so that the reads of further blocks carry the check."""
        head, fingerprint = sources.read_head(path, BLOCK_BYTES)
        sources.record({path: fingerprint})
        size = fingerprint.size
        if size is None:  # the file system's listing says
            size = int(sources.filesystem(path).size(path))
        return cls(sources, path, size, fingerprint=fingerprint, head=bytes(head))

    @property
    def size(self) -> int:
        return self._size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._position

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._position, io.SEEK_END: self._size}[whence]
        if base + offset < 0:
            raise ValueError(f"negative seek position {base + offset} in {self._path!r}")
        self._position = base + offset
        return self._position

    def readinto(self, buffer: memoryview | bytearray) -> int:  # type: ignore[override]
        view = memoryview(buffer).cast("B")
        stop = min(self._size, self._position + len(view))
        if stop <= self._position:
            return 0
        data = self.read_range(self._position, stop)
        view[: len(data)] = data
        self._position += len(data)
        return len(data)

    def read_range(self, start: int, stop: int) -> bytes:
        """Bytes ``[start, stop)``, from cached blocks; the missing ones in one request."""
        if stop <= start:
            return b""
        size = self._block_bytes
        first, last = start // size, (stop - 1) // size
        with self._lock:
            for b in range(first, last + 1):  # the newest: kept when others are dropped
                if b in self._blocks:
                    self._blocks.move_to_end(b)
            missing = [b for b in range(first, last + 1) if b not in self._blocks]
            if missing:
                self._fetch(missing[0], missing[-1])
            parts = [self._blocks[b] for b in range(first, last + 1)]
        joined = parts[0] if len(parts) == 1 else b"".join(parts)
        offset = first * size
        return joined[start - offset : stop - offset]

    def cached(self, start: int, stop: int) -> bytes | None:
        """Bytes ``[start, stop)`` if every block they span is held (no request), else None."""
        size = self._block_bytes
        with self._lock:
            if (
                start >= stop
                or stop > self._size
                or not all(b in self._blocks for b in range(start // size, (stop - 1) // size + 1))
            ):
                return None
        return self.read_range(start, stop)

    def _fetch(self, first: int, last: int) -> None:
        """Blocks ``first`` to ``last`` in one request, the oldest blocks dropped past the limit."""
        size = self._block_bytes
        start, stop = first * size, min(self._size, (last + 1) * size)
        data = bytes(self._sources.read_sync(self._path, start, stop - start))
        self.requests += 1
        for b in range(first, last + 1):
            self._blocks[b] = data[(b - first) * size : (b - first + 1) * size]
        while len(self._blocks) > max(self._max_blocks, last - first + 1):
            self._blocks.popitem(last=False)


class SharedFiles:
    """The remote files opened within one :func:`sharing`, by path and storage options."""

    def __init__(self) -> None:
        self._files: dict[tuple[str, str], RemoteFile] = {}
        self._lock = threading.Lock()

    def open(self, sources: Sources, path: str) -> RemoteFile:
        """``path`` as opened before with the same storage options, else opened now."""
        key = _key(sources, path)
        with self._lock:
            found = self._files.get(key)
        if found is None:
            found = RemoteFile.open(sources, path)
            with self._lock:
                found = self._files.setdefault(key, found)
        return found

    def get(self, sources: Sources, path: str) -> RemoteFile | None:
        """``path`` if it was opened with the storage options of ``sources``."""
        with self._lock:
            return self._files.get(_key(sources, path))


def _key(sources: Sources, path: str) -> tuple[str, str]:
    return path, json.dumps(sources.storage_options, sort_keys=True, default=repr)


_SHARED: contextvars.ContextVar[SharedFiles | None] = contextvars.ContextVar(
    "zarr_manifest_store_shared_remote_files", default=None
)


@contextlib.contextmanager
def sharing() -> Iterator[None]:
    """Remote files opened within share one :class:`RemoteFile` each (its blocks are
    dropped at the end); within an enclosing ``sharing``, that one's files are shared."""
    if _SHARED.get() is not None:
        yield
        return
    token = _SHARED.set(SharedFiles())
    try:
        yield
    finally:
        _SHARED.reset(token)


def shared_remote_file(sources: Sources, path: str) -> RemoteFile:
    """The remote ``path`` opened (:meth:`RemoteFile.open`): the RemoteFile opened before
    within the current :func:`sharing`, if any, else a new one."""
    shared = _SHARED.get()
    return RemoteFile.open(sources, path) if shared is None else shared.open(sources, path)


def cached_bytes(sources: Sources, path: str, start: int, stop: int) -> bytes | None:
    """Bytes ``[start, stop)`` of the remote ``path`` if a file opened within the current
    :func:`sharing` with the storage options of ``sources`` holds them, else None: they
    were read with the fingerprint the file was scanned with, so they are its bytes."""
    shared = _SHARED.get()
    found = None if shared is None else shared.get(sources, path)
    return None if found is None else found.cached(start, stop)
