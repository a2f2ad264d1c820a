"""Run an array's zarr codecs on one chunk, the one place the package does so itself.

Reads go through zarr; a few steps need one chunk's bytes or values directly: an
edge chunk re-encoded at its true size, data materialised as inline chunks, the
encoded fill value of a missing chunk. Each runs the array's codecs on a
one-chunk array in a ``MemoryStore``, through zarr's public API.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import zarr
from zarr.buffer import default_buffer_prototype
from zarr.storage import MemoryStore

from zarr_manifest_store._zarr import ArrayV3Metadata

__all__ = ["decode_chunk", "encode_chunk"]


def decode_chunk(metadata: ArrayV3Metadata, raw: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """The values of one chunk of ``shape`` elements stored as ``raw`` with ``metadata``'s codecs."""
    meta = _one_chunk(metadata, shape)
    proto = default_buffer_prototype()
    contents = {
        "zarr.json": meta.to_buffer_dict(proto)["zarr.json"],
        meta.encode_chunk_key((0,) * len(shape)): proto.buffer.from_bytes(raw),
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr warns about codecs outside the v3 spec
        return np.asarray(zarr.open_array(MemoryStore(contents), mode="r")[...])


def encode_chunk(metadata: ArrayV3Metadata, shape: tuple[int, ...], values: Any) -> bytes:
    """One chunk of ``shape`` elements encoded with ``metadata``'s codecs.

    ``values`` is a scalar (the whole chunk holds it) or an array filling the
    chunk's leading corner; the rest holds the fill value, as zarr writes an
    edge chunk.
    """
    meta = _one_chunk(metadata, shape)
    contents: dict[str, Any] = dict(meta.to_buffer_dict(default_buffer_prototype()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr warns about codecs outside the v3 spec
        target = zarr.open_array(
            MemoryStore(contents), mode="r+", config={"write_empty_chunks": True}
        )
        if np.ndim(values) == len(shape) and len(shape):
            target[tuple(slice(0, n) for n in np.shape(values))] = values
        else:
            target[...] = values
    return contents[meta.encode_chunk_key((0,) * len(shape))].to_bytes()


def _one_chunk(metadata: ArrayV3Metadata, shape: tuple[int, ...]) -> ArrayV3Metadata:
    """``metadata`` for an array that is exactly one chunk of ``shape``."""
    doc = metadata.to_dict()
    doc.update(
        shape=list(shape),
        chunk_grid={"name": "regular", "configuration": {"chunk_shape": list(shape)}},
        attributes={},
        dimension_names=None,
    )
    return ArrayV3Metadata.from_dict(doc)
