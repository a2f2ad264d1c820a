"""scan_hdf5: an HDF5 / netCDF-4 file as a ManifestGroup, exact for every dataset or refused.

Each dataset becomes a Zarr v3 array whose chunks are byte ranges of the file:
chunked layouts through ``chunk_iter`` (one pass, straight into the manifest's
columns), contiguous layouts as one range (split along the leading axis when
uncompressed and large), external storage as ranges of the external files.
What has no byte range that Zarr could decode exactly — compact datasets,
variable-length strings, chunks that skipped a filter, filters without a Zarr
codec, types HDF5 converts on reading — is read with h5py and materialised as
inline chunks when small, and refused otherwise. netCDF-4 conventions are
applied the way h5netcdf applies them, so that ``xr.open_zarr`` of the result
matches ``xr.open_dataset(..., engine="h5netcdf")``.

The walk reads each link, attribute and dataset property once, through
h5py's low-level API where its high-level objects would read them again on
every access; what depends only on an HDF5 type (how to read an attribute of
it, its Zarr data type) is worked out once per type and shared by the files
of a collection. Values are exactly those h5py gives.
"""

from __future__ import annotations

import array
import contextlib
import functools
import json
import logging
import math
import os
import warnings
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import h5py
import numpy as np
from h5py import h5, h5a, h5d, h5f, h5i, h5l, h5o, h5p, h5s, h5t
from zarr.dtype import ZDType, parse_dtype

from zarr_manifest_store._zarr import ArrayV3Metadata
from zarr_manifest_store.array import ManifestArray, parse_array_metadata
from zarr_manifest_store.cf import fill_value_attribute, json_attribute
from zarr_manifest_store.codecs import encode_chunk
from zarr_manifest_store.group import ManifestGroup
from zarr_manifest_store.io.paths import is_local, local_path, source_path
from zarr_manifest_store.io.sources import Sources
from zarr_manifest_store.manifest import INLINE, MISSING, ChunkCoords, ChunkManifest, Fingerprint
from zarr_manifest_store.scan.common import CONTIGUOUS_CHUNK_BYTES, Refusals, rows_per_chunk
from zarr_manifest_store.scan.filters import UnmappableFilter, filter_codecs, pipeline

__all__ = ["CONTIGUOUS_CHUNK_BYTES", "MAX_INLINE_BYTES", "scan_hdf5"]

logger = logging.getLogger(__name__)

MAX_INLINE_BYTES = 2**20
"""Default limit of the bytes one dataset may materialise into its manifest."""
REMOTE_BLOCK_SIZE = 2**20
"""Block size of the fsspec cache that remote files are scanned through."""
REMOTE_CACHE_BLOCKS = 64

# Attributes that carry HDF5 / netCDF-4 bookkeeping, hidden as h5netcdf hides them.
HIDDEN_ATTRIBUTES = frozenset(
    {
        "REFERENCE_LIST",
        "CLASS",
        "DIMENSION_LIST",
        "NAME",
        "_Netcdf4Dimid",
        "_Netcdf4Coordinates",
        "_nc3_strict",
        "_NCProperties",
    }
)
NOT_A_VARIABLE = b"This is a netCDF dimension but not a netCDF variable."
NON_COORD_PREFIX = "_nc4_non_coord_"
CHUNK_KEY_ENCODING = {"name": "default", "configuration": {"separator": "/"}}


def scan_hdf5(
    url: str | os.PathLike[str],
    *,
    group: str | None = None,
    drop_variables: Collection[str] | str | None = None,
    on_unsupported: Literal["raise", "skip"] = "raise",
    storage_options: Mapping[str, Any] | None = None,
    contiguous_chunk_bytes: int | None = CONTIGUOUS_CHUNK_BYTES,
    max_inline_bytes: int = MAX_INLINE_BYTES,
) -> ManifestGroup:
    """Scan an HDF5 / netCDF-4 file into a :class:`ManifestGroup` of chunk references.

    ``url`` is a local path or an fsspec URL (``s3://``, ``https://``, ...;
    ``storage_options`` configure the file system). ``group`` scans one group
    (``"forecast/surface"``); ``drop_variables`` names datasets or groups to
    leave out, as paths relative to it. A dataset that cannot be described
    exactly raises :class:`~zarr_manifest_store.UnsupportedDatasetError`
    (``on_unsupported="raise"``) or is left out with a warning (``"skip"``).
    Uncompressed contiguous datasets are split along their first axis into
    chunks of about ``contiguous_chunk_bytes`` (``None``: one chunk); up to
    ``max_inline_bytes`` per dataset may be read and stored inline.

    >>> import h5py, numpy as np, zarr_manifest_store as zms
    >>> with h5py.File("/tmp/scan_hdf5_doc.h5", "w") as f:
    ...     _ = f.create_dataset("t", data=np.arange(6.0), chunks=(3,), compression="gzip")
    >>> g = zms.scan_hdf5("/tmp/scan_hdf5_doc.h5")
    >>> g["t"].manifest.nchunks
    2
    >>> zarr.open_group(zms.ManifestStore(g), mode="r")["t"][:].tolist()
    [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    """
    path = source_path(url)
    refusals = Refusals(path, on_unsupported)
    if contiguous_chunk_bytes is not None and contiguous_chunk_bytes < 1:
        raise ValueError(f"contiguous_chunk_bytes must be positive, got {contiguous_chunk_bytes}")
    sources = Sources(storage_options)
    fingerprint = sources.fingerprint(path)
    dropped = {drop_variables} if isinstance(drop_variables, str) else set(drop_variables or ())
    with _open(path, sources, fingerprint) as h5file:
        if group in (None, "", "/"):
            start = h5file["/"]  # the root as a group: its links and attributes are the group's
        else:
            start = h5file.get(group.strip("/"))
            if not isinstance(start, h5py.Group):
                raise ValueError(f"{path!r} has no group {group!r}")
        scanner = _Scanner(
            path=path,
            fingerprint=fingerprint,
            sources=sources,
            refusals=refusals,
            dropped=dropped,
            contiguous_chunk_bytes=contiguous_chunk_bytes,
            max_inline_bytes=max_inline_bytes,
        )
        result = scanner.group(start, "", _Dimensions.of_ancestors(start))
    refusals.finish()
    return result


# ---------------------------------------------------------------------- opening


@contextlib.contextmanager
def _open(path: str, sources: Sources, fingerprint: Fingerprint) -> Iterator[h5py.File]:
    """The file opened with h5py: local files directly, others through an fsspec block cache."""
    if is_local(path):
        fid = h5f.open(os.fsencode(local_path(path)), h5f.ACC_RDONLY, fapl=_file_access())
        with h5py.File(fid) as f:
            yield f
        return
    fs = sources.filesystem(path)
    options: dict[str, Any] = {"cache_options": {"maxblocks": REMOTE_CACHE_BLOCKS}}
    if fingerprint.size is not None:
        options["size"] = fingerprint.size  # saves the request that would look the size up again
    with (
        fs.open(
            path, "rb", block_size=REMOTE_BLOCK_SIZE, cache_type="blockcache", **options
        ) as fobj,
        h5py.File(fobj, "r") as f,
    ):
        yield f
        cache = fobj.cache
        logger.debug(
            "scanned %s: %s cache misses, %s hits",
            path,
            getattr(cache, "miss_count", "?"),
            getattr(cache, "hit_count", "?"),
        )


@functools.cache
def _file_access() -> h5p.PropFAID:
    """The file access properties ``h5py.File(path, "r")`` opens with, made once.

    h5py makes them anew (and creation properties it does not need) for every
    file, which costs about a sixth of opening one.
    """
    fapl = h5p.create(h5p.FILE_ACCESS)
    fapl.set_libver_bounds(h5f.LIBVER_EARLIEST, h5f.LIBVER_LATEST)
    fapl.set_alignment(1, 1)
    return fapl


# ---------------------------------------------------------------------- the walk


class _Refused(Exception):
    """A dataset that cannot be described exactly; the message is the reason."""


@dataclass
class _Scanner:
    path: str
    fingerprint: Fingerprint
    sources: Sources
    refusals: Refusals
    dropped: set[str]
    contiguous_chunk_bytes: int | None
    max_inline_bytes: int
    _external_fingerprints: dict[str, Fingerprint] = field(default_factory=dict)

    def group(self, h5group: h5py.Group, prefix: str, dims: _Dimensions) -> ManifestGroup:
        """One group: its datasets as arrays, its subgroups recursively, its attributes."""
        arrays: dict[str, ManifestArray] = {}
        groups: dict[str, ManifestGroup] = {}
        for name, link_type in dims.links:
            rel = f"{prefix}{name}"
            if rel in self.dropped:
                continue
            if link_type == h5l.TYPE_EXTERNAL:
                link = h5group.get(name, getlink=True)
                self.refusals.add(
                    rel, f"is an external link to {link.filename}:{link.path}; scan that file"
                )
                continue
            obj = dims.members[name]
            if obj is None:
                self.refusals.add(rel, "is a link to an object that does not exist")
            elif isinstance(obj, h5py.Group):
                groups[name] = self.group(obj, f"{rel}/", _Dimensions(obj, dims))
            elif isinstance(obj, h5py.Dataset) and not (
                name in dims.scales and _dimension_only(obj)
            ):
                array_name = name.removeprefix(NON_COORD_PREFIX)
                try:
                    arrays[array_name] = self.array(obj, dims)
                except _Refused as e:
                    self.refusals.add(rel, str(e))
        attributes = _json_attributes(_Attributes(h5group, dims.create_plist))
        return ManifestGroup(arrays=arrays, groups=groups, attributes=attributes)

    def array(self, ds: _Dataset, dims: _Dimensions) -> ManifestArray:
        """One dataset as a ManifestArray (raises _Refused)."""
        kind = _DataKind.of(ds)
        dcpl = ds.create_plist
        attributes = _json_attributes(ds.attributes, kind.dtype)
        attributes.update(kind.attributes)
        base = {
            "shape": list(ds.shape),
            "data_type": kind.zdtype.to_json(zarr_format=3),
            "chunk_key_encoding": CHUNK_KEY_ENCODING,
            "fill_value": kind.fill_value_json(dcpl),
            "attributes": attributes,
            "dimension_names": dims.names_of(ds),
        }
        return self.described(ds, kind, base, dcpl)

    def described(
        self, ds: h5py.Dataset, kind: _DataKind, base: dict[str, Any], dcpl: h5p.PropDCID
    ) -> ManifestArray:
        """The dataset's chunks, by its storage layout, under the array metadata ``base``."""
        layout = dcpl.get_layout()
        if layout == h5d.VIRTUAL:
            return self.virtual(ds, dcpl, base)
        if kind.materialise:
            return self.materialised(ds, base, kind, kind.materialise)
        if layout == h5d.COMPACT:
            return self.materialised(ds, base, kind, "its data is stored in the object header")
        try:
            filters = filter_codecs(pipeline(dcpl))
        except UnmappableFilter as e:
            return self.materialised(ds, base, kind, str(e))
        codecs = [kind.bytes_codec, *filters]
        if layout == h5d.CHUNKED:
            return self.chunked(ds, dcpl.get_chunk(), {**base, "codecs": codecs})
        if dcpl.get_external_count():
            return self.external(ds, dcpl, {**base, "codecs": codecs})
        return self.contiguous(ds, {**base, "codecs": codecs})

    # ------------------------------------------------------------------ layouts

    def chunked(
        self, ds: h5py.Dataset, chunks: tuple[int, ...], base: dict[str, Any]
    ) -> ManifestArray:
        """A chunked dataset: one reference per stored chunk, read with ``chunk_iter``."""
        grid = tuple(-(-n // c) for n, c in zip(ds.shape, chunks, strict=True))
        metadata = _array_metadata(
            {**base, "chunk_grid": _regular(chunks), "codecs": base["codecs"]}
        )
        offsets, lengths, skipped = _chunk_columns(ds.id, chunks, grid)
        index = np.where(lengths != 0, np.uint32(0), np.uint32(MISSING)).reshape(grid)
        inline: dict[ChunkCoords, bytes] = {}
        if skipped:
            cells = [tuple(int(c) for c in np.unravel_index(k, grid)) for k in skipped]
            inline = self.encode(ds, metadata, cells, reason="some of its chunks skipped a filter")
            for cell in cells:
                index[cell] = INLINE
                offsets[np.ravel_multi_index(cell, grid)] = 0
                lengths[np.ravel_multi_index(cell, grid)] = 0
        manifest = self.manifest(
            [self.path], index, offsets.reshape(grid), lengths.reshape(grid), inline
        )
        return ManifestArray(metadata=metadata, manifest=manifest)

    def contiguous(self, ds: h5py.Dataset, base: dict[str, Any]) -> ManifestArray:
        """A contiguous dataset: one byte range, split into row blocks when it is large."""
        offset = ds.id.get_offset()
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
            raise _Refused(
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
                raise _Refused(
                    f"keeps its data in external files split at byte {position}, inside a row "
                    f"of {row_bytes} bytes, which no regular chunk grid can follow"
                )
            boundaries.append(position // row_bytes)
        rows = self.rows_per_chunk(ds, align=math.gcd(_rows(ds), *boundaries))
        blocks = []
        for start in range(0, _rows(ds), rows):
            blocks.append(_locate(segments, start * row_bytes))
        for name in {p for p, _ in blocks}:
            if name not in self._external_fingerprints:
                self._external_fingerprints[name] = self.sources.fingerprint(name)
        return self.row_blocks(ds, base, rows, blocks)

    def virtual(
        self, ds: h5py.Dataset, dcpl: h5py.h5p.PropDCID, base: dict[str, Any]
    ) -> ManifestArray:
        """A virtual dataset whose sources tile its chunk grid: their chunks, placed.

        Each mapping must select a whole source dataset into one box of the
        virtual dataset that starts on a chunk boundary; all sources must share
        chunk shape, data type and codecs (as a stack of same-shaped files does).
        Anything else is refused rather than approximated.
        """
        if not is_local(self.path):
            raise _Refused("is a virtual dataset of a remote file; scan its source files instead")
        pieces = [self._virtual_piece(ds, dcpl, i) for i in range(dcpl.get_virtual_count())]
        if not pieces:
            raise _Refused("is a virtual dataset without source mappings")
        first = pieces[0][1]
        chunk_shape = first.metadata.chunks
        for _, src in pieces:
            same = (src.metadata.chunks, src.metadata.codecs, src.metadata.data_type)
            if same != (chunk_shape, first.metadata.codecs, first.metadata.data_type):
                raise _Refused(
                    "is a virtual dataset whose sources differ in chunk shape, data type or "
                    "codecs, which one Zarr array cannot describe"
                )
        grid = tuple(-(-n // c) for n, c in zip(ds.shape, chunk_shape, strict=True))
        paths = sorted({p for _, src in pieces for p in src.manifest.paths})
        index = np.full(grid, MISSING, dtype=np.uint32)
        offsets = np.zeros(grid, dtype=np.uint64)
        lengths = np.zeros(grid, dtype=np.uint64)
        inline: dict[ChunkCoords, bytes] = {}
        fill = base["fill_value"]
        for start, src in pieces:
            m = src.manifest
            cell = tuple(s // c for s, c in zip(start, chunk_shape, strict=True))
            region = tuple(slice(c, c + n) for c, n in zip(cell, m.shape, strict=True))
            if (index[region] != MISSING).any():
                raise _Refused("is a virtual dataset whose source mappings overlap")
            src_index = m.path_index
            if (src_index == MISSING).any() and src.metadata.to_dict()["fill_value"] != fill:
                raise _Refused(
                    "is a virtual dataset with unwritten source chunks whose fill value differs "
                    "from its own"
                )
            remap = np.array([paths.index(p) for p in m.paths] + [0], dtype=np.uint32)
            present = src_index < INLINE
            index[region] = np.where(
                present, remap[np.where(present, src_index, len(m.paths))], src_index
            )
            offsets[region] = m.offsets
            lengths[region] = m.lengths
            for coords, data in m.inline.items():
                inline[tuple(a + b for a, b in zip(cell, coords, strict=True))] = data
            self._external_fingerprints.update(m.fingerprints)
        metadata = _array_metadata(
            {
                **base,
                "chunk_grid": _regular(chunk_shape),
                "codecs": [c.to_dict() for c in first.metadata.codecs],
            }
        )
        manifest = self.manifest(paths, index, offsets, lengths, inline)
        return ManifestArray(metadata=metadata, manifest=manifest)

    def _virtual_piece(
        self, ds: h5py.Dataset, dcpl: h5py.h5p.PropDCID, i: int
    ) -> tuple[tuple[int, ...], ManifestArray]:
        """Mapping ``i`` of a virtual dataset: where it starts, and its source scanned."""
        start, box = _box(dcpl.get_virtual_vspace(i), "selection", ds.shape)
        file_name = os.fsdecode(dcpl.get_virtual_filename(i))
        dataset_name = os.fsdecode(dcpl.get_virtual_dsetname(i))
        if "%" in file_name or "%" in dataset_name:
            raise _Refused("is a virtual dataset with printf-style source names")
        source = self.path if file_name == "." else _virtual_source_path(ds, file_name)
        with h5py.File(source, "r") as f:
            src = f.get(dataset_name)
            if not isinstance(src, h5py.Dataset):
                raise _Refused(
                    f"is a virtual dataset whose source {source}:{dataset_name} is missing"
                )
            src_start, src_box = _box(
                dcpl.get_virtual_srcspace(i), f"selection of {source}:{dataset_name}", src.shape
            )
            if any(src_start) or src_box != src.shape:
                raise _Refused(
                    f"is a virtual dataset mapping part of {source}:{dataset_name}; only whole "
                    "source datasets can be placed exactly"
                )
            lead = len(box) - len(src_box)  # a stack puts sources of rank n in a box of rank n+1
            if lead < 0 or any(n != 1 for n in box[:lead]) or box[lead:] != src_box:
                raise _Refused(f"is a virtual dataset that reshapes {source}:{dataset_name}")
            scanner = _Scanner(
                path=source,
                fingerprint=self.sources.fingerprint(source),
                sources=self.sources,
                refusals=self.refusals,
                dropped=set(),
                contiguous_chunk_bytes=None,
                max_inline_bytes=self.max_inline_bytes,
            )
            kind = _DataKind.of(src)
            src_dcpl = src.id.get_create_plist()
            base = {
                "shape": list(src.shape),
                "data_type": kind.zdtype.to_json(zarr_format=3),
                "chunk_key_encoding": CHUNK_KEY_ENCODING,
                "fill_value": kind.fill_value_json(src_dcpl),
            }
            try:
                piece = _with_leading_axes(scanner.described(src, kind, base, src_dcpl), lead)
            except _Refused as e:
                raise _Refused(
                    f"is a virtual dataset whose source {source}:{dataset_name} {e}"
                ) from None
        for s, n, c, total in zip(start, box, piece.metadata.chunks, ds.shape, strict=True):
            if s % c or (n % c and s + n != total):
                raise _Refused(
                    "is a virtual dataset whose source boxes do not fall on its chunk boundaries"
                )
        return start, piece

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
        metadata = _array_metadata({**base, "chunk_grid": _regular(chunk_shape)})
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

    # ------------------------------------------------------------------ materialising

    def materialised(
        self, ds: h5py.Dataset, base: dict[str, Any], kind: _DataKind, reason: str
    ) -> ManifestArray:
        """The whole dataset read with h5py and stored as one inline chunk."""
        if ds.size * kind.dtype.itemsize > self.max_inline_bytes:
            raise _Refused(
                f"cannot be referenced in place ({reason}) and is too large to store inline "
                f"({ds.size * kind.dtype.itemsize} bytes > max_inline_bytes="
                f"{self.max_inline_bytes}); raise max_inline_bytes to materialise it"
            )
        chunk_shape = tuple(max(n, 1) for n in ds.shape)
        metadata = _array_metadata(
            {**base, "chunk_grid": _regular(chunk_shape), "codecs": [kind.materialised_codec]}
        )
        cell = (0,) * ds.ndim
        inline = self.encode(ds, metadata, [cell], reason=reason) if ds.size else {}
        grid = (1,) * ds.ndim if ds.size else tuple(0 if n == 0 else 1 for n in ds.shape)
        index = np.full(grid, INLINE if inline else MISSING, dtype=np.uint32)
        zeros = np.zeros(grid, dtype=np.uint64)
        manifest = ChunkManifest(
            paths=[], path_index=index, offsets=zeros, lengths=zeros, inline=inline
        )
        return ManifestArray(metadata=metadata, manifest=manifest)

    def encode(
        self,
        ds: h5py.Dataset,
        metadata: ArrayV3Metadata,
        cells: list[ChunkCoords],
        *,
        reason: str,
    ) -> dict[ChunkCoords, bytes]:
        """The chunks at ``cells`` read with h5py and encoded with ``metadata``'s codecs."""
        chunk_shape = metadata.chunk_grid.to_dict()["configuration"]["chunk_shape"]
        budget = self.max_inline_bytes
        if len(cells) * math.prod(chunk_shape) * ds.dtype.itemsize > budget:
            raise _Refused(
                f"cannot be referenced in place ({reason}) and {len(cells)} chunk(s) of it are "
                f"too large to store inline (max_inline_bytes={budget}); raise "
                "max_inline_bytes to materialise them"
            )
        reader = ds.asstr() if h5py.check_string_dtype(ds.dtype) and ds.dtype.kind == "O" else ds
        inline = {}
        for cell in cells:
            region = tuple(
                slice(c * s, min((c + 1) * s, n))
                for c, s, n in zip(cell, chunk_shape, ds.shape, strict=True)
            )
            try:
                values = reader[region]
            except UnicodeDecodeError as e:
                raise _Refused(f"holds strings that are not valid UTF-8 ({e})") from None
            inline[cell] = encode_chunk(metadata, tuple(chunk_shape), values)
        if sum(map(len, inline.values())) > budget:
            raise _Refused(
                f"cannot be referenced in place ({reason}) and takes "
                f"{sum(map(len, inline.values()))} bytes inline (max_inline_bytes={budget}); "
                "raise max_inline_bytes to materialise it"
            )
        return inline

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
            p: self.fingerprint if p == self.path else self._external_fingerprints[p] for p in paths
        }
        return ChunkManifest(
            paths=paths,
            path_index=index,
            offsets=offsets,
            lengths=lengths,
            inline=inline,
            fingerprints=fingerprints,
        )


# ---------------------------------------------------------------------- chunk_iter


def _chunk_columns(
    dsid: h5py.h5d.DatasetID, chunks: tuple[int, ...], grid: tuple[int, ...]
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Offsets and lengths of every stored chunk in C order of ``grid`` (length 0: missing),
    and the flat indices of chunks whose filter mask is not zero."""
    # array.array takes item assignment faster than numpy and hands its buffer over without a
    # copy; HDF5 chunks are smaller than 4 GiB, so lengths fit 32 bits.
    n = math.prod(grid)
    offsets = array.array("Q", bytes(8 * n))
    lengths = array.array("I", bytes(4 * n))
    skipped: list[int] = []
    if n:
        dsid.chunk_iter(_chunk_callback(chunks, grid, offsets, lengths, skipped.append))
    return np.frombuffer(offsets, np.uint64), np.frombuffer(lengths, np.uint32), skipped


def _chunk_callback(
    chunks: tuple[int, ...],
    grid: tuple[int, ...],
    offsets: array.array,
    lengths: array.array,
    skipped: Callable[[int], None],
) -> Callable[[Any], None]:
    """A ``chunk_iter`` callback that files each chunk at its C-order index in the grid.

    The callback runs once per chunk, so its Python cost is the scan's cost. It
    is compiled for the dataset with the index arithmetic reduced to constants:
    a chunk offset ``o`` along an axis of chunk size ``c`` and grid stride ``s``
    adds ``o // c * s``, which is ``o * (s // c)`` when ``c`` divides ``s``, and
    nothing on an axis of a single chunk. That runs at about 1.2x a bare
    ``chunk_iter`` loop, where a generic loop over the axes runs at 1.6x.
    """
    strides = [math.prod(grid[d + 1 :]) for d in range(len(grid))]
    terms = []
    for d, (c, s, n) in enumerate(zip(chunks, strides, grid, strict=True)):
        if n == 1:
            continue
        if s % c == 0:
            terms.append(f"o[{d}]" if s == c else f"o[{d}] * {s // c}")
        else:
            terms.append(f"o[{d}] // {c} * {s}")
    # info is (chunk offset, filter mask, byte offset, size); indexing beats unpacking here
    source = (
        "def on_chunk(info, offsets=offsets, lengths=lengths, skipped=skipped):\n"
        "    o = info[0]\n"
        f"    k = {' + '.join(terms) or '0'}\n"
        "    offsets[k] = info[2]\n"
        "    lengths[k] = info[3]\n"
        "    if info[1]:\n"
        "        skipped(k)\n"
    )
    namespace: dict[str, Any] = {"offsets": offsets, "lengths": lengths, "skipped": skipped}
    exec(_compiled(source), namespace)
    return namespace["on_chunk"]


@functools.lru_cache(maxsize=256)
def _compiled(source: str) -> Any:
    """Compiled callback source: the files of a collection share chunk grids, so it repeats."""
    return compile(source, "<chunk_iter callback>", "exec")


# ---------------------------------------------------------------------- data types


@dataclass(frozen=True)
class _DataKind:
    """How a dataset's HDF5 type maps to Zarr: data type, codecs, extra attributes.

    ``materialise`` is the reason the stored bytes cannot be read in place
    (empty when they can). A function of the HDF5 type alone, so datasets of
    the same type (across the files of a collection too) share one.
    """

    stored: np.dtype
    """The type as h5py reads it (``Dataset.dtype``)."""
    dtype: np.dtype
    """The type of the Zarr array (an enumeration's base type, say)."""
    zdtype: ZDType[Any, Any]
    endian: str | None
    materialise: str = ""
    attributes: dict[str, Any] = field(default_factory=dict)

    @property
    def bytes_codec(self) -> dict[str, Any]:
        config = {"endian": self.endian} if self.endian else {}
        return {"name": "bytes", "configuration": config}

    @property
    def materialised_codec(self) -> dict[str, Any]:
        return {"name": "vlen-utf8"} if self.dtype.kind == "O" else self.bytes_codec

    def fill_value_json(self, dcpl: h5p.PropDCID) -> Any:
        """The HDF5 fill value (what unwritten chunks read as) in Zarr's JSON form."""
        if self.dtype.kind == "O":
            return ""
        stored = np.zeros((1,), dtype=self.stored)  # as h5py's Dataset.fillvalue reads it
        dcpl.get_fill_value(stored)
        value = stored.astype(self.dtype)
        return _fill_value_json(self.zdtype, value.dtype, value.tobytes())

    @classmethod
    def of(cls, ds: h5py.Dataset) -> _DataKind:
        """The kind of ``ds``'s type, worked out once per type (raises _Refused)."""
        tid = ds.id.get_type()
        try:
            key = _type_key(tid)
        except Exception:  # a type HDF5 cannot serialise: worked out for this dataset alone
            return cls.of_type(tid)
        return _data_kind(key)

    @classmethod
    def of_type(cls, tid: h5t.TypeID) -> _DataKind:
        """The kind of an HDF5 type (raises _Refused)."""
        cls_ = tid.get_class()
        stored = dtype = tid.dtype  # what h5py's Dataset.dtype gives
        if cls_ == h5t.REFERENCE or h5py.check_ref_dtype(dtype) is not None:
            raise _Refused("holds object or region references, which have no Zarr data type")
        if cls_ == h5t.ARRAY or dtype.subdtype is not None:
            raise _Refused(f"has an HDF5 array data type ({dtype}), which has no Zarr data type")
        if cls_ == h5t.STRING and tid.is_variable_str():
            zdtype = _zarr_dtype(np.dtypes.StringDType())
            return cls(stored, dtype, zdtype, None, "it holds variable-length strings")
        if cls_ == h5t.VLEN or dtype.kind == "O":
            raise _Refused(f"holds variable-length sequences ({dtype}), which have no Zarr codec")
        attributes: dict[str, Any] = {}
        exact = tid.equal(h5t.py_create(dtype))
        if cls_ == h5t.STRING:
            # Null-terminated strings read as stored unless a byte follows a null inside one
            # element, which cannot happen in netCDF's one-byte chars.
            exact = tid.get_strpad() == h5t.STR_NULLPAD or (
                tid.get_strpad() == h5t.STR_NULLTERM and dtype.itemsize == 1
            )
        if cls_ == h5t.ENUM and dtype.kind != "b":
            mapping = h5py.check_enum_dtype(dtype) or {}
            attributes = _enum_attributes(mapping)
            dtype = np.dtype(dtype.str)  # the base integer type, without the enum metadata
            exact = tid.get_super().equal(h5t.py_create(dtype))
        native = _little(dtype)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                zdtype = _zarr_dtype(native)
        except (ValueError, TypeError) as e:
            raise _Refused(f"has data type {dtype}, which has no Zarr data type ({e})") from None
        endian = _endian(dtype)
        reason = ""
        if not exact:
            reason = f"HDF5 converts its stored type to {dtype} on reading"
        elif zdtype.to_native_dtype() != native:
            # e.g. compounds with padding between fields: Zarr's struct packs its fields
            reason = f"its layout {dtype} differs from Zarr's {zdtype.to_native_dtype()}"
        elif endian == "mixed":
            reason = "its compound fields mix byte orders"
        if reason and dtype.fields is not None:
            raise _Refused(f"cannot be described exactly: {reason}")
        endian = None if endian == "mixed" else endian
        return cls(stored, dtype, zdtype, endian, reason, attributes)


@functools.lru_cache(maxsize=256)
def _data_kind(key: tuple[Any, ...]) -> _DataKind:
    """``_DataKind.of_type`` of the type a :func:`_type_key` describes (refusals are not cached)."""
    return _DataKind.of_type(h5t.decode(key[0]))


def _type_key(tid: h5t.TypeID) -> tuple[Any, ...]:
    """What h5py's NumPy view of an HDF5 type depends on: the type, serialised by
    ``H5Tencode``, and h5py's names for the members of boolean enums and complex compounds."""
    config = h5py.get_config()
    return (tid.encode(), config.bool_names, config.complex_names)


def _little(dtype: np.dtype) -> np.dtype:
    """``dtype`` with every field in little-endian order (what Zarr's data types describe)."""
    return dtype.newbyteorder("<") if dtype.itemsize > 1 or dtype.fields else dtype


def _endian(dtype: np.dtype) -> str | None:
    """``"little"`` / ``"big"`` for the bytes codec; None when byte order does not matter."""
    orders = set()
    for sub in _scalar_dtypes(dtype):
        if sub.itemsize > 1 and sub.kind in "iufcmM":
            orders.add("big" if sub.byteorder == ">" else "little")
    if len(orders) > 1:
        return "mixed"
    return orders.pop() if orders else None


def _scalar_dtypes(dtype: np.dtype) -> Iterator[np.dtype]:
    if dtype.fields is None:
        yield dtype.base
        return
    for sub, *_ in dtype.fields.values():
        yield from _scalar_dtypes(sub)


def _enum_attributes(mapping: Mapping[str, int]) -> dict[str, Any]:
    """An HDF5 enumeration as CF flag attributes (``flag_values``, ``flag_meanings``)."""
    items = sorted(mapping.items(), key=lambda kv: kv[1])
    return {
        "flag_values": [int(v) for _, v in items],
        "flag_meanings": " ".join("_".join(str(k).split()) for k, _ in items),
    }


# ---------------------------------------------------------------------- attributes


class _Attributes:
    """An HDF5 object's attributes: listed once, each read at most once, in h5py's order.

    A scan asks about the same attributes several times (``_FillValue`` for the
    array, ``_Netcdf4Coordinates`` and ``_Netcdf4Dimid`` for the dimensions,
    ``DIMENSION_LIST`` to look for scales); each value is read once, with
    :func:`_read_attribute`. ``cpl`` is the object's creation property list,
    when the caller has it already. Only the object's identifier is kept (not
    the object, which may keep this), so nothing holds the file open in a cycle.
    """

    def __init__(self, obj: h5py.Group | h5py.Dataset, cpl: h5p.PropID | None = None) -> None:
        self.id = obj.id
        self._h5py = obj.attrs  # h5py's own reading, for the types left to it
        cpl = cpl if cpl is not None else obj.id.get_create_plist()
        tracked = cpl.get_attr_creation_order()
        order = h5.INDEX_CRT_ORDER if tracked & h5p.CRT_ORDER_TRACKED else h5.INDEX_NAME
        stored: list[bytes] = []
        h5a.iterate(obj.id, stored.append, index_type=order)
        self._stored = {_decoded_name(n): n for n in stored}
        self._values: dict[str | bytes, Any] = {}

    def __iter__(self) -> Iterator[str | bytes]:
        return iter(self._stored)

    def __contains__(self, name: object) -> bool:
        return name in self._stored

    def __getitem__(self, name: str | bytes) -> Any:
        """The value, as ``obj.attrs[name]`` gives it (KeyError if there is none)."""
        if name not in self._values:
            self._values[name] = _read_attribute(self.id, self._stored[name], self._h5py)
        return self._values[name]

    def get(self, name: str, default: Any = None) -> Any:
        """The value, or ``default`` if there is no such attribute."""
        return self[name] if name in self._stored else default

    def where(self) -> str:
        """``file:object``, as warnings name the object (``obj.file.filename:obj.name``)."""
        path = h5i.get_name(self.id)
        return f"{os.fsdecode(h5f.get_name(self.id))}:{path and _decoded_name(path)}"


def _decoded_name(name: bytes) -> str | bytes:
    """An attribute or link name as h5py gives it: UTF-8 decoded, else the bytes."""
    try:
        return name.decode("utf-8")
    except UnicodeDecodeError:
        return name


_PLAIN_CLASSES = frozenset({h5t.INTEGER, h5t.FLOAT, h5t.STRING})
"""Attribute type classes read here; others (compounds, enums, references, arrays) by h5py."""


def _read_attribute(oid: Any, name: bytes, h5py_attrs: h5py.AttributeManager) -> Any:
    """Attribute ``name`` of object ``oid``, exactly as h5py's ``attrs[name]`` returns it.

    Numbers and strings, nearly every netCDF attribute, are read here with the
    attribute's memory type worked out once per HDF5 type (h5py works it out on
    every read, which costs more than the read); every other type is left to
    h5py (``h5py_attrs``, the object's attributes).
    """
    attr = h5a.open(oid, name)
    reading = _attribute_reading(_type_key(attr.get_type()))
    if reading is None:
        return h5py_attrs[name]
    dtype, memory_type, vlen_text = reading
    shape = attr.get_space().shape
    if shape is None:  # a null dataspace
        return h5py.Empty(dtype)
    values = np.zeros(shape, dtype=dtype)
    attr.read(values, mtype=memory_type)
    if vlen_text:  # as h5py does: stored bytes to str
        values = np.array(
            [b.decode("utf-8", "surrogateescape") for b in values.flat], dtype=dtype
        ).reshape(values.shape)
    return values[()] if values.ndim == 0 else values


@functools.lru_cache(maxsize=256)
def _attribute_reading(key: tuple[Any, ...]) -> tuple[np.dtype, h5t.TypeID, bool] | None:
    """How h5py reads an attribute of the type a :func:`_type_key` describes: dtype, memory
    type, and whether it is variable-length text.

    None for the types left to h5py. A function of the type (and h5py's
    options) alone, so the files of a collection share it.
    """
    tid = h5t.decode(key[0])
    if tid.get_class() not in _PLAIN_CLASSES:
        return None
    dtype = tid.dtype
    info = h5t.check_string_dtype(dtype)
    return dtype, h5t.py_create(dtype), bool(info and info.length is None)


def _json_attributes(attributes: _Attributes, dtype: np.dtype | None = None) -> dict[str, Any]:
    """An object's attributes as JSON, netCDF-4 bookkeeping left out.

    ``_FillValue`` is encoded for xarray's Zarr backend (see ``fill_value_attribute``);
    attributes that have no JSON form (references, compounds) are left out with a warning.
    """
    out: dict[str, Any] = {}
    for name in attributes:
        if name in HIDDEN_ATTRIBUTES:
            continue
        try:
            value = attributes[name]
        except (OSError, TypeError, ValueError) as e:
            warnings.warn(
                f"{attributes.where()}: attribute {name!r} cannot be read ({e}); left out",
                stacklevel=4,
            )
            continue
        if isinstance(value, h5py.Empty):
            continue
        if name == "_FillValue" and dtype is not None:
            items = np.asarray(value).ravel()
            encoded = fill_value_attribute(items[0] if items.size else value, dtype)
            if encoded is not None:
                out[name] = encoded
            continue
        converted = json_attribute(value)
        if not _is_json(converted):
            warnings.warn(
                f"{attributes.where()}: attribute {name!r} has no JSON form; left out",
                stacklevel=4,
            )
            continue
        out[name] = converted
    return out


def _is_json(value: Any) -> bool:
    if isinstance(value, str | bool | int | float) or value is None:
        return True
    if isinstance(value, list):
        return all(_is_json(v) for v in value)
    return False


# ---------------------------------------------------------------------- netCDF-4 dimensions


def _dimension_only(ds: h5py.Dataset) -> bool:
    """A dimension scale netCDF-4 created only to define a dimension (h5netcdf leaves it out too)."""
    return NOT_A_VARIABLE in (h5py.h5ds.get_scale_name(ds.id) or b"")  # its NAME attribute


def _links(h5group: h5py.Group, gcpl: h5p.PropGCID) -> list[tuple[str, int]]:
    """The group's link names in h5py's order (creation order where tracked), with link types."""
    tracked = gcpl.get_link_creation_order()
    order = h5.INDEX_CRT_ORDER if tracked & h5p.CRT_ORDER_TRACKED else h5.INDEX_NAME
    links: list[tuple[str, int]] = []
    h5group.id.links.iterate(
        lambda name, info: links.append((_decoded_name(name), info.type)),
        idx_type=order,
        info=True,
    )
    return links


def _member(h5group: h5py.Group, name: str | bytes) -> h5py.Group | h5py.Dataset | None:
    """The object a link leads to, as ``h5group.get(name)`` opens it (None: nothing there).

    Opened with the low-level call ``get`` makes, without the File object it
    builds for each; named data types are of no interest to a scan (None too).
    """
    try:
        oid = h5o.open(h5group.id, name.encode() if isinstance(name, str) else name)
    except KeyError:
        return None
    if isinstance(oid, h5d.DatasetID):
        return _Dataset(oid, readonly=True)
    if isinstance(oid, h5py.h5g.GroupID):
        return h5py.Group(oid)
    return None


class _Dataset(h5py.Dataset):
    """An h5py Dataset of a file opened read-only, what a scan asks about it read once.

    h5py reads ``dtype`` / ``ndim`` / ``maxshape`` from the file on every
    access, and the scan asks for them, the creation properties, the
    attributes and the attached scales several times; none of them can change
    while the file is open read-only.
    """

    @functools.cached_property
    def dtype(self) -> np.dtype:
        return self.id.dtype

    @functools.cached_property
    def create_plist(self) -> h5p.PropDCID:
        """The dataset creation properties: layout, chunks, filters, fill value, ..."""
        return self.id.get_create_plist()

    @functools.cached_property
    def ndim(self) -> int:
        return len(self.shape)

    @functools.cached_property
    def maxshape(self) -> tuple[int | None, ...] | None:
        return super().maxshape

    @functools.cached_property
    def attributes(self) -> _Attributes:
        return _Attributes(self, self.create_plist)

    @functools.cached_property
    def attached_scales(self) -> list[str | None] | None:
        """Per axis, the name of the last scale attached (see ``_attached_scale_names``)."""
        return _attached_scale_names(self, self.attributes)


class _Dimensions:
    """The netCDF-4 dimensions of one group, named as h5netcdf names them.

    Dimension scales in the group are its dimensions; datasets whose axes
    have no scale get ``phony_dim_N`` dimensions, one per distinct axis size
    (as many as one dataset needs), numbered on from the phony dimensions of
    the groups above, as h5netcdf does when opening that group.
    """

    def __init__(self, h5group: h5py.Group, parent: _Dimensions | None) -> None:
        self.group = h5group
        self.parent = parent
        self.create_plist = h5group.id.get_create_plist()
        self.links = _links(h5group, self.create_plist)
        """The group's links (name, link type), in h5py's order."""
        self.members = {name: _member(h5group, name) for name, _ in self.links}
        """What each link leads to, opened once for the scanner too (None: nothing)."""
        self.scales: dict[str, _Dataset] = {}
        unlabeled: dict[int, int] = {}
        for name, obj in self.members.items():
            if not isinstance(obj, h5py.Dataset):
                continue
            if "CLASS" in obj.attributes and h5py.h5ds.is_scale(obj.id):
                self.scales[name] = obj  # its CLASS is "DIMENSION_SCALE"
            elif obj.ndim and obj.attached_scales is None:
                for size, count in _counts(obj.shape).items():
                    unlabeled[size] = max(unlabeled.get(size, 0), count)
        self.phony_start = parent.phony_end if parent else 0
        self.sizes: dict[str, int] = {}
        if unlabeled:
            self.sizes = {name: _scale_size(ds) for name, ds in self.scales.items()}
            labeled: dict[int, int] = {}
            for name, ds in self.scales.items():
                if ds.maxshape != (None,):
                    labeled[self.sizes[name]] = labeled.get(self.sizes[name], 0) + 1
            number = self.phony_start
            for size, count in unlabeled.items():
                for _ in range(labeled.get(size, 0), count):
                    self.sizes[f"phony_dim_{number}"] = size
                    number += 1
            self.phony_end = number
        else:
            self.phony_end = self.phony_start

    @classmethod
    def of_ancestors(cls, h5group: h5py.Group) -> _Dimensions:
        """The dimensions of ``h5group``, with those of every group above it."""
        chain = []
        node = h5group
        while True:
            chain.append(node)
            if node.name == "/":
                break
            node = node.parent
        dims: _Dimensions | None = None
        for node in reversed(chain):
            dims = cls(node, dims)
        assert dims is not None
        return dims

    def all_names(self) -> Iterator[str]:
        node: _Dimensions | None = self
        while node is not None:
            yield from node.scales
            yield from (n for n in node.sizes if n.startswith("phony_dim_"))
            node = node.parent

    def names_of(self, ds: _Dataset) -> list[str]:
        """A dataset's dimension names, bare (not group paths), as h5netcdf gives them."""
        if not ds.ndim:
            return []
        attrs = ds.attributes
        own = ds.name.split("/")[-1]
        if "_Netcdf4Coordinates" in attrs and own in self.scales:
            by_id = self.dimension_ids
            ids = [int(i) for i in np.asarray(attrs["_Netcdf4Coordinates"]).ravel()]
            if all(i in by_id for i in ids):
                return [by_id[i] for i in ids]
        labels = ds.attached_scales
        if labels is not None and None in labels:
            raise _Refused(
                "has dimension scales on some axes and none on others, which netCDF-4 "
                "cannot name (h5netcdf refuses it too)"
            )
        if labels is not None:
            if "" in labels:
                raise _Refused("has a dimension scale that has no name in the file")
            return labels  # type: ignore[return-value]
        if own in set(self.all_names()):
            return [own]
        names = []
        seen: dict[int, int] = {}
        for size in ds.shape:
            candidates = [n for n, s in self.sizes.items() if s == size]
            if seen.get(size, 0) >= len(candidates):
                raise _Refused(f"has an axis of length {size} that no dimension matches")
            names.append(candidates[seen.get(size, 0)])
            seen[size] = seen.get(size, 0) + 1
        return names

    @functools.cached_property
    def dimension_ids(self) -> dict[int, str]:
        """Dimension names by netCDF-4 dimension id (``_Netcdf4Dimid``), read once per group."""
        ids: dict[int, str] = {}
        node: _Dimensions | None = self
        seen: set[str] = set()
        while node is not None:
            for name, ds in node.scales.items():
                if name in seen:
                    continue
                seen.add(name)
                attrs = ds.attributes
                if "_Netcdf4Dimid" in attrs:
                    ids.setdefault(int(attrs["_Netcdf4Dimid"]), name)
            node = node.parent
        return ids


def _attached_scale_names(ds: h5py.Dataset, attrs: _Attributes) -> list[str | None] | None:
    """Per axis, the name of the last dimension scale attached (None: no scale on that axis).

    Several scales on one axis: the last one names it, as netCDF-C does; a scale
    without a name in the file gives "". None when no axis has a scale.
    ``H5DSiterate_scales`` walks the ``DIMENSION_LIST`` references in order
    without reading them as an attribute, which costs several times more.
    """
    if not ds.ndim or "DIMENSION_LIST" not in attrs:
        return None
    names: list[str | None] = []
    for axis in range(ds.ndim):
        if not h5py.h5ds.get_num_scales(ds.id, axis):  # iterating an empty axis is an error
            names.append(None)
            continue
        found: list[h5py.h5d.DatasetID] = []
        h5py.h5ds.iterate(ds.id, axis, found.append)  # append returns None: go on
        path = h5py.h5i.get_name(found[-1])
        names.append(path.decode().rsplit("/", 1)[-1] if path else "")
    return None if all(n is None for n in names) else names


def _scale_size(scale: _Dataset) -> int:
    """A dimension's size: an unlimited one is as long as the longest dataset using it."""
    size = scale.shape[0] if scale.ndim else 0
    if scale.maxshape == (None,):
        for ref, axis in scale.attributes.get("REFERENCE_LIST", []):
            size = max(size, scale.file[ref].shape[axis])
    return size


def _counts(shape: tuple[int, ...]) -> dict[int, int]:
    counts: dict[int, int] = {}
    for n in shape:
        counts[n] = counts.get(n, 0) + 1
    return counts


# ---------------------------------------------------------------------- small helpers


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


def _box(
    space: h5py.h5s.SpaceID, what: str, shape: tuple[int, ...]
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The start and shape of a selection of a ``shape`` space that is one solid box."""
    if space.get_select_type() == h5s.SEL_ALL:
        return (0,) * len(shape), tuple(shape)
    try:
        low, high = space.get_select_bounds()
    except Exception:  # an empty or unlimited selection has no bounds
        raise _Refused(f"is a virtual dataset whose {what} is empty or unlimited") from None
    shape = tuple(int(h) - int(lo) + 1 for lo, h in zip(low, high, strict=True))
    if math.prod(shape) != space.get_select_npoints():
        raise _Refused(f"is a virtual dataset whose {what} is not one solid box")
    return tuple(int(v) for v in low), shape


def _virtual_source_path(ds: h5py.Dataset, name: str) -> str:
    """Where HDF5 finds a virtual dataset's source file: the prefix, beside the file, or cwd."""
    if os.path.isabs(name):
        return name
    origin = os.path.dirname(os.path.abspath(ds.file.filename))
    prefix = os.fsdecode(ds.id.get_access_plist().get_virtual_prefix() or b"")
    prefix = (prefix or os.environ.get("HDF5_VDS_PREFIX", "")).replace("${ORIGIN}", origin)
    candidates = [os.path.join(prefix, name)] if prefix else []
    candidates += [os.path.join(origin, name), os.path.abspath(name)]
    for candidate in candidates:
        if os.path.exists(candidate):
            return os.path.abspath(candidate)
    raise _Refused(f"is a virtual dataset whose source file {name!r} cannot be found")


def _with_leading_axes(array: ManifestArray, lead: int) -> ManifestArray:
    """``array`` with ``lead`` axes of length one put in front (chunks of one along them)."""
    if not lead:
        return array
    meta = array.metadata.to_dict()
    meta["shape"] = [1] * lead + list(meta["shape"])
    meta["chunk_grid"] = _regular((1,) * lead + tuple(array.metadata.chunks))
    m = array.manifest
    grid = (1,) * lead + m.shape
    manifest = ChunkManifest(
        paths=m.paths,
        path_index=m.path_index.reshape(grid),
        offsets=m.offsets.reshape(grid),
        lengths=m.lengths.reshape(grid),
        inline={(0,) * lead + k: v for k, v in m.inline.items()},
        fingerprints=m.fingerprints,
    )
    return ManifestArray(metadata=meta, manifest=manifest)


def _locate(segments: list[_ExternalSegment], position: int) -> tuple[str, int]:
    """The (file, offset) that byte ``position`` of the external data stream lives at."""
    for seg in segments:
        if position < seg.size:
            return seg.path, seg.offset + position
        position -= seg.size
    raise _Refused("keeps less data in its external files than its shape needs")


def _rows(ds: h5py.Dataset) -> int:
    return ds.shape[0] if ds.shape else 1


def _row_bytes(ds: h5py.Dataset) -> int:
    return math.prod(ds.shape[1:]) * ds.dtype.itemsize


def _array_metadata(doc: dict[str, Any]) -> ArrayV3Metadata:
    """``parse_array_metadata``, memoised on the document.

    The files of a collection repeat the same arrays, and zarr's parsing costs
    more than the rest of describing a small dataset. The parsed metadata is
    immutable, so arrays of different files may share it.
    """
    try:
        key = json.dumps(doc, allow_nan=True)
    except (TypeError, ValueError):
        return parse_array_metadata(doc)
    return _parsed_metadata(key)


@functools.lru_cache(maxsize=1024)
def _parsed_metadata(key: str) -> ArrayV3Metadata:
    return parse_array_metadata(json.loads(key))


@functools.lru_cache(maxsize=256)
def _fill_value_json(zdtype: ZDType[Any, Any], dtype: np.dtype, raw: bytes) -> Any:
    """A fill value's Zarr JSON form, memoised: files of a collection repeat their fill values."""
    value = np.frombuffer(raw, dtype=dtype)[0]
    return zdtype.to_json_scalar(zdtype.cast_scalar(value), zarr_format=3)


@functools.lru_cache(maxsize=256)
def _zarr_dtype(native: np.dtype) -> ZDType[Any, Any]:
    """zarr's data type for a NumPy dtype, memoised (zarr tries every registered type in turn)."""
    return parse_dtype(native, zarr_format=3)


def _regular(chunk_shape: tuple[int, ...]) -> dict[str, Any]:
    return {"name": "regular", "configuration": {"chunk_shape": list(chunk_shape)}}
