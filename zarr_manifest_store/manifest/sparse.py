"""The sparse form of a manifest: only the present chunks, by their flat position in the grid.

A manifest whose grid is much larger than its entries (a document declaring a
huge grid and referencing a few chunks) is held as four columns of the present
chunks — flat C-order position, path-table row, offset, length — so that it
costs memory in proportion to its entries. Operations that need the grid
itself densify it, within :data:`MAX_DENSE_CHUNKS`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import numpy.typing as npt

from zarr_manifest_store.manifest.columns import unsigned
from zarr_manifest_store.manifest.refs import INLINE, MISSING, ChunkCoords, chunk_key

__all__ = [
    "MAX_DENSE_CHUNKS",
    "SPARSE_MIN_CHUNKS",
    "References",
    "check_dense",
    "comparable",
    "coords_at",
    "entry_columns",
    "extents",
    "find",
    "flat_position",
    "gathered",
    "grid_size",
    "held_sparse",
    "scatter",
    "sorted_positions",
]

MAX_DENSE_CHUNKS = 2**24
"""The largest chunk grid a sparse manifest is densified to (16 bytes a chunk: 256 MiB at
this limit) unless ``ChunkManifest.densify`` is given a larger ``max_chunks``."""
SPARSE_MIN_CHUNKS = 2**16
"""Grids up to this many chunks are held dense whatever their entries: it costs at most 1 MiB."""
SPARSE_RATIO = 4
"""A larger grid is held sparse when it has more than this many chunks per entry."""


class References(NamedTuple):
    """Chunks of a manifest as 1-d columns in C order of the grid: ``flat`` (positions in
    the grid), ``path_index``, ``offsets``, ``lengths``."""

    flat: np.ndarray | range
    path_index: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray


def grid_size(shape: Sequence[int]) -> int:
    """The number of chunks of a grid, refusing grids whose flat positions overflow int64."""
    size = math.prod(shape)
    if size > np.iinfo(np.int64).max:
        raise ValueError(f"a chunk grid {tuple(shape)} has more chunks than int64 can count")
    return size


def held_sparse(shape: Sequence[int], entries: int) -> bool:
    """Whether a grid of ``shape`` with ``entries`` present chunks is held sparse."""
    size = grid_size(shape)
    return size > SPARSE_MIN_CHUNKS and size > SPARSE_RATIO * max(entries, 1)


def check_dense(shape: tuple[int, ...], entries: int, max_chunks: int) -> None:
    """Refuse to hold a grid of ``shape`` dense when it has more than ``max_chunks`` chunks."""
    size = grid_size(shape)
    if size > max_chunks:
        raise ValueError(
            f"this operation needs the manifest's chunk grid {shape} in memory ({size:,} chunks, "
            f"{16 * size:,} bytes), but it holds {entries:,} chunk(s) sparse and the limit is "
            f"max_dense_chunks={max_chunks:,}; to hold it as a grid anyway, densify it first "
            f"with a larger limit: manifest.densify(max_chunks=...)"
        )


def flat_position(coords: ChunkCoords, shape: tuple[int, ...]) -> int:
    """The C-order position of ``coords`` in a grid of ``shape``; IndexError outside it."""
    if len(coords) != len(shape):
        raise IndexError(f"chunk {tuple(coords)} does not have the grid's {len(shape)} dimensions")
    flat = 0
    for c, n in zip(coords, shape, strict=True):
        c = int(c)
        if not 0 <= c < n:
            raise IndexError(f"chunk {tuple(coords)} lies outside the chunk grid {shape}")
        flat = flat * n + c
    return flat


def coords_at(flat: int, shape: tuple[int, ...]) -> ChunkCoords:
    """The grid coordinates of C-order position ``flat``."""
    return tuple(int(c) for c in np.unravel_index(flat, shape)) if shape else ()


def find(flat: np.ndarray, position: int) -> int:
    """The row of ``position`` in the sorted ``flat`` column, or -1 if absent."""
    row = int(np.searchsorted(flat, position))
    return row if row < len(flat) and int(flat[row]) == position else -1


def sorted_positions(positions: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """The permutation sorting ``positions``; ValueError naming a chunk outside the grid or
    given twice."""
    size = grid_size(shape)
    if positions.size and (int(positions.min()) < 0 or int(positions.max()) >= size):
        bad = int(positions[(positions < 0) | (positions >= size)][0])
        raise ValueError(f"chunk position {bad} lies outside the chunk grid {shape}")
    order = np.argsort(positions, kind="stable")
    ordered = positions[order]
    if ordered.size > 1 and (same := ordered[1:] == ordered[:-1]).any():
        twice = coords_at(int(ordered[1:][same][0]), shape)
        raise ValueError(f"chunk {chunk_key(twice)!r} is given twice")
    return order


def scatter(
    shape: tuple[int, ...],
    flat: np.ndarray,
    index: np.ndarray,
    offsets: np.ndarray,
    lengths: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid-shaped path index, offsets and lengths holding the entries at ``flat``."""
    grid_index = np.full(shape, MISSING, dtype=np.uint32)
    grid_offsets = np.zeros(shape, dtype=np.uint64)
    grid_lengths = np.zeros(shape, dtype=lengths.dtype)
    grid_index.reshape(-1)[flat] = index
    grid_offsets.reshape(-1)[flat] = offsets
    grid_lengths.reshape(-1)[flat] = lengths
    return grid_index, grid_offsets, grid_lengths


def gathered(keep: np.ndarray, *columns: np.ndarray) -> References:
    """The cells of grid-shaped ``columns`` where ``keep`` holds, flattened: views when it
    holds everywhere (a full block costs no copy; ``flat`` is then a ``range``)."""
    if keep.all():
        return References(range(keep.size), *(np.ravel(c) for c in columns))
    rows = np.flatnonzero(keep)
    return References(rows, *(c.reshape(-1)[rows] for c in columns))


def comparable(paths: Sequence[str], entries: References) -> tuple[np.ndarray | range, ...]:
    """Every chunk of ``entries`` as its flat position, path (inline ones a marker), offset
    and length: what tells whether two manifests hold the same chunks, whatever their form."""
    flat, index, offsets, lengths = entries
    table = np.array([*paths, "\0inline"], dtype=object)
    return flat, table[np.minimum(index, len(paths))], offsets, lengths


def extents(paths: Sequence[str], refs: References) -> dict[str, int]:
    """Where each source's last chunk among ``refs`` ends."""
    if not len(refs.path_index):
        return {}
    used = np.flatnonzero(np.bincount(refs.path_index, minlength=len(paths)))
    ends = refs.offsets + refs.lengths
    if len(used) == 1:
        return {paths[int(used[0])]: int(ends.max())}
    table = np.zeros(len(paths), dtype=np.uint64)
    np.maximum.at(table, refs.path_index, ends)
    return {paths[i]: int(table[i]) for i in used.tolist()}


def entry_columns(
    grid: tuple[int, ...],
    chunks: npt.ArrayLike,
    path_index: npt.ArrayLike,
    offsets: npt.ArrayLike,
    lengths: npt.ArrayLike,
) -> References:
    """The present entries among these, checked and sorted by position (offsets and lengths
    of inline chunks zeroed); a ValueError names the chunk at fault."""
    grid_size(grid)  # positions must fit int64
    positions = np.asarray(chunks, dtype=np.int64).reshape(-1)
    order = sorted_positions(positions, grid)
    flat = positions[order]

    def column(values: npt.ArrayLike, dtype: type[np.unsignedinteger], name: str) -> np.ndarray:
        arr = values if isinstance(values, np.ndarray) else np.array(values, dtype=object)
        if arr.shape != positions.shape:
            raise ValueError(f"{name}s have shape {arr.shape}, chunks {positions.shape}")
        return unsigned(arr[order], dtype, name, place=lambda cell: coords_at(flat[cell[0]], grid))

    index = column(path_index, np.uint32, "path_index")
    keep = index < MISSING
    absent = index[keep] >= INLINE
    return References(
        flat[keep],
        index[keep],
        np.where(absent, 0, column(offsets, np.uint64, "offset")[keep]),
        np.where(absent, 0, column(lengths, np.uint64, "length")[keep]),
    )
