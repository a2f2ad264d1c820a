"""ChunkManifest: where every chunk of one array lives, stored column-wise.

A manifest is a path table (each distinct source path once) plus three arrays
shaped like the chunk grid: a ``uint32`` index into the path table, the byte
``offset`` (``uint64``) and the byte ``length`` of each chunk. Two sentinel
index values mark a chunk that is *missing* (Zarr fills it) or *inline* (its
bytes live in the manifest itself, for small or materialised data).

Lengths are kept in ``uint32`` whenever every length fits (always the case for
HDF5 chunks), which holds a reference to 16 bytes plus its share of the path
table; the ``lengths`` property always returns ``uint64``.

``refs`` names the parts (a chunk's reference, a source's fingerprint, chunk keys,
the sentinels), ``columns`` checks them, ``sparse`` holds the sparse form (a grid much
larger than its entries costs memory in proportion to the entries), ``grid`` computes
the columns of grid operations (``take``, ``concat``, ``with_inline``), ``axes`` moves a
grid's axes (``transpose``, ``expand_dims``, ``squeeze``), ``chunk_manifest`` holds the class.
"""

from zarr_manifest_store.manifest.chunk_manifest import ChunkManifest
from zarr_manifest_store.manifest.refs import (
    INLINE,
    MAX_END,
    MAX_PATHS,
    MISSING,
    ChunkCoords,
    ChunkRef,
    Fingerprint,
    chunk_key,
    parse_chunk_key,
)
from zarr_manifest_store.manifest.sparse import MAX_DENSE_CHUNKS, References, grid_size

__all__ = [
    "INLINE",
    "MAX_DENSE_CHUNKS",
    "MAX_END",
    "MAX_PATHS",
    "MISSING",
    "ChunkCoords",
    "ChunkManifest",
    "ChunkRef",
    "Fingerprint",
    "References",
    "chunk_key",
    "grid_size",
    "parse_chunk_key",
]
