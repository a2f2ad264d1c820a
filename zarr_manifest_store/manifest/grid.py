"""The columns of a manifest computed from grid-shaped inputs and by grid operations.

Each function returns the constructor's parts (``paths``, ``path_index``, ``offsets``,
``lengths``, ``inline``, ``fingerprints``), so that ``ChunkManifest`` keeps only the
choice of form and the answers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from itertools import product
from typing import Any

import numpy as np
import numpy.typing as npt

from zarr_manifest_store.manifest.axes import joined_shape, lined_up
from zarr_manifest_store.manifest.columns import in_grid, unsigned
from zarr_manifest_store.manifest.refs import INLINE, MISSING, ChunkCoords, Fingerprint, chunk_key
from zarr_manifest_store.manifest.sparse import MAX_DENSE_CHUNKS, check_dense

__all__ = ["compacted", "concatenated", "from_grids", "inlined", "taken"]

Parts = dict[str, Any]


def from_grids(
    paths: npt.ArrayLike,
    offsets: npt.ArrayLike,
    lengths: npt.ArrayLike,
    inline: Mapping[ChunkCoords, bytes] | None,
) -> Parts:
    """The parts of ``ChunkManifest.from_arrays``: grid-shaped paths ("" missing)."""
    path_grid = np.asarray(paths)
    if path_grid.dtype.kind not in "UTO" or (
        path_grid.dtype.kind == "O" and not all(isinstance(p, str) for p in path_grid.flat)
    ):
        raise ValueError(f"paths must be an array of strings, got dtype {path_grid.dtype}")
    shape = path_grid.shape
    offsets_grid = unsigned(offsets, np.uint64, "offset", shape)
    lengths_grid = unsigned(lengths, np.uint64, "length", shape)
    table, inverse = np.unique(path_grid.ravel(), return_inverse=True)
    table = [str(p) for p in table]
    index = inverse.astype(np.uint32).reshape(shape)
    if table and table[0] == "":
        index = np.where(index == 0, MISSING, index - 1).astype(np.uint32)
        table = table[1:]
    inline = dict(inline or {})
    for coords in inline:
        if in_grid(coords, shape) and path_grid[coords] != "":
            raise ValueError(
                f"chunk {chunk_key(coords)!r} is both inline and a reference to "
                f"{path_grid[coords]!r}; give it the path ''"
            )
        if in_grid(coords, shape):
            index[coords] = INLINE
    absent = index >= INLINE
    return {
        "paths": table,
        "path_index": index,
        "offsets": np.where(absent, 0, offsets_grid),
        "lengths": np.where(absent, 0, lengths_grid),
        "inline": inline,
    }


def taken(parts: Parts, shape: tuple[int, ...], positions: Sequence[npt.ArrayLike]) -> Parts:
    """The parts of ``take``: the cells at ``positions`` (outer indexing, repeats allowed)."""
    picks = [np.asarray(p, dtype=np.intp).reshape(-1) for p in positions]
    if len(picks) != len(shape):
        raise ValueError(f"take needs one sequence of positions per axis ({len(shape)})")
    for axis, (p, n) in enumerate(zip(picks, shape, strict=True)):
        if p.size and (p.min() < 0 or p.max() >= n):
            raise IndexError(f"a position along axis {axis} lies outside 0..{n - 1}")
    grid = np.ix_(*picks) if picks else ()
    inline: dict[ChunkCoords, bytes] = {}
    for coords, data in parts["inline"].items():
        hits = [np.flatnonzero(p == c) for p, c in zip(picks, coords, strict=True)]
        for new in product(*hits):
            inline[tuple(int(c) for c in new)] = data
    columns = {name: parts[name][grid] for name in ("path_index", "offsets", "lengths")}
    return compacted({**parts, **columns, "inline": inline})


def concatenated(manifests: Sequence[Any], axis: int) -> Parts:
    """The parts of ``concat`` (without fingerprints): grids side by side along ``axis``, one
    path table (first use first), inline chunks moved to their new places. The grids must
    line up along the other axes; sparse ones are held as a grid, within ``MAX_DENSE_CHUNKS``."""
    shapes = [m.shape for m in manifests]
    axis = lined_up(shapes, axis)
    if any(m.sparse for m in manifests):
        nchunks = sum(m.nchunks for m in manifests)
        check_dense(joined_shape(shapes, axis), nchunks, MAX_DENSE_CHUNKS)
    ndim = manifests[0].ndim
    # One lookup from every input's path table, stacked, to the merged table.
    paths: dict[str, int] = {}
    lut = np.array(
        [paths.setdefault(p, len(paths)) for m in manifests for p in m.paths], dtype=np.uint32
    )
    table_starts = np.cumsum([0] + [len(m.paths) for m in manifests[:-1]])
    lengths_along = [m.shape[axis] for m in manifests]
    starts = np.repeat(table_starts, lengths_along).reshape(
        [-1 if k == axis else 1 for k in range(ndim)]
    )
    stacked = np.concatenate([m.path_index for m in manifests], axis=axis)
    present = stacked < INLINE
    index = stacked.copy()
    index[present] = lut[(stacked + np.broadcast_to(starts, stacked.shape))[present]]
    inline: dict[ChunkCoords, bytes] = {}
    for m, start in zip(manifests, np.cumsum([0, *lengths_along[:-1]]), strict=True):
        for coords, data in m.inline.items():
            inline[(*coords[:axis], coords[axis] + int(start), *coords[axis + 1 :])] = data
    return {
        "paths": list(paths),
        "path_index": index,
        "offsets": np.concatenate([m.offsets for m in manifests], axis=axis),
        "lengths": np.concatenate([m.lengths for m in manifests], axis=axis),
        "inline": inline,
    }


def inlined(parts: Parts, shape: tuple[int, ...], chunks: Mapping[ChunkCoords, bytes]) -> Parts:
    """The parts of ``with_inline``: these chunks inline, the references they replace gone."""
    index = parts["path_index"].copy()
    for coords in chunks:
        key = tuple(int(c) for c in coords)
        if not in_grid(key, shape):
            raise ValueError(f"inline chunk {chunk_key(key)!r} lies outside the chunk grid {shape}")
        index[key] = INLINE
    referenced = index < INLINE
    return compacted(
        {
            **parts,
            "path_index": index,
            "offsets": np.where(referenced, parts["offsets"], 0),
            "lengths": np.where(referenced, parts["lengths"], 0),
            "inline": {**parts["inline"], **chunks},
        }
    )


def compacted(parts: Parts) -> Parts:
    """``parts`` whose path table (and fingerprints) keep only the paths still referenced."""
    paths, index = parts["paths"], parts["path_index"]
    fingerprints: Mapping[str, Fingerprint] = parts["fingerprints"]
    present = index < INLINE
    used = np.bincount(index[present], minlength=len(paths)).astype(bool)
    if used.all():
        return parts
    keep = np.flatnonzero(used)
    lut = np.zeros(len(paths), dtype=np.uint32)
    lut[keep] = np.arange(len(keep), dtype=np.uint32)
    index = np.array(index, dtype=np.uint32)
    index[present] = lut[index[present]]
    paths = [paths[i] for i in keep]
    fingerprints = {p: fingerprints[p] for p in paths if p in fingerprints}
    return {**parts, "paths": paths, "path_index": index, "fingerprints": fingerprints}
