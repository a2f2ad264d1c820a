"""The GRIB2 codec: one message (a field) decoded by ecCodes into the chunk's values.

Its Zarr v3 name is :data:`CODEC_NAME`, an array-to-bytes codec without
configuration; zarr finds it through the package's ``zarr.codecs`` entry point.
The bytes of a chunk are untrusted: before ecCodes sees them, the message's
framing (``GRIB``, edition 2, its length equal to the chunk's, whole sections,
``7777``) and its number of points (equal to the chunk's) are checked here,
and ecCodes' own errors become :class:`~zarr_manifest_store.errors.ManifestError`.
Values come out as cfgrib gives them: float32, NaN where the bitmap says a
point is missing. ecCodes is an optional dependency (the ``grib`` extra),
imported when a chunk is first decoded.
"""

from __future__ import annotations

import asyncio
import importlib
import math
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

import numpy as np
from zarr.abc.codec import ArrayBytesCodec

from zarr_manifest_store.format_codecs.grib_sections import MessageError, frame
from zarr_manifest_store.guards import ChunkRefused

if TYPE_CHECKING:
    from types import ModuleType

    from zarr.abc.buffer import Buffer, NDBuffer

    from zarr_manifest_store._zarr import ArraySpec

__all__ = ["CODEC_NAME", "EXTRA", "MISSING", "GribCodec", "eccodes"]

CODEC_NAME = "zarr_manifest_store.grib"
"""The codec's name in Zarr v3 metadata."""
EXTRA = "pip install 'zarr-manifest-store[grib]'"
"""What installs the codec's dependency (ecCodes, with its library)."""
MISSING = float(np.finfo(np.float32).max)
"""The value ecCodes is told to give missing points (cfgrib's choice), then read as NaN."""

_LOCK = threading.Lock()  # ecCodes' handles are not shared, but its definitions cache is


def eccodes() -> ModuleType:
    """The ``eccodes`` module, or an ImportError that names the extra to install."""
    try:
        return importlib.import_module("eccodes")
    except ImportError as e:  # also a wheel whose C library fails to load
        raise ImportError(
            f"reading GRIB needs ecCodes, which is not installed ({e}): {EXTRA}"
        ) from e


@dataclass(frozen=True)
class GribCodec(ArrayBytesCodec):
    """Decodes a chunk that is one whole GRIB2 message into its grid of values (read-only)."""

    is_fixed_size = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        config = data.get("configuration") or {}
        if data.get("name") != CODEC_NAME or config:
            raise ValueError(f"not a {CODEC_NAME!r} codec without configuration: {data!r}")
        return cls()

    def to_dict(self) -> dict[str, Any]:
        return {"name": CODEC_NAME}

    def validate(self, *, shape: Any, dtype: Any, chunk_grid: Any) -> None:
        if dtype.to_native_dtype() != np.dtype("float32"):
            raise ValueError(f"the {CODEC_NAME} codec decodes to float32, not {dtype}")

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: ArraySpec) -> int:
        raise NotImplementedError(f"the size of a {CODEC_NAME} chunk depends on its packing")

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        return await asyncio.to_thread(self._decode_sync, chunk_bytes, chunk_spec)

    async def _encode_single(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer:
        return self._encode_sync(chunk_array, chunk_spec)

    def _encode_sync(self, chunk_array: NDBuffer, chunk_spec: ArraySpec) -> Buffer:
        raise NotImplementedError(f"{CODEC_NAME} chunks are read, never written")

    def _decode_sync(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        values = decode_message(chunk_bytes.to_bytes(), chunk_spec.shape)
        return chunk_spec.prototype.nd_buffer.from_numpy_array(values)


def decode_message(raw: bytes, shape: tuple[int, ...]) -> np.ndarray:
    """The values of the GRIB2 message ``raw`` as a float32 array of ``shape`` (NaN where missing).

    Raises :class:`ChunkRefused` (a ``ManifestError``) for bytes that are not one
    GRIB2 message of ``prod(shape)`` points.
    """
    points = math.prod(shape)
    try:
        framing = frame(lambda start, end: raw[start:end], len(raw))
    except MessageError as e:
        raise ChunkRefused(f"a GRIB chunk of {len(raw)} bytes is refused: {e}") from None
    if framing.length != len(raw):
        raise ChunkRefused(f"a GRIB message of {framing.length} bytes in a chunk of {len(raw)}")
    start, _ = framing.sections[3]
    declared = int.from_bytes(raw[start + 6 : start + 10], "big")
    start, _ = framing.sections[5]
    packed = int.from_bytes(raw[start + 5 : start + 9], "big")
    if declared != points or packed > points:
        raise ChunkRefused(
            f"a GRIB message of {declared} points ({packed} packed) in a chunk of {points}"
        )
    ec = eccodes()
    with _LOCK:
        try:
            handle = ec.codes_new_from_message(raw)
        except Exception as e:
            raise ChunkRefused(f"ecCodes cannot read the GRIB message: {e}") from None
        try:
            ec.codes_set(handle, "missingValue", MISSING)
            values = ec.codes_get_values(handle)
        except Exception as e:
            raise ChunkRefused(f"ecCodes cannot decode the GRIB message: {e}") from None
        finally:
            ec.codes_release(handle)
    if values.size != points:
        raise ChunkRefused(f"a GRIB message decodes to {values.size} values, not {points}")
    out = values.astype(np.float32)
    out[values == MISSING] = np.nan
    return out.reshape(shape)
