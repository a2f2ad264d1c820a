"""Run an array's zarr codecs on one chunk, the one place the package does so itself.

Reads go through zarr; a few steps need one chunk's bytes or values directly: an
edge chunk re-encoded at its true size, data materialised as inline chunks, the
encoded fill value of a missing chunk. Encoding runs the array's codecs on a
one-chunk array in a ``MemoryStore``, through zarr's public API; decoding runs
them through the chunk guards (:mod:`zarr_manifest_store.guards`), as reads do.

:class:`IntoDecoder` is the read pipeline's fast form of the commonest chains
(``bytes``, an optional ``shuffle``, then compressors and checksums): it decodes a
chunk straight into its place in the output array, with every step outside the GIL.
"""

from __future__ import annotations

import math
import sys
import warnings
from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, Self

import numpy as np
import zarr
from zarr.abc.codec import ArrayArrayCodec, BytesBytesCodec, Codec
from zarr.buffer import default_buffer_prototype
from zarr.codecs import BytesCodec
from zarr.codecs import numcodecs as nc
from zarr.dtype import parse_data_type
from zarr.storage import MemoryStore

from zarr_manifest_store._zarr import ArrayConfig, ArraySpec, ArrayV3Metadata, FusedCodecPipeline
from zarr_manifest_store.errors import ManifestError
from zarr_manifest_store.guards import ChunkRefused, guard_codecs

if TYPE_CHECKING:
    from zarr.abc.buffer import Buffer

__all__ = ["IntoDecoder", "decode_chunk", "encode_chunk", "unshuffle", "validate"]


def decode_chunk(metadata: ArrayV3Metadata, raw: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """The values of one chunk of ``shape`` elements stored as ``raw`` with ``metadata``'s codecs.

    Bytes the codecs cannot decode within the chunk's size raise ``ManifestError``.
    """
    proto = default_buffer_prototype()
    spec = ArraySpec(
        shape=shape,
        dtype=metadata.data_type,
        fill_value=metadata.fill_value,
        config=ArrayConfig.from_dict({}),
        prototype=proto,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr warns about codecs outside the v3 spec
        pipeline = FusedCodecPipeline.from_codecs(guard_codecs(metadata.codecs))
    transform = pipeline.evolve_from_array_spec(spec).sync_transform
    if transform is None:
        raise ManifestError(f"codecs {pipeline.codecs} cannot decode a chunk synchronously")
    try:
        return transform.decode_chunk(proto.buffer.from_bytes(raw), spec).as_numpy_array()
    except ChunkRefused:
        raise
    except Exception as e:
        raise ManifestError(
            f"a chunk of shape {shape} does not decode with its codecs: {type(e).__name__}: {e}"
        ) from e


class IntoDecoder:
    """Decodes a chunk of a ``bytes`` chain straight into an array, outside the GIL.

    The chain (guarded: :func:`~zarr_manifest_store.guards.guard_codecs`) is
    ``bytes`` in the data type's own byte order, then bytes-to-bytes codecs of
    which only the first may be ``shuffle``. zarr decodes such a chunk into new
    arrays (numcodecs' unshuffle holding the GIL, into zeroed memory) and then
    copies it into the output; here the last step, an unshuffle or a copy done
    by NumPy without the GIL, writes into the chunk's place in the output itself.
    """

    def __init__(self, steps: tuple[Codec, ...], elementsize: int | None, endian: str | None):
        self._steps = steps  # the bytes-to-bytes codecs before the last, in decoding order
        self._elementsize = elementsize  # the shuffle decoded last, if any
        self._endian = endian  # the byte order of the stored items

    @classmethod
    def of(cls, codecs: Iterable[Codec]) -> Self | None:
        """The decoder of an evolved, guarded codec chain; None if it is not of that form."""
        chain = tuple(codecs)
        if any(isinstance(c, ArrayArrayCodec) for c in chain):
            return None
        serializers = [c for c in chain if not isinstance(c, BytesBytesCodec)]
        if len(serializers) != 1 or type(serializers[0]) is not BytesCodec:
            return None
        endian = serializers[0].endian
        compressors = [c for c in chain if isinstance(c, BytesBytesCodec)]
        elementsize = None
        if compressors and isinstance(compressors[0], nc.Shuffle):
            elementsize = compressors.pop(0).codec_config.get("elementsize")
            if type(elementsize) is not int or elementsize < 1:
                return None
        if any(isinstance(c, nc.Shuffle) for c in compressors):
            return None
        return cls(tuple(reversed(compressors)), elementsize, endian)

    def fits(self, spec: ArraySpec) -> bool:
        """Whether chunks of ``spec`` decode here: fixed-size numbers (or booleans, dates)
        stored in the data type's own byte order."""
        dtype = spec.dtype.to_native_dtype()
        order = {"=": sys.byteorder, "<": "little", ">": "big"}.get(dtype.byteorder)
        return dtype.kind in "biufcmM" and order in (None, self._endian)

    def decode_into(self, raw: Buffer, spec: ArraySpec, dest: np.ndarray) -> None:
        """Decode chunk bytes ``raw`` of ``spec`` into ``dest``, a C-contiguous array of the
        chunk's shape and data type; bytes of another decoded size raise ``ChunkRefused``."""
        data = raw
        for codec in self._steps:
            data = codec._decode_sync(data, spec)  # type: ignore[attr-defined]
        stored = data.as_numpy_array()
        if stored.nbytes != dest.nbytes:
            raise ChunkRefused(
                f"the chunk decodes to {stored.nbytes} bytes; its {math.prod(spec.shape)} "
                f"elements of {dest.dtype} take {dest.nbytes}"
            )
        target = dest.reshape(-1).view(np.uint8)
        if self._elementsize is None:
            target[...] = stored.view(np.uint8)
        else:
            unshuffle(stored.view(np.uint8), target, self._elementsize)

    def decode(self, raw: Buffer, spec: ArraySpec) -> Any:
        """The chunk as a new ``NDBuffer`` of ``spec`` (for chunks not decoded in place)."""
        dest = np.empty(spec.shape, dtype=spec.dtype.to_native_dtype())
        self.decode_into(raw, spec, dest)
        return spec.prototype.nd_buffer.from_ndarray_like(dest)


def unshuffle(src: np.ndarray, dest: np.ndarray, elementsize: int) -> None:
    """Undo numcodecs' byte shuffle of ``src`` into ``dest`` (both ``uint8``, one size).

    The shuffle stores byte ``i`` of every element together; NumPy copies each such
    plane into its place without holding the GIL (numcodecs' loop holds it).
    """
    if src.nbytes % elementsize:
        raise ChunkRefused(
            f"shuffle: {src.nbytes} bytes are not a whole number of {elementsize}-byte elements"
        )
    planes = src.reshape(elementsize, -1)
    items = dest.reshape(-1, elementsize)
    if elementsize > 16:  # one transposing copy rather than a long loop of small ones
        items[...] = planes.T
        return
    for i in range(elementsize):
        items[:, i] = planes[i]


def encode_chunk(metadata: ArrayV3Metadata, shape: tuple[int, ...], values: Any) -> bytes:
    """One chunk of ``shape`` elements encoded with ``metadata``'s codecs.

    ``values`` is a scalar (the whole chunk holds it) or an array filling the
    chunk's leading corner; the rest holds the fill value, as zarr writes an
    edge chunk.
    """
    meta = _one_chunk(metadata, shape)
    contents: dict[str, Any] = dict(meta.to_buffer_dict(default_buffer_prototype()))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zarr warns about codecs outside the v3 spec
        target = zarr.open_array(
            MemoryStore(contents), mode="r+", config={"write_empty_chunks": True}
        )
        if np.ndim(values) == len(shape) and len(shape):
            target[tuple(slice(0, n) for n in np.shape(values))] = values
        else:
            target[...] = values
    return contents[meta.encode_chunk_key((0,) * len(shape))].to_bytes()


def _one_chunk(metadata: ArrayV3Metadata, shape: tuple[int, ...]) -> ArrayV3Metadata:
    """``metadata`` for an array that is exactly one chunk of ``shape``."""
    doc = metadata.to_dict()
    doc.update(
        shape=list(shape),
        chunk_grid={"name": "regular", "configuration": {"chunk_shape": list(shape)}},
        attributes={},
        dimension_names=None,
    )
    return ArrayV3Metadata.from_dict(doc)


def validate(metadata: Mapping[str, Any], where: str, field: str = "codecs") -> None:
    """Refuse codec configurations that would fail, or mislead a decoder, only once a chunk is read.

    ``metadata`` is an array's ``zarr.json`` (a document's, untrusted) and ``field``
    the path of its ``codecs`` in the file ``where``. zarr checks its own codecs'
    configurations as it parses them; a ``numcodecs.*`` codec keeps its configuration
    unread until its first chunk, where a string for an integer, a negative level or
    a data type of a billion elements fails late or worse. Each is refused here with
    a ``ManifestError`` naming the file and the field.
    """
    codecs = metadata.get("codecs")
    if not isinstance(codecs, list):
        return  # zarr's parser refuses it, naming it
    itemsize = _itemsize(metadata.get("data_type"))
    for i, codec in enumerate(codecs):
        named = isinstance(codec, Mapping)
        name, config = (codec.get("name"), codec.get("configuration", {})) if named else (codec, {})
        if not isinstance(name, str):
            return  # zarr's parser refuses it, naming it
        at = f"{field}[{i}]"
        if not isinstance(config, Mapping):
            raise ManifestError(f"{where}: field {at}.configuration: not an object: {config!r}")
        rules = _RULES.get(name)
        for key, value in config.items() if rules is not None else ():
            check = rules.get(key)
            problem = f"{name!r} has no setting {key!r}" if check is None else check(value)
            if problem:
                raise ManifestError(f"{where}: field {at}.configuration.{key}: {problem}")
        if name == "numcodecs.shuffle" and itemsize and config.get("elementsize", 4) != itemsize:
            raise ManifestError(
                f"{where}: field {at}.configuration.elementsize: {config.get('elementsize', 4)} "
                f"bytes, but the codecs before it make items of {itemsize} bytes"
            )
        itemsize = _itemsize_after(name, config, itemsize)


def _itemsize(data_type: Any) -> int | None:
    """The item size of a Zarr data type, if it is fixed (``None``: variable, or not one)."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zarr warns about data types outside the v3 spec
            native = parse_data_type(data_type, zarr_format=3).to_native_dtype()
    except Exception:
        return None  # zarr's parser refuses it, naming it
    return native.itemsize if native.kind not in "OT" else None


def _itemsize_after(name: Any, config: Mapping[str, Any], itemsize: int | None) -> int | None:
    """The item size of the data after a codec (``None``: not known, or no items any more)."""
    if name in _KEEPS_ITEMS:
        return itemsize
    if name == "numcodecs.packbits":
        return 1
    if name == "numcodecs.astype":
        encoded = config.get("encode_dtype")
    elif name in ("numcodecs.delta", "numcodecs.fixedscaleoffset", "numcodecs.quantize"):
        encoded = config.get("astype") or config.get("dtype")
    else:
        return None
    return np.dtype(encoded).itemsize if encoded else None


_KEEPS_ITEMS = {"transpose", "bytes", "numcodecs.bitround", "numcodecs.shuffle"}
"""The codecs whose output has the items of their input (of the same size)."""


def _integer(low: int, high: int) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if type(value) is not int or not low <= value <= high:
            return f"must be an integer from {low} to {high}, got {value!r}"
        return None

    return check


def _one_of(*allowed: Any) -> Callable[[Any], str | None]:
    def check(value: Any) -> str | None:
        if type(value) not in (int, str) or value not in allowed:
            return f"must be one of {list(allowed)}, got {value!r}"
        return None

    return check


def _or_null(check: Callable[[Any], str | None]) -> Callable[[Any], str | None]:
    return lambda value: None if value is None else check(value)


def _boolean(value: Any) -> str | None:
    return None if type(value) is bool else f"must be true or false, got {value!r}"


def _number(value: Any) -> str | None:
    if type(value) not in (int, float) or not math.isfinite(value):
        return f"must be a finite number, got {value!r}"
    return None


def _numeric_dtype(value: Any) -> str | None:
    """A NumPy data type of one number: no objects, strings, records or sub-arrays."""
    try:
        dtype = np.dtype(value) if isinstance(value, str) else None
    except (TypeError, ValueError):
        dtype = None
    if dtype is None or dtype.kind not in "biufc" or dtype.shape or dtype.fields:
        return f"must name a numeric NumPy data type (such as '<f4'), got {value!r}"
    return None


def _parsed_by_zarr(value: Any) -> str | None:
    return None


def _null(value: Any) -> str | None:
    return None if value is None else f"must be null, got {value!r}"


def _lzma_filters(value: Any) -> str | None:
    if not isinstance(value, list) or not all(
        isinstance(f, Mapping) and type(f.get("id")) is int for f in value
    ):
        return f"must be a list of filter objects, each with an integer 'id', got {value!r}"
    return None


_LEVEL = _integer(-1, 9)
_BLOCKSIZE = _integer(0, 2**31 - 1)
_CHECKSUM = {"location": _or_null(_one_of("start", "end"))}
_RULES: dict[str, dict[str, Callable[[Any], str | None]]] = {
    "blosc": {
        "cname": _parsed_by_zarr,
        "shuffle": _parsed_by_zarr,
        "clevel": _integer(0, 9),
        "blocksize": _BLOCKSIZE,
        "typesize": _integer(1, 255),
    },
    "numcodecs.zlib": {"level": _LEVEL},
    "numcodecs.gzip": {"level": _LEVEL},
    "numcodecs.bz2": {"level": _integer(1, 9)},
    "numcodecs.zstd": {"level": _integer(-131072, 22), "checksum": _boolean},
    "numcodecs.lz4": {"acceleration": _integer(1, 65537)},
    "numcodecs.lzma": {
        "format": _one_of(0, 1, 2, 3),
        "check": _one_of(-1, 0, 1, 4, 10),
        "preset": _or_null(_one_of(*range(10), *range(2**31, 2**31 + 10))),
        "filters": _or_null(_lzma_filters),
    },
    "numcodecs.blosc": {
        "cname": _one_of("lz4", "lz4hc", "blosclz", "zstd", "snappy", "zlib"),
        "clevel": _integer(0, 9),
        "shuffle": _one_of(-1, 0, 1, 2),
        "blocksize": _BLOCKSIZE,
        "typesize": _or_null(_integer(1, 255)),
    },
    "numcodecs.shuffle": {"elementsize": _integer(1, 2**16)},
    "numcodecs.crc32": _CHECKSUM,
    "numcodecs.crc32c": _CHECKSUM,
    "numcodecs.adler32": _CHECKSUM,
    "numcodecs.fletcher32": {},
    "numcodecs.jenkins_lookup3": {"initval": _integer(0, 2**32 - 1), "prefix": _null},
    "numcodecs.delta": {"dtype": _numeric_dtype, "astype": _or_null(_numeric_dtype)},
    "numcodecs.fixedscaleoffset": {
        "offset": _number,
        "scale": _number,
        "dtype": _numeric_dtype,
        "astype": _or_null(_numeric_dtype),
    },
    "numcodecs.quantize": {
        "digits": _integer(0, 64),
        "dtype": _numeric_dtype,
        "astype": _or_null(_numeric_dtype),
    },
    "numcodecs.bitround": {"keepbits": _integer(0, 52)},
    "numcodecs.packbits": {},
    "numcodecs.astype": {"encode_dtype": _numeric_dtype, "decode_dtype": _numeric_dtype},
}
"""Each codec's settings, each with its check (a message, or ``None`` when the value is fine).

zarr parses its own codecs' settings; ``blosc``'s level and block size it leaves unchecked.
"""
