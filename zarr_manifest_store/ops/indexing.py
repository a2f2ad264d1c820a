"""``a[key]`` on a ManifestArray: selections made of whole chunks, or of rows of raw chunks.

Slices must start on a chunk boundary and have step 1 (they may stop anywhere);
integers, integer arrays, boolean masks and other steps select along axes whose
chunks have size 1; ``None`` and ``...`` work as in NumPy. Where chunks are
stored uncompressed (and every earlier axis has chunks of size 1), a step-1
slice or an integer may also start inside a chunk: its reference is narrowed
to the selected rows (:mod:`.narrow`).
"""

from __future__ import annotations

from itertools import accumulate
from typing import Any, NamedTuple

import numpy as np

from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.ops.edges import prefix_truncatable
from zarr_manifest_store.ops.grid import derive
from zarr_manifest_store.ops.narrow import narrowed

__all__ = ["getitem"]


class _AxisSelection(NamedTuple):
    """Which chunks one indexing item keeps along one axis, and the resulting chunk sizes."""

    positions: np.ndarray
    edges: tuple[int, ...]
    length: int
    keep: bool
    skip: int = 0
    """Rows skipped at the start of the first chunk (narrowed); 0 for whole chunks."""


def getitem(array: ManifestArray, key: Any) -> ManifestArray:
    """``array[key]`` for selections made of whole chunks; anything else raises ``IndexError``.

    Slices must start on a chunk boundary and have step 1; they may stop
    anywhere (the chunks beyond the end are simply not read). Integers, integer
    arrays, boolean masks and other steps select along axes whose chunks have
    size 1. ``None`` and ``...`` work as in NumPy.

    >>> a[0:48].shape, a[:, 0].ndim  # doctest: +SKIP
    """
    items = _expand_key(key, array.ndim)
    edges = array.chunk_sizes
    positions: list[np.ndarray] = []
    new_edges: list[tuple[int, ...]] = []
    shape: list[int] = []
    dropped: list[int] = []
    names = array.dimension_names
    new_names: list[str | None] = []
    axis = 0
    narrowing: dict[int, _AxisSelection] = {}
    for item in items:
        if item is None:
            new_names.append(None)
            continue
        raw = prefix_truncatable(array, edges, axis)
        sel = _select_axis(item, axis, array.shape[axis], edges[axis], raw)
        if sel.skip or (raw and not sel.keep and edges[axis][int(sel.positions[0])] != 1):
            narrowing[axis] = sel
        positions.append(sel.positions)
        if sel.keep:
            new_edges.append(sel.edges)
            shape.append(sel.length)
            new_names.append(None if names is None else names[axis])
        else:
            dropped.append(len(positions) - 1)
        axis += 1
    manifest = array.manifest.take(positions)
    for at, sel in narrowing.items():
        rows = sel.edges[0] if sel.keep else 1
        manifest = narrowed(array, manifest, positions, at, sel.skip, rows)
    for i in reversed(dropped):
        manifest = manifest.squeeze(i)
    for i, item in enumerate(_kept_items(items)):
        if item is None:
            manifest = manifest.expand_dims(i)
            new_edges.insert(i, (1,))
            shape.insert(i, 1)
    dimension_names = None if names is None else tuple(new_names)
    return derive(array, shape, new_edges, manifest, dimension_names)


def _expand_key(key: Any, ndim: int) -> list[Any]:
    """The indexing key as one item per axis plus ``None`` for new axes (``...`` expanded)."""
    items = list(key) if isinstance(key, tuple) else [key]
    if sum(item is Ellipsis for item in items) > 1:
        raise IndexError("an index can only have a single ellipsis ('...')")
    used = sum(item is not None and item is not Ellipsis for item in items)
    if used > ndim:
        raise IndexError(
            f"too many indices for array: array is {ndim}-dimensional, but {used} were indexed"
        )
    for item in items:
        if isinstance(item, bool | np.bool_):
            raise IndexError(f"a boolean scalar is not a valid index for a ManifestArray: {key!r}")
    at = next((i for i, item in enumerate(items) if item is Ellipsis), len(items))
    items[at : at + 1] = [slice(None)] * (ndim - used)
    arrays = sum(isinstance(item, np.ndarray | list | tuple) for item in items)
    if arrays > 1:
        raise IndexError(
            "a ManifestArray takes at most one array index at a time (NumPy would pair them "
            "up point by point); index one axis after the other"
        )
    return items


def _kept_items(items: list[Any]) -> list[Any]:
    """The items that produce an output axis: everything but integers."""
    return [item for item in items if not isinstance(item, int | np.integer)]


def _select_axis(
    item: Any, axis: int, length: int, edges: tuple[int, ...], raw: bool
) -> _AxisSelection:
    """Which chunks ``item`` selects along ``axis``; ``raw``: chunks there may be narrowed."""
    bounds = np.fromiter(accumulate(edges, initial=0), dtype=np.int64, count=len(edges) + 1)
    if isinstance(item, int | np.integer):
        i = int(item)
        if not -length <= i < length:
            raise IndexError(f"index {i} is out of bounds for axis {axis} with size {length}")
        i %= length
        chunk = int(np.searchsorted(bounds, i, side="right")) - 1
        if edges[chunk] != 1 and raw:
            return _AxisSelection(np.array([chunk]), (), 1, False, i - int(bounds[chunk]))
        if edges[chunk] != 1:
            raise IndexError(
                f"index {i} on axis {axis} selects one element of a chunk of "
                f"{edges[chunk]}: integer indices need chunks of size 1 along that axis; "
                "slice whole chunks instead, or read the data"
            )
        return _AxisSelection(np.array([chunk]), (), 1, keep=False)
    if isinstance(item, slice):
        start, stop, step = item.indices(length)
        if step == 1:
            return _select_slice(start, max(start, stop), axis, bounds, edges, item, raw)
        item = np.arange(start, stop, step)
    index = np.asarray(item)
    if index.dtype == bool:
        if index.shape != (length,):
            raise IndexError(
                f"boolean index of shape {index.shape} does not match axis {axis} of length {length}"
            )
        index = np.flatnonzero(index)
    if index.ndim != 1 or (index.size and index.dtype.kind not in "iu"):
        raise IndexError(
            f"axis {axis}: only integers, slices, 1-d integer or boolean arrays, None and ... "
            f"are valid indices, got {item!r}"
        )
    index = index.astype(np.int64)
    if index.size and (index.min() < -length or index.max() >= length):
        raise IndexError(f"an index is out of bounds for axis {axis} with size {length}")
    index %= max(length, 1)
    chunks = np.searchsorted(bounds, index, side="right") - 1
    sizes = np.asarray(edges, dtype=np.int64)[chunks] if index.size else np.empty(0, np.int64)
    if (sizes != 1).any():
        raise IndexError(
            f"axis {axis}: picking single elements needs chunks of size 1 along that axis, "
            f"but element {int(index[np.argmax(sizes != 1)])} lies in a chunk of "
            f"{int(sizes.max())}; select whole chunks with a step-1 slice, or read the data"
        )
    return _AxisSelection(chunks, (1,) * index.size, int(index.size), keep=True)


def _select_slice(
    start: int,
    stop: int,
    axis: int,
    bounds: np.ndarray,
    edges: tuple[int, ...],
    item: slice,
    raw: bool,
) -> _AxisSelection:
    if start == stop:
        return _AxisSelection(np.empty(0, dtype=np.intp), (), 0, keep=True)
    first = int(np.searchsorted(bounds, start, side="right")) - 1
    last = int(np.searchsorted(bounds, stop - 1, side="right")) - 1
    skip = start - int(bounds[first])
    if skip and raw:
        sizes = (edges[first] - skip, *edges[first + 1 : last + 1])
        return _AxisSelection(np.arange(first, last + 1), sizes, stop - start, True, skip)
    if bounds[first] != start:
        raise IndexError(
            f"slice {_show_slice(item)} on axis {axis} starts at {start}, inside the chunk "
            f"{int(bounds[first])}:{int(bounds[first + 1])}; a ManifestArray can only select "
            "whole chunks, so slices must start on a chunk boundary (they may end anywhere); "
            "only uncompressed chunks can be narrowed to the rows selected"
        )
    return _AxisSelection(np.arange(first, last + 1), edges[first : last + 1], stop - start, True)


def _show_slice(s: slice) -> str:
    parts = ["" if v is None else str(v) for v in (s.start, s.stop)]
    return ":".join(parts) + ("" if s.step is None else f":{s.step}")
