"""Writing a checked plan into an Icechunk session: metadata documents, virtual references in
bulk (``set_virtual_refs_arr``, one call per checksum), inline chunks as ordinary chunks."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import fsspec.asyn
import numpy as np
from zarr.core.buffer import default_buffer_prototype

from zarr_manifest_store._zarr import ArrayV3Metadata, GroupMetadata
from zarr_manifest_store.io.remote import io_loop
from zarr_manifest_store.manifest import INLINE, MISSING, ChunkManifest
from zarr_manifest_store.writers.icechunk.locations import Checksum, checksum_of

try:  # the optional dependency: only the fallback for interleaved sources builds its specs
    from icechunk import VirtualChunkSpec
except ImportError:  # pragma: no cover - to_icechunk checks for icechunk before writing
    VirtualChunkSpec = None

__all__ = ["ArrayWrite", "Plan", "array_document", "group_document", "run_plan"]

BOX_SLACK = 2
"""A source's references are written as the box of chunk rows they span; when those boxes
hold more than this many cells per reference (sources interleaved), one call with per-chunk
specs is cheaper."""


@dataclass
class ArrayWrite:
    """The chunks of one array to write: a manifest placed at ``offset`` in the chunk grid."""

    path: str
    manifest: ChunkManifest
    offset: tuple[int, ...]
    replace: bool = False  # chunks the manifest lacks are deleted (a region write)


@dataclass
class Plan:
    """Everything one ``to_icechunk`` call writes, decided (and checked) before any write."""

    clear: str | None = None  # a group path whose contents are replaced first
    documents: dict[str, bytes] = field(default_factory=dict)  # zarr.json keys
    arrays: list[ArrayWrite] = field(default_factory=list)


def array_document(metadata: ArrayV3Metadata) -> bytes:
    """An array's ``zarr.json`` as Icechunk parses it: chunk keys ``c/0/1``, and rectilinear
    grids listing every dimension's sizes (Icechunk 2.3 reads no bare-integer dimension)."""
    doc = metadata.to_dict()
    doc["chunk_key_encoding"] = {"name": "default", "configuration": {"separator": "/"}}
    doc.pop("storage_transformers", None)
    grid = doc["chunk_grid"]
    if grid["name"] == "rectilinear":
        shapes = grid["configuration"]["chunk_shapes"]
        grid["configuration"]["chunk_shapes"] = [
            [[spec, -(-extent // spec)]] if isinstance(spec, int) else spec
            for spec, extent in zip(shapes, metadata.shape, strict=True)
        ]
    return json.dumps(doc, allow_nan=True).encode()


def group_document(attributes: Mapping[str, Any]) -> bytes:
    return json.dumps(GroupMetadata(attributes=dict(attributes)).to_dict(), allow_nan=True).encode()


def run_plan(store: Any, plan: Plan, locations: Mapping[str, str]) -> None:
    """Write ``plan`` into ``store`` (an IcechunkStore of a writable session)."""
    fsspec.asyn.sync(io_loop(), _write_documents_and_inline, store, plan)
    for write in plan.arrays:
        _write_references(store, write, locations)


async def _write_documents_and_inline(store: Any, plan: Plan) -> None:
    prototype = default_buffer_prototype()
    if plan.clear is not None:
        await store.delete_dir(plan.clear)
    for key, doc in plan.documents.items():  # parents first: Icechunk creates nodes in order
        await store.set(key, prototype.buffer.from_bytes(doc))
    writes = [
        store.set(f"{w.path}/{_chunk_key(coords, w.offset)}", prototype.buffer.from_bytes(data))
        for w in plan.arrays
        for coords, data in w.manifest.inline.items()
    ]
    deletes = [
        store.delete(f"{w.path}/{_chunk_key(tuple(coords), w.offset)}")
        for w in plan.arrays
        if w.replace
        for coords in np.argwhere(w.manifest.path_index == MISSING).tolist()
    ]
    await asyncio.gather(*writes, *deletes)


def _chunk_key(coords: tuple[int, ...], offset: tuple[int, ...]) -> str:
    return "/".join(["c", *(str(c + o) for c, o in zip(coords, offset, strict=True))])


def _write_references(store: Any, write: ArrayWrite, locations: Mapping[str, str]) -> None:
    """The array's references: one call per distinct checksum, over the rows its sources span."""
    m = write.manifest
    index = m.path_index.reshape(-1)
    present = index < INLINE
    if not present.any():
        return
    checksums = [checksum_of(m.fingerprints.get(p)) for p in m.paths]
    distinct = list(dict.fromkeys(checksums))
    group_of_path = np.array([distinct.index(c) for c in checksums], dtype=np.int32)
    table = np.array([locations[p] for p in m.paths] + [""], dtype=object)
    rows = np.where(present, index, len(m.paths))
    urls = table[rows]
    offsets = m.offsets.reshape(-1)
    lengths = m.lengths.reshape(-1).astype(np.uint64, copy=False)
    if len(distinct) == 1:
        _set_box(
            store, write, (urls, offsets, lengths), 0, m.shape[0] if m.shape else 1, distinct[0]
        )
        return
    groups = np.where(present, group_of_path[np.minimum(index, len(m.paths) - 1)], -1)
    boxes = _row_boxes(groups, len(distinct), m.shape)
    row = _row_size(m.shape)
    if sum(stop - start for start, stop in boxes) * row > BOX_SLACK * len(index):
        _set_specs(store, write, urls, offsets, lengths, groups, distinct)
        return
    for g, (start, stop) in enumerate(boxes):
        cells = slice(start * row, stop * row)
        box_urls = np.where(groups[cells] == g, urls[cells], "")
        columns = (box_urls, offsets[cells], lengths[cells])
        _set_box(store, write, columns, start, stop, distinct[g])


def _row_size(shape: tuple[int, ...]) -> int:
    return int(np.prod(shape[1:], dtype=np.int64)) if shape else 1


def _row_boxes(groups: np.ndarray, count: int, shape: tuple[int, ...]) -> list[tuple[int, int]]:
    """For each checksum group, the rows (first grid axis) its chunks span, ``[start, stop)``."""
    row = _row_size(shape)
    valid = np.flatnonzero(groups >= 0)
    first = np.full(count, len(groups), dtype=np.int64)
    last = np.full(count, -1, dtype=np.int64)
    np.minimum.at(first, groups[valid], valid)
    np.maximum.at(last, groups[valid], valid)
    return [(int(f) // row, int(x) // row + 1) for f, x in zip(first, last, strict=True)]


def _set_box(
    store: Any,
    write: ArrayWrite,
    columns: tuple[np.ndarray, np.ndarray, np.ndarray],
    start: int,
    stop: int,
    checksum: Checksum,
) -> None:
    """One ``set_virtual_refs_arr`` call for the chunk rows ``[start, stop)`` of the grid
    (``columns``: their locations, offsets and lengths, flattened)."""
    urls, offsets, lengths = columns
    shape = write.manifest.shape
    box = (stop - start, *shape[1:]) if shape else ()
    offset = tuple(o + (start if k == 0 else 0) for k, o in enumerate(write.offset))
    failed = store.set_virtual_refs_arr(
        write.path,
        box,
        urls.tolist(),
        np.ascontiguousarray(offsets),
        np.ascontiguousarray(lengths),
        validate_containers=True,
        arr_offset=offset if any(offset) else None,
        checksum=checksum,
    )
    _check_failed(write, failed)


def _set_specs(
    store: Any,
    write: ArrayWrite,
    urls: np.ndarray,
    offsets: np.ndarray,
    lengths: np.ndarray,
    groups: np.ndarray,
    distinct: list[Checksum],
) -> None:
    """One ``set_virtual_refs`` call with a spec per chunk (sources interleaved in the grid)."""
    shape = write.manifest.shape
    specs = []
    for flat in np.flatnonzero(groups >= 0).tolist():
        coords = np.unravel_index(flat, shape)
        checksum = distinct[groups[flat]]
        specs.append(
            VirtualChunkSpec(
                index=[int(c) + o for c, o in zip(coords, write.offset, strict=True)],
                location=urls[flat],
                offset=int(offsets[flat]),
                length=int(lengths[flat]),
                etag_checksum=checksum if isinstance(checksum, str) else None,
                last_updated_at_checksum=None if isinstance(checksum, str) else checksum,
            )
        )
    _check_failed(write, store.set_virtual_refs(write.path, specs, validate_containers=True))


def _check_failed(write: ArrayWrite, failed: list[tuple[int, ...]] | None) -> None:
    if failed:
        raise ValueError(
            f"array {write.path!r}: Icechunk refused {len(failed)} reference(s) (first at chunk "
            f"{failed[0]}) as outside every virtual chunk container of the repository"
        )
