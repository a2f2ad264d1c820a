"""Selections inside uncompressed chunks: the chunk's references narrowed to the selected rows.

A chunk stored raw (one ``bytes`` codec, C order) whose earlier axes all have
chunks of size 1 holds its rows along an axis as consecutive runs of bytes:
selecting rows ``[skip, skip + rows)`` of it is the byte range
``offset + skip * row_bytes``, ``rows * row_bytes`` long — what VirtualiZarr
does for such slices. Compressed chunks have no such ranges.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.errors import UnsupportedDatasetError
from zarr_manifest_store.manifest import INLINE, ChunkManifest
from zarr_manifest_store.ops.edges import chunk_nbytes

__all__ = ["narrowed"]


def narrowed(
    array: ManifestArray,
    taken: ChunkManifest,
    positions: Sequence[np.ndarray],
    axis: int,
    skip: int,
    rows: int,
) -> ChunkManifest:
    """``taken`` (``array``'s chunks at ``positions``) with its first chunks along ``axis``
    narrowed to their rows ``[skip, skip + rows)``."""
    edges = tuple(
        tuple(int(e) for e in np.asarray(sizes)[p])
        for sizes, p in zip(array.chunk_sizes, positions, strict=True)
    )
    stored = edges[axis][0]
    slab = tuple(0 if k == axis else slice(None) for k in range(array.ndim))
    full = chunk_nbytes(array, edges, axis, stored)
    row_bytes = full // np.uint64(stored)
    index = taken.path_index[slab]
    references = index < INLINE
    lengths = taken.lengths.copy()
    offsets = taken.offsets.copy()
    if not np.array_equal(lengths[slab][references], full[references]):
        bad = tuple(int(c) for c in np.argwhere(references & (lengths[slab] != full))[0])
        raise UnsupportedDatasetError(
            f"an uncompressed chunk {bad} of this array is {int(lengths[slab][bad])} bytes, not "
            f"the {int(full[bad])} its shape needs: a selection inside it cannot be narrowed"
        )
    offsets[slab] = np.where(references, offsets[slab] + row_bytes * np.uint64(skip), 0)
    lengths[slab] = np.where(references, row_bytes * np.uint64(rows), 0)
    inline = dict(taken.inline)
    for coords, data in taken.inline.items():
        if coords[axis] == 0:
            size = int(row_bytes[tuple(c for k, c in enumerate(coords) if k != axis)])
            inline[coords] = data[skip * size : (skip + rows) * size]
    return taken.replace(offsets=offsets, lengths=lengths, inline=inline)
