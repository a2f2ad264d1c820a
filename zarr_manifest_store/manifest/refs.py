"""The vocabulary of a manifest: one chunk's reference, its source's fingerprint, chunk keys,
and the path-index values that mark missing and inline chunks."""

from __future__ import annotations

from typing import NamedTuple

__all__ = [
    "INLINE",
    "MAX_END",
    "MAX_PATHS",
    "MISSING",
    "ChunkCoords",
    "ChunkRef",
    "Fingerprint",
    "chunk_key",
    "parse_chunk_key",
]

MISSING = 0xFFFF_FFFF
"""Path-index value of a chunk that has no bytes: Zarr returns the fill value."""
INLINE = 0xFFFF_FFFE
"""Path-index value of a chunk whose bytes are stored in the manifest itself."""
MAX_PATHS = INLINE
"""A path table holds at most this many paths (indices below the sentinels)."""
MAX_END = 2**63 - 1
"""The largest byte position a chunk may reach: file offsets are signed 64-bit."""

ChunkCoords = tuple[int, ...]


class Fingerprint(NamedTuple):
    """What a source file looked like when it was scanned, so that later changes are detected.

    Local files record ``size`` and ``mtime_ns``; remote objects ``size`` and
    their ``etag`` (or, without one, ``mtime_ns`` from Last-Modified). A field
    left ``None`` is not checked.
    """

    size: int | None = None
    mtime_ns: int | None = None
    etag: str | None = None


class ChunkRef(NamedTuple):
    """A chunk's bytes: ``length`` bytes of ``path`` starting at ``offset``.

    >>> ref = ChunkRef("/data/era_2026-01-01.nc", offset=4096, length=4000)
    >>> ref.path, ref.offset + ref.length
    ('/data/era_2026-01-01.nc', 8096)
    """

    path: str
    offset: int
    length: int


def chunk_key(coords: ChunkCoords) -> str:
    """The manifest key of a chunk: its grid coordinates joined by ``.`` (``"0"`` for scalars)."""
    return ".".join(map(str, coords)) or "0"


def parse_chunk_key(key: str, ndim: int | None = None) -> ChunkCoords:
    """Grid coordinates from a manifest key like ``"0.3"``; raises ``ValueError`` naming the key."""
    if not isinstance(key, str):
        raise ValueError(f"chunk key {key!r} is not a string")
    if ndim == 0 and key in ("", "0"):
        return ()
    parts = key.split(".")
    if not all(p.isdecimal() and p.isascii() for p in parts) or (
        ndim is not None and len(parts) != ndim
    ):
        dims = "" if ndim is None else f" with {ndim} dimension(s)"
        raise ValueError(f"chunk key {key!r} is not a chunk grid index like '0.1'{dims}")
    return tuple(int(p) for p in parts)
