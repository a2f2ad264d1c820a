"""How a DMR++ variable's bytes are stored, as chunk references: ``dmrpp:chunks`` (chunked or
contiguous), ``dmrpp:compact`` and ``dmrpp:missingdata`` (values written in the DMR++ itself).

Each is described as the HDF5 scanner describes the dataset it stands for:
chunks at their grid positions, contiguous data as one range split into row
blocks when uncompressed and large, inline values as one inline chunk.
"""

from __future__ import annotations

import base64
import binascii
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from xml.etree.ElementTree import Element

import numpy as np

from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.manifest import INLINE, MISSING, ChunkManifest, Fingerprint
from zarr_manifest_store.scan.common import Refused, rows_per_chunk
from zarr_manifest_store.scan.hdf5.filters import Filter, UnmappableFilter, filter_codecs
from zarr_manifest_store.scan.hdf5.metadata import array_metadata, regular

__all__ = ["DMRPP", "Storage"]

DMRPP = "{http://xml.opendap.org/dap/dmrpp/1.0.0#}"
"""The DMR++ namespace, as ElementTree writes it before a tag or attribute name."""
CHUNK = f"{DMRPP}chunk"
_FILTER_IDS = {"deflate": 1, "shuffle": 2, "fletcher32": 3}
_ORIGINAL_ORDER = ("shuffle", "deflate", "fletcher32")
"""The order DMR++ files without ``dmrpp:version`` apply their filters in, whatever they list."""


@dataclass
class Storage:
    """Describes the stored bytes of the variables of one DMR++ file.

    ``resolve(href, trusted)`` names the file an ``href`` of a chunk points
    at (None: the data file); ``fingerprint(path)`` what that file looks
    like now. ``ordered_filters`` is False for DMR++ files older than
    ``dmrpp:version``, whose ``compressionType`` does not give the order.
    """

    data_path: str
    resolve: Callable[[str, bool], str]
    fingerprint: Callable[[str], Fingerprint]
    ordered_filters: bool
    contiguous_chunk_bytes: int | None
    max_inline_bytes: int

    def array(
        self, var: Element, base: dict[str, Any], dtype: np.dtype, *, fill_known: bool
    ) -> ManifestArray:
        """The variable's array under the metadata ``base`` (shape, data type, attributes ...).

        Without a known fill value (``fill_known``), chunks the DMR++ does not
        list cannot be described: HDF5 reads them as the file's fill value.
        """
        chunks = var.find(f"{DMRPP}chunks")
        if chunks is None and var.find(CHUNK) is not None:
            chunks = var  # DMR++ files of 2018 list their chunks in the variable itself
        for tag in ("compact", "missingdata"):
            inline = var.find(f"{DMRPP}{tag}")
            if inline is not None:
                endian = _endian(chunks.get("byteOrder") if chunks is not None else None, dtype)
                return self.inline(inline, tag, base, dtype, endian)
        if var.find(f"{DMRPP}vlsa") is not None:
            raise Refused("holds variable-length strings (dmrpp:vlsa), which are not read")
        if chunks is None:
            raise Refused("has no dmrpp:chunks, dmrpp:compact or dmrpp:missingdata element")
        if chunks.get("LBChunk") == "true" or chunks.find(f"{DMRPP}block") is not None:
            raise Refused("is stored in linked blocks (an HDF4 layout), which are not read")
        codecs = [self.bytes_codec(chunks, dtype), *self.filters(chunks, dtype)]
        base = {**base, "codecs": codecs}
        sizes = chunks.findtext(f"{DMRPP}chunkDimensionSizes")
        if sizes is not None:
            array = self.chunked(chunks, base, _chunk_shape(sizes, len(base["shape"])))
        else:
            array = self.contiguous(chunks, base, dtype, compressed=len(codecs) > 1)
        missing = math.prod(array.manifest.shape) - array.manifest.nchunks
        if missing and not fill_known and math.prod(base["shape"]):
            raise Refused(
                f"has {missing} chunk(s) that the DMR++ does not list and no fillValue (nor "
                "_FillValue) to read them as"
            )
        return array

    # ------------------------------------------------------------------ codecs

    def bytes_codec(self, chunks: Element, dtype: np.dtype) -> dict[str, Any]:
        endian = _endian(chunks.get("byteOrder"), dtype)
        return {"name": "bytes", "configuration": {"endian": endian} if endian else {}}

    def filters(self, chunks: Element, dtype: np.dtype) -> list[dict[str, Any]]:
        """``compressionType`` (and ``deflateLevel``) as Zarr codecs, in the order written."""
        names = (chunks.get("compressionType") or "").split()
        if not self.ordered_filters:
            names = [n for n in _ORIGINAL_ORDER if n in names] + [
                n for n in names if n not in _ORIGINAL_ORDER
            ]
        levels = (chunks.get("deflateLevel") or chunks.get("deflate_level") or "").split()
        stages, deflates = [], 0
        for name in names:
            if name not in _FILTER_IDS:
                raise Refused(f"is compressed with {name!r}, which has no Zarr codec here")
            values: tuple[int, ...] = ()
            if name == "deflate":
                level = levels[min(deflates, len(levels) - 1)] if levels else "6"
                values, deflates = (int(level),), deflates + 1
            elif name == "shuffle":
                values = (dtype.itemsize,)
            stages.append(Filter(_FILTER_IDS[name], 0, values))
        try:
            return filter_codecs(stages)
        except UnmappableFilter as e:
            raise Refused(str(e)) from None

    # ------------------------------------------------------------------ layouts

    def chunked(
        self, chunks: Element, base: dict[str, Any], chunk_shape: tuple[int, ...]
    ) -> ManifestArray:
        """Chunks at their positions in the grid; chunks not listed are missing (fill value)."""
        shape = tuple(base["shape"])
        grid = tuple(-(-n // c) for n, c in zip(shape, chunk_shape, strict=True))
        metadata = array_metadata({**base, "chunk_grid": regular(chunk_shape)})
        elements = chunks.findall(CHUNK)
        refs = _References.of(elements, self, len(shape))
        if not shape:
            flat = np.zeros(len(elements), dtype=np.int64)
        else:
            flat = _grid_positions(refs.positions, chunk_shape, grid)
        if len(np.unique(flat)) != len(flat):
            raise Refused("lists a chunk position twice")
        manifest = ChunkManifest.from_entries(
            shape=grid,
            chunks=flat,
            paths=refs.paths,
            path_index=refs.index,
            offsets=refs.offsets,
            lengths=refs.lengths,
            fingerprints=self.fingerprints(refs),
        )
        return ManifestArray(metadata=metadata, manifest=manifest)

    def contiguous(
        self, chunks: Element, base: dict[str, Any], dtype: np.dtype, *, compressed: bool
    ) -> ManifestArray:
        """Contiguous data: its byte ranges in order, cut into row blocks as the HDF5 scan cuts
        them (one chunk of the whole array when compressed)."""
        shape = tuple(base["shape"])
        elements = chunks.findall(CHUNK)
        refs = _References.of(elements, self, 0)
        rows = shape[0] if shape else 1
        row_bytes = math.prod(shape[1:]) * dtype.itemsize
        total = rows * row_bytes
        if compressed or not elements:
            if compressed and len(elements) != 1:
                raise Refused(f"has compressed contiguous data in {len(elements)} pieces")
            # never written: any last-chunk padding is fill, so no divisor search of a huge count
            step = rows if compressed else self.rows(rows, row_bytes, total)
            return self.blocks(base, refs, step, [(0, 0)] if elements else [], dtype)
        if int(refs.lengths.sum()) != total:
            raise Refused(
                f"stores {int(refs.lengths.sum())} bytes of contiguous data where its shape "
                f"{list(shape)} of {dtype} takes {total}"
            )
        self.fingerprints(
            refs
        )  # the pieces lie in their files: as many blocks as their bytes allow
        ends = np.cumsum(refs.lengths)[:-1]
        if len(elements) == 1:
            size = self.fingerprint(refs.paths[int(refs.index[0])]).size
            end = int(refs.offsets[0]) + total
            step = self.rows(rows, row_bytes, 0 if size is None else max(0, size - end))
        elif row_bytes and np.any(ends % row_bytes):
            raise Refused("has contiguous data split inside a row, which no chunk grid can follow")
        else:
            step = self.rows(rows, row_bytes, 0, align=math.gcd(rows, *(ends // max(row_bytes, 1))))
        return self.blocks(
            base, refs, step, [_locate(refs, r * row_bytes) for r in range(0, rows, step)], dtype
        )

    def rows(self, n: int, row_bytes: int, room_after: int, align: int = 0) -> int:
        """Rows per chunk of contiguous data, as the HDF5 scan chooses them."""
        target = self.contiguous_chunk_bytes
        return rows_per_chunk(n, row_bytes, target=target, room_after=room_after, align=int(align))

    def blocks(
        self,
        base: dict[str, Any],
        refs: _References,
        step: int,
        starts: list[tuple[int, int]],
        dtype: np.dtype,
    ) -> ManifestArray:
        """An array of ``step``-row chunks starting at ``(piece, offset in piece)``s."""
        shape = tuple(base["shape"])
        chunk_shape = tuple(max(n, 1) for n in ((step, *shape[1:]) if shape else ()))
        grid = tuple(-(-n // c) for n, c in zip(shape, chunk_shape, strict=True))
        metadata = array_metadata({**base, "chunk_grid": regular(chunk_shape)})
        compressed = len(base["codecs"]) > 1
        nbytes = math.prod(chunk_shape) * dtype.itemsize
        index = np.full(len(starts), 0, dtype=np.uint32)
        offsets = np.zeros(len(starts), dtype=np.uint64)
        lengths = np.zeros(len(starts), dtype=np.uint64)
        for i, (piece, within) in enumerate(starts):
            index[i] = refs.index[piece]
            offsets[i] = int(refs.offsets[piece]) + within
            lengths[i] = int(refs.lengths[piece]) if compressed else nbytes
        manifest = ChunkManifest.from_entries(  # sparse when never written: no grid-sized arrays
            shape=grid,
            chunks=np.arange(len(starts)),
            paths=refs.paths if starts else [],
            path_index=index,
            offsets=offsets,
            lengths=lengths,
            fingerprints=self.fingerprints(refs) if starts else {},
        )
        return ManifestArray(metadata=metadata, manifest=manifest)

    def inline(
        self, element: Element, tag: str, base: dict[str, Any], dtype: np.dtype, endian: str | None
    ) -> ManifestArray:
        """Values written in the DMR++ (base64; zlib-compressed for ``missingdata`` arrays) as
        one inline chunk, as the HDF5 scan stores what it materialises."""
        shape = tuple(base["shape"])
        nbytes = math.prod(shape) * dtype.itemsize
        if nbytes > self.max_inline_bytes:
            raise Refused(
                f"keeps its values in the DMR++ (dmrpp:{tag}) and is too large to store inline "
                f"({nbytes} bytes > max_inline_bytes={self.max_inline_bytes}); raise "
                "max_inline_bytes to read it"
            )
        data = _decoded(
            element.text or "", nbytes, zipped=tag == "missingdata" and nbytes > dtype.itemsize
        )
        if len(data) != nbytes:
            raise Refused(
                f"has {len(data)} bytes of values in dmrpp:{tag} where its shape {list(shape)} "
                f"of {dtype} takes {nbytes}"
            )
        codec = {"name": "bytes", "configuration": {"endian": endian} if endian else {}}
        chunk_shape = tuple(max(n, 1) for n in shape)
        metadata = array_metadata({**base, "chunk_grid": regular(chunk_shape), "codecs": [codec]})
        grid = tuple(0 if n == 0 else 1 for n in shape)
        present = nbytes > 0
        index = np.full(grid, INLINE if present else MISSING, dtype=np.uint32)
        zeros = np.zeros(grid, dtype=np.uint64)
        inline = {(0,) * len(shape): data} if present else {}
        manifest = ChunkManifest(
            paths=[], path_index=index, offsets=zeros, lengths=zeros, inline=inline
        )
        return ManifestArray(metadata=metadata, manifest=manifest)

    def fingerprints(self, refs: _References) -> dict[str, Fingerprint]:
        """The fingerprint of each file ``refs`` point into, checked to hold every chunk."""
        prints = {path: self.fingerprint(path) for path in refs.paths}
        for i, path in enumerate(refs.paths):
            size = prints[path].size
            mine = refs.index == i
            if size is None or not mine.any():
                continue
            ends = refs.offsets[mine] + refs.lengths[mine]
            if int(ends.max()) > size:
                raise Refused(
                    f"has a chunk ending at byte {int(ends.max())} of {path!r}, which holds "
                    f"{size} bytes: the DMR++ does not describe this file"
                )
        return prints


@dataclass
class _References:
    """The ``dmrpp:chunk`` elements of one variable, as columns."""

    paths: list[str]
    index: np.ndarray
    offsets: np.ndarray
    lengths: np.ndarray
    positions: list[str]

    @classmethod
    def of(cls, elements: list[Element], storage: Storage, ndim: int) -> _References:
        """One pass per column, in C where ElementTree allows (a DMR++ lists many chunks)."""
        offsets = [c.get("offset") for c in elements]
        lengths = [c.get("nBytes") for c in elements]
        positions = [c.get("chunkPositionInArray", "") for c in elements] if ndim else []
        if None in offsets or None in lengths:
            raise Refused("has a dmrpp:chunk without 'offset' or 'nBytes'")
        paths = [storage.data_path]
        index = np.zeros(len(elements), dtype=np.uint32)
        usual = 3 if ndim else 2  # offset, nBytes (and chunkPositionInArray)
        for i in [i for i, c in enumerate(elements) if len(c.attrib) > usual]:
            index[i] = cls._extra(elements[i].attrib, storage, paths)
        try:
            offsets_col = np.array(offsets, dtype=np.uint64)
            lengths_col = np.array(lengths, dtype=np.uint64)
        except (ValueError, OverflowError):
            raise Refused("has a dmrpp:chunk whose offset or nBytes is not a byte count") from None
        if np.any(lengths_col == 0):
            raise Refused("has a dmrpp:chunk of 0 bytes")
        if len(paths) > 1 and not np.any(index == 0):  # every chunk names its own file
            paths, index = paths[1:], index - 1
        return cls(paths, index, offsets_col, lengths_col, positions)  # type: ignore[arg-type]

    @staticmethod
    def _extra(attrib: dict[str, str], storage: Storage, paths: list[str]) -> int:
        """The path-table row of a chunk with more than the usual attributes (an href, a mask)."""
        mask = attrib.get("fm")
        if mask not in (None, "0"):
            raise Refused(f"has a chunk that skipped filters (filter mask {mask})")
        href = attrib.get("href")
        if href is None:
            return 0
        trusted = (attrib.get("trust") or attrib.get(f"{DMRPP}trust")) == "true"
        path = storage.resolve(href, trusted)
        if path not in paths:
            paths.append(path)
        return paths.index(path)


def _grid_positions(
    positions: list[str], chunk_shape: tuple[int, ...], grid: tuple[int, ...]
) -> np.ndarray:
    """The flat grid positions of chunks from their ``chunkPositionInArray`` (element indices)."""
    ndim = len(chunk_shape)
    text = ",".join(positions).replace("[", "").replace("]", "").replace(" ", "")
    try:
        starts = np.array(text.split(",") if text else [], dtype=np.int64).reshape(-1, ndim)
    except (ValueError, OverflowError):
        raise Refused("has a chunkPositionInArray that is not a list of indices") from None
    if len(starts) != len(positions):
        raise Refused(f"has a chunkPositionInArray that does not hold {ndim} indices")
    cells, rest = np.divmod(starts, np.array(chunk_shape, dtype=np.int64))
    if np.any(rest) or np.any(starts < 0) or np.any(cells >= np.array(grid, dtype=np.int64)):
        bad = starts[
            np.any(rest, axis=1)
            | np.any(cells >= np.array(grid), axis=1)
            | np.any(starts < 0, axis=1)
        ][0]
        raise Refused(
            f"has a chunk at {bad.tolist()}, which is not the start of a chunk of "
            f"{list(chunk_shape)} inside its shape"
        )
    return np.ravel_multi_index(tuple(cells.T), grid) if len(cells) else np.zeros(0, np.int64)


def _chunk_shape(text: str, ndim: int) -> tuple[int, ...]:
    try:
        shape = tuple(int(v) for v in text.split())
    except ValueError:
        raise Refused(f"has chunkDimensionSizes {text!r}, which are not sizes") from None
    if len(shape) != ndim or any(n < 1 for n in shape):
        raise Refused(f"has chunkDimensionSizes {text!r}, which do not fit its {ndim} dimensions")
    return shape


def _locate(refs: _References, position: int) -> tuple[int, int]:
    """The (piece, offset in it) that byte ``position`` of contiguous data lives at."""
    for piece, length in enumerate(refs.lengths):
        if position < int(length):
            return piece, position
        position -= int(length)
    raise Refused("keeps less contiguous data than its shape needs")


def _endian(byte_order: str | None, dtype: np.dtype) -> str | None:
    """The bytes codec's byte order (None where it does not matter, as in the HDF5 scan)."""
    if dtype.itemsize == 1 or dtype.kind not in "iuf":
        return None
    if byte_order in (None, "LE"):
        return "little"
    if byte_order == "BE":
        return "big"
    raise Refused(f"has byteOrder {byte_order!r} (DMR++ knows 'LE' and 'BE')")


def _decoded(text: str, nbytes: int, *, zipped: bool) -> bytes:
    """Base64 text (zlib-compressed when ``zipped``) as at most ``nbytes + 1`` bytes."""
    if len(text) > 4 * (nbytes + 3) // 3 + 64 and not zipped:
        raise Refused(f"has more inline values than its {nbytes} bytes")
    try:
        raw = base64.b64decode("".join(text.split()), validate=True)
    except (binascii.Error, ValueError):
        raise Refused("has inline values that are not base64") from None
    if not zipped:
        return raw
    inflater = zlib.decompressobj()
    try:
        return inflater.decompress(raw, nbytes + 1)
    except zlib.error as e:
        raise Refused(f"has inline values that do not inflate ({e})") from None
