"""Build small source files and their chunk manifests, with zarr itself encoding the chunks.

zarr-python writes the array to memory; the chunks it produced are then laid
end to end in one source file (after a header, so that offsets are not zero),
and the manifest records where each landed. Whatever zarr can decode from its
own store, it must decode identically through a manifest: this is how the
conformance cases and the tests get exact expected values for every data type
and codec.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import zarr
from zarr.storage import MemoryStore

from zarr_manifest_store import ChunkManifest, ManifestArray
from zarr_manifest_store.manifest import Fingerprint

HEADER = b"SOURCE-FILE-HEADER\n"
"""Bytes every generated source file starts with, so that no chunk sits at offset 0."""


def source_array(
    path: Path,
    data: np.ndarray,
    *,
    chunks: tuple[int, ...],
    missing: Collection[tuple[int, ...]] = (),
    inline: Collection[tuple[int, ...]] = (),
    written_as: str | None = None,
    fingerprint: bool = True,
    **zarr_options: Any,
) -> ManifestArray:
    """Write ``data``'s chunks (encoded by zarr) to the file ``path``; a ManifestArray over them.

    Chunks in ``missing`` are left out (they read as the fill value); chunks in
    ``inline`` are kept in the manifest itself. ``written_as`` is the path the
    manifest records (default: ``path`` made absolute). ``zarr_options`` go to
    ``zarr.create_array`` (``dtype``, ``compressors``, ``fill_value``,
    ``dimension_names``, ``attributes``, ...).
    """
    metadata, encoded = encode_chunks(data, chunks=chunks, **zarr_options)
    name = written_as or str(path.resolve())
    grid = tuple(-(-n // c) for n, c in zip(data.shape, chunks, strict=True))
    paths = np.full(grid, "", dtype=object)
    offsets = np.zeros(grid, dtype=np.uint64)
    lengths = np.zeros(grid, dtype=np.uint64)
    inline_bytes: dict[tuple[int, ...], bytes] = {}
    blob = bytearray(HEADER)
    for coords, chunk in encoded.items():
        if coords in missing:
            continue
        if coords in inline:
            inline_bytes[coords] = chunk
            continue
        paths[coords], offsets[coords], lengths[coords] = name, len(blob), len(chunk)
        blob += chunk
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(blob))
    fingerprints = {}
    if fingerprint and (paths != "").any():
        fingerprints[name] = Fingerprint(size=len(blob))
    manifest = ChunkManifest.from_arrays(
        paths=paths.astype(str),
        offsets=offsets,
        lengths=lengths,
        inline=inline_bytes,
        fingerprints=fingerprints,
    )
    return ManifestArray(metadata=metadata, manifest=manifest)


def encode_chunks(
    data: np.ndarray, *, chunks: tuple[int, ...], **zarr_options: Any
) -> tuple[dict[str, Any], dict[tuple[int, ...], bytes]]:
    """zarr's ``zarr.json`` for ``data`` and the encoded bytes of every chunk, by grid coordinates.

    gzip members get a zero modification time, so that generated files are reproducible.
    """
    store = MemoryStore()
    zarr_options.setdefault("dtype", data.dtype)
    with zarr.config.set({"array.write_empty_chunks": True}):
        array = zarr.create_array(store, shape=data.shape, chunks=chunks, **zarr_options)
        array[...] = data
    raw: Mapping[str, Any] = store._store_dict
    metadata = json.loads(raw["zarr.json"].to_bytes())
    encoding = array.metadata.chunk_key_encoding
    grid = tuple(-(-n // c) for n, c in zip(data.shape, chunks, strict=True))
    encoded = {
        coords: _reproducible(raw[encoding.encode_chunk_key(coords)].to_bytes())
        for coords in np.ndindex(*grid)
    }
    return metadata, encoded


def _reproducible(chunk: bytes) -> bytes:
    if chunk[:3] == b"\x1f\x8b\x08":  # a gzip member: clear MTIME (not covered by its CRC)
        return chunk[:4] + bytes(4) + chunk[8:]
    return chunk
