"""A whole manifest put together from its stored blocks, within the limits of a load.

Blocks arrive one at a time (each dropped once placed), so a whole load holds the result and
one block: a grid up to ``max_dense_chunks`` chunks, else only the present chunks of a larger
grid, at most a quarter as many.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np

from zarr_manifest_store.errors import ManifestError
from zarr_manifest_store.manifest import (
    MAX_DENSE_CHUNKS,
    MISSING,
    ChunkManifest,
    Fingerprint,
    References,
    grid_size,
)

__all__ = ["MAX_INLINE_BYTES", "Assembly", "Limits", "shifted"]

MAX_INLINE_BYTES = 2**28
"""Default limit on the inline bytes one manifest load (a block, or a whole manifest) holds."""


@dataclass(frozen=True)
class Limits:
    """What loading one array's manifest may cost; each error that enforces one names it.

    ``max_dense_chunks``: references held at once (a grid is held whole up to this many
    chunks, a larger one only sparse, with at most a quarter as many present chunks);
    ``max_inline_bytes``: the bytes of inline chunks one load holds.
    """

    max_dense_chunks: int = MAX_DENSE_CHUNKS
    max_inline_bytes: int = MAX_INLINE_BYTES


class Assembly:
    """A whole manifest put together from its blocks: as a grid, or from the present chunks."""

    def __init__(
        self, grid: tuple[int, ...], lengths: np.dtype, limits: Limits, where: str
    ) -> None:
        self.grid, self.limits, self.where = grid, limits, where
        self.dense = dense = grid_size(grid) <= limits.max_dense_chunks
        self.entries = 0
        self.inline_bytes = 0
        self.inline: dict[tuple[int, ...], bytes] = {}
        self.grids = (
            (
                np.full(grid, MISSING, dtype=np.uint32),
                np.zeros(grid, dtype=np.uint64),
                np.zeros(grid, dtype=lengths),
            )
            if dense
            else ()
        )
        empty = np.zeros(0, dtype=np.uint64)
        self.parts = [References(empty.astype(np.int64), empty.astype(np.uint32), empty, empty)]

    def add(self, origin: tuple[int, ...], part: ChunkManifest) -> None:
        """Place a block whose first chunk is at ``origin``, within the limits."""
        self._admit(part)
        self.inline.update((shifted(c, origin), data) for c, data in part.inline.items())
        self.entries += part.nchunks
        entries = part.entries()
        if self.dense:
            region = tuple(slice(o, o + n) for o, n in zip(origin, part.shape, strict=True))
            full = isinstance(entries.flat, range)  # then the entries are the block's cells
            columns = entries[1:] if full else (part.path_index, part.offsets, part.lengths)
            for whole, column in zip(self.grids, columns, strict=True):
                whole[region] = column.reshape(part.shape)
            return
        if isinstance(entries.flat, range):  # every chunk present: positions block-shaped
            axes = [
                np.arange(o, o + n) * s
                for o, n, s in zip(origin, part.shape, _strides(self.grid), strict=True)
            ]
            flat = functools.reduce(np.add.outer, axes).reshape(-1)
            self.parts.append(entries._replace(flat=flat))  # views of the block's columns
            return
        cells = np.unravel_index(entries.flat, part.shape)
        flat = np.ravel_multi_index(
            tuple(c + o for c, o in zip(cells, origin, strict=True)), self.grid
        )
        self.parts.append(References(flat, *entries[1:]))

    def _admit(self, part: ChunkManifest) -> None:
        limits = self.limits
        self.inline_bytes += sum(map(len, part.inline.values()))
        if self.inline_bytes > limits.max_inline_bytes:
            raise ManifestError(
                f"{self.where}: the inline chunks hold more than max_inline_bytes="
                f"{limits.max_inline_bytes:,} bytes; pass a larger max_inline_bytes to "
                f"ManifestStore.open to load this manifest whole"
            )
        if not self.dense and self.entries + part.nchunks > limits.max_dense_chunks // 4:
            raise ManifestError(
                f"{self.where}: the manifest's grid of {grid_size(self.grid):,} chunks is "
                f"larger than max_dense_chunks={limits.max_dense_chunks:,}, so it is loaded "
                f"whole only if at most a quarter of that many chunks are present, and more "
                f"are; pass a larger max_dense_chunks to ManifestStore.open to load it whole "
                f"(reading chunks, verify and info read it block by block)"
            )

    def manifest(self, paths: list[str], fingerprints: dict[str, Fingerprint]) -> ChunkManifest:
        """The assembled manifest."""
        if self.dense:
            index, offsets, lengths = self.grids
            return ChunkManifest(
                paths=paths,
                path_index=index,
                offsets=offsets,
                lengths=lengths,
                inline=self.inline,
                fingerprints=fingerprints,
            )
        flat, index, offsets, lengths = (
            np.concatenate(column) for column in zip(*self.parts, strict=True)
        )
        return ChunkManifest.from_entries(
            shape=self.grid,
            chunks=flat,
            paths=paths,
            path_index=index,
            offsets=offsets,
            lengths=lengths,
            inline=self.inline,
            fingerprints=fingerprints,
        )


def _strides(grid: tuple[int, ...]) -> list[int]:
    """How far apart in C order neighbours along each axis of ``grid`` lie."""
    return [math.prod(grid[axis + 1 :]) for axis in range(len(grid))]


def shifted(coords: tuple[int, ...], origin: tuple[int, ...] | None) -> tuple[int, ...]:
    if origin is None:
        return coords
    return tuple(c + o for c, o in zip(coords, origin, strict=True))


def _strides(grid: tuple[int, ...]) -> list[int]:
    """How far apart in C order neighbours along each axis of ``grid`` lie."""
    return [math.prod(grid[axis + 1 :]) for axis in range(len(grid))]
