"""Writing a checked plan into an Icechunk session: metadata documents, virtual references in
bulk (``set_virtual_refs_arr``, a few calls per checksum, from two threads), inline chunks as
ordinary chunks."""

from __future__ import annotations

import asyncio
import functools
import json
import threading
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import fsspec.asyn
import numpy as np
from zarr.buffer import default_buffer_prototype

from zarr_manifest_store._zarr import ArrayV3Metadata, GroupMetadata
from zarr_manifest_store.io.remote import io_loop
from zarr_manifest_store.manifest import INLINE, MISSING, ChunkManifest
from zarr_manifest_store.writers.icechunk.locations import Checksum, checksum_of

try:  # the optional dependency: the fallback for interleaved sources builds its specs
    from icechunk import VirtualChunkSpec
except ImportError:  # pragma: no cover - without icechunk there is no store to write into
    VirtualChunkSpec = None

__all__ = [
    "ArrayWrite",
    "Plan",
    "array_document",
    "group_document",
    "icechunk_store",
    "run_plan",
]

Failed = list[tuple[int, ...]] | None
"""What Icechunk answers a reference call: the chunks it refused, or None."""

WORKERS = 2
"""Threads making the reference calls. Icechunk builds a call's references holding the GIL
and inserts them without it, so one thread's insertion overlaps the other's building. The
calls block: an awaited call costs a wake-up of Icechunk's runtime and of the event loop,
about half a millisecond that a checksum per file would pay once per file."""
CALL_REFERENCES = 1 << 16
"""Chunks per reference call, at most (whole grid rows, at least one): enough calls for
building and inserting to overlap, each large enough that its own cost vanishes."""
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


def icechunk_store(source: Any) -> Any:
    """The IcechunkStore given, or a session's; a TypeError for anything else."""
    store = source if hasattr(source, "set_virtual_refs_arr") else getattr(source, "store", None)
    if not hasattr(store, "set_virtual_refs_arr"):
        raise TypeError(
            f"to_icechunk writes into an Icechunk store (session.store of "
            f"repo.writable_session('main')), got {type(source).__name__}"
        )
    return store


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
    calls = (call for write in plan.arrays for call in _reference_calls(store, write, locations))
    _run_calls(calls)


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


@dataclass(frozen=True)
class _Call:
    """One blocking Icechunk call writing some of an array's references."""

    write: ArrayWrite
    run: Callable[[], Failed]


def _run_calls(calls: Iterator[_Call]) -> None:
    """Make ``calls`` from :data:`WORKERS` threads (this one and helpers), each taking the
    next call when its last one is done, so at most that many calls' columns exist at once.
    The first error stops every thread from taking another call, and is raised."""
    lock = threading.Lock()
    errors: list[BaseException] = []

    def work() -> None:
        try:
            while True:
                with lock:  # the generator builds the call's columns: one thread at a time
                    call = None if errors else next(calls, None)
                if call is None:
                    return
                _check_failed(call.write, call.run())
        except BaseException as e:  # kept for the caller's thread, which raises it
            with lock:
                errors.append(e)

    helpers = [threading.Thread(target=work) for _ in range(WORKERS - 1)]
    for helper in helpers:
        helper.start()
    try:
        work()
    finally:
        for helper in helpers:
            helper.join()
    if errors:
        raise errors[0]


def _reference_calls(
    store: Any, write: ArrayWrite, locations: Mapping[str, str]
) -> Iterator[_Call]:
    """The Icechunk calls writing one array's references: per distinct checksum, the rows its
    sources span, a stretch of at most :data:`CALL_REFERENCES` chunks at a time.

    Each call's columns are made when a thread takes it, so memory stays near the manifest's.
    """
    m = write.manifest
    if not (m.path_index < INLINE).any():
        return
    table = np.array([locations[p] for p in m.paths] + [""], dtype=object)
    distinct: dict[Checksum, int] = {}
    by_path = [
        distinct.setdefault(checksum_of(m.fingerprints.get(p)), len(distinct)) for p in m.paths
    ]
    checksums = list(distinct)
    refs = _References(store, write, table)
    if len(checksums) == 1:
        yield from refs.calls(0, m.shape[0] if m.shape else 1, checksums[0])
        return
    lookup = np.array([*by_path, -1], dtype=np.int32)
    groups = lookup[np.minimum(m.path_index.reshape(-1), len(m.paths))]
    boxes, counts = _row_boxes(groups, len(checksums), refs.row)
    if sum(stop - start for start, stop in boxes) * refs.row > BOX_SLACK * groups.size:
        yield _Call(write, functools.partial(_set_specs, store, write, table, groups, checksums))
        return
    sole = _sole_paths(by_path, len(checksums))
    for g, (start, stop) in enumerate(boxes):
        if counts[g] == (stop - start) * refs.row:  # the box holds this checksum's chunks only
            yield from refs.calls(start, stop, checksums[g], path=sole[g])
        else:
            yield from refs.calls(start, stop, checksums[g], only=(groups, g))


def _sole_paths(by_path: list[int], count: int) -> list[int | None]:
    """For each checksum group, its one source (a row of the path table), or None for several."""
    sole: list[int | None] = [None] * count
    seen = [0] * count
    for row, g in enumerate(by_path):
        seen[g] += 1
        sole[g] = row if seen[g] == 1 else None
    return sole


class _References:
    """One array's references, flattened, handed to Icechunk a stretch of grid rows at a time."""

    def __init__(self, store: Any, write: ArrayWrite, table: np.ndarray) -> None:
        m = write.manifest
        self.store = store
        self.write = write
        self.table = table  # locations by path row, then "" (missing or inline chunks)
        self.row = int(np.prod(m.shape[1:], dtype=np.int64)) if m.shape else 1
        self.index = m.path_index.reshape(-1)
        self.offsets = m.offsets.reshape(-1)
        self.lengths = m.lengths.reshape(-1)  # widened to uint64 once (a copy)

    def calls(
        self,
        start: int,
        stop: int,
        checksum: Checksum,
        *,
        path: int | None = None,
        only: tuple[np.ndarray, int] | None = None,
    ) -> Iterator[_Call]:
        """The calls for the chunk rows ``[start, stop)`` of the grid, a few rows each. Every
        chunk there is of source ``path`` (a row of the path table), or, with ``only`` (the
        checksum group of every chunk, flat, and one group), those of other groups are left out."""
        step = max(1, CALL_REFERENCES // max(self.row, 1))
        for first in range(start, stop, step):
            yield self._call(first, min(first + step, stop), checksum, path, only)

    def _call(
        self,
        start: int,
        stop: int,
        checksum: Checksum,
        path: int | None,
        only: tuple[np.ndarray, int] | None,
    ) -> _Call:
        m, write = self.write.manifest, self.write
        cells = slice(start * self.row, stop * self.row)
        if path is not None:  # one URL object, repeated
            locations = [self.table[path]] * ((stop - start) * self.row)
        else:
            rows = np.minimum(self.index[cells], len(m.paths))
            if only is not None:
                groups, group = only
                rows[groups[cells] != group] = len(m.paths)
            locations = self.table[rows].tolist()
        box = (stop - start, *m.shape[1:]) if m.shape else ()
        offset = tuple(o + (start if k == 0 else 0) for k, o in enumerate(write.offset))
        return _Call(
            write,
            functools.partial(
                self.store.set_virtual_refs_arr,
                write.path,
                box,
                locations,
                np.ascontiguousarray(self.offsets[cells]),
                np.ascontiguousarray(self.lengths[cells]),
                validate_containers=False,  # check_containers covered every location
                arr_offset=offset if any(offset) else None,
                checksum=checksum,
            ),
        )


def _row_boxes(
    groups: np.ndarray, count: int, row: int
) -> tuple[list[tuple[int, int]], np.ndarray]:
    """For each checksum group, the rows (first grid axis) its chunks span, ``[start, stop)``,
    and how many chunks it has; found a block of cells at a time, to keep the temporaries
    small, and from the ends of each run where the groups come in order (sources in turn)."""
    first = np.full(count, np.iinfo(np.int64).max, dtype=np.int64)
    last = np.full(count, -1, dtype=np.int64)
    counts = np.zeros(count, dtype=np.int64)
    step = 1 << 18
    for start in range(0, groups.size, step):
        block = groups[start : start + step]
        where = np.flatnonzero(block >= 0)
        ids = block[where]
        counts += np.bincount(ids, minlength=count)
        if ids.size and (ids[1:] >= ids[:-1]).all():
            ends = np.flatnonzero(ids[1:] != ids[:-1])
            heads, tails = np.r_[0, ends + 1], np.r_[ends, ids.size - 1]
            np.minimum.at(first, ids[heads], where[heads] + start)
            np.maximum.at(last, ids[tails], where[tails] + start)
        else:
            np.minimum.at(first, ids, where + start)
            np.maximum.at(last, ids, where + start)
    boxes = [(int(f) // row, int(x) // row + 1) for f, x in zip(first, last, strict=True)]
    return boxes, counts


def _set_specs(
    store: Any, write: ArrayWrite, table: np.ndarray, groups: np.ndarray, distinct: list[Checksum]
) -> Failed:
    """One ``set_virtual_refs`` call with a spec per chunk (sources interleaved in the grid)."""
    m = write.manifest
    index, offsets, lengths = (a.reshape(-1) for a in (m.path_index, m.offsets, m.lengths))
    specs = []
    for flat in np.flatnonzero(groups >= 0).tolist():
        coords = np.unravel_index(flat, m.shape)
        checksum = distinct[groups[flat]]
        specs.append(
            VirtualChunkSpec(
                index=[int(c) + o for c, o in zip(coords, write.offset, strict=True)],
                location=table[index[flat]],
                offset=int(offsets[flat]),
                length=int(lengths[flat]),
                etag_checksum=checksum if isinstance(checksum, str) else None,
                last_updated_at_checksum=None if isinstance(checksum, str) else checksum,
            )
        )
    return store.set_virtual_refs(write.path, specs, validate_containers=False)


def _check_failed(write: ArrayWrite, failed: Failed) -> None:
    if failed:
        raise ValueError(
            f"array {write.path!r}: Icechunk refused {len(failed)} reference(s) (first at chunk "
            f"{failed[0]}) as outside every virtual chunk container of the repository"
        )
