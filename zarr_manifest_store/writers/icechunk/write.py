"""Writing a checked plan into an Icechunk session: metadata documents, virtual references in
bulk (``set_virtual_refs_arr``, a few calls per checksum, from two threads), inline chunks as
ordinary chunks."""

from __future__ import annotations

import asyncio
import functools
import json
import math
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
from zarr_manifest_store.writers.icechunk.boxes import Box, group_boxes, group_of_cells
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
CALL_REFERENCES = 1 << 14
"""Chunks per reference call, at most (whole slabs of a box, at least one): enough calls for
building and inserting to overlap, and a last insertion (which nothing overlaps) that is
short; each call large enough that its own cost (about 15 microseconds) vanishes."""
BOX_SLACK = 2
"""A checksum group's references are written as the box of chunks they span; when those
boxes hold more than this many cells per reference (sources interleaved), one call with
per-chunk specs is cheaper."""


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
    """The Icechunk calls writing one array's references: per distinct checksum, the box of
    chunks its sources span, a stretch of at most :data:`CALL_REFERENCES` chunks at a time.

    Each call's columns are made when a thread takes it, so memory stays near the manifest's.
    """
    m = write.manifest
    if not (m.path_index < INLINE).any():
        return
    table = np.array([locations[p] for p in m.paths] + [""], dtype=object)
    distinct: dict[Checksum, int] = {}
    fingerprints = m.fingerprints
    by_path = [
        distinct.setdefault(checksum_of(fingerprints.get(p)), len(distinct)) for p in m.paths
    ]
    checksums = list(distinct)
    refs = _References(store, write, table, np.array([*by_path, -1], dtype=np.int32))
    if len(checksums) == 1 or not m.shape:
        yield from refs.calls(((0,) * m.ndim, m.shape), checksums[0])
        return
    found = group_boxes(m.path_index, refs.lookup, BOX_SLACK)
    if found.cells() > BOX_SLACK * int(found.counts.sum()):
        yield _Call(
            write, functools.partial(_set_specs, store, write, table, refs.lookup, checksums)
        )
        return
    sole = _sole_paths(by_path, len(checksums))
    for g, (box, alone) in enumerate(zip(found.boxes, found.alone(), strict=True)):
        if alone:  # the box holds this checksum's chunks only
            yield from refs.calls(box, checksums[g], path=sole[g])
        else:
            yield from refs.calls(box, checksums[g], group=g)


def _sole_paths(by_path: list[int], count: int) -> list[int | None]:
    """For each checksum group, its one source (a row of the path table), or None for several."""
    sole: list[int | None] = [None] * count
    seen = [0] * count
    for row, g in enumerate(by_path):
        seen[g] += 1
        sole[g] = row if seen[g] == 1 else None
    return sole


class _References:
    """One array's references, handed to Icechunk a box of chunks at a time."""

    def __init__(
        self, store: Any, write: ArrayWrite, table: np.ndarray, lookup: np.ndarray
    ) -> None:
        m = write.manifest
        self.store = store
        self.write = write
        self.table = table  # locations by path row, then "" (missing or inline chunks)
        self.lookup = lookup  # checksum group by path row, then -1
        self.none = len(table) - 1  # the row of ""
        # grid-shaped columns, and their flat views (boxes of whole rows are flat stretches)
        self.grid = (m.path_index, m.offsets, m.lengths)  # lengths widened once (a copy)
        self.flat = tuple(column.reshape(-1) for column in self.grid)
        self.rows = (tuple(m.shape[1:]), (0,) * (m.ndim - 1))  # a row's shape, its origin

    def calls(
        self, box: Box, checksum: Checksum, *, path: int | None = None, group: int | None = None
    ) -> Iterator[_Call]:
        """The calls for the chunks of ``box``, a few slabs of its first axis each. Every
        chunk there is of source ``path`` (a row of the path table), or, with ``group``,
        those of other checksum groups are left out."""
        lo, hi = box
        if not lo:  # a grid of one chunk (a 0-d array)
            yield self._call(slice(0, 1), True, (), None, checksum, path, group)
            return
        offset = self.write.offset  # where the manifest's grid starts in the stored array
        whole = (hi[1:], lo[1:]) == self.rows  # whole rows: flat stretches of the columns
        if whole:  # the common case, kept lean: a checksum per file is a call or two per file
            rest, across, others = self.rows[0], (), offset[1:]
        else:
            rest = tuple(b - a for a, b in zip(lo[1:], hi[1:], strict=True))
            across = tuple(slice(a, b) for a, b in zip(lo[1:], hi[1:], strict=True))
            others = tuple(a + o for a, o in zip(lo[1:], offset[1:], strict=True))
        slab = math.prod(rest)
        step = max(1, CALL_REFERENCES // max(slab, 1))
        for first in range(lo[0], hi[0], step):
            last = min(first + step, hi[0])
            cells = slice(first * slab, last * slab) if whole else (slice(first, last), *across)
            start = (offset[0] + first, *others)
            yield self._call(
                cells,
                whole,
                (last - first, *rest),
                start if any(start) else None,
                checksum,
                path,
                group,
            )

    def _call(
        self,
        cells: Any,
        whole: bool,
        shape: tuple[int, ...],
        start: tuple[int, ...] | None,
        checksum: Checksum,
        path: int | None,
        group: int | None,
    ) -> _Call:
        """A call for the box of ``shape`` at ``start`` in the stored array (None: at its
        origin): the ``cells`` of the flat columns (``whole``) or of the grid-shaped ones."""
        index, offsets, lengths = self.flat if whole else self.grid
        if path is not None:  # one URL object, repeated
            locations = [self.table[path]] * math.prod(shape)
        else:
            rows = np.minimum(index[cells].reshape(-1), self.none)
            if group is not None:
                rows[self.lookup[rows] != group] = self.none
            locations = self.table[rows].tolist()
        if whole:  # flat stretches: contiguous already
            columns = (offsets[cells], lengths[cells])
        else:
            columns = tuple(np.ascontiguousarray(c[cells]).reshape(-1) for c in (offsets, lengths))
        return _Call(
            self.write,
            functools.partial(
                self.store.set_virtual_refs_arr,
                self.write.path,
                shape,
                locations,
                *columns,
                validate_containers=False,  # check_containers covered every location
                arr_offset=start,
                checksum=checksum,
            ),
        )


def _set_specs(
    store: Any, write: ArrayWrite, table: np.ndarray, lookup: np.ndarray, distinct: list[Checksum]
) -> Failed:
    """One ``set_virtual_refs`` call with a spec per chunk (sources interleaved in the grid)."""
    m = write.manifest
    index, offsets, lengths = (a.reshape(-1) for a in (m.path_index, m.offsets, m.lengths))
    groups = group_of_cells(m.path_index, lookup)
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
