"""A chunk grid's axes rearranged (``transpose``, ``expand_dims``, ``squeeze``) and grids lined
up along one axis (``concat``).

A rearrangement is two maps: one of a grid-shaped column, one of a chunk's coordinates. The
dense form maps its columns; the sparse form maps its entries' positions, so that no grid is
allocated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import numpy as np
from numpy.lib.array_utils import normalize_axis_index, normalize_axis_tuple

from zarr_manifest_store.manifest.refs import ChunkCoords

__all__ = [
    "Rearrangement",
    "insertion",
    "joined_shape",
    "lined_up",
    "permutation",
    "rearranged_columns",
    "rearranged_entries",
    "removal",
]

Parts = dict[str, Any]


class Rearrangement(NamedTuple):
    """How a grid's axes move: ``grid`` maps a grid-shaped column, ``coords`` a chunk's place."""

    grid: Callable[[np.ndarray], np.ndarray]
    coords: Callable[[ChunkCoords], ChunkCoords]


def permutation(ndim: int, axes: Sequence[int]) -> Rearrangement:
    """Axis ``k`` of the result is axis ``axes[k]`` of a grid of ``ndim`` dimensions."""
    perm = normalize_axis_tuple(tuple(axes), ndim)
    if len(perm) != ndim:
        raise ValueError(f"axes {tuple(axes)} don't match a grid of {ndim} dimensions")
    return Rearrangement(lambda grid: np.transpose(grid, perm), lambda c: tuple(c[k] for k in perm))


def insertion(ndim: int, axis: int | Sequence[int]) -> Rearrangement:
    """Axes of length one inserted at ``axis`` (positions in the result) of ``ndim`` dimensions."""
    axes = (axis,) if isinstance(axis, int | np.integer) else tuple(axis)
    total = ndim + len(axes)
    new = normalize_axis_tuple(axes, total)

    def coords(c: ChunkCoords) -> ChunkCoords:
        old = iter(c)
        return tuple(0 if k in new else next(old) for k in range(total))

    return Rearrangement(lambda grid: np.expand_dims(grid, new), coords)


def removal(shape: tuple[int, ...], axis: int) -> Rearrangement:
    """``axis`` of a grid of ``shape`` dropped; it must have length one."""
    axis = normalize_axis_index(axis, len(shape))
    if shape[axis] != 1:
        raise ValueError(f"cannot drop axis {axis} of a chunk grid {shape}: not of length 1")
    return Rearrangement(lambda grid: np.squeeze(grid, axis), lambda c: without(c, axis))


def rearranged_columns(parts: Parts, move: Rearrangement) -> Parts:
    """The parts of a dense manifest on the rearranged grid."""
    columns = {name: move.grid(parts[name]) for name in ("path_index", "offsets", "lengths")}
    return parts | columns | {"inline": _moved_inline(parts, move)}


def rearranged_entries(
    parts: Parts, shape: tuple[int, ...], flat: np.ndarray, move: Rearrangement
) -> tuple[tuple[int, ...], np.ndarray, Parts]:
    """The grid shape, entry positions and parts of a sparse manifest on the rearranged grid."""
    new_shape = move.grid(np.broadcast_to(np.empty((), np.uint8), shape)).shape
    cells = np.broadcast_arrays(*move.coords(np.unravel_index(flat, shape)))
    chunks = np.ravel_multi_index(tuple(cells), new_shape)
    return new_shape, chunks, parts | {"inline": _moved_inline(parts, move)}


def lined_up(shapes: Sequence[tuple[int, ...]], axis: int) -> int:
    """``axis`` normalised, once the grids of ``shapes`` are checked to agree along every
    other axis (a ValueError naming the first that does not)."""
    if not shapes:
        raise ValueError("need at least one manifest to concatenate")
    first = shapes[0]
    axis = normalize_axis_index(axis, len(first))
    for i, shape in enumerate(shapes):
        if len(shape) != len(first) or without(shape, axis) != without(first, axis):
            raise ValueError(
                f"manifest {i} has chunk grid {shape}, which does not line up with "
                f"{first} along axes other than {axis}"
            )
    return axis


def joined_shape(shapes: Sequence[tuple[int, ...]], axis: int) -> tuple[int, ...]:
    """The grid of lined-up ``shapes`` laid side by side along ``axis``."""
    first = shapes[0]
    return (*first[:axis], sum(shape[axis] for shape in shapes), *first[axis + 1 :])


def without(values: tuple[Any, ...], axis: int) -> tuple[Any, ...]:
    """``values`` without the one at ``axis``."""
    return (*values[:axis], *values[axis + 1 :])


def _moved_inline(parts: Parts, move: Rearrangement) -> dict[ChunkCoords, bytes]:
    return {move.coords(c): d for c, d in parts["inline"].items()}
