"""The ``tiff_segment`` codec: one TIFF strip or tile, decoded as tifffile decodes it.

A TIFF segment is compressed (LZW, Deflate, PackBits, zstd, LZMA, JPEG, ...),
often with a predictor (horizontal differencing, 2, or the floating-point
predictor, 3) that works along each row of the segment, and the last strip of
an image is stored short. No Zarr codec chain describes that exactly, so the
scanner (:mod:`zarr_manifest_store.scan.tiff`) gives such arrays this one
array-to-bytes codec. It decodes with imagecodecs (the ``formats`` extra) and,
since a document and the bytes it points at are untrusted, never decodes past
the chunk's size: decompressors write into a buffer of that size, a JPEG
header larger than the chunk is refused, and a short segment is padded with
zeros, as tifffile pads it.
"""

from __future__ import annotations

import base64
import dataclasses
import math
from typing import TYPE_CHECKING, Any, Literal, Self

import numpy as np
from zarr.abc.codec import ArrayBytesCodec

from zarr_manifest_store.guards import ChunkRefused

try:
    import imagecodecs
except ImportError:  # the formats extra is optional; decoding then names it
    imagecodecs = None

if TYPE_CHECKING:
    from zarr.abc.buffer import Buffer, NDBuffer

    from zarr_manifest_store._zarr import ArraySpec

__all__ = ["CODEC_NAME", "COMPRESSIONS", "TiffSegmentCodec"]

CODEC_NAME = "zarr_manifest_store.tiff_segment"
"""The codec's name in Zarr metadata."""
COMPRESSIONS = ("none", "deflate", "lzw", "packbits", "zstd", "lzma", "jpeg")
"""The segment compressions the codec decodes (TIFF's Compression tag, by name)."""
PREDICTORS = (1, 2, 3)
"""TIFF's predictors: none, horizontal differencing, floating point."""
_DECOMPRESSORS = {
    "deflate": "zlib_decode",
    "lzw": "lzw_decode",
    "packbits": "packbits_decode",
    "zstd": "zstd_decode",
    "lzma": "lzma_decode",
}
_INSTALL = "pip install 'zarr-manifest-store[formats]'"


@dataclasses.dataclass(frozen=True)
class TiffSegmentCodec(ArrayBytesCodec):
    """Decodes one TIFF strip or tile into its chunk (read only).

    ``samples`` is the number of samples interleaved in the chunk's last axis
    (1: the chunk has no sample axis); rows are the chunk's other axes but the
    width. ``bits=1``: samples are single bits, each row packed into whole bytes
    (bilevel images, GDAL's masks), decoded to booleans. ``jpeg_tables`` is the JPEGTables tag (base64), ``jpeg_colorspace``
    and ``jpeg_outcolorspace`` the colour conversion tifffile asks of the JPEG
    decoder.
    """

    is_fixed_size = False

    compression: str = "none"
    predictor: int = 1
    endian: Literal["little", "big"] = "little"
    samples: int = 1
    bits: int | None = None
    jpeg_tables: str | None = None
    jpeg_colorspace: int | None = None
    jpeg_outcolorspace: int | str | None = None

    def __post_init__(self) -> None:
        if self.compression not in COMPRESSIONS:
            raise ValueError(
                f"{CODEC_NAME}: compression must be one of {list(COMPRESSIONS)}, "
                f"got {self.compression!r}"
            )
        if self.predictor not in PREDICTORS:
            raise ValueError(
                f"{CODEC_NAME}: predictor must be one of {list(PREDICTORS)}, got {self.predictor!r}"
            )
        if self.endian not in ("little", "big"):
            raise ValueError(f"{CODEC_NAME}: endian must be 'little' or 'big', got {self.endian!r}")
        if type(self.samples) is not int or not 1 <= self.samples <= 2**16:
            raise ValueError(f"{CODEC_NAME}: samples must be an integer from 1 to 65536")
        if self.bits not in (None, 1) or (self.bits and self.predictor != 1):
            raise ValueError(f"{CODEC_NAME}: bits must be null or 1 (without a predictor)")
        if self.jpeg_tables is not None and not isinstance(self.jpeg_tables, str):
            raise ValueError(f"{CODEC_NAME}: jpeg_tables must be a base64 string or null")

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        config = data.get("configuration") or {}
        if not isinstance(config, dict):
            raise ValueError(f"{CODEC_NAME}: configuration must be an object, got {config!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        if unknown := sorted(set(config) - known):
            raise ValueError(f"{CODEC_NAME}: unknown settings {unknown}; it takes {sorted(known)}")
        return cls(**config)

    def to_dict(self) -> dict[str, Any]:
        config = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if getattr(self, f.name) != f.default or f.name in ("compression", "endian")
        }
        return {"name": CODEC_NAME, "configuration": config}

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: ArraySpec) -> int:
        raise NotImplementedError(f"{CODEC_NAME} has no fixed encoded size")

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        return self._decode_sync(chunk_bytes, chunk_spec)

    async def _encode_single(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer | None:
        return self._encode_sync(chunk_array, chunk_spec)

    def _encode_sync(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer | None:
        raise NotImplementedError(f"{CODEC_NAME} only decodes (TIFF segments are read in place)")

    def _decode_sync(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        if imagecodecs is None:
            raise ChunkRefused(f"decoding TIFF segments needs imagecodecs: {_INSTALL}")
        dtype = chunk_spec.dtype.to_native_dtype()
        values = self.decode(bytes(chunk_bytes.as_numpy_array()), chunk_spec.shape, dtype)
        return chunk_spec.prototype.nd_buffer.from_ndarray_like(values)

    def decode(self, data: bytes, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        """The chunk of ``shape`` and native ``dtype`` that the segment ``data`` holds."""
        rows, width = _rows_and_width(shape, self.samples)
        stored = dtype.newbyteorder("<" if self.endian == "little" else ">")
        row_bytes = width * self.samples * dtype.itemsize
        if self.bits == 1:
            row_bytes = -(-width * self.samples // 8)
        if self.compression == "jpeg":
            segment = self._jpeg(data, rows, width, dtype)
        else:
            raw = self._decompress(data, rows * row_bytes)
            if len(raw) % row_bytes:
                raise ChunkRefused(
                    f"the segment decodes to {len(raw)} bytes, not whole rows of {row_bytes} bytes"
                )
            if self.bits == 1:
                bits = np.unpackbits(np.frombuffer(raw, np.uint8).reshape(-1, row_bytes), axis=1)
                segment = bits[:, : width * self.samples].astype(dtype)
            else:  # the floating-point predictor's bytes are in no byte order: undone as they are
                segment = np.frombuffer(raw, dtype=dtype if self.predictor == 3 else stored)
                segment = segment.astype(dtype, copy=True)
            segment = self._unpredict(segment.reshape(-1, width, self.samples))
        if segment.shape[:2] == (rows, width):
            return segment.reshape(shape)
        out = np.zeros((rows, width, self.samples), dtype=dtype)  # a short strip, padded
        out[: segment.shape[0], : segment.shape[1]] = segment
        return out.reshape(shape)

    def _decompress(self, data: bytes, limit: int) -> bytes:
        """The segment's bytes decompressed, at most ``limit`` of them (the chunk's size)."""
        if self.compression == "none":
            return data[:limit]
        decode = getattr(imagecodecs, _DECOMPRESSORS[self.compression])
        try:
            return decode(data, out=limit)
        except Exception as e:
            raise ChunkRefused(
                f"the {self.compression} segment does not decode within {limit} bytes, the most "
                f"its chunk can hold: {type(e).__name__}: {e}"
            ) from e

    def _unpredict(self, segment: np.ndarray) -> np.ndarray:
        """Undo the predictor along each row (axis -2 of ``(rows, width, samples)``)."""
        if self.predictor == 2:
            return imagecodecs.delta_decode(segment, axis=-2, out=segment)
        if self.predictor == 3:
            return imagecodecs.floatpred_decode(segment, axis=-2)
        return segment

    def _jpeg(self, data: bytes, rows: int, width: int, dtype: np.dtype) -> np.ndarray:
        """A JPEG segment decoded into at most ``rows`` by ``width`` pixels (its header says)."""
        height, columns, components = _jpeg_size(data)
        samples = self.samples
        if height > rows or columns > width or components != samples:
            raise ChunkRefused(
                f"the JPEG segment is {height} x {columns} pixels of {components} components; "
                f"its chunk holds {rows} x {width} of {samples}"
            )
        tables = None if self.jpeg_tables is None else base64.b64decode(self.jpeg_tables)
        out = np.empty((height, columns, samples) if samples > 1 else (height, columns), dtype)
        try:
            decoded = imagecodecs.jpeg_decode(
                data,
                tables=tables,
                colorspace=self.jpeg_colorspace,
                outcolorspace=self.jpeg_outcolorspace,
                out=out,
            )
        except Exception as e:
            raise ChunkRefused(f"the JPEG segment does not decode: {type(e).__name__}: {e}") from e
        return np.asarray(decoded).reshape(height, columns, samples)


def _rows_and_width(shape: tuple[int, ...], samples: int) -> tuple[int, int]:
    """Rows and width of a chunk of ``shape`` whose last axis holds ``samples`` (if more than 1)."""
    pixel_axes = shape[:-1] if samples > 1 else shape
    if not pixel_axes or (samples > 1 and shape[-1] != samples):
        raise ChunkRefused(f"a chunk of shape {shape} holds no TIFF segment of {samples} samples")
    return math.prod(pixel_axes[:-1]), pixel_axes[-1]


_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}


def _jpeg_size(data: bytes) -> tuple[int, int, int]:
    """Height, width and components of a JPEG stream, from its frame header (SOF marker)."""
    at = 2 if data[:2] == b"\xff\xd8" else 0
    while at + 4 <= len(data):
        if data[at] != 0xFF:
            break
        marker = data[at + 1]
        if marker == 0xFF:  # fill byte
            at += 1
            continue
        length = int.from_bytes(data[at + 2 : at + 4], "big")
        if marker in _SOF_MARKERS and at + 10 <= len(data):
            height = int.from_bytes(data[at + 5 : at + 7], "big")
            width = int.from_bytes(data[at + 7 : at + 9], "big")
            return height, width, data[at + 9]
        at += 2 + length
    raise ChunkRefused("the JPEG segment has no frame header (SOF marker)")
