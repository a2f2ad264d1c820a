"""Zarr v2 <-> v3 array metadata: ``.zarray`` / ``.zattrs`` documents and ``zarr.json``.

Kerchunk references describe a Zarr **v2** hierarchy, so both their import
(``scan/kerchunk.py``) and their export (``writers/kerchunk.py``) translate
array metadata between the two formats, codecs and fill values included; so
will a scanner of Zarr v2 stores. What one side cannot express is refused with
an :class:`~zarr_manifest_store.UnsupportedDatasetError` naming the array.
"""

from __future__ import annotations

import base64
import math
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numcodecs
import numpy as np
from zarr.codecs import BytesCodec, TransposeCodec
from zarr.dtype import parse_dtype
from zarr.errors import UnknownCodecError
from zarr.registry import get_codec_class

from zarr_manifest_store._zarr import ArrayV2Metadata, ArrayV3Metadata
from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.cf import fill_value_attribute
from zarr_manifest_store.codecs import encode_chunk
from zarr_manifest_store.errors import UnsupportedDatasetError
from zarr_manifest_store.format_codecs.hdf5_filters import (
    Hdf5BitshuffleCodec,
    Hdf5Lz4Codec,
    Hdf5LzfCodec,
    default_block_size,
)

__all__ = ["MAX_FILL_CHUNK", "v2_to_v3", "v3_to_v2"]

MAX_FILL_CHUNK = 2**20
"""The largest encoded fill chunk written inline for a missing chunk that Zarr v2 would fill otherwise."""

# Codecs zarr-python implements natively in v3, by numcodecs id (the rest are "numcodecs.<id>").
_CORE_CODECS = ("gzip", "zstd", "blosc")
_BLOSC_SHUFFLE = ("noshuffle", "shuffle", "bitshuffle")
_VLEN = {"vlen-utf8", "vlen-bytes"}


# ---------------------------------------------------------------------- Zarr v3 -> v2


def v3_to_v2(
    name: str, array: ManifestArray
) -> tuple[dict[str, Any], dict[str, Any], bytes | None]:
    """``.zarray`` and ``.zattrs`` documents for an array, and the bytes of an encoded fill chunk.

    Zarr v2 readers (and xarray on them) take the v2 ``fill_value`` as the CF
    ``_FillValue``; where that differs from the value Zarr v3 fills missing
    chunks with, missing chunks must be written inline as encoded fill chunks
    (the third item, else None).

    >>> zarray, zattrs, _ = v3_to_v2("t2m", zms.scan("data/era_2026-01-01.nc")["t2m"])
    >>> zarray["compressor"], zattrs["_ARRAY_DIMENSIONS"]
    ({'id': 'zlib', 'level': 4}, ['time', 'lat', 'lon'])
    """
    meta = array.metadata
    grid = meta.chunk_grid.to_dict()
    if grid["name"] != "regular":  # type: ignore[index]
        raise UnsupportedDatasetError(
            f"array {name!r} has a {grid['name']} chunk grid (chunks of several sizes, e.g. "  # type: ignore[index]
            f"from concatenating ragged files), which Zarr v2 / kerchunk references cannot "
            f"express; export it as a chunk-manifest document instead, or concatenate files whose "
            f"lengths are multiples of the chunk size"
        )
    filters, endian, compressor, order = _v2_codecs(name, meta)
    native = meta.dtype.to_native_dtype()
    if endian is not None and native.itemsize > 1 and native.kind not in "SUVO":
        native = native.newbyteorder(">" if endian == "big" else "<")
    dtype = parse_dtype(native, zarr_format=3)
    attributes = dict(meta.attributes)
    cf_fill = _decode_fill_attribute(name, attributes.pop("_FillValue", None), native)
    fill = cf_fill
    if fill is None and native.kind in "fc" and np.isnan(meta.fill_value):
        fill = meta.fill_value  # NaN masks nothing that is not already NaN
    hdf5_filters, filters, compressor = _apart(filters, compressor)
    v2 = ArrayV2Metadata(
        shape=meta.shape,
        dtype=dtype,
        chunks=tuple(grid["configuration"]["chunk_shape"]),  # type: ignore[index]
        fill_value=fill,
        order=order,
        compressor=compressor,
        filters=filters or None,
        dimension_separator=".",
    )
    zarray = {k: v for k, v in v2.to_dict().items() if k != "attributes"}
    zarray["filters"], zarray["compressor"] = hdf5_filters.restored(
        zarray["filters"], zarray["compressor"]
    )
    names = meta.dimension_names
    if names is not None and all(isinstance(n, str) for n in names):
        attributes["_ARRAY_DIMENSIONS"] = list(names)
    fill_chunk = None
    if array.manifest.nchunks < math.prod(array.manifest.shape) and not _same_fill(
        meta.fill_value, fill if fill is not None else dtype.default_scalar()
    ):
        fill_chunk = _encoded_fill_chunk(name, meta)
    return zarray, attributes, fill_chunk


def _v2_codecs(
    name: str, meta: ArrayV3Metadata
) -> tuple[list[dict[str, Any]], str | None, dict[str, Any] | None, Literal["C", "F"]]:
    """(filters, endian, compressor, order) of Zarr v2 equivalent to the v3 codec chain."""
    order: Literal["C", "F"] = "C"
    filters: list[dict[str, Any]] = []
    after: list[dict[str, Any]] = []
    endian = None
    for codec in meta.codecs:
        spec = codec.to_dict()
        codec_name = spec["name"]
        config = dict(spec.get("configuration") or {})  # type: ignore[call-overload]
        if isinstance(codec, TransposeCodec):
            if list(codec.order) != list(range(len(meta.shape)))[::-1] or filters:
                raise UnsupportedDatasetError(
                    f"array {name!r}: the transpose codec with order {list(codec.order)} has no "
                    f"Zarr v2 equivalent (only the reversed order, v2's order='F', has)"
                )
            order = "F" if len(meta.shape) > 1 else "C"
        elif isinstance(codec, BytesCodec):
            endian = codec.endian
        elif codec_name in _VLEN:
            filters.append({"id": codec_name})
        elif codec_name == "sharding_indexed":
            raise UnsupportedDatasetError(
                f"array {name!r} is sharded, which Zarr v2 / kerchunk references cannot express"
            )
        else:
            v2 = _v2_codec(name, codec_name, config)
            kind = get_codec_class(codec_name).__mro__
            is_bytes = any(c.__name__ == "BytesBytesCodec" for c in kind)
            (after if is_bytes else filters).append(v2)
    compressor = after.pop() if after else None
    return filters + after, endian, compressor, order


def _v2_codec(name: str, codec_name: str, config: dict[str, Any]) -> dict[str, Any]:
    """The numcodecs config of one v3 codec; refused if numcodecs has no such codec."""
    if codec_name in _HDF5_FILTERS:
        return _hdf5_filter(name, codec_name, config)
    if codec_name.startswith("numcodecs."):
        v2 = {"id": codec_name.removeprefix("numcodecs."), **config}
    elif codec_name == "blosc":
        shuffle = _BLOSC_SHUFFLE.index(config["shuffle"])
        v2 = {"id": "blosc", **{k: config[k] for k in ("cname", "clevel", "blocksize")}}
        v2["shuffle"] = shuffle
    elif codec_name == "crc32c":
        v2 = {"id": "crc32c", "location": "end"}
    elif codec_name in ("gzip", "zstd"):
        v2 = {"id": codec_name, **config}
    else:
        v2 = {"id": codec_name}
    try:
        numcodecs.get_codec(dict(v2))
    except (ValueError, TypeError, KeyError) as e:
        raise UnsupportedDatasetError(
            f"array {name!r}: the codec {codec_name!r} has no Zarr v2 (numcodecs) equivalent: {e}"
        ) from e
    return v2


_HDF5_FILTERS = (Hdf5LzfCodec.name, Hdf5Lz4Codec.name, Hdf5BitshuffleCodec.name)


def _hdf5_filter(name: str, codec_name: str, config: dict[str, Any]) -> dict[str, Any]:
    """The imagecodecs numcodecs codec that decodes an HDF5 filter's chunks exactly.

    Readers of the references register imagecodecs' numcodecs codecs (the
    ``imagecodecs-numcodecs`` package, or ``imagecodecs.numcodecs.register_codecs()``).
    """
    if codec_name == Hdf5LzfCodec.name:
        return {"id": "imagecodecs_lzf", "header": False}
    if codec_name == Hdf5Lz4Codec.name:
        return {"id": "imagecodecs_lz4h5"}
    if config.get("compression") == "none":
        itemsize, blocksize = config["element_size"], config["block_size"]
        return {"id": "imagecodecs_bitshuffle", "itemsize": itemsize, "blocksize": blocksize}
    raise UnsupportedDatasetError(
        f"array {name!r}: the codec {codec_name!r} (HDF5's bitshuffle filter with "
        f"{config.get('compression')} compression) has no Zarr v2 (numcodecs) equivalent"
    )


def _decode_fill_attribute(name: str, value: Any, dtype: np.dtype) -> Any:
    """The CF ``_FillValue`` from its Zarr v3 attribute (the inverse of ``fill_value_attribute``)."""
    if value is None:
        return None
    try:
        if dtype.kind == "f" and isinstance(value, str):
            return struct.unpack("<d", base64.standard_b64decode(value))[0]
        if dtype.kind == "c" and isinstance(value, list):
            real, imag = (struct.unpack("<d", base64.standard_b64decode(v))[0] for v in value)
            return complex(real, imag)
        if dtype.kind == "S" and isinstance(value, str):
            return base64.standard_b64decode(value)
        return np.asarray(value).astype(dtype).item()
    except (ValueError, TypeError, struct.error) as e:
        raise UnsupportedDatasetError(
            f"array {name!r}: its _FillValue attribute {value!r} does not decode as a {dtype} "
            f"value ({e})"
        ) from e


def _same_fill(a: Any, b: Any) -> bool:
    if isinstance(a, float | np.floating) and isinstance(b, float | np.floating):
        return bool(a == b or (np.isnan(a) and np.isnan(b)))
    if isinstance(a, complex | np.complexfloating):
        return bool(np.array_equal(np.asarray(a), np.asarray(b), equal_nan=True))
    return bool(np.asarray(a == b).all())


def _encoded_fill_chunk(name: str, meta: ArrayV3Metadata) -> bytes:
    """One chunk of the v3 fill value, encoded with the array's codecs (for missing chunks)."""
    chunk_shape = meta.chunk_grid.to_dict()["configuration"]["chunk_shape"]  # type: ignore[index]
    data = encode_chunk(meta, tuple(chunk_shape), meta.fill_value)
    if len(data) > MAX_FILL_CHUNK:
        raise UnsupportedDatasetError(
            f"array {name!r} has missing chunks that Zarr v3 fills with {meta.fill_value!r}, but "
            f"its _FillValue differs, and Zarr v2 has one value for both; writing each missing "
            f"chunk inline would take {len(data)} bytes. Set the _FillValue attribute to the "
            f"array's fill value (or drop it) before exporting"
        )
    return data


# ---------------------------------------------------------------------- Zarr v2 -> v3


def v2_to_v3(name: str, zarray: Mapping[str, Any], zattrs: Mapping[str, Any]) -> dict[str, Any]:
    """A ``zarr.json`` dict for a Zarr v2 array (``.zarray`` and ``.zattrs`` documents).

    Filters and compressor become v3 codecs (zarr's own ``gzip``, ``zstd`` and
    ``blosc``, else ``numcodecs.<id>``); ``order="F"`` a reversing transpose;
    ``_ARRAY_DIMENSIONS`` the ``dimension_names``. The v2 ``fill_value``,
    which xarray reads as the CF ``_FillValue``, is kept as that attribute
    too, so the array decodes as it does from the v2 references. Raises
    ``UnsupportedDatasetError`` naming the array for what v3 cannot express.

    >>> v2_to_v3("t", {"zarr_format": 2, "shape": [4], "chunks": [2], "dtype": "<f4",
    ...     "fill_value": None, "order": "C", "filters": None, "compressor": {"id": "zlib"}},
    ...     {"_ARRAY_DIMENSIONS": ["x"]})["codecs"]  # doctest: +NORMALIZE_WHITESPACE
    [{'name': 'bytes', 'configuration': {'endian': 'little'}},
     {'name': 'numcodecs.zlib', 'configuration': {'level': 1}}]
    """
    hdf5_filters, filters, compressor = _apart(zarray.get("filters"), zarray.get("compressor"))
    parsed = {**zarray, "filters": filters, "compressor": compressor}
    try:
        v2 = ArrayV2Metadata.from_dict({**parsed, "zarr_format": 2, "attributes": {}})
    except UnknownCodecError as e:
        raise UnsupportedDatasetError(f"array {name!r}: {e}") from e
    except (ValueError, TypeError, KeyError) as e:
        raise UnsupportedDatasetError(
            f"array {name!r}: unusable .zarray {dict(zarray)}: {e}"
        ) from e
    codecs: list[dict[str, Any]] = []
    if v2.order == "F" and len(v2.shape) > 1:
        codecs.append(
            {"name": "transpose", "configuration": {"order": list(range(len(v2.shape)))[::-1]}}
        )
    compressor = v2.compressor.get_config() if v2.compressor else None
    filters = hdf5_filters.joined([f.get_config() for f in v2.filters or ()], compressor)
    serializer: dict[str, Any] = {
        "name": "bytes",
        "configuration": {"endian": getattr(v2.dtype, "endianness", None) or "little"},
    }
    if filters and filters[0]["id"] in _VLEN:
        serializer = {"name": filters.pop(0)["id"]}
    after: list[dict[str, Any]] = []
    for config in filters:
        codec, is_bytes = _v3_codec(name, config, v2.dtype.to_native_dtype())
        if not is_bytes and after:
            raise UnsupportedDatasetError(
                f"array {name!r}: the array filter {config['id']!r} follows a bytes filter, "
                f"an order Zarr v3 codecs cannot express"
            )
        (after if is_bytes else codecs).append(codec)
    attributes = dict(zattrs)
    dims = attributes.pop("_ARRAY_DIMENSIONS", None)
    fill = v2.fill_value if v2.fill_value is not None else attributes.pop("_FillValue", None)
    native = v2.dtype.to_native_dtype()
    if fill is not None and native.kind in "biufc":  # the kinds xarray's v3 backend decodes
        attributes["_FillValue"] = _encode_fill_attribute(name, fill, native)
    fill_value = v2.fill_value if v2.fill_value is not None else v2.dtype.default_scalar()
    metadata: dict[str, Any] = {
        "shape": list(v2.shape),
        "data_type": v2.dtype.to_json(zarr_format=3),
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(v2.chunks)}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": v2.dtype.to_json_scalar(fill_value, zarr_format=3),
        "codecs": [*codecs, serializer, *after],
        "attributes": attributes,
    }
    if dims is not None:
        if not isinstance(dims, list) or len(dims) != len(v2.shape):
            raise UnsupportedDatasetError(
                f"array {name!r}: _ARRAY_DIMENSIONS {dims!r} does not name its "
                f"{len(v2.shape)} dimension(s)"
            )
        metadata["dimension_names"] = [str(d) for d in dims]
    return metadata


def _v3_codec(name: str, config: dict[str, Any], dtype: np.dtype) -> tuple[dict[str, Any], bool]:
    """The v3 codec for a numcodecs config, and whether it is a bytes-to-bytes codec."""
    config = dict(config)
    codec_id = config.pop("id")
    if codec_id in _IMAGECODECS_HDF5:
        return _hdf5_filter_codec(name, codec_id, config), True
    if codec_id in _CORE_CODECS:
        if codec_id == "blosc":
            shuffle = config.get("shuffle", 1)
            if shuffle == -1:  # AUTOSHUFFLE
                shuffle = 2 if dtype.itemsize == 1 else 1
            config = {
                "typesize": dtype.itemsize,
                "cname": config["cname"],
                "clevel": config["clevel"],
                "shuffle": _BLOSC_SHUFFLE[shuffle],
                "blocksize": config.get("blocksize", 0),
            }
        return {"name": codec_id, "configuration": config}, True
    v3_name = f"numcodecs.{codec_id}"
    try:
        kind = get_codec_class(v3_name).__mro__
    except Exception as e:  # zarr raises its own UnknownCodecError
        raise UnsupportedDatasetError(
            f"array {name!r}: the codec {codec_id!r} has no Zarr v3 equivalent"
        ) from e
    is_bytes = any(c.__name__ == "BytesBytesCodec" for c in kind)
    return {"name": v3_name, "configuration": config}, is_bytes


_IMAGECODECS_HDF5 = ("imagecodecs_lzf", "imagecodecs_lz4h5", "imagecodecs_bitshuffle")
"""The imagecodecs numcodecs ids that kerchunk export writes for HDF5's LZF, LZ4 and
bitshuffle filters (``_hdf5_filter``): read back as those filters' codecs, without
imagecodecs' numcodecs registration."""


@dataclass(frozen=True)
class _Apart:
    """The imagecodecs HDF5 filter configs taken out of a Zarr v2 codec chain (its filters,
    then its compressor), by their place in it, so that zarr parses the rest: zarr knows
    them only where imagecodecs' numcodecs codecs are registered."""

    configs: dict[int, dict[str, Any]]
    compressed: bool
    """Whether the chain ends with a compressor."""

    def joined(self, filters: list[Any] | None, compressor: Any) -> list[Any]:
        """The whole chain: the rest (``filters``, ``compressor``) with these in their place."""
        rest = iter([*(filters or []), *([compressor] if compressor is not None else [])])
        count = len(filters or []) + (compressor is not None) + len(self.configs)
        return [self.configs[i] if i in self.configs else next(rest) for i in range(count)]

    def restored(self, filters: list[Any] | None, compressor: Any) -> tuple[list[Any] | None, Any]:
        """(filters, compressor) of the whole chain."""
        chain = self.joined(filters, compressor)
        if self.compressed:
            return chain[:-1] or None, chain[-1]
        return chain or None, None


def _apart(filters: Any, compressor: Any) -> tuple[_Apart, Any, Any]:
    """The imagecodecs HDF5 filter configs of a v2 codec chain, and its filters and
    compressor without them."""
    if not isinstance(filters, list | tuple | None):
        return _Apart({}, False), filters, compressor  # zarr's own error names what is wrong
    chain = [*(filters or []), *([compressor] if compressor is not None else [])]
    ours = {
        i: dict(c)
        for i, c in enumerate(chain)
        if isinstance(c, Mapping) and c.get("id") in _IMAGECODECS_HDF5
    }
    if not ours:
        return _Apart({}, compressor is not None), filters, compressor
    kept = [c for i, c in enumerate(filters or []) if i not in ours]
    if compressor is not None and len(filters or []) in ours:
        compressor = None
    return _Apart(ours, len(chain) > len(filters or [])), kept or None, compressor


def _hdf5_filter_codec(name: str, codec_id: str, config: dict[str, Any]) -> dict[str, Any]:
    """The package's codec for an imagecodecs HDF5 filter config: the same chunk format."""
    try:
        if codec_id == "imagecodecs_lz4h5":  # its settings only choose how to encode
            return Hdf5Lz4Codec().to_dict()
        if codec_id == "imagecodecs_lzf":
            if config.get("header", True) is not False:
                raise ValueError("only header=False, HDF5's LZF chunks, is read")
            return Hdf5LzfCodec().to_dict()
        itemsize, blocksize = config.get("itemsize", 1), config.get("blocksize", 0)
        if blocksize == 0 and type(itemsize) is int and itemsize > 0:  # the library's default
            blocksize = default_block_size(itemsize)
        return Hdf5BitshuffleCodec(element_size=itemsize, block_size=blocksize).to_dict()
    except (TypeError, ValueError) as e:
        raise UnsupportedDatasetError(
            f"array {name!r}: the codec {codec_id!r} with {config} has no Zarr v3 equivalent: {e}"
        ) from e


def _encode_fill_attribute(name: str, value: Any, dtype: np.dtype) -> Any:
    """The CF ``_FillValue`` attribute as xarray's Zarr v3 backend reads it, from a v2 value."""
    try:
        if dtype.kind in "fc" and isinstance(value, str):
            value = complex(value) if dtype.kind == "c" else float(value)
        return fill_value_attribute(value, dtype)
    except (ValueError, TypeError) as e:
        raise UnsupportedDatasetError(
            f"array {name!r}: fill value {value!r} cannot be kept as a _FillValue attribute: {e}"
        ) from e
