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
    "check_continues",
    "check_unchanged_encoding",
    "check_whole_last_chunk",
    "dimensions",
    "grown",
    "stand_in",
]


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
    sizes = chunk_sizes(stored)[axis]
    if sizes and sum(sizes) != stored.shape[axis]:
        raise ValueError(
            f"cannot append to array {name!r}: its length {stored.shape[axis]} along axis "
            f"{axis} is not a multiple of its chunk size {sizes[-1]}, so its last chunk is "
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
