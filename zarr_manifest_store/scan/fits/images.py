"""FITS images as Zarr arrays: data types, packing (BSCALE / BZERO / BLANK), and the arrays of
uncompressed image HDUs, whose data is one contiguous big-endian block split into chunks.

The values are those ``astropy.io.fits`` gives by default (``hdu.data``):

- ``BZERO = 2**(BITPIX-1)``, ``BSCALE = 1`` (the unsigned-integer convention) gives
  ``uint16`` / ``uint32``, and ``BITPIX = 8``, ``BZERO = -128`` gives ``int8``: stored as
  that type, decoded by numcodecs' ``fixedscaleoffset`` (exact for these widths; the 64-bit
  case has no exact codec and is refused);
- other ``BSCALE`` / ``BZERO`` become the CF ``scale_factor`` / ``add_offset`` attributes,
  and ``BLANK`` the ``_FillValue`` of an integer image (xarray masks those pixels to NaN, as
  astropy does when it scales).
"""

from __future__ import annotations

import copy
import functools
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
from zarr.dtype import parse_dtype

from zarr_manifest_store._zarr import ArrayV3Metadata
from zarr_manifest_store.array import ManifestArray, parse_array_metadata
from zarr_manifest_store.cf import fill_value_attribute
from zarr_manifest_store.manifest import ChunkManifest, Fingerprint
from zarr_manifest_store.scan.common import Refused, rows_per_chunk

__all__ = ["BITPIX_DTYPES", "Packing", "image_array", "packing"]

BITPIX_DTYPES = {
    8: np.dtype("u1"),
    16: np.dtype(">i2"),
    32: np.dtype(">i4"),
    64: np.dtype(">i8"),
    -32: np.dtype(">f4"),
    -64: np.dtype(">f8"),
}
"""How FITS stores each BITPIX: big-endian, unsigned only for bytes."""

_PSEUDO_UNSIGNED = {8: np.dtype("int8"), 16: np.dtype("uint16"), 32: np.dtype("uint32")}


@dataclass(frozen=True)
class Packing:
    """How an image's stored values decode: its Zarr data type, array-to-array codecs, CF attributes."""

    dtype: np.dtype
    filters: tuple[dict[str, Any], ...]
    attributes: dict[str, Any]


def packing(bitpix: int, header: Mapping[str, Any]) -> Packing:
    """The packing of an image of ``bitpix`` whose (image) header is ``header``, as astropy decodes it."""
    if bitpix not in BITPIX_DTYPES:
        raise Refused(f"has BITPIX = {bitpix!r}; FITS allows 8, 16, 32, 64, -32 and -64")
    stored = BITPIX_DTYPES[bitpix]
    bscale, bzero, blank = header.get("BSCALE", 1), header.get("BZERO", 0), header.get("BLANK")
    for key, value in (("BSCALE", bscale), ("BZERO", bzero), ("BLANK", blank)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
            raise Refused(f"has {key} = {value!r}, not a number")
    if bscale == 1 and bitpix > 0 and bzero == (-128 if bitpix == 8 else 1 << (bitpix - 1)):
        return _pseudo_unsigned(bitpix, stored)
    attributes: dict[str, Any] = {}
    if bscale != 1:
        attributes["scale_factor"] = float(bscale)
    if bzero != 0:
        attributes["add_offset"] = float(bzero)
    # astropy masks BLANK only in integer images it converts to floats (and never a BLANK of 0)
    if blank and bitpix > 0:
        if not float(blank).is_integer():
            raise Refused(f"has BLANK = {blank!r}, not an integer")
        attributes["_FillValue"] = fill_value_attribute(int(blank), stored)
    return Packing(stored, (), attributes)


def _pseudo_unsigned(bitpix: int, stored: np.dtype) -> Packing:
    """The unsigned-integer convention (and ``int8`` for bytes), as a ``fixedscaleoffset`` filter."""
    if bitpix not in _PSEUDO_UNSIGNED:
        raise Refused(
            "is a 64-bit unsigned image (BZERO = 2**63): no Zarr codec adds 2**63 exactly"
        )
    decoded = _PSEUDO_UNSIGNED[bitpix]
    offset = -128 if bitpix == 8 else 1 << (bitpix - 1)
    codec = {
        "name": "numcodecs.fixedscaleoffset",
        "configuration": {
            "offset": offset,
            "scale": 1,
            "dtype": decoded.name,
            "astype": stored.newbyteorder("=").name,
        },
    }
    return Packing(decoded, (codec,), {})


def array_metadata(
    shape: tuple[int, ...],
    chunk_grid: dict[str, Any],
    pack: Packing,
    codecs: list[dict[str, Any]],
    attributes: dict[str, Any],
    dimension_names: list[str],
) -> ArrayV3Metadata:
    """Zarr v3 metadata of an image: the packing's filters, then ``codecs``.

    zarr's parsing costs more than the rest of describing a small image, and the
    thousands of cutouts of one file differ only in their attributes and dimension
    names: the rest is parsed once, and those two set on a copy, as zarr's own
    ``__init__`` sets them on its frozen instance.
    """
    data_type, fill_value = _zarr_dtype(pack.dtype)
    doc = {
        "shape": list(shape),
        "data_type": data_type,
        "chunk_grid": chunk_grid,
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": fill_value,
        "codecs": [*pack.filters, *codecs],
    }
    parsed = copy.copy(_parsed(json.dumps(doc)))
    object.__setattr__(parsed, "attributes", {**attributes, **pack.attributes})
    object.__setattr__(parsed, "dimension_names", tuple(dimension_names))
    return parsed


@functools.cache
def _zarr_dtype(dtype: np.dtype) -> tuple[Any, Any]:
    """The Zarr v3 data type of ``dtype`` and its fill value 0, as JSON."""
    zdtype = parse_dtype(dtype, zarr_format=3)
    return zdtype.to_json(zarr_format=3), zdtype.to_json_scalar(0, zarr_format=3)


@functools.lru_cache(maxsize=256)
def _parsed(doc: str) -> ArrayV3Metadata:
    return parse_array_metadata(json.loads(doc))


def image_array(
    *,
    path: str,
    fingerprint: Fingerprint,
    begin: int,
    shape: tuple[int, ...],
    pack: Packing,
    stored: np.dtype,
    attributes: dict[str, Any],
    dimension_names: list[str],
    chunk_bytes: int | None,
) -> ManifestArray:
    """An uncompressed image: its block from ``begin`` on, split along the first axis."""
    size: int = fingerprint.size  # type: ignore[assignment]  # the scan checked it
    nbytes = math.prod(shape) * stored.itemsize
    if begin + nbytes > size:
        raise Refused(
            f"is truncated: its data ends at byte {begin + nbytes}, the file has {size} bytes"
        )
    row_bytes = nbytes // shape[0]
    rows = rows_per_chunk(shape[0], row_bytes, target=chunk_bytes, room_after=size - begin - nbytes)
    count = -(-shape[0] // rows)
    grid = (count, *(1 for _ in shape[1:]))
    offsets = (begin + rows * row_bytes * np.arange(count, dtype=np.uint64)).reshape(grid)
    manifest = ChunkManifest(
        paths=[path],
        path_index=np.zeros(grid, dtype=np.uint32),
        offsets=offsets,
        lengths=np.full(grid, rows * row_bytes, dtype=np.uint64),
        fingerprints={path: fingerprint},
    )
    regular = {"name": "regular", "configuration": {"chunk_shape": [rows, *shape[1:]]}}
    codecs = [{"name": "bytes", "configuration": {"endian": "big"}}]
    metadata = array_metadata(shape, regular, pack, codecs, attributes, dimension_names)
    return ManifestArray(metadata=metadata, manifest=manifest)
