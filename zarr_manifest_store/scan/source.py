"""The file a scanner reads: its path, fingerprint and bytes, local or remote, in one place.

:func:`scan_source` opens what a ``url`` names for one scan (one :class:`Sources`, closed
when the scan ends); a scanner then reads byte ranges (:meth:`ScanSource.read`) or hands
a library a file object (:meth:`ScanSource.file`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import IO, Any

from zarr_manifest_store.io.paths import is_local, local_path, source_path
from zarr_manifest_store.io.sources import Sources
from zarr_manifest_store.manifest import Fingerprint

__all__ = ["REMOTE_BLOCK_SIZE", "ScanSource", "scan_source"]

REMOTE_BLOCK_SIZE = 2**20
"""Block size of the fsspec cache that remote files are handed to libraries through."""


@dataclass(frozen=True)
class ScanSource:
    """One source file of a scan: its normalised path, its reader and its fingerprint."""

    path: str
    sources: Sources
    fingerprint: Fingerprint

    @property
    def size(self) -> int:
        """The file's size; an OSError if the file system does not report it."""
        if self.fingerprint.size is None:
            raise OSError(f"cannot scan {self.path!r}: its size is unknown to the file system")
        return self.fingerprint.size

    def read(self, offset: int, length: int) -> bytes:
        """``length`` bytes at ``offset`` (a request, for a remote file)."""
        return bytes(self.sources.read_sync(self.path, offset, length))

    @contextlib.contextmanager
    def file(self) -> Iterator[IO[bytes]]:
        """The file as a file object: a local file directly, others through an fsspec
        block cache (blocks of ``REMOTE_BLOCK_SIZE``)."""
        if is_local(self.path):
            with open(local_path(self.path), "rb") as f:
                yield f
            return
        known = {} if self.fingerprint.size is None else {"size": self.fingerprint.size}
        fs = self.sources.filesystem(self.path)
        with fs.open(
            self.path, "rb", block_size=REMOTE_BLOCK_SIZE, cache_type="blockcache", **known
        ) as f:
            yield f


@contextlib.contextmanager
def scan_source(
    url: str | os.PathLike[str], storage_options: Mapping[str, Any] | None
) -> Iterator[ScanSource]:
    """The file ``url`` names, fingerprinted, read with ``storage_options`` until the scan ends."""
    path = source_path(url)
    sources = Sources(storage_options)
    try:
        yield ScanSource(path, sources, sources.fingerprint(path))
    finally:
        sources.close()
