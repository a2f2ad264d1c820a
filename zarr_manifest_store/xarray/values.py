"""Values of small ManifestArrays (coordinates, variables compared across files), read exactly.

Chunks stored raw are read with :class:`~zarr_manifest_store.io.sources.Sources`
(nearby chunks of one file in one read) and reinterpreted in place; any other
array is read through zarr-python's own codec pipeline.
"""

from __future__ import annotations

import itertools
import math
import warnings
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import zarr
from zarr.codecs import BytesCodec
from zarr.storage import StorePath

from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.errors import UnsupportedDatasetError
from zarr_manifest_store.io.remote_file import cached_bytes
from zarr_manifest_store.io.sources import ByteData, Sources, coalesce
from zarr_manifest_store.manifest import ChunkCoords, ChunkRef, Fingerprint
from zarr_manifest_store.store import ManifestStore

__all__ = ["read_values", "read_values_together", "sources_for"]

_GAP_READ_BYTES = 2**16
"""Bytes between two chunks of a file that are read rather than asked for separately."""
_MAX_READ_BYTES = 2**24
"""The largest read that serves several chunks (a longer chunk is read alone)."""


def sources_for(
    arrays: Iterable[ManifestArray], storage_options: Mapping[str, Any] | None
) -> Sources:
    """A reader that checks the arrays' sources against the fingerprints their scan recorded."""
    fingerprints: dict[str, list[Fingerprint]] = {}
    for array in arrays:
        for path, fingerprint in array.manifest.fingerprints.items():
            fingerprints.setdefault(path, []).append(fingerprint)
    return Sources(storage_options, fingerprints=fingerprints)


def read_values(array: ManifestArray, sources: Sources) -> np.ndarray:
    """The values of a (small) array, decoded exactly as zarr decodes its chunks.

    Chunks stored raw (one ``bytes`` codec, a fixed-size numeric type) are
    read with ``sources`` and reinterpreted in place; anything else goes
    through zarr-python's own codec pipeline.
    """
    return read_values_together([array], sources)[0]


def read_values_together(arrays: Sequence[ManifestArray], sources: Sources) -> list[np.ndarray]:
    """The values of several (small) arrays, as :func:`read_values` reads each.

    Their raw chunks are read together: those of one file that lie close to
    each other (as a file's coordinates usually do) in one read.
    """
    stored = [_raw_dtype(array) for array in arrays]
    present = [
        list(array.manifest.items()) if raw is not None else []
        for array, raw in zip(arrays, stored, strict=True)
    ]
    chunks = _read_chunks(
        [ref for items in present for _, ref in items if isinstance(ref, ChunkRef)], sources
    )
    return [
        _read_raw(array, raw, items, chunks) if raw is not None else _read_with_zarr(array, sources)
        for array, raw, items in zip(arrays, stored, present, strict=True)
    ]


def _read_chunks(refs: Iterable[ChunkRef], sources: Sources) -> dict[ChunkRef, ByteData]:
    """The bytes of each chunk reference; references close together in a file read at once."""
    by_path: dict[str, list[ChunkRef]] = {}
    for ref in refs:
        by_path.setdefault(ref.path, []).append(ref)
    out: dict[ChunkRef, ByteData] = {}
    for path, found in by_path.items():
        ranges = [(ref.offset, ref.offset + ref.length) for ref in found]
        plan = coalesce(ranges, max_gap_bytes=_GAP_READ_BYTES, max_coalesced_bytes=_MAX_READ_BYTES)
        for start, stop, members in plan:
            # The blocks the scan read, within a `sharing` (a small file's loaded
            # coordinates are in its first block): no request of their own.
            held = cached_bytes(sources, path, start, stop)
            data = memoryview(
                held if held is not None else sources.read_sync(path, start, stop - start)
            )
            for i in members:
                ref = found[i]
                out[ref] = data[ref.offset - start : ref.offset - start + ref.length]
    return out


def _read_with_zarr(array: ManifestArray, sources: Sources) -> np.ndarray:
    """An array read through zarr-python's codec pipeline."""
    store = ManifestStore(array, storage_options=sources.storage_options)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zarr warns about codecs outside the v3 spec
            reader = zarr.Array(
                zarr.AsyncArray(metadata=array.metadata, store_path=StorePath(store))
            )
            return np.asarray(reader[...])
    finally:
        store.close()


def _raw_dtype(array: ManifestArray) -> np.dtype | None:
    """The dtype chunks are stored in, byte order included, if they are raw bytes; else None."""
    codecs = array.metadata.codecs
    if len(codecs) != 1 or not isinstance(codecs[0], BytesCodec):
        return None
    dtype = array.dtype
    endian = getattr(codecs[0].endian, "value", codecs[0].endian)  # an Enum before zarr 3.4
    if dtype.kind not in "biufcmM" or (endian is None and dtype.itemsize > 1):
        return None
    return dtype.newbyteorder(">" if endian == "big" else "<") if dtype.itemsize > 1 else dtype


def _read_raw(
    array: ManifestArray,
    stored: np.dtype,
    present: Iterable[tuple[ChunkCoords, ChunkRef | bytes]],
    chunks: Mapping[ChunkRef, ByteData],
) -> np.ndarray:
    """An array whose chunks (``present``, their bytes read into ``chunks``) are raw bytes:
    each reinterpreted in place, edges cropped."""
    out = np.full(array.shape, array.fill_value, dtype=array.dtype)
    starts = [list(itertools.accumulate(sizes, initial=0)) for sizes in array.chunk_sizes]
    for coords, chunk in present:
        shape = tuple(sizes[c] for sizes, c in zip(array.chunk_sizes, coords, strict=True))
        data = chunk if isinstance(chunk, bytes) else chunks[chunk]
        expected = math.prod(shape) * stored.itemsize
        if len(data) != expected:
            raise UnsupportedDatasetError(
                f"chunk {coords} of an array read from {_where(array)} holds {len(data)} bytes, "
                f"not the {expected} its shape {shape} needs"
            )
        block = np.frombuffer(data, dtype=stored).reshape(shape)
        region = tuple(
            slice(s[c], min(s[c] + n, extent))
            for s, c, n, extent in zip(starts, coords, shape, array.shape, strict=True)
        )
        out[region] = block[tuple(slice(0, r.stop - r.start) for r in region)]
    return out


def _where(array: ManifestArray) -> str:
    paths = array.manifest.paths
    return paths[0] if len(paths) == 1 else f"{len(paths)} files"
