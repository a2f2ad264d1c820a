"""Ragged edge chunks: the last chunk of an array whose length is not a multiple of the chunk size.

Zarr stores that chunk at full size though it holds fewer elements. Once other
chunks follow it (concatenation, broadcasting a length-1 axis), it must be
described at its true size: uncompressed chunks whose valid elements lead
their bytes are shortened; inline chunks are re-encoded; anything else is
refused, or, with ``edge_chunks="inline"``, read once, cropped and stored
inline. Never a chunk decoded at the wrong size.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from typing import Any, Literal

import numpy as np
from zarr.codecs import BytesCodec

from zarr_manifest_store._zarr import ArrayV3Metadata
from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.codecs import decode_chunk, encode_chunk
from zarr_manifest_store.errors import UnsupportedDatasetError
from zarr_manifest_store.io.fingerprints import check_unchanged
from zarr_manifest_store.io.sources import Sources
from zarr_manifest_store.manifest import INLINE, ChunkManifest, ChunkRef, Fingerprint
from zarr_manifest_store.ops.combinable import describe_sources
from zarr_manifest_store.ops.grid import Edges

__all__ = ["EdgeChunks", "EdgeReader", "edge_chunks", "edge_options", "exact_last_chunk"]

EdgeChunks = Literal["refuse", "inline"]

_EDGE_OPTIONS: ContextVar[tuple[EdgeChunks, Mapping[str, Any] | None]] = ContextVar(
    "edge_chunks", default=("refuse", None)
)
"""What ``np.concatenate`` / ``np.broadcast_to`` do with ragged edge chunks (see :func:`edge_chunks`)."""


@contextlib.contextmanager
def edge_chunks(
    mode: EdgeChunks = "inline", *, storage_options: Mapping[str, Any] | None = None
) -> Iterator[None]:
    """Within the block, ``np.concatenate`` and ``np.broadcast_to`` treat ragged edge chunks per ``mode``.

    The NumPy functions take no ``edge_chunks`` argument, so callers that reach
    them indirectly (xarray's ``concat`` / ``combine_by_coords``) set it here;
    ``"inline"`` reads, crops and inlines the edge chunks that :func:`concat`
    would otherwise refuse. The setting is per thread / task (a context variable).

    >>> with edge_chunks("inline"):  # doctest: +SKIP
    ...     ds = xr.concat([ds1, ds2], dim="time")
    """
    if mode not in ("refuse", "inline"):
        raise ValueError(f"edge_chunks must be 'refuse' or 'inline', got {mode!r}")
    token = _EDGE_OPTIONS.set((mode, storage_options))
    try:
        yield
    finally:
        _EDGE_OPTIONS.reset(token)


def edge_options() -> tuple[EdgeChunks, Mapping[str, Any] | None]:
    """The ``edge_chunks`` mode and storage options in force (set by :func:`edge_chunks`)."""
    return _EDGE_OPTIONS.get()


class EdgeReader:
    """Reads and re-encodes edge chunks when ``edge_chunks="inline"``; refuses otherwise."""

    def __init__(self, edge_chunks: EdgeChunks, storage_options: Mapping[str, Any] | None):
        if edge_chunks not in ("refuse", "inline"):
            raise ValueError(f"edge_chunks must be 'refuse' or 'inline', got {edge_chunks!r}")
        self.inline = edge_chunks == "inline"
        self._storage_options = storage_options
        self._sources: Sources | None = None
        self._checked: set[str] = set()

    def __enter__(self) -> EdgeReader:
        return self

    def __exit__(self, *exc: object) -> None:
        if self._sources is not None:
            self._sources.close()

    def read(self, ref: ChunkRef, recorded: Fingerprint | None) -> bytes:
        """The referenced bytes, once the source is checked against its recorded fingerprint."""
        if self._sources is None:
            self._sources = Sources(self._storage_options)
        if recorded is not None and ref.path not in self._checked:
            check_unchanged(ref.path, recorded, self._sources.fingerprint(ref.path))
            self._checked.add(ref.path)
        return self._sources.read_sync(ref.path, ref.offset, ref.length)


def exact_last_chunk(
    array: ManifestArray, axis: int, reader: EdgeReader
) -> tuple[tuple[int, ...], ChunkManifest]:
    """Chunk sizes along ``axis`` and a manifest in which the last chunk has its true size.

    The last chunk of a length that is not a multiple of the chunk size is
    stored at full size. To put other chunks after it, its references must
    yield exactly the elements inside the array: shortened when they are
    uncompressed and those elements lead the chunk's bytes, otherwise decoded,
    cropped and re-encoded inline (inline chunks always; references only when
    ``reader`` may read), or refused.
    """
    edges = array.chunk_sizes
    manifest = array.manifest
    if not edges[axis]:
        return edges[axis], manifest
    stored = edges[axis][-1]
    true = array.shape[axis] - sum(edges[axis][:-1])
    if stored == true:
        return edges[axis], manifest
    slab = tuple(len(e) - 1 if k == axis else slice(None) for k, e in enumerate(edges))
    index = manifest.path_index[slab]
    references = index < INLINE
    if references.any() and prefix_truncatable(array, edges, axis):
        manifest = _shortened(array, edges, axis, slab, references, true)
        references = np.zeros_like(references)
    if references.any() and not reader.inline:
        coords = _full_coords(np.argwhere(references)[0], axis, len(edges[axis]) - 1)
        raise UnsupportedDatasetError(
            _ragged_message(array, axis, stored, true, references, coords)
        )
    recoded: dict[tuple[int, ...], bytes] = {}
    for cell in np.argwhere((index == INLINE) | references):
        coords = _full_coords(cell, axis, len(edges[axis]) - 1)
        chunk = manifest.get(coords)
        if isinstance(chunk, ChunkRef):
            chunk = reader.read(chunk, manifest.fingerprints.get(chunk.path))
        buffer = tuple(e[c] for e, c in zip(edges, coords, strict=True))
        recoded[coords] = _recode(array.metadata, buffer, axis, true, chunk)  # type: ignore[arg-type]
    if recoded:
        manifest = manifest.with_inline(recoded)
    return (*edges[axis][:-1], true), manifest


def _shortened(
    array: ManifestArray,
    edges: Edges,
    axis: int,
    slab: tuple[Any, ...],
    references: np.ndarray,
    true: int,
) -> ChunkManifest:
    """The manifest with the slab's uncompressed references cut to their first ``true`` rows."""
    stored = edges[axis][-1]
    expected = chunk_nbytes(array, edges, axis, stored)
    lengths = array.manifest.lengths.copy()
    got = lengths[slab]
    if not np.array_equal(got[references], expected[references]):
        bad = tuple(int(c) for c in np.argwhere(references & (got != expected))[0])
        raise UnsupportedDatasetError(
            f"{describe_sources(array.manifest)}: an uncompressed chunk of this array is "
            f"{int(got[bad])} bytes, not the {int(expected[bad])} its shape needs; it cannot "
            "be shortened safely"
        )
    lengths[slab] = np.where(references, expected // stored * true, got)
    return array.manifest.replace(lengths=lengths)


def _full_coords(cell: np.ndarray, axis: int, at: int) -> tuple[int, ...]:
    """Grid coordinates of a slab cell: ``at`` inserted on ``axis``."""
    coords = [int(c) for c in cell]
    coords.insert(axis, at)
    return tuple(coords)


def prefix_truncatable(array: ManifestArray, edges: Edges, axis: int) -> bool:
    """Whether the first elements along ``axis`` are the first bytes of every chunk.

    True for chunks stored raw (one ``bytes`` codec, C order) when every axis
    before ``axis`` has chunks of size 1.
    """
    codecs = array.metadata.codecs
    return (
        len(codecs) == 1
        and isinstance(codecs[0], BytesCodec)
        and array.dtype.kind not in "OT"
        and all(e == 1 for k in range(axis) for e in edges[k])
    )


def chunk_nbytes(array: ManifestArray, edges: Edges, axis: int, stored: int) -> np.ndarray:
    """Raw byte sizes of the slab's chunks (the last chunks along ``axis``), slab-shaped."""
    sizes = np.full((), stored * array.dtype.itemsize, dtype=np.uint64)
    for k, e in enumerate(edges):
        if k != axis:
            sizes = np.multiply.outer(sizes, np.asarray(e, dtype=np.uint64))
    return sizes


def _ragged_message(
    array: ManifestArray,
    axis: int,
    stored: int,
    true: int,
    cells: np.ndarray,
    coords: tuple[int, ...],
) -> str:
    codecs = [c.to_dict()["name"] for c in array.metadata.codecs]  # type: ignore[index]
    ref = array.manifest.get(coords)
    where = ref.path if isinstance(ref, ChunkRef) else describe_sources(array.manifest)
    return (
        f"{where}: length {array.shape[axis]} along axis {axis} is not a multiple of the chunk "
        f"size {stored}, so its last chunk holds {true} of {stored} elements. Followed by other "
        f"chunks, it must be described at its true size, which takes decoding it (codecs "
        f"{codecs}). Pass edge_chunks='inline' to zms.concat to read those "
        f"{int(cells.sum())} chunk(s) once and store them inline, or rewrite the file with a "
        f"chunk size that divides {array.shape[axis]}"
    )


def _recode(
    metadata: ArrayV3Metadata, buffer: tuple[int, ...], axis: int, true: int, raw: bytes
) -> bytes:
    """Decode a chunk stored with ``buffer`` shape, keep ``true`` elements along ``axis``, re-encode."""
    crop = tuple(slice(0, true) if k == axis else slice(None) for k in range(len(buffer)))
    try:
        values = decode_chunk(metadata, raw, buffer)[crop]
        return encode_chunk(metadata, values.shape, values)
    except (ValueError, TypeError, NotImplementedError, RuntimeError) as e:
        raise UnsupportedDatasetError(
            f"cannot re-encode an edge chunk of {buffer} elements with codecs "
            f"{[c.to_dict() for c in metadata.codecs]}: {e}"
        ) from e
