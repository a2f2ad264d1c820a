"""One array as a ManifestStore serves it: its chunk keys decoded to grid coordinates (the
first step of every chunk read), and what the store learns of its sources on first use."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

from zarr_manifest_store._zarr import ArrayV3Metadata, DefaultChunkKeyEncoding, V2ChunkKeyEncoding
from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.io.paths import is_local
from zarr_manifest_store.manifest import ChunkCoords, ChunkRef

__all__ = ["DECIMAL_TABLE_LENGTH", "ServedArray"]


class ServedArray:
    """One array as a store serves it: its chunk keys decoded to grid coordinates (the
    first step of every read), and what the store learns of its sources on first use.

    zarr's default and v2 encodings are decoded here, one dict lookup per
    coordinate in a table of the canonical decimals below the grid's length:
    that also refuses spellings ``int`` would accept (``"01"``, ``"+1"``,
    ``" 1"``) and coordinates outside the grid. Any other encoding, or a grid
    longer than :data:`DECIMAL_TABLE_LENGTH`, goes through zarr's decoder and
    encoder. The grid is read on first use, so that a lazy manifest loads
    only when its array is read.
    """

    __slots__ = (
        "_local",
        "_tables",
        "array",
        "path",
        "prefix",
        "recorded",
        "separator",
    )

    def __init__(self, path: str, array: ManifestArray) -> None:
        self.path = path
        self.array = array
        self.recorded = False  # whether the sources know its fingerprints
        self._local: bool | None = None
        encoding = array.metadata.chunk_key_encoding
        kind = type(encoding)
        self.separator: str | None = (
            encoding.separator if kind in (DefaultChunkKeyEncoding, V2ChunkKeyEncoding) else None
        )
        self.prefix = "c" + encoding.separator if kind is DefaultChunkKeyEncoding else ""
        self._tables: list[dict[str, int]] | None = None

    @property
    def local(self) -> bool:
        """Whether every source of the array is a local file (worked out once)."""
        if self._local is None:
            self._local = all(map(is_local, self.array.manifest.paths))
        return self._local

    @property
    def grid(self) -> tuple[int, ...]:
        """The chunk grid the store serves (the manifest's, unless a subclass joins chunks)."""
        return self.array.manifest.shape

    def served_metadata(self, metadata: dict[str, Any]) -> dict[str, Any]:
        """The array's ``zarr.json`` as the store serves it."""
        return metadata

    def served_parsed(self, metadata: ArrayV3Metadata) -> ArrayV3Metadata:
        """The array's metadata as zarr parses it from :meth:`served_metadata`'s document,
        given its stored metadata parsed."""
        return metadata

    def present(self) -> Iterator[ChunkCoords]:
        """The coordinates of the chunks the store serves (present in the manifest)."""
        return (coords for coords, _ in self.array.manifest.items())

    def chunk(self, chunk_key: str) -> ChunkRef | bytes | None:
        """The chunk ``chunk_key`` names: a reference, inline bytes, or None if it names none."""
        coords = self.decode(chunk_key)
        return None if coords is None else self.array.manifest.get(coords)

    def decode(self, chunk_key: str) -> ChunkCoords | None:
        """The coordinates ``chunk_key`` names; None unless it is canonical and in the grid."""
        tables = self._tables
        if tables is None:
            tables = self._tables = self._decimal_tables()
        if not tables:  # a 0-d array, an encoding of its own, or a very long grid
            return self._decode_generally(chunk_key)
        if not chunk_key.startswith(self.prefix):
            return None
        parts = chunk_key[len(self.prefix) :].split(self.separator)
        if len(parts) != len(tables):
            return None
        try:
            return tuple(map(dict.__getitem__, tables, parts))
        except KeyError:
            return None

    def _decimal_tables(self) -> list[dict[str, int]]:
        grid = self.grid
        if self.separator is None or not grid or max(grid) > DECIMAL_TABLE_LENGTH:
            return []
        return [_decimals(n) for n in grid]

    def _decode_generally(self, chunk_key: str) -> ChunkCoords | None:
        encoding = self.array.metadata.chunk_key_encoding
        grid = self.grid
        if not grid:
            return () if chunk_key == encoding.encode_chunk_key(()) else None
        try:
            coords = encoding.decode_chunk_key(chunk_key)
        except (ValueError, NotImplementedError):
            return None
        if (
            encoding.encode_chunk_key(coords) != chunk_key
            or len(coords) != len(grid)
            or not all(0 <= c < n for c, n in zip(coords, grid, strict=True))
        ):
            return None
        return coords


DECIMAL_TABLE_LENGTH = 1 << 14
"""Grids up to this many chunks along every dimension decode chunk keys through tables
(a table of 16384 decimals takes about 2 MB)."""


@functools.lru_cache(maxsize=64)
def _decimals(n: int) -> dict[str, int]:
    """``{"0": 0, "1": 1, ..., str(n - 1): n - 1}``, shared by every grid of that length."""
    return {str(i): i for i in range(n)}
