"""Where each checksum group of a manifest lies in its chunk grid: the box of chunks one
Icechunk call writes (``set_virtual_refs_arr`` takes a box: its shape and first chunk).

A group is the set of sources sharing one checksum (one file, unless files share a
modification time). Scanned files usually follow one another along the first axis, so a
group's box is found from the runs of equal path rows in flat (C) order, a pass over the
grid that keeps nothing grid-sized; where that box of whole rows would hold many chunks of
other groups (sources side by side along another axis), the tight box is measured per axis.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Box", "GroupBoxes", "group_boxes", "group_of_cells"]

Box = tuple[tuple[int, ...], tuple[int, ...]]
"""A box of chunks: the first chunk's coordinates and, per axis, one past the last."""

_BLOCK = 1 << 18
"""Cells measured at a time where the tight boxes are needed (keeps the temporaries small)."""


@dataclass(frozen=True)
class GroupBoxes:
    """Each group's box, how many chunks it spans and how many of them are the group's."""

    boxes: list[Box]
    sizes: np.ndarray
    counts: np.ndarray

    def cells(self) -> int:
        """The chunks of every box together (a chunk in several boxes counts each time)."""
        return int(self.sizes.sum())

    def alone(self) -> list[bool]:
        """For each group, whether its box holds its chunks only."""
        return (self.sizes == self.counts).tolist()


def group_boxes(index: np.ndarray, lookup: np.ndarray, slack: float) -> GroupBoxes:
    """The boxes of the groups of a grid of path rows ``index``, where ``lookup[row]`` is a
    row's group (-1 for missing and inline chunks, at ``lookup[len(paths)]``).

    Boxes are whole rows of the first axis unless together they would hold more than
    ``slack`` times the references; then each is the tightest box along every axis.
    """
    rows = _row_boxes(index, lookup)
    if rows.cells() <= slack * max(int(rows.counts.sum()), 1) or index.ndim < 2:
        return rows
    return _tight_boxes(index, lookup, rows.counts)


def group_of_cells(index: np.ndarray, lookup: np.ndarray) -> np.ndarray:
    """The group of each cell of ``index`` (flat, ``int32``; -1 for none)."""
    return lookup[np.minimum(index.reshape(-1), len(lookup) - 1)]


def _row_boxes(index: np.ndarray, lookup: np.ndarray) -> GroupBoxes:
    """Boxes of whole rows (first axis), from the first and last chunk of each group in flat
    order, found at the ends of the runs of equal path rows."""
    count = int(lookup.max(initial=-1)) + 1
    flat = index.reshape(-1)
    starts = np.flatnonzero(flat[1:] != flat[:-1]) + 1
    starts = np.concatenate(([0], starts)) if flat.size else starts
    stops = np.append(starts[1:], flat.size)
    groups = lookup[np.minimum(flat[starts], len(lookup) - 1)]
    keep = groups >= 0
    groups, starts, stops = groups[keep], starts[keep], stops[keep]
    first = np.full(count, np.iinfo(np.int64).max, dtype=np.int64)
    last = np.full(count, -1, dtype=np.int64)
    counts = np.zeros(count, dtype=np.int64)
    np.minimum.at(first, groups, starts)
    np.maximum.at(last, groups, stops - 1)
    np.add.at(counts, groups, stops - starts)
    row = int(np.prod(index.shape[1:], dtype=np.int64))
    rest, origin = tuple(index.shape[1:]), (0,) * (index.ndim - 1)
    present = counts > 0
    top = np.where(present, first // row, 0)
    bottom = np.where(present, last // row + 1, 0)
    boxes = [((t, *origin), (b, *rest)) for t, b in zip(top.tolist(), bottom.tolist(), strict=True)]
    return GroupBoxes(boxes, (bottom - top) * row, counts)


def _tight_boxes(index: np.ndarray, lookup: np.ndarray, counts: np.ndarray) -> GroupBoxes:
    """The tightest box of each group along every axis, measured a block of cells at a time."""
    count, ndim = len(counts), index.ndim
    lo = np.full((ndim, count), np.iinfo(np.int64).max, dtype=np.int64)
    hi = np.full((ndim, count), -1, dtype=np.int64)
    flat = index.reshape(-1)
    for start in range(0, flat.size, _BLOCK):
        groups = group_of_cells(flat[start : start + _BLOCK], lookup)
        where = np.flatnonzero(groups >= 0)
        ids = groups[where]
        for axis, coords in enumerate(np.unravel_index(where + start, index.shape)):
            np.minimum.at(lo[axis], ids, coords)
            np.maximum.at(hi[axis], ids, coords)
    present = counts > 0
    lo = np.where(present, lo, 0)
    hi = np.where(present, hi + 1, 0)
    boxes = [(tuple(a), tuple(b)) for a, b in zip(lo.T.tolist(), hi.T.tolist(), strict=True)]
    return GroupBoxes(boxes, np.prod(hi - lo, axis=0), counts)
