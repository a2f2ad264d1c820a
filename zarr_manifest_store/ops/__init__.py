"""Virtual array operations: combine and rearrange ManifestArrays by their manifests, never data.

``numpy_api`` implements ``np.concatenate`` / ``np.stack`` / ``np.broadcast_to`` /
``np.transpose`` / ... and ``a[key]`` through NEP 18 and registers them in
``array.HANDLED_FUNCTIONS`` when imported (``import zarr_manifest_store`` imports
this package); ``indexing`` selects whole chunks, ``edges`` handles ragged edge
chunks, ``combinable`` checks what inputs must share, ``grid`` builds the result.
"""

from zarr_manifest_store.ops.combinable import describe_sources
from zarr_manifest_store.ops.edges import EdgeChunks, edge_chunks
from zarr_manifest_store.ops.indexing import getitem
from zarr_manifest_store.ops.numpy_api import broadcast_to, concat, expand_dims, stack, transpose

__all__ = [
    "EdgeChunks",
    "broadcast_to",
    "concat",
    "describe_sources",
    "edge_chunks",
    "expand_dims",
    "getitem",
    "stack",
    "transpose",
]
