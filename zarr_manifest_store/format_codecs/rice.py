"""The Rice codec of FITS tile compression (``RICE_1``), as a Zarr v3 bytes-to-bytes codec.

A FITS tile compressed with ``RICE_1`` is the tile's integers, each ``bytepix`` bytes
wide, Rice-coded in blocks of ``blocksize`` values (cfitsio's ``ricecomp``). The codec
decodes it into the big-endian integers of the array's data type, which zarr's ``bytes``
codec then reads, so that ``[bytes(big), zarr_manifest_store.fits_rice_1]`` describes
such a tile. imagecodecs (the ``formats`` extra) does the decoding, into a buffer of
exactly the chunk's element count: a stream that ends early or runs past it is refused.
zarr finds it through the package's ``zarr.codecs`` entry point.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Self

import numpy as np
from zarr.abc.codec import BytesBytesCodec

try:
    import imagecodecs
except ImportError:  # the optional ``formats`` extra
    imagecodecs = None

if TYPE_CHECKING:
    from zarr.abc.buffer import Buffer

    from zarr_manifest_store._zarr import ArraySpec

__all__ = ["RICE_CODEC_NAME", "RiceCodec", "rice_available"]

RICE_CODEC_NAME = "zarr_manifest_store.fits_rice_1"
"""The codec's name in Zarr metadata."""
MISSING = (
    "the Rice codec (FITS RICE_1) needs imagecodecs: pip install 'zarr-manifest-store[formats]'"
)


def rice_available() -> bool:
    """Whether the Rice codec can decode here (imagecodecs is installed)."""
    return imagecodecs is not None


@dataclass(frozen=True)
class RiceCodec(BytesBytesCodec):
    """FITS ``RICE_1``: integers of ``bytepix`` bytes, Rice-coded in blocks of ``blocksize``.

    >>> codec = RiceCodec.from_dict({"name": RICE_CODEC_NAME, "configuration": {"blocksize": 32, "bytepix": 2}})
    >>> codec.to_dict()["configuration"]
    {'blocksize': 32, 'bytepix': 2}
    """

    is_fixed_size = False

    blocksize: int = 32
    bytepix: int = 4

    def __post_init__(self) -> None:
        if self.bytepix not in (1, 2, 4):
            raise ValueError(f"{RICE_CODEC_NAME}: bytepix must be 1, 2 or 4, got {self.bytepix!r}")
        if isinstance(self.blocksize, bool) or not isinstance(self.blocksize, int):
            raise ValueError(f"{RICE_CODEC_NAME}: blocksize must be an integer")
        if not 1 <= self.blocksize <= 1 << 16:
            raise ValueError(
                f"{RICE_CODEC_NAME}: blocksize must be 1 to 65536, got {self.blocksize}"
            )

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        if data.get("name") != RICE_CODEC_NAME:
            raise ValueError(f"expected the codec {RICE_CODEC_NAME!r}, got {data.get('name')!r}")
        configuration = data.get("configuration") or {}
        unknown = set(configuration) - {"blocksize", "bytepix"}
        if unknown:
            raise ValueError(
                f"{RICE_CODEC_NAME} takes blocksize and bytepix, not {sorted(unknown)}"
            )
        return cls(**configuration)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": RICE_CODEC_NAME,
            "configuration": {"blocksize": self.blocksize, "bytepix": self.bytepix},
        }

    def _decode_sync(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer:
        if imagecodecs is None:
            raise ModuleNotFoundError(MISSING)
        count = math.prod(chunk_spec.shape)
        itemsize = chunk_spec.dtype.to_native_dtype().itemsize
        values = imagecodecs.rcomp_decode(
            chunk_bytes.as_numpy_array().tobytes(),
            shape=(count,),
            dtype=np.dtype(f"i{self.bytepix}"),
            nblock=self.blocksize,
        )
        # astropy assigns the decoded integers into the image: C casting, wrapping as it does
        decoded = values.astype(f">i{itemsize}", casting="unsafe")
        return chunk_spec.prototype.buffer.from_bytes(decoded.tobytes())

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer:
        return await asyncio.to_thread(self._decode_sync, chunk_bytes, chunk_spec)

    def _encode_sync(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer | None:
        if imagecodecs is None:
            raise ModuleNotFoundError(MISSING)
        itemsize = chunk_spec.dtype.to_native_dtype().itemsize
        values = np.frombuffer(chunk_bytes.as_numpy_array().tobytes(), dtype=f">i{itemsize}")
        narrow = values.astype(f"i{self.bytepix}", casting="unsafe")
        encoded = imagecodecs.rcomp_encode(narrow, nblock=self.blocksize)
        return chunk_spec.prototype.buffer.from_bytes(bytes(encoded))

    async def _encode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer | None:
        return await asyncio.to_thread(self._encode_sync, chunk_bytes, chunk_spec)

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: ArraySpec) -> int:
        raise NotImplementedError
