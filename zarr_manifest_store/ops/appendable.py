"""What appending a new part to a stored array needs, whatever stores it (a document, Icechunk).

The stored array stands in as a combine input without references, so
``concat`` checks dtype, codecs, fill value, chunking and CF attributes exactly
as a combine does, and gives the grown metadata (rectilinear when the new part
is ragged). The coordinate along the dimension must continue monotonically.
Reading stored values is the caller's part; the checks here take them as arrays.
"""

from __future__ import annotations

import numpy as np

from zarr_manifest_store._zarr import ArrayV3Metadata
from zarr_manifest_store.array import ManifestArray, chunk_sizes, grid_shape, parse_array_metadata
from zarr_manifest_store.manifest import MISSING, ChunkManifest
from zarr_manifest_store.ops.combinable import check_combinable, describe_sources
from zarr_manifest_store.ops.grid import Edges, chunk_grid
from zarr_manifest_store.ops.numpy_api import concat

__all__ = [
    "OVERLAP_CHOICES",
    "check_continues",
    "check_unchanged_encoding",
    "check_whole_last_chunk",
    "dimensions",
    "grown",
    "overlap",
    "stand_in",
    "truncated",
]

OVERLAP_CHOICES = ("raise", "replace")
"""What an append does with new labels that repeat the stored coordinate's last ones:
refuse them (the default), or replace the stored tail they repeat."""


def dimensions(
    name: str, new: ManifestArray, stored: ArrayV3Metadata, where: str
) -> tuple[str, ...]:
    """The array's dimension names, which the new part and the stored array (at ``where``) share."""
    dims = tuple(str(d) for d in new.dimension_names or ())
    old = tuple(str(d) for d in stored.dimension_names or ())
    if dims != old or len(dims) != new.ndim:
        raise ValueError(
            f"array {name!r}: dimensions {dims} in the new part ({describe_sources(new.manifest)}) "
            f"but {old} in {where}; nothing was written"
        )
    return dims


def stand_in(stored: ArrayV3Metadata, label: str) -> ManifestArray:
    """The stored array as a combine input: its metadata, no references (nothing is read)."""
    grid = grid_shape(stored)
    manifest = ChunkManifest(
        paths=[label],
        path_index=np.full(grid, MISSING, dtype=np.uint32),
        offsets=np.zeros(grid, dtype=np.uint64),
        lengths=np.zeros(grid, dtype=np.uint64),
    )
    return ManifestArray(metadata=stored, manifest=manifest)


def grown(
    name: str, stored: ArrayV3Metadata, new: ManifestArray, axis: int, label: str
) -> ArrayV3Metadata:
    """The stored array's metadata grown by ``new`` along ``axis``, checked as a combine checks.

    The combine sees the stored array's last chunk along the axis (what the new part must
    follow), so the cost does not grow with the stored array. The stored array's attributes
    stay; a misfit raises ``ValueError`` naming the array.
    """
    check_whole_last_chunk(name, stored, axis)
    step = _regular_step(stored, axis)
    if step is not None and stored.shape[axis]:  # no list of every chunk's size
        tail = _with_length(stored, axis, step)
        try:
            joined = concat([stand_in(tail, label), new], axis).metadata
        except ValueError as e:
            raise ValueError(f"cannot append to array {name!r}: {e}") from None
        if _regular_step(joined, axis) == step:
            return _with_length(joined, axis, stored.shape[axis] + new.shape[axis])
    edges = chunk_sizes(stored)
    tail = stored if not edges[axis] else _last_chunk(stored, edges, axis)
    try:
        joined = concat([stand_in(tail, label), new], axis).metadata
    except ValueError as e:
        raise ValueError(f"cannot append to array {name!r}: {e}") from None
    if tail is stored:
        return joined
    shape = list(stored.shape)
    shape[axis] += new.shape[axis]
    whole = list(edges)
    whole[axis] = edges[axis][:-1] + chunk_sizes(joined)[axis]
    document = joined.to_dict()
    document.update(shape=shape, chunk_grid=chunk_grid(whole, shape))
    return parse_array_metadata(document)


def _regular_step(metadata: ArrayV3Metadata, axis: int) -> int | None:
    """The chunk size along ``axis`` of a regular grid; None for a rectilinear one."""
    grid = metadata.chunk_grid.to_dict()
    if grid["name"] != "regular":  # type: ignore[index]
        return None
    return int(grid["configuration"]["chunk_shape"][axis])  # type: ignore[index]


def _with_length(metadata: ArrayV3Metadata, axis: int, length: int) -> ArrayV3Metadata:
    """A regular grid's array metadata with ``length`` elements along ``axis``."""
    document = metadata.to_dict()
    document["shape"] = [length if k == axis else n for k, n in enumerate(metadata.shape)]
    return parse_array_metadata(document)


def truncated(name: str, stored: ArrayV3Metadata, axis: int, length: int) -> ArrayV3Metadata:
    """The stored array's metadata cut to its first ``length`` elements along ``axis``, which
    must end at one of its chunk boundaries (a replaced tail is whole chunks)."""
    step = _regular_step(stored, axis)
    if step is not None and length % step == 0 and length < stored.shape[axis]:
        return _with_length(stored, axis, length)
    edges = chunk_sizes(stored)
    ends = np.cumsum((0, *edges[axis]))
    if length == stored.shape[axis]:
        return stored
    if length not in ends[:-1]:
        raise ValueError(
            f"cannot replace the tail of array {name!r}: the replaced part would start at "
            f"element {length} along axis {axis}, inside a chunk (its chunks end at "
            f"{ends[1:][-4:].tolist()}...); only whole chunks can be replaced. Nothing was written"
        )
    kept = int(np.searchsorted(ends, length))
    shape = list(stored.shape)
    shape[axis] = length
    cut = list(edges)
    cut[axis] = edges[axis][:kept]
    document = stored.to_dict()
    document.update(shape=shape, chunk_grid=chunk_grid(cut, shape))
    return parse_array_metadata(document)


def _last_chunk(stored: ArrayV3Metadata, edges: Edges, axis: int) -> ArrayV3Metadata:
    """The stored array's metadata narrowed to its last chunk along ``axis``."""
    shape = list(stored.shape)
    shape[axis] = edges[axis][-1]
    narrowed = list(edges)
    narrowed[axis] = edges[axis][-1:]
    document = stored.to_dict()
    document.update(shape=shape, chunk_grid=chunk_grid(narrowed, shape))
    return parse_array_metadata(document)


def check_whole_last_chunk(name: str, stored: ArrayV3Metadata, axis: int) -> None:
    """Refuse to grow an array whose last chunk along ``axis`` is stored partly empty."""
    step = _regular_step(stored, axis)
    if step is not None:
        whole, size = stored.shape[axis] % step == 0, step
    else:
        sizes = chunk_sizes(stored)[axis]
        whole, size = not sizes or sum(sizes) == stored.shape[axis], sizes[-1] if sizes else 0
    if not whole:
        raise ValueError(
            f"cannot append to array {name!r}: its length {stored.shape[axis]} along axis "
            f"{axis} is not a multiple of its chunk size {size}, so its last chunk is "
            "stored at full size; chunks cannot follow it. Rewrite the array with a chunk size "
            "that divides its length"
        )


def check_unchanged_encoding(
    name: str, stored: ArrayV3Metadata, new: ManifestArray, label: str
) -> None:
    """An array without the dimension must be stored alike: dtype, codecs, shape, CF attributes."""
    try:
        check_combinable([stand_in(stored, label), new], None, stacking=True)
    except ValueError as e:
        raise ValueError(f"cannot add to the dataset: array {name!r}: {e}") from None


def check_continues(
    name: str,
    stored_tail: np.ndarray,
    values: np.ndarray,
    dim: str,
    new: ManifestArray,
    where: str,
    files: str | None = None,
) -> None:
    """The coordinate along ``dim`` must go on past its stored values (``stored_tail``, the last
    ones stored at ``where``) monotonically, in the same direction, without overlap; ``files``
    names the new part in the refusal (by default, the coordinate's own sources)."""
    both = np.concatenate([stored_tail, values])
    steps = np.diff(both)
    if len(both) < 2 or (steps > 0).all() or (steps < 0).all():
        return
    raise ValueError(
        f"cannot append: coordinate {name!r} does not continue along {dim!r}: {where} "
        f"ends at {stored_tail[-1:].tolist()} and the new part "
        f"({files or describe_sources(new.manifest)}) holds {values[:3].tolist()}...; parts must follow "
        "each other without overlap, in the same direction. Nothing was written"
    )


def overlap(
    name: str,
    stored_tail: np.ndarray,
    values: np.ndarray,
    dim: str,
    new: ManifestArray,
    where: str,
    files: str | None = None,
    on_overlap: str = "raise",
) -> int:
    """How many of the stored coordinate's last labels the new part replaces (0: none).

    ``stored_tail`` holds the stored coordinate's last values (at least as many as the new
    part has, or all). New labels that do not lie past the stored ones overlap them: refused
    by default, naming them; with ``on_overlap="replace"`` they must repeat the stored last
    labels exactly, which the new part then replaces. The rest must continue monotonically.
    """
    if on_overlap not in OVERLAP_CHOICES:
        raise ValueError(f"on_overlap must be one of {OVERLAP_CHOICES}, got {on_overlap!r}")
    count = _overlapping(stored_tail, values)
    if count == 0:
        check_continues(name, stored_tail, values, dim, new, where, files)
        return 0
    repeated = stored_tail[-count:]
    source = files or describe_sources(new.manifest)
    if on_overlap == "raise":
        raise ValueError(
            f"cannot append: coordinate {name!r} does not continue along {dim!r}: the new part "
            f"({source}) overlaps {where}: it starts at {_labels(values[:1])}, and the stored "
            f"coordinate ends with {_labels(repeated)} ({count} overlapping label(s)); pass "
            "on_overlap='replace' to replace the stored ones with the new part "
            "(--on-overlap replace on the command line). Nothing was written"
        )
    if count > len(values) or not np.array_equal(
        values[:count], repeated, equal_nan=values.dtype.kind in "fc"
    ):
        raise ValueError(
            f"cannot replace: the new part ({source}) overlaps coordinate {name!r} of {where} "
            f"along {dim!r}, but its first labels {_labels(values[:count])} are not the stored "
            f"last ones {_labels(repeated)}; replacing needs the overlapping labels to repeat "
            "the end of the stored coordinate exactly. Nothing was written"
        )
    check_continues(name, stored_tail[:-count], values, dim, new, where, files)
    return count


def _overlapping(stored_tail: np.ndarray, values: np.ndarray) -> int:
    """How many of the stored last values the new ones do not lie past (in the direction of
    the stored values, or of the new ones)."""
    if not len(stored_tail) or not len(values):
        return 0
    both = stored_tail if len(stored_tail) > 1 else values
    falling = len(both) > 1 and bool(both[-1] < both[-2])
    first = values[0]
    reached = stored_tail <= first if falling else stored_tail >= first
    return int(reached.sum()) if reached.any() else 0


def _labels(values: np.ndarray, shown: int = 4) -> str:
    text = values[:shown].tolist()
    more = f" ... ({len(values)} in all)" if len(values) > shown else ""
    return f"{text}{more}"
