"""Tile-compressed FITS images (``CompImageHDU``): one chunk per tile, exact or refused.

Such an image is a binary table with one row per tile; the row's ``COMPRESSED_DATA``
descriptor (``P``: two 32-bit, ``Q``: two 64-bit integers) gives the length and heap
offset of the tile's compressed bytes. Tiles are numbered with ``ZTILE1``'s axis varying
fastest, and a tile at the image's edge holds only the pixels inside it: such tiles become
the smaller last chunks of a rectilinear grid. Every tile decodes with the same Zarr codecs:

- ``GZIP_1``: gzip of the big-endian pixels (zarr's ``gzip``);
- ``GZIP_2``: the same, bytes shuffled first (numcodecs' ``shuffle``, then ``gzip``);
- ``RICE_1``: the Rice codec of :mod:`.codecs` (imagecodecs' decoder);
- ``NOCOMPRESS``: the pixels themselves.

``PLIO_1`` and ``HCOMPRESS_1`` have no codec here, quantized floats (``ZSCALE`` /
``ZZERO`` columns) have a scale per tile that no Zarr codec can take, and a tile stored
in another column than ``COMPRESSED_DATA`` decodes with other codecs: all are refused.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.cf import fill_value_attribute
from zarr_manifest_store.format_codecs.rice import MISSING, RICE_CODEC_NAME, rice_available
from zarr_manifest_store.manifest import ChunkManifest, Fingerprint
from zarr_manifest_store.ops.grid import chunk_grid
from zarr_manifest_store.scan.common import Refused
from zarr_manifest_store.scan.fits.images import Packing, array_metadata, packing

__all__ = ["compressed_array"]

_FIELD_BYTES = {"L": 1, "B": 1, "I": 2, "J": 4, "K": 8, "A": 1, "E": 4, "D": 8, "C": 8, "M": 16}
_TFORM = re.compile(r"\s*(\d*)([LXBIJKAEDCMPQ])([LXBIJKAEDCM]?)")
_UNQUANTIZABLE = ("ZSCALE", "ZZERO")


def compressed_array(
    *,
    path: str,
    fingerprint: Fingerprint,
    begin: int,
    table: Mapping[str, Any],
    image: Mapping[str, Any],
    read: Callable[[int, int], bytes],
    attributes: dict[str, Any],
    dimension_name: Callable[[int], str],
) -> ManifestArray:
    """The array of a tile-compressed image whose table data starts at ``begin``.

    ``table`` is the binary table's header, ``image`` the image header astropy
    gives; ``read(offset, length)`` reads the file.
    """
    algorithm = str(table.get("ZCMPTYPE", "")).strip()
    bitpix = table.get("ZBITPIX")
    shape_fits = [_positive(table, f"ZNAXIS{i}") for i in range(1, _positive(table, "ZNAXIS") + 1)]
    tiles_fits = [
        min(int(table.get(f"ZTILE{i}", n if i == 1 else 1)), n) or 1
        for i, n in enumerate(shape_fits, start=1)
    ]
    columns = _columns(table)
    if any(name in columns for name in _UNQUANTIZABLE):
        raise Refused(
            f"holds quantized floats ({table.get('ZQUANTIZ', 'NO_DITHER')}): each tile has its "
            f"own scale and zero (the ZSCALE / ZZERO columns), which one Zarr codec cannot take"
        )
    pack = packing(bitpix, image)  # type: ignore[arg-type]
    codecs = _codecs(algorithm, table, bitpix)  # type: ignore[arg-type]
    shape = tuple(reversed(shape_fits))
    tile = tuple(reversed(tiles_fits))
    grid = tuple(-(-n // t) for n, t in zip(shape, tile, strict=True))
    if _positive(table, "NAXIS2") != math.prod(grid):
        raise Refused(f"has {table['NAXIS2']} table rows for {math.prod(grid)} tiles")
    rows = np.frombuffer(read(begin, _positive(table, "NAXIS1") * table["NAXIS2"]), dtype=np.uint8)
    rows = rows.reshape(table["NAXIS2"], table["NAXIS1"])
    pack = _with_zblank(pack, table, image, columns, rows, bitpix)  # type: ignore[arg-type]
    offsets, lengths = _tile_ranges(table, columns, rows, begin, algorithm)
    manifest = ChunkManifest(
        paths=[path],
        path_index=np.zeros(grid, dtype=np.uint32),
        offsets=offsets.reshape(grid),
        lengths=lengths.reshape(grid),
        fingerprints={path: fingerprint},
    )
    edges = [
        tuple(min(t, n - i * t) for i in range(g))
        for n, t, g in zip(shape, tile, grid, strict=True)
    ]
    names = [dimension_name(i) for i in range(len(shape), 0, -1)]
    metadata = array_metadata(shape, chunk_grid(edges, shape), pack, codecs, attributes, names)
    return ManifestArray(metadata=metadata, manifest=manifest)


def _codecs(algorithm: str, table: Mapping[str, Any], bitpix: int) -> list[dict[str, Any]]:
    """The codecs after the packing's filters that decode one tile of ``algorithm``."""
    itemsize = abs(bitpix) // 8
    raw = {"name": "bytes", "configuration": {"endian": "big"}}
    gzip = {"name": "gzip", "configuration": {"level": 6}}
    if algorithm == "GZIP_1":
        return [raw, gzip]
    if algorithm == "GZIP_2":
        shuffle = {"name": "numcodecs.shuffle", "configuration": {"elementsize": itemsize}}
        return [raw, shuffle, gzip] if itemsize > 1 else [raw, gzip]
    if algorithm == "NOCOMPRESS":
        return [raw]
    if algorithm in ("RICE_1", "RICE_ONE"):
        if bitpix < 0:
            raise Refused(f"is a float image compressed with {algorithm} without quantizing it")
        if not rice_available():
            raise Refused(f"is compressed with {algorithm}: {MISSING}")
        blocksize = _setting(table, "BLOCKSIZE", 32)
        bytepix = _setting(table, "BYTEPIX", 4)
        if bytepix not in (1, 2, 4) or not 1 <= blocksize <= 2**16:
            raise Refused(f"has RICE_1 settings BYTEPIX = {bytepix}, BLOCKSIZE = {blocksize}")
        rice = {
            "name": RICE_CODEC_NAME,
            "configuration": {"blocksize": blocksize, "bytepix": bytepix},
        }
        return [raw, rice]
    if algorithm in ("PLIO_1", "HCOMPRESS_1"):
        raise Refused(f"is compressed with {algorithm}, for which no Zarr codec exists")
    raise Refused(f"has ZCMPTYPE = {algorithm!r}, not a FITS tile compression")


def _with_zblank(
    pack: Packing,
    table: Mapping[str, Any],
    image: Mapping[str, Any],
    columns: dict[str, tuple[int, str, int]],
    rows: np.ndarray,
    bitpix: int,
) -> Packing:
    """The packing with ZBLANK applied as astropy applies it to the decoded tiles.

    Integer pixels equal to a tile's ZBLANK become the header's ZBLANK (or BLANK), which
    the image's own BLANK then masks; float pixels equal to it become NaN.
    """
    blank = table.get("ZBLANK", image.get("BLANK"))
    if "ZBLANK" in columns:
        values = _column(columns, "ZBLANK", rows)
        if blank is None or np.any(values.ravel() != blank):
            raise Refused("has a ZBLANK column whose values differ from the header's ZBLANK")
    if blank is None or bitpix > 0:
        return pack
    attributes = {**pack.attributes, "_FillValue": fill_value_attribute(blank, pack.dtype)}
    return Packing(pack.dtype, pack.filters, attributes)


def _tile_ranges(
    table: Mapping[str, Any],
    columns: dict[str, tuple[int, str, int]],
    rows: np.ndarray,
    begin: int,
    algorithm: str,
) -> tuple[np.ndarray, np.ndarray]:
    """(offsets, lengths) of every tile's compressed bytes in the file."""
    if columns.get("COMPRESSED_DATA", (0, ""))[1] == "":
        raise Refused("has no COMPRESSED_DATA column of descriptors")
    descriptors = _column(columns, "COMPRESSED_DATA", rows)
    lengths = descriptors[:, 0] * columns["COMPRESSED_DATA"][2]
    heap_offsets = descriptors[:, 1]
    empty = np.flatnonzero(lengths == 0)
    if empty.size:
        lengths, heap_offsets = _fallbacks(columns, rows, algorithm, empty, lengths, heap_offsets)
    heap = begin + int(table.get("THEAP", table["NAXIS1"] * table["NAXIS2"]))
    heap_end = begin + table["NAXIS1"] * table["NAXIS2"] + int(table.get("PCOUNT", 0))
    if lengths.min(initial=0) < 0 or heap_offsets.min(initial=0) < 0:
        raise Refused("has a tile with a negative length or heap offset")
    ends = heap + heap_offsets + lengths
    if ends.size and int(ends.max()) > heap_end:
        row = int(np.argmax(ends > heap_end))
        raise Refused(f"has tile {row} ending at byte {int(ends[row])}, past its heap ({heap_end})")
    return (heap + heap_offsets).astype(np.uint64), lengths.astype(np.uint64)


def _fallbacks(
    columns: dict[str, tuple[int, str, int]],
    rows: np.ndarray,
    algorithm: str,
    empty: np.ndarray,
    lengths: np.ndarray,
    heap_offsets: np.ndarray,
) -> tuple[np.ndarray, np.ndarray]:
    """Tiles stored in GZIP_COMPRESSED_DATA: exact where the image's codecs are GZIP_1's."""
    row = int(empty[0])
    if "GZIP_COMPRESSED_DATA" not in columns:
        where = "UNCOMPRESSED_DATA" if "UNCOMPRESSED_DATA" in columns else "no column"
        raise Refused(f"has tile {row} stored in {where}, not compressed like the others")
    if algorithm != "GZIP_1":
        raise Refused(
            f"has tile {row} gzip-compressed (GZIP_COMPRESSED_DATA), the others with {algorithm}"
        )
    if columns["GZIP_COMPRESSED_DATA"][1] == "":
        raise Refused("has a GZIP_COMPRESSED_DATA column that holds no descriptors")
    fallback = _column(columns, "GZIP_COMPRESSED_DATA", rows)
    lengths, heap_offsets = lengths.copy(), heap_offsets.copy()
    lengths[empty] = fallback[empty, 0] * columns["GZIP_COMPRESSED_DATA"][2]
    heap_offsets[empty] = fallback[empty, 1]
    if np.any(lengths[empty] == 0):
        raise Refused(f"has tile {int(empty[lengths[empty] == 0][0])} with no data")
    return lengths, heap_offsets


def _columns(table: Mapping[str, Any]) -> dict[str, tuple[int, str, int]]:
    """Each column's (byte offset in a row, descriptor type P or Q or '', element bytes)."""
    found: dict[str, tuple[int, str, int]] = {}
    offset = 0
    for i in range(1, int(table.get("TFIELDS", 0)) + 1):
        tform = str(table.get(f"TFORM{i}", ""))
        match = _TFORM.match(tform)
        if match is None:
            raise Refused(f"has TFORM{i} = {tform!r}, not a binary table format")
        repeat, code, element = int(match[1] or 1), match[2], match[3]
        if code in "PQ":
            found[str(table.get(f"TTYPE{i}", "")).strip()] = (
                offset,
                code,
                _FIELD_BYTES.get(element, 1),
            )
            offset += repeat * (8 if code == "P" else 16)
            continue
        found[str(table.get(f"TTYPE{i}", "")).strip()] = (offset, "", _FIELD_BYTES.get(code, 1))
        offset += -(-repeat // 8) if code == "X" else repeat * _FIELD_BYTES[code]
    if offset != table.get("NAXIS1"):
        raise Refused(f"has rows of {table.get('NAXIS1')} bytes; its columns take {offset}")
    return found


def _column(columns: dict[str, tuple[int, str, int]], name: str, data: np.ndarray) -> np.ndarray:
    """A column's values in every row: (rows, 2) for a descriptor, (rows,) otherwise."""
    offset, kind, element = columns[name]
    if kind:
        width = 4 if kind == "P" else 8
        field = data[:, offset : offset + 2 * width]
        return np.ascontiguousarray(field).view(f">i{width}").astype(np.int64)
    dtype = {1: ">u1", 2: ">i2", 4: ">i4", 8: ">i8"}[element]
    return np.ascontiguousarray(data[:, offset : offset + element]).view(dtype).ravel()


def _setting(table: Mapping[str, Any], name: str, default: int) -> int:
    """A compression parameter: the ZVALn of the ZNAMEn that names it (as astropy looks it up)."""
    for i in range(1, 1000):
        key = table.get(f"ZNAME{i}")
        if key is None:
            break
        if str(key).strip().lower() == name.lower():
            return int(table[f"ZVAL{i}"])
    return default


def _positive(table: Mapping[str, Any], key: str) -> int:
    value = table.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Refused(f"has {key} = {value!r}, not a count")
    return value
