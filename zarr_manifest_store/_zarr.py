"""The parts of zarr-python that the package uses but zarr does not publish.

Everything else comes from zarr's public modules (``zarr.abc``, ``zarr.buffer``,
``zarr.codecs``, ``zarr.dtype``, ``zarr.registry``, ``zarr.storage``). Each name
below is imported here only, with the reason no public hook serves; checked
against zarr 3.4.2.
"""

from __future__ import annotations

# The codec pipeline (pipeline.py): zarr's fused pipeline, its chunk transform and its
# fallback for asynchronous stores are the pieces a pipeline class is built from. The
# zarr_manifest engine (xarray/backend.py) reads zarr's array defaults (ArrayConfig) once
# for a group's arrays: zarr reads its configuration again for every array otherwise.
from zarr.core.array_spec import ArrayConfig, ArraySpec

# Chunk key encodings: the store decodes zarr's default and v2 keys through its own tables.
from zarr.core.chunk_key_encodings import DefaultChunkKeyEncoding, V2ChunkKeyEncoding
from zarr.core.chunk_utils import ChunkTransform, decode_and_scatter_chunk
from zarr.core.codec_pipeline import (
    BatchedCodecPipeline,
    FusedCodecPipeline,
    _get_pool,
)

# Array and group metadata documents: zarr exposes them only as zarr.core classes. The store
# serves them, the scanners build them, the writers translate them (v2 for kerchunk).
from zarr.core.group import GroupMetadata
from zarr.core.indexing import SelectorTuple
from zarr.core.metadata import ArrayMetadata
from zarr.core.metadata.v2 import ArrayV2Metadata
from zarr.core.metadata.v3 import (
    ArrayV3Metadata,
    RectilinearChunkGridMetadata,
    RegularChunkGridMetadata,
)

__all__ = [
    "ArrayConfig",
    "ArrayMetadata",
    "ArraySpec",
    "ArrayV2Metadata",
    "ArrayV3Metadata",
    "BatchedCodecPipeline",
    "ChunkTransform",
    "DefaultChunkKeyEncoding",
    "FusedCodecPipeline",
    "GroupMetadata",
    "RectilinearChunkGridMetadata",
    "RegularChunkGridMetadata",
    "SelectorTuple",
    "V2ChunkKeyEncoding",
    "decode_and_scatter_chunk",
    "fused_read_pool",
]

# The fused pipeline's thread pool, sized by zarr's ``codec_pipeline.max_workers``: the
# package's read loop (which names a chunk that fails to decode) runs on the same workers.
fused_read_pool = _get_pool
