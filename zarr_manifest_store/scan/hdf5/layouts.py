"""How each HDF5 storage layout becomes chunk references, under the array metadata the walk built.

Chunked datasets: one reference per stored chunk, from the chunk index (:mod:`.chunk_index`);
contiguous ones: one byte range, split along the first axis when uncompressed
and large; external storage: ranges of the external files; virtual datasets:
their sources' chunks, placed (:mod:`.virtual`). What has no byte range that
Zarr could decode exactly is read with h5py and materialised as inline chunks
when small, and refused otherwise.
"""

from __future__ import annotations

import functools
import math
import os
from dataclasses import dataclass, field
from typing import Any

import h5py
import numpy as np
from h5py import h5d, h5p

from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.io.paths import is_local
from zarr_manifest_store.io.sources import Sources
from zarr_manifest_store.manifest import INLINE, MISSING, ChunkCoords, ChunkManifest, Fingerprint
from zarr_manifest_store.scan.common import Refused, rows_per_chunk
from zarr_manifest_store.scan.hdf5.chunk_index import chunk_columns, edges_unfiltered
from zarr_manifest_store.scan.hdf5.datatypes import DataKind, fill_undefined
from zarr_manifest_store.scan.hdf5.filters import UnmappableFilter, pipeline_codecs
from zarr_manifest_store.scan.hdf5.inline_chunks import read_inline
from zarr_manifest_store.scan.hdf5.metadata import CHUNK_KEY_ENCODING, array_metadata, regular
from zarr_manifest_store.scan.hdf5.objects import Dataset
from zarr_manifest_store.scan.hdf5.parsed import HeaderDataset
from zarr_manifest_store.scan.hdf5.text import text_form
from zarr_manifest_store.scan.hdf5.virtual import Unplaceable, virtual_array

__all__ = ["Layouts"]


@dataclass
class Layouts:
    """Describes the datasets of one file (``path``) by their storage layout."""

    path: str
    fingerprint: Fingerprint
    sources: Sources
    contiguous_chunk_bytes: int | None
    max_inline_bytes: int
    external_fingerprints: dict[str, Fingerprint] = field(default_factory=dict)
    """Fingerprints of the other files its arrays reference (external storage, virtual sources)."""

    @functools.cached_property
    def own_fingerprint(self) -> dict[str, Fingerprint]:
        """The file's fingerprint by its path: one mapping its chunked arrays share."""
        return {self.path: self.fingerprint}

    def described(
        self, ds: h5py.Dataset, kind: DataKind, base: dict[str, Any], dcpl: h5p.PropDCID
    ) -> ManifestArray:
        """The dataset's chunks, by its storage layout, under the array metadata ``base``."""
        layout = dcpl.get_layout()
        if layout != h5d.CHUNKED and base["shape"] != list(ds.shape):
            base = {**base, "shape": list(ds.shape)}  # only chunked data can be padded
        if layout == h5d.VIRTUAL:
            return self.virtual(ds, dcpl, {**base, "codecs": [kind.bytes_codec]})
        if layout == h5d.COMPACT:
            return self.materialised(ds, base, kind, "its data is stored in the object header")
        if kind.materialise:
            return self.materialised(ds, base, kind, kind.materialise, check_unwritten=True)
        try:
            filters = pipeline_codecs(dcpl)
        except UnmappableFilter as e:
            return self.materialised(ds, base, kind, str(e), check_unwritten=True)
        codecs = [kind.bytes_codec, *filters]
        if layout == h5d.CHUNKED:
            return self.chunked(ds, dcpl.get_chunk(), {**base, "codecs": codecs})
        if dcpl.get_external_count():
            return self.external(ds, dcpl, {**base, "codecs": codecs})
        return self.contiguous(ds, {**base, "codecs": codecs})

    def chunked(
        self, ds: h5py.Dataset, chunks: tuple[int, ...], base: dict[str, Any]
    ) -> ManifestArray:
        """A chunked dataset: one reference per stored chunk, read from its chunk index
        (:func:`~.chunk_index.chunk_columns`).

        Its array may be longer than the dataset along an unlimited dimension
        (``base["shape"]``, netCDF's padding): the chunks past the data are
        missing (the fill value: netCDF's padding), and a stored chunk that the
        data ends inside is read and stored inline, padded as netCDF pads it. A
        chunk never written inside the data, where HDF5 writes no fill value
        (``NC_NOFILL``: fill time "never"), has no defined value: refused.
        """
        shape = tuple(base["shape"])
        grid = tuple([-(-n // c) for n, c in zip(shape, chunks, strict=True)])
        metadata = array_metadata({**base, "chunk_grid": regular(chunks)})
        unfiltered = edges_unfiltered(ds.create_plist)
        offsets, lengths, skipped = chunk_columns(ds, chunks, grid, unfiltered)
        stored = np.count_nonzero(lengths)
        index = np.zeros(grid, np.uint32)  # row 0 of the path table: the file's only row
        if stored < lengths.size:
            index[lengths.reshape(grid) == 0] = MISSING
        if shape == ds.shape:  # no padding: every chunk starts inside the data
            unwritten = lengths.size - stored
        else:
            unwritten = _unwritten_inside(ds.shape, chunks, lengths.reshape(grid))
        _refuse_arbitrary(ds.create_plist, int(unwritten))
        inline: dict[ChunkCoords, bytes] = {}
        cells = {tuple(int(c) for c in np.unravel_index(k, grid)) for k in skipped}
        reason = "some of its chunks skipped a filter"
        if shape != ds.shape:
            cells |= _padded_edges(ds.shape, shape, chunks, lengths.reshape(grid))
            reason = reason if skipped else "netCDF pads it past the data in its last chunks"
        if cells:
            inline = read_inline(ds, metadata, sorted(cells), self.max_inline_bytes, reason=reason)
            for cell in cells:
                index[cell] = INLINE
                offsets[np.ravel_multi_index(cell, grid)] = 0
                lengths[np.ravel_multi_index(cell, grid)] = 0
        columns = (index, offsets.reshape(grid), lengths.reshape(grid))
        if inline:
            manifest = self.manifest([self.path], *columns, inline)
        else:  # the columns as chunk_columns reads them, in its types: nothing to check
            manifest = ChunkManifest.one_file(self.own_fingerprint, *columns)
        return ManifestArray(metadata=metadata, manifest=manifest)

    def contiguous(self, ds: h5py.Dataset, base: dict[str, Any]) -> ManifestArray:
        """A contiguous dataset: one byte range, split into row blocks when it is large."""
        offset = _contiguous_offset(ds)
        _refuse_arbitrary(ds.create_plist, int(offset is None and bool(ds.size)))
        nbytes = ds.size * ds.dtype.itemsize
        rows = self.rows_per_chunk(ds, room_after=self._room_after(offset, nbytes))
        starts = (
            [offset + r * _row_bytes(ds) for r in range(0, _rows(ds), rows)]
            if offset is not None
            else []
        )
        return self.row_blocks(ds, base, rows, [(self.path, s) for s in starts])

    def external(
        self, ds: h5py.Dataset, dcpl: h5py.h5p.PropDCID, base: dict[str, Any]
    ) -> ManifestArray:
        """Contiguous data kept in external files: row blocks that each lie in one segment."""
        if not is_local(self.path):
            raise Refused(
                "keeps its data in external files, which HDF5 looks up on the local disk, "
                "not beside a remote file"
            )
        segments = [_ExternalSegment.of(ds, dcpl, i) for i in range(dcpl.get_external_count())]
        row_bytes = _row_bytes(ds)
        total = _rows(ds) * row_bytes
        boundaries, position = [], 0
        for seg in segments[:-1]:
            position += seg.size
            if position >= total:
                break
            if position % row_bytes:
                reason = (
                    f"it keeps its data in external files split at byte {position}, inside a "
                    f"row of {row_bytes} bytes, which no regular chunk grid can follow"
                )
                return self.materialised(ds, base, ds.kind, reason)
            boundaries.append(position // row_bytes)
        rows = self.rows_per_chunk(ds, align=math.gcd(_rows(ds), *boundaries))
        blocks = []
        for start in range(0, _rows(ds), rows):
            blocks.append(_locate(segments, start * row_bytes))
        for name in {p for p, _ in blocks}:
            if name not in self.external_fingerprints:
                self.external_fingerprints[name] = self.sources.fingerprint(name)
        for name, offset in blocks:
            size = self.external_fingerprints[name].size
            if size is not None and offset + rows * row_bytes > size:
                # HDF5 reads what lies past the end of an external file as zeros
                reason = f"its external file {name!r} ends before its data does"
                return self.materialised(ds, base, ds.kind, reason)
        return self.row_blocks(ds, base, rows, blocks)

    def virtual(self, ds: h5py.Dataset, dcpl: h5p.PropDCID, base: dict[str, Any]) -> ManifestArray:
        """A virtual dataset: its sources' chunks placed in its grid (see :mod:`.virtual`), or
        its values read through HDF5 and stored inline when they cannot be placed."""
        if not is_local(self.path):
            raise Refused("is a virtual dataset of a remote file; scan its source files instead")
        try:
            return virtual_array(ds, dcpl, base, self)
        except Unplaceable as e:
            return self.materialised(ds, base, ds.kind, f"it {e}")

    def source_array(self, source: str, src: h5py.Dataset) -> ManifestArray:
        """Dataset ``src`` of file ``source``, a virtual dataset's source, described whole."""
        ds = Dataset(src.id, readonly=True)  # what describing it asks, read once
        layouts = Layouts(
            path=source,
            fingerprint=self.sources.fingerprint(source),
            sources=self.sources,
            contiguous_chunk_bytes=None,
            max_inline_bytes=self.max_inline_bytes,
        )
        kind = ds.kind
        dcpl = ds.create_plist
        base = {
            "shape": list(ds.shape),
            "data_type": kind.zdtype.to_json(zarr_format=3),
            "chunk_key_encoding": CHUNK_KEY_ENCODING,
            "fill_value": kind.fill_value_json(dcpl),
        }
        array = layouts.described(ds, kind, base, dcpl)
        self.external_fingerprints.update(array.manifest.fingerprints)
        return array

    def row_blocks(
        self,
        ds: h5py.Dataset,
        base: dict[str, Any],
        rows: int,
        blocks: list[tuple[str, int]],
    ) -> ManifestArray:
        """An array of ``rows``-row chunks at the given (path, offset)s; none: never written."""
        shape = ds.shape
        chunk_shape = (rows, *shape[1:]) if shape else ()
        chunk_shape = tuple(max(n, 1) for n in chunk_shape)
        grid = tuple(-(-n // c) for n, c in zip(shape, chunk_shape, strict=True))
        metadata = array_metadata({**base, "chunk_grid": regular(chunk_shape)})
        chunk_bytes = math.prod(chunk_shape) * ds.dtype.itemsize
        paths = sorted({p for p, _ in blocks})
        if not blocks:
            index = np.full(grid, MISSING, dtype=np.uint32)
            offsets = np.zeros(grid, dtype=np.uint64)
        else:
            index = np.array([paths.index(p) for p, _ in blocks], dtype=np.uint32).reshape(grid)
            offsets = np.array([o for _, o in blocks], dtype=np.uint64).reshape(grid)
        lengths = np.where(index == MISSING, 0, chunk_bytes).astype(np.uint64)
        manifest = self.manifest(paths, index, offsets, lengths, {})
        return ManifestArray(metadata=metadata, manifest=manifest)

    def rows_per_chunk(self, ds: h5py.Dataset, *, align: int = 0, room_after: int = 0) -> int:
        """Rows per chunk for splitting uncompressed contiguous data along its first axis.

        The target is ``contiguous_chunk_bytes``. When ``align`` is given the
        count must divide it (so that no chunk straddles a boundary); otherwise
        a last chunk that runs past the data is allowed when its padding stays
        within ``room_after`` bytes (Zarr reads edge chunks whole and discards
        the part outside the array), else the count divides the row count.
        """
        if not ds.shape:
            return 1
        return rows_per_chunk(
            _rows(ds),
            _row_bytes(ds),
            target=self.contiguous_chunk_bytes,
            room_after=room_after,
            align=align,
        )

    def _room_after(self, offset: int | None, nbytes: int) -> int:
        size = self.fingerprint.size
        return 0 if offset is None or size is None else max(0, size - offset - nbytes)

    def materialised(
        self,
        ds: h5py.Dataset,
        base: dict[str, Any],
        kind: DataKind,
        reason: str,
        *,
        check_unwritten: bool = False,
    ) -> ManifestArray:
        """The whole dataset read with h5py and stored as one inline chunk (of the array's
        shape, which netCDF's padding may make longer than the dataset); refused when some
        of it was never written and HDF5 reads that as arbitrary bytes (``check_unwritten``:
        the callers of other layouts have checked already, and compact data is always written)."""
        if check_unwritten:
            _refuse_arbitrary(ds.create_plist, _unallocated(ds))
        shape = tuple(base["shape"])
        nbytes = math.prod(shape) * kind.dtype.itemsize
        if nbytes > self.max_inline_bytes:
            raise Refused(
                f"cannot be referenced in place ({reason}) and is too large to store inline "
                f"({nbytes} bytes > max_inline_bytes="
                f"{self.max_inline_bytes}); raise max_inline_bytes to materialise it"
            )
        chunk_shape = tuple(max(n, 1) for n in shape)
        codecs, reader = [kind.materialised_codec], None
        if kind.dtype.kind == "O":  # variable-length strings
            base, codecs, reader = text_form(ds, base, self.max_inline_bytes)
        metadata = array_metadata({**base, "chunk_grid": regular(chunk_shape), "codecs": codecs})
        cell = (0,) * ds.ndim
        budget = self.max_inline_bytes
        inline = (
            read_inline(ds, metadata, [cell], budget, reason=reason, reader=reader)
            if ds.size
            else {}
        )
        if inline:
            manifest = ChunkManifest.whole_inline(inline[cell], len(shape))
        else:
            grid = tuple(0 if n == 0 else 1 for n in shape)
            index = np.full(grid, MISSING, dtype=np.uint32)
            zeros = np.zeros(grid, dtype=np.uint64)
            manifest = ChunkManifest(paths=[], path_index=index, offsets=zeros, lengths=zeros)
        return ManifestArray(metadata=metadata, manifest=manifest)

    def manifest(
        self,
        paths: list[str],
        index: np.ndarray,
        offsets: np.ndarray,
        lengths: np.ndarray,
        inline: dict[ChunkCoords, bytes],
    ) -> ChunkManifest:
        """A manifest over ``paths``, each with its fingerprint."""
        fingerprints = {
            p: self.fingerprint if p == self.path else self.external_fingerprints[p] for p in paths
        }
        return ChunkManifest(
            paths=paths,
            path_index=index,
            offsets=offsets,
            lengths=lengths,
            inline=inline,
            fingerprints=fingerprints,
        )


@dataclass(frozen=True)
class _ExternalSegment:
    """One ``(file, offset, size)`` entry of a dataset's external storage, its path resolved."""

    path: str
    offset: int
    size: int

    @classmethod
    def of(cls, ds: h5py.Dataset, dcpl: h5py.h5p.PropDCID, i: int) -> _ExternalSegment:
        name, offset, size = dcpl.get_external(i)
        name = os.fsdecode(name)
        if not os.path.isabs(name):
            prefix = os.fsdecode(ds.id.get_access_plist().get_efile_prefix() or b"")
            prefix = prefix or os.environ.get("HDF5_EXTFILE_PREFIX", "")
            origin = os.path.dirname(os.path.abspath(ds.file.filename))
            name = os.path.join(prefix.replace("${ORIGIN}", origin), name)
        return cls(os.path.abspath(name), int(offset), int(size))


def _refuse_arbitrary(dcpl: h5p.PropDCID, unwritten: int) -> None:
    """Refuses data of which ``unwritten`` chunks (or a contiguous block) were never written
    when HDF5 reads those as whatever its buffer held: no fill value, or a fill time of
    "never" (netCDF's ``NC_NOFILL``), where HDF5 leaves the reader's buffer untouched."""
    if not unwritten:
        return
    if fill_undefined(dcpl):
        why = "has no fill value"
    elif dcpl.get_fill_time() == h5d.FILL_TIME_NEVER:
        why = "has fill time 'never'"
    else:
        return
    parts = "it was" if dcpl.get_layout() != h5d.CHUNKED else f"{unwritten} of its chunks were"
    raise Refused(f"{why} and {parts} never written, which HDF5 reads as arbitrary bytes")


def _contiguous_offset(ds: h5py.Dataset) -> int | None:
    """Where contiguous data starts (None: never allocated). HDF5 adds the base address (a
    user block's size) to the undefined address of unallocated data, so the storage size
    tells allocated data apart."""
    if isinstance(ds, HeaderDataset):
        return ds.storage_offset
    offset = ds.id.get_offset()
    return offset if offset is not None and ds.id.get_storage_size() else None


def _unallocated(ds: h5py.Dataset) -> int:
    """Chunks (or a contiguous block) of ``ds`` that hold no storage in the file."""
    dcpl = ds.create_plist
    if not ds.size or dcpl.get_external_count():
        return 0
    if dcpl.get_layout() == h5d.CHUNKED:
        grid = [-(-n // c) for n, c in zip(ds.shape, dcpl.get_chunk(), strict=True)]
        return math.prod(grid) - ds.id.get_num_chunks()
    return int(_contiguous_offset(ds) is None)


def _padded_edges(
    stored: tuple[int, ...], shape: tuple[int, ...], chunks: tuple[int, ...], lengths: np.ndarray
) -> set[ChunkCoords]:
    """The stored chunks that the data ends inside, along each axis the array pads."""
    cells: set[ChunkCoords] = set()
    for axis, (n, padded, c) in enumerate(zip(stored, shape, chunks, strict=True)):
        if n < padded and n % c:
            edge = [slice(None)] * len(shape)
            edge[axis] = slice(n // c, n // c + 1)
            for cell in np.argwhere(lengths[tuple(edge)]):
                cell[axis] = n // c
                cells.add(tuple(int(i) for i in cell))
    return cells


def _unwritten_inside(stored: tuple[int, ...], chunks: tuple[int, ...], lengths: np.ndarray) -> int:
    """How many chunks never written start inside the dataset's stored extent (those past
    it are netCDF's padding of a variable shorter than its unlimited dimension)."""
    inside = tuple(slice(0, -(-n // c)) for n, c in zip(stored, chunks, strict=True))
    return int(np.count_nonzero(lengths[inside] == 0))


def _locate(segments: list[_ExternalSegment], position: int) -> tuple[str, int]:
    """The (file, offset) that byte ``position`` of the external data stream lives at."""
    for seg in segments:
        if position < seg.size:
            return seg.path, seg.offset + position
        position -= seg.size
    raise Refused("keeps less data in its external files than its shape needs")


def _rows(ds: h5py.Dataset) -> int:
    return ds.shape[0] if ds.shape else 1


def _row_bytes(ds: h5py.Dataset) -> int:
    return math.prod(ds.shape[1:]) * ds.dtype.itemsize
