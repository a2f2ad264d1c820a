"""HDF5's common third-party filters as Zarr v3 bytes-to-bytes codecs, decoded by imagecodecs.

- ``zarr_manifest_store.hdf5_lzf`` (filter 32000, h5py's ``compression="lzf"``): the chunk
  is one raw LZF stream.
- ``zarr_manifest_store.hdf5_lz4`` (32004, the HDF Group's LZ4 filter): an 8-byte
  big-endian decoded size and a 4-byte block size, then each block as a 4-byte
  big-endian size and its LZ4 data (stored as it is when that size is the block's).
- ``zarr_manifest_store.hdf5_bitshuffle`` (32008): the chunk's elements bit-transposed
  in blocks of ``block_size`` elements (the last block cut to a multiple of 8, the
  remaining elements left as they are); with ``compression`` ``lz4`` or ``zstd``, a
  12-byte big-endian header (decoded size, block size in bytes), then each block as a
  4-byte big-endian size and its compressed bytes, then the remaining elements.

imagecodecs (the ``formats`` extra) decodes each, never past the size the chunk can
have: :mod:`zarr_manifest_store.guards` calls :meth:`decode_within` with that size,
every header is checked against it and against the bytes read, and a stream that
does not decode exactly raises :class:`~zarr_manifest_store.guards.ChunkRefused`.
zarr finds the codecs through the package's ``zarr.codecs`` entry points; imagecodecs
is imported on the first chunk decoded.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import importlib
import importlib.util
import math
from typing import TYPE_CHECKING, Any, ClassVar, Self

import numpy as np
from zarr.abc.codec import BytesBytesCodec

from zarr_manifest_store.guards import ChunkRefused

if TYPE_CHECKING:
    from zarr.abc.buffer import Buffer

    from zarr_manifest_store._zarr import ArraySpec

__all__ = [
    "BITSHUFFLE_COMPRESSIONS",
    "MISSING",
    "Hdf5BitshuffleCodec",
    "Hdf5Lz4Codec",
    "Hdf5LzfCodec",
    "default_block_size",
    "imagecodecs_available",
]

MISSING = "needs imagecodecs: pip install 'zarr-manifest-store[formats]'"
"""What a scan or a read says when imagecodecs is not installed."""
BITSHUFFLE_COMPRESSIONS = ("none", "lz4", "zstd")
"""What the bitshuffle filter compresses its blocks with."""
_HEADER = 12  # LZ4's and compressed bitshuffle's: 8-byte decoded size, 4-byte block size


def imagecodecs_available() -> bool:
    """Whether imagecodecs is installed (looked up, not imported)."""
    return importlib.util.find_spec("imagecodecs") is not None


def default_block_size(element_size: int) -> int:
    """The bitshuffle library's block size in elements when the filter sets none (0)."""
    return max(8192 // element_size // 8 * 8, 128)


@functools.cache
def _imagecodecs() -> Any:
    try:
        return importlib.import_module("imagecodecs")
    except ImportError:
        raise ModuleNotFoundError(f"decoding HDF5's LZF, LZ4 and bitshuffle {MISSING}") from None


@dataclasses.dataclass(frozen=True)
class _Hdf5Filter(BytesBytesCodec):
    """What the three codecs share: their settings, and decoding within a size."""

    name: ClassVar[str]
    is_fixed_size = False

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        if data.get("name") != cls.name:
            raise ValueError(f"expected the codec {cls.name!r}, got {data.get('name')!r}")
        config = data.get("configuration") or {}
        if not isinstance(config, dict):
            raise ValueError(f"{cls.name}: configuration must be an object, got {config!r}")
        known = {f.name for f in dataclasses.fields(cls)}
        if unknown := sorted(set(config) - known):
            raise ValueError(f"{cls.name}: unknown settings {unknown}; it takes {sorted(known)}")
        return cls(**config)

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "configuration": dataclasses.asdict(self)}

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: ArraySpec) -> int:
        raise NotImplementedError(f"{self.name} has no fixed encoded size")

    def decode_within(self, data: np.ndarray, limit: int, exact: bool) -> bytes | np.ndarray:
        """``data`` decoded to at most ``limit`` bytes (exactly that many if ``exact``)."""
        raise NotImplementedError

    def encode_bytes(self, data: bytes) -> bytes:
        """``data`` encoded as the HDF5 filter writes it."""
        raise NotImplementedError

    def _decode_sync(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer:
        # unguarded (a pipeline the user chose): the chunk's size, and what a checksum adds
        size = chunk_spec.dtype.to_native_dtype().itemsize * math.prod(chunk_spec.shape)
        decoded = self.decode_within(chunk_bytes.as_numpy_array(), size + 4, exact=False)
        return chunk_spec.prototype.buffer.from_array_like(np.frombuffer(decoded, np.uint8))

    async def _decode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer:
        return await asyncio.to_thread(self._decode_sync, chunk_bytes, chunk_spec)

    def _encode_sync(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer | None:
        encoded = self.encode_bytes(chunk_bytes.as_numpy_array().tobytes())
        return chunk_spec.prototype.buffer.from_bytes(encoded)

    async def _encode_single(self, chunk_bytes: Buffer, chunk_spec: ArraySpec) -> Buffer | None:
        return await asyncio.to_thread(self._encode_sync, chunk_bytes, chunk_spec)


@dataclasses.dataclass(frozen=True)
class Hdf5LzfCodec(_Hdf5Filter):
    """HDF5 filter 32000 (LZF), as h5py writes it: one raw LZF stream.

    >>> Hdf5LzfCodec().to_dict()
    {'name': 'zarr_manifest_store.hdf5_lzf', 'configuration': {}}
    """

    name: ClassVar[str] = "zarr_manifest_store.hdf5_lzf"

    def decode_within(self, data: np.ndarray, limit: int, exact: bool) -> bytes | np.ndarray:
        codecs = _imagecodecs()
        try:
            decoded = codecs.lzf_decode(data, out=np.empty(limit, np.uint8))
        except codecs.LzfError as e:
            raise ChunkRefused(f"the LZF data does not decode within {limit} bytes: {e}") from e
        return _checked(decoded, limit, exact, "the LZF data")

    def encode_bytes(self, data: bytes) -> bytes:
        return bytes(_imagecodecs().lzf_encode(data))


@dataclasses.dataclass(frozen=True)
class Hdf5Lz4Codec(_Hdf5Filter):
    """HDF5 filter 32004 (LZ4), framed in blocks behind a 12-byte header.

    >>> Hdf5Lz4Codec().to_dict()
    {'name': 'zarr_manifest_store.hdf5_lz4', 'configuration': {}}
    """

    name: ClassVar[str] = "zarr_manifest_store.hdf5_lz4"

    def decode_within(self, data: np.ndarray, limit: int, exact: bool) -> bytes | np.ndarray:
        size, block = _header(data, limit, exact, "LZ4")
        if size and not block:
            raise ChunkRefused(f"the LZ4 header declares {size} bytes in blocks of 0 bytes")
        codecs = _imagecodecs()
        try:
            return codecs.lz4h5_decode(data, out=np.empty(size, np.uint8))
        except codecs.Lz4h5Error as e:
            raise ChunkRefused(f"the LZ4 data does not decode: {e}") from e

    def encode_bytes(self, data: bytes) -> bytes:
        return bytes(_imagecodecs().lz4h5_encode(data))


@dataclasses.dataclass(frozen=True)
class Hdf5BitshuffleCodec(_Hdf5Filter):
    """HDF5 filter 32008 (bitshuffle), alone or with its blocks compressed.

    ``block_size`` is in elements of ``element_size`` bytes; compressed chunks
    carry their own in their header.

    >>> Hdf5BitshuffleCodec(element_size=4, block_size=2048, compression="lz4").to_dict()["configuration"]
    {'element_size': 4, 'block_size': 2048, 'compression': 'lz4'}
    """

    name: ClassVar[str] = "zarr_manifest_store.hdf5_bitshuffle"

    element_size: int = 1
    block_size: int = 8192
    compression: str = "none"

    def __post_init__(self) -> None:
        for setting in ("element_size", "block_size"):
            value = getattr(self, setting)
            if type(value) is not int or not 1 <= value <= 1 << 31:
                raise ValueError(f"{self.name}: {setting} must be a positive integer")
        if self.block_size % 8:
            raise ValueError(f"{self.name}: block_size must be a multiple of 8")
        if self.compression not in BITSHUFFLE_COMPRESSIONS:
            raise ValueError(
                f"{self.name}: compression must be one of {list(BITSHUFFLE_COMPRESSIONS)}"
            )

    def decode_within(self, data: np.ndarray, limit: int, exact: bool) -> bytes | np.ndarray:
        if self.compression == "none":
            shuffled = _checked(data, limit, exact, "the bitshuffled data")
            block = self.block_size
        else:
            shuffled, block = self._decompress(data, limit, exact)
        if len(shuffled) % self.element_size:
            raise ChunkRefused(
                f"the bitshuffled data is {len(shuffled)} bytes, not whole elements of "
                f"{self.element_size} bytes"
            )
        out = np.empty(len(shuffled), np.uint8)  # into a buffer: 3x faster than to bytes
        return _imagecodecs().bitshuffle_decode(
            shuffled, itemsize=self.element_size, blocksize=block, out=out
        )

    def _decompress(self, data: np.ndarray, limit: int, exact: bool) -> tuple[np.ndarray, int]:
        """The bit-shuffled bytes of a compressed chunk, and its block size in elements."""
        size, block_bytes = _header(data, limit, exact, "bitshuffle")
        block, rest = divmod(block_bytes, self.element_size)
        if rest or not block or block % 8 or size % self.element_size:
            raise ChunkRefused(
                f"the bitshuffle header declares {size} bytes in blocks of {block_bytes} "
                f"bytes, not whole blocks of 8 elements of {self.element_size} bytes"
            )
        count = size // self.element_size
        blocks = [block * self.element_size] * (count // block)
        if tail := count % block // 8 * 8:
            blocks.append(tail * self.element_size)
        out = np.empty(size, np.uint8)
        source, into = memoryview(data), memoryview(out)  # slices of these cost least
        at, written = _HEADER, 0
        for length in blocks:
            at = self._block(source, at, into[written : written + length])
            written += length
        leftover = size - written
        if len(data) - at != leftover:
            raise ChunkRefused(
                f"the bitshuffle blocks end {len(data) - at} bytes before the chunk does; "
                f"{leftover} bytes of elements outside any block should"
            )
        out[written:] = data[at:]
        return out, block

    def _block(self, data: memoryview, at: int, out: memoryview) -> int:
        """Decompress the block at ``at`` of ``data`` into all of ``out``; where the next starts."""
        if at + 4 > len(data):
            raise ChunkRefused("the bitshuffle data ends inside a block's size")
        length = int.from_bytes(data[at : at + 4], "big")
        end = at + 4 + length
        if end > len(data):
            raise ChunkRefused(f"a {length}-byte bitshuffle block runs past the chunk's end")
        codecs = _imagecodecs()
        decode = codecs.lz4_decode if self.compression == "lz4" else codecs.zstd_decode
        try:
            decoded = decode(data[at + 4 : end], out=out)
        except (codecs.Lz4Error, codecs.ZstdError) as e:
            raise ChunkRefused(
                f"a {self.compression} block of bitshuffle does not decode: {e}"
            ) from e
        if len(decoded) != len(out):
            raise ChunkRefused(
                f"a {self.compression} block of bitshuffle decodes to {len(decoded)} bytes, "
                f"not {len(out)}"
            )
        return end

    def encode_bytes(self, data: bytes) -> bytes:
        codecs = _imagecodecs()
        size = self.element_size
        if len(data) % size:  # as the filter refuses them
            raise ValueError(f"{self.name}: {len(data)} bytes are not whole {size}-byte elements")
        if self.compression == "none":
            return bytes(codecs.bitshuffle_encode(data, itemsize=size, blocksize=self.block_size))
        count = len(data) // size
        blocks = [self.block_size] * (count // self.block_size)
        if tail := count % self.block_size // 8 * 8:
            blocks.append(tail)
        compress = codecs.lz4_encode if self.compression == "lz4" else codecs.zstd_encode
        parts, at = [len(data).to_bytes(8, "big"), (self.block_size * size).to_bytes(4, "big")], 0
        for block in blocks:
            shuffled = codecs.bitshuffle_encode(data[at : at + block * size], itemsize=size)
            packed = bytes(compress(shuffled))
            parts += [len(packed).to_bytes(4, "big"), packed]
            at += block * size
        return b"".join([*parts, data[at:]])


def _header(data: np.ndarray, limit: int, exact: bool, what: str) -> tuple[int, int]:
    """The decoded size and block size (bytes) of a 12-byte header, checked against ``limit``."""
    if len(data) < _HEADER:
        raise ChunkRefused(f"the {what} data is {len(data)} bytes, shorter than its header")
    head = bytes(data[:_HEADER])
    size, block = int.from_bytes(head[:8], "big"), int.from_bytes(head[8:], "big")
    if size > limit or (exact and size != limit):
        bound = "exactly" if exact else "at most"
        raise ChunkRefused(
            f"the {what} header declares {size} bytes; its chunk decodes to {bound} {limit}"
        )
    return size, block


def _checked(decoded: Any, limit: int, exact: bool, what: str) -> Any:
    """``decoded``, if it is at most ``limit`` bytes (exactly, if ``exact``)."""
    if len(decoded) > limit or (exact and len(decoded) != limit):
        bound = "exactly" if exact else "at most"
        raise ChunkRefused(f"{what} is {len(decoded)} bytes; its chunk holds {bound} {limit}")
    return decoded
