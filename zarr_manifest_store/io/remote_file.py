"""A remote source as a read-only file object, read in large cached blocks.

Scanners that hand a file object to a library (h5py) see many small reads:
the HDF5 library asks for superblock, object headers, B-tree nodes and heaps a
few hundred bytes at a time, and for some of them again and again. Each is a
round trip over the network unless it is served from memory. :class:`RemoteFile`
reads whole blocks (1 MiB by default) through :class:`~zarr_manifest_store.io.sources.Sources`
(so the allow-list, fingerprints, retries and deadlines apply), fetches all the
missing blocks a read spans in one request, and keeps the most recent ones.
A RemoteFile starts with the first bytes read before the library opens the
file (``head``, read with the source's fingerprint in one request): h5py serialises its
calls process-wide, so reads made beforehand are the ones that run concurrently across files.
"""

from __future__ import annotations

import collections
import io
import threading

from zarr_manifest_store.io.sources import Sources

__all__ = ["BLOCK_BYTES", "MAX_BLOCKS", "RemoteFile"]

BLOCK_BYTES = 1 << 20
"""Bytes a remote file is read in: a request at tens of milliseconds costs what a megabyte does."""
MAX_BLOCKS = 64
"""Blocks a remote file keeps in memory at most (the least recently used go first)."""


class RemoteFile(io.RawIOBase):
    """``size`` bytes of the remote ``path``, read through ``sources`` in cached blocks;
    ``head``, its first bytes if already read, is kept as the first blocks."""

    def __init__(
        self,
        sources: Sources,
        path: str,
        size: int,
        *,
        head: bytes = b"",
        block_bytes: int = BLOCK_BYTES,
        max_blocks: int = MAX_BLOCKS,
    ) -> None:
        super().__init__()
        self._sources, self._path, self._size = sources, path, size
        self._block_bytes, self._max_blocks = block_bytes, max_blocks
        self._blocks: collections.OrderedDict[int, bytes] = collections.OrderedDict()
        self._position = 0
        self._lock = threading.Lock()
        self.requests = 0
        """Requests made so far (for logging and tests)."""
        whole = len(head) if len(head) >= size else len(head) - len(head) % block_bytes
        for start in range(0, whole, block_bytes):
            self._blocks[start // block_bytes] = head[start : start + block_bytes]

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
