"""LazyChunkManifest: a ChunkManifest read from a stored document only when it is needed.

Opening a document builds one per array without reading any manifest file.
``get`` (what ManifestStore calls to serve one chunk) reads only the block of
the manifest holding that chunk when the encoding allows it; ``items`` and
``blocks`` (what ``info`` and ``verify`` use) read the blocks one at a time;
anything else — the path table's arrays, equality, concatenation — loads the
whole manifest once, after which the object behaves exactly as the
ChunkManifest it loaded.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from types import MappingProxyType
from typing import Any, Protocol

import numpy as np

from zarr_manifest_store.manifest import (
    ChunkCoords,
    ChunkManifest,
    ChunkRef,
    Fingerprint,
    grid_size,
)

__all__ = ["LazyChunkManifest", "ManifestLoader"]

_STATE = tuple(sorted(ChunkManifest.__slots__, key=lambda name: name == "_index"))
"""The slots that hold a loaded manifest; while unset, reading one loads it. ``_index``,
which ``loaded`` looks at, is set last."""
MAX_CACHED_BLOCKS = 16
"""Blocks kept from single-chunk reads; past this, the whole manifest is read if it may be
held dense (``max_dense_chunks``), else the oldest block is dropped."""
MAX_CACHED_BYTES = 2**26
"""The memory the cached blocks may hold together; past this, the oldest block is dropped."""


class ManifestLoader(Protocol):
    """Reads one array's manifest from a document (see ``loaders.py``)."""

    where: str
    grid: tuple[int, ...]
    max_dense_chunks: int

    def block_shape(self) -> tuple[int, ...] | None:
        """The shape of the blocks ``block`` reads, or None if only whole loads are possible."""

    def block(self, block: tuple[int, ...]) -> ChunkManifest:
        """The manifest of one block of the chunk grid (edge blocks trimmed)."""

    def load(self) -> ChunkManifest:
        """The whole manifest."""

    def fingerprints(self) -> Mapping[str, Fingerprint]:
        """The sources' fingerprints (cheap: never a whole load)."""

    def paths(self) -> tuple[str, ...] | None:
        """The path table if it is known without a whole load, else None."""


class LazyChunkManifest(ChunkManifest):
    """A :class:`ChunkManifest` that reads itself from a document on first use.

    >>> import zarr_manifest_store as zms
    >>> group = zms.scan("data/era_2026-01-03.nc")
    >>> zms.write_manifest(group, "day3.zarr", encoding="columnar", mode="w")
    >>> manifest = zms.ManifestStore.open("day3.zarr").root["t2m"].manifest
    >>> manifest.loaded, manifest.get((0, 0, 0)) == group["t2m"].manifest.get((0, 0, 0))
    (False, True)
    >>> manifest.nchunks, manifest.loaded  # a whole-manifest question loads it
    (4, True)
    """

    __slots__ = ("_blocks", "_grid", "_loader", "_lock")

    def __init__(self, loader: ManifestLoader) -> None:  # no super().__init__: nothing is read yet
        self._loader = loader
        self._grid = tuple(loader.grid)
        self._lock = threading.RLock()
        self._blocks: dict[tuple[int, ...], ChunkManifest] = {}

    @property
    def loaded(self) -> bool:
        """Whether the whole manifest is in memory."""
        try:
            object.__getattribute__(self, "_index")
        except AttributeError:
            return False
        return True

    @property
    def shape(self) -> tuple[int, ...]:
        return self._grid

    @property
    def ndim(self) -> int:
        return len(self._grid)

    @property
    def paths(self) -> tuple[str, ...]:
        if not self.loaded and (paths := self._loader.paths()) is not None:
            return paths
        return super().paths

    @property
    def fingerprints(self) -> Mapping[str, Fingerprint]:
        """The sources' fingerprints, read without loading the manifest."""
        if self.loaded:
            return super().fingerprints
        return MappingProxyType(self._loader.fingerprints())

    def blocks(self) -> Iterator[tuple[ChunkCoords, ChunkManifest]]:
        """The manifest's stored blocks, read one at a time (each dropped after use)."""
        shape = None if self.loaded else self._loader.block_shape()
        if shape is None:
            self.load()
            yield from super().blocks()
            return
        for index in np.ndindex(*(-(-n // b) for n, b in zip(self._grid, shape, strict=True))):
            origin = tuple(i * b for i, b in zip(index, shape, strict=True))
            yield origin, self._blocks.get(index) or self._loader.block(index)

    def items(self) -> Iterator[tuple[ChunkCoords, ChunkRef | bytes]]:
        """Every present chunk in C order of each block, the blocks in C order."""
        for origin, block in self.blocks():
            for coords, chunk in ChunkManifest.items(block):
                yield tuple(c + o for c, o in zip(coords, origin, strict=True)), chunk

    def get(self, coords: ChunkCoords) -> ChunkRef | bytes | None:
        """The chunk at ``coords``, reading at most the manifest block that holds it."""
        if self.loaded:
            return super().get(coords)
        coords = self._in_grid(coords)
        blocks = self._loader.block_shape()
        if blocks is None:
            self.load()
            return super().get(coords)
        index = tuple(c // b for c, b in zip(coords, blocks, strict=True))
        local = tuple(c - i * b for c, i, b in zip(coords, index, blocks, strict=True))
        return self._from_block(index, local, coords, lambda: self._loader.block(index))

    def _in_grid(self, coords: ChunkCoords) -> tuple[int, ...]:
        """``coords`` as ints, refused unless they name a chunk of the grid."""
        coords = tuple(int(c) for c in coords)
        if len(coords) != len(self._grid) or not all(
            0 <= c < n for c, n in zip(coords, self._grid, strict=True)
        ):
            raise IndexError(f"chunk {coords} lies outside the chunk grid {self._grid}")
        return coords

    def _from_block(
        self,
        key: tuple[int, ...],
        local: ChunkCoords,
        coords: ChunkCoords,
        read: Callable[[], ChunkManifest],
    ) -> ChunkRef | bytes | None:
        """The chunk at ``local`` in the block cached under ``key`` (``read`` when it is not):
        the chunk at ``coords`` of the whole manifest once that is loaded, or once keeping
        more blocks would cost more than loading a small whole."""
        block = self._blocks.get(key)
        if block is None:
            with self._lock:
                if self.loaded:
                    return ChunkManifest.get(self, coords)
                block = self._blocks.get(key)
                if block is None:
                    if len(self._blocks) >= MAX_CACHED_BLOCKS and self._whole_is_small():
                        self.load()
                        return ChunkManifest.get(self, coords)
                    block = self._cache(key, read())
        return block.get(local)

    def peek(self, coords: ChunkCoords) -> ChunkRef | bytes | None:
        """The chunk at ``coords`` read once, holding no more than it: a manifest read whole
        (JSON) is decoded for it but neither built nor kept (what an append reads)."""
        entry = getattr(self._loader, "entry", None)
        if self.loaded or entry is None:
            return self.get(coords)
        return entry(tuple(int(c) for c in coords))

    def _whole_is_small(self) -> bool:
        return grid_size(self._grid) <= self._loader.max_dense_chunks

    def _cache(self, index: tuple[int, ...], block: ChunkManifest) -> ChunkManifest:
        """Keep ``block``, dropping the oldest ones past the cache's count or bytes."""
        self._blocks[index] = block
        while len(self._blocks) > 1 and (
            len(self._blocks) > MAX_CACHED_BLOCKS
            or sum(b.nbytes for b in self._blocks.values()) > MAX_CACHED_BYTES
        ):
            del self._blocks[next(iter(self._blocks))]
        return block

    def load(self) -> LazyChunkManifest:
        """Read the whole manifest now (it is otherwise read when first needed); returns self."""
        with self._lock:
            if not self.loaded:
                full = self._loader.load()
                for name in _STATE:
                    object.__setattr__(self, name, getattr(full, name))
                self._blocks.clear()
        return self

    def __getattr__(self, name: str) -> Any:
        # Called only when normal lookup fails: an unset slot of the loaded state.
        if name in _STATE:
            self.load()
            return object.__getattribute__(self, name)
        raise AttributeError(name)

    def __repr__(self) -> str:
        if self.loaded:
            return super().__repr__().replace("ChunkManifest", "LazyChunkManifest", 1)
        return f"LazyChunkManifest(shape={self._grid}, from {self._loader.where!r}, not loaded)"

    def __reduce__(self) -> tuple[Any, ...]:
        if self.loaded:
            return super().__reduce__()
        return LazyChunkManifest, (self._loader,)
