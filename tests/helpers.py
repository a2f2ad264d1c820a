"""Plain helpers for tests: zarr.json builders and hand-built manifests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import h5py
import numpy as np

import zarr_manifest_store as zms


def array_metadata(
    shape: tuple[int, ...],
    chunks: tuple[int, ...],
    dtype: str = "float32",
    *,
    fill_value: Any = 0,
    codecs: list[dict[str, Any]] | None = None,
    dimension_names: list[str] | None = None,
    attributes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A zarr.json dict for a regular-grid array."""
    meta: dict[str, Any] = {
        "zarr_format": 3,
        "node_type": "array",
        "shape": list(shape),
        "data_type": dtype,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(chunks)}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": fill_value,
        "codecs": codecs or [{"name": "bytes", "configuration": {"endian": "little"}}],
        "attributes": attributes or {},
    }
    if dimension_names is not None:
        meta["dimension_names"] = dimension_names
    return meta


def hdf5_chunk_manifest(
    path: Path, name: str, skip: set[tuple[int, ...]] = frozenset()
) -> zms.ChunkManifest:
    """A manifest built by hand from h5py's get_chunk_info, leaving out the chunks in ``skip``."""
    with h5py.File(path) as f:
        ds = f[name]
        grid = tuple(-(-n // c) for n, c in zip(ds.shape, ds.chunks, strict=True))
        paths = np.full(grid, "", dtype=object)
        offsets = np.zeros(grid, dtype=np.uint64)
        lengths = np.zeros(grid, dtype=np.uint64)
        for i in range(ds.id.get_num_chunks()):
            info = ds.id.get_chunk_info(i)
            coords = tuple(o // c for o, c in zip(info.chunk_offset, ds.chunks, strict=True))
            if coords in skip:
                continue
            paths[coords] = str(path)
            offsets[coords] = info.byte_offset
            lengths[coords] = info.size
    return zms.ChunkManifest.from_arrays(paths=paths.astype(str), offsets=offsets, lengths=lengths)


GZIP_SHUFFLE_CODECS = [
    {"name": "bytes", "configuration": {"endian": "little"}},
    {"name": "numcodecs.shuffle", "configuration": {"elementsize": 4}},
    {"name": "numcodecs.zlib", "configuration": {"level": 4}},
]
