"""Chunk guards: a chunk's codecs decode it within its size, or refuse it.

A document is untrusted, and so are the bytes it points at. C decoders trust the
headers they are given (a blosc header that lies about its length makes c-blosc read
past the chunk and crash the interpreter; an lz4 or zstd header declares the size to
allocate), and a compressed stream can inflate without end (a decompression bomb).
:func:`guard_codecs` replaces each bytes-to-bytes codec of a chain, and a
variable-length array-to-bytes codec, by a guarded form that checks the headers
against the bytes actually read, then decodes no further than the size the chunk can
legitimately have: its decoded size, plus what the codecs after it add (a checksum's
4 bytes), or the compression bound of that when a compressor comes after it (a codec
that has a ``decode_within(data, limit, exact)`` method is given that bound). A
chunk that does not fit raises :class:`~zarr_manifest_store.errors.ManifestError`.

Variable-length chunks (``vlen-utf8``, ``vlen-bytes``) have no fixed decoded size:
they may decode to at most :data:`MAX_UNSIZED_CHUNK_BYTES`, which the zarr setting
:data:`UNSIZED_CHUNK_SETTING` raises, and their item count must match the chunk's.
"""

from __future__ import annotations

import asyncio
import bz2
import dataclasses
import functools
import importlib
import lzma
import math
import struct
import zlib
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any, Self

import numpy as np
from numcodecs import blosc, lz4, zstd
from zarr import config
from zarr.abc.codec import ArrayBytesCodec, BytesBytesCodec, Codec
from zarr.codecs import (
    BloscCodec,
    BytesCodec,
    Crc32cCodec,
    GzipCodec,
    ShardingCodec,
    VLenBytesCodec,
    VLenUTF8Codec,
    ZstdCodec,
)
from zarr.codecs import numcodecs as nc

from zarr_manifest_store.errors import ManifestError

if TYPE_CHECKING:
    from zarr.abc.buffer import Buffer, NDBuffer

    from zarr_manifest_store._zarr import ArraySpec

__all__ = ["MAX_UNSIZED_CHUNK_BYTES", "UNSIZED_CHUNK_SETTING", "ChunkRefused", "guard_codecs"]

MAX_UNSIZED_CHUNK_BYTES = 256 << 20
"""Default bound on the decoded bytes of a chunk whose size its data type does not fix."""
UNSIZED_CHUNK_SETTING = "zarr_manifest_store.max_unsized_chunk_bytes"
"""The zarr setting that raises it: ``zarr.config.set({UNSIZED_CHUNK_SETTING: n})``."""

_BLOSC_HEADER = struct.Struct("<BBBBIII")
_BLOSC_MEMCPYED = 0x02
_BLOSC_MAX_TYPESIZE = 255
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_CHECKSUMS = (nc.CRC32, nc.CRC32C, nc.Adler32, nc.Fletcher32, Crc32cCodec)


class ChunkRefused(ManifestError):
    """A chunk's bytes that its codecs refuse to decode; the message says why, not which chunk.

    The codec pipeline, which knows the chunk, re-raises it as a ``ManifestError``
    naming the array and the chunk key.
    """


def guard_codecs(codecs: Iterable[Codec]) -> tuple[Codec, ...]:
    """``codecs`` with every step that decodes bytes replaced by its guarded form."""
    chain = tuple(codecs)
    sized = any(isinstance(c, BytesCodec) for c in chain)  # else variable-length, or a shard
    guarded: list[Codec] = []
    before: list[BytesBytesCodec] = []
    for codec in chain:
        guarded.append(_guarded(codec, tuple(before), sized))
        if isinstance(codec, BytesBytesCodec):
            before.append(codec.codec if isinstance(codec, _Guarded) else codec)
    return tuple(guarded)


def _guarded(codec: Codec, before: tuple[BytesBytesCodec, ...], sized: bool) -> Codec:
    """``codec``'s guarded form, after the bytes-to-bytes codecs ``before`` (itself if none)."""
    if isinstance(codec, _Guarded):
        return codec
    if isinstance(codec, nc.Shuffle):
        return codec  # its output is its input, reordered
    if isinstance(codec, BytesBytesCodec):
        return _BoundedBytes(codec, before, sized)
    if isinstance(codec, VLenUTF8Codec | VLenBytesCodec):
        return _CountedItems(codec)
    if isinstance(codec, ShardingCodec):
        inner, index = guard_codecs(codec.codecs), guard_codecs(codec.index_codecs)
        return dataclasses.replace(codec, codecs=inner, index_codecs=index)
    return codec


def max_unsized_chunk_bytes() -> int:
    """The bound on a variable-length chunk's decoded bytes, as zarr's settings hold it now."""
    return int(config.get(UNSIZED_CHUNK_SETTING, MAX_UNSIZED_CHUNK_BYTES))


@dataclasses.dataclass(frozen=True, eq=False)
class _Guarded:
    """A codec whose decoding is checked; everything else is the wrapped ``codec``'s.

    The underscored methods are zarr's codec protocol (``SupportsSyncCodec`` and
    ``BaseCodec``), which zarr's pipelines call.
    """

    codec: Any

    @property
    def is_fixed_size(self) -> bool:  # type: ignore[override]
        return self.codec.is_fixed_size

    def to_dict(self) -> dict[str, Any]:
        return self.codec.to_dict()

    def compute_encoded_size(self, input_byte_length: int, chunk_spec: ArraySpec) -> int:
        return self.codec.compute_encoded_size(input_byte_length, chunk_spec)

    def resolve_metadata(self, chunk_spec: ArraySpec) -> ArraySpec:
        return self.codec.resolve_metadata(chunk_spec)

    def evolve_from_array_spec(self, array_spec: ArraySpec) -> Self:
        return dataclasses.replace(self, codec=self.codec.evolve_from_array_spec(array_spec))

    def validate(self, **kwargs: Any) -> None:
        self.codec.validate(**kwargs)

    def _encode_sync(self, chunk_data: Any, chunk_spec: ArraySpec) -> Any:
        return self.codec._encode_sync(chunk_data, chunk_spec)

    async def _encode_single(self, chunk_data: Any, chunk_spec: ArraySpec) -> Any:
        return await self.codec._encode_single(chunk_data, chunk_spec)

    async def _decode_single(self, chunk_data: Any, chunk_spec: ArraySpec) -> Any:
        return await asyncio.to_thread(self._decode_sync, chunk_data, chunk_spec)

    def _decode_sync(self, chunk_data: Any, chunk_spec: ArraySpec) -> Any:
        raise NotImplementedError


@dataclasses.dataclass(frozen=True, eq=False)
class _BoundedBytes(_Guarded, BytesBytesCodec):
    """A bytes-to-bytes codec that decodes no more than the bytes it encoded can have been.

    ``before`` are the bytes-to-bytes codecs that ran before it when the chunk was
    encoded; ``sized`` says whether the array-to-bytes codec makes a chunk of a fixed
    size (the ``bytes`` codec does; variable-length ones do not).
    """

    before: tuple[BytesBytesCodec, ...] = ()
    sized: bool = True

    def _decode_sync(self, chunk_data: Buffer, chunk_spec: ArraySpec) -> Buffer:
        if isinstance(self.codec, _CHECKSUMS):  # its output is its input less 4 bytes
            if len(chunk_data) < 4:
                raise ChunkRefused(f"{_name(self.codec)}: {len(chunk_data)} bytes hold no checksum")
            return self.codec._decode_sync(chunk_data, chunk_spec)
        limit, exact, unsized = self._decoded_size(chunk_spec)
        try:
            return self._decode_within(chunk_data, chunk_spec, limit, exact)
        except ChunkRefused as e:
            if not unsized:
                raise
            raise ChunkRefused(
                f"{e} (the limit {UNSIZED_CHUNK_SETTING}={limit} on a chunk of variable "
                f"length: raise it with zarr.config.set({{{UNSIZED_CHUNK_SETTING!r}: n}}))"
            ) from None

    def _decode_within(
        self, chunk_data: Buffer, chunk_spec: ArraySpec, limit: int, exact: bool
    ) -> Buffer:
        """The bytes decoded by the bounded decoder of the codec, or by the codec then checked."""
        decode = _BOUNDED.get(type(self.codec)) or getattr(type(self.codec), "decode_within", None)
        if decode is not None:
            decoded = decode(self.codec, chunk_data.as_numpy_array(), limit, exact)
            return chunk_spec.prototype.buffer.from_array_like(
                np.frombuffer(decoded, dtype=np.uint8)
            )
        decoded_buffer = self.codec._decode_sync(chunk_data, chunk_spec)
        if len(decoded_buffer) > limit:
            raise ChunkRefused(
                f"{_name(self.codec)} decodes to more than {limit} bytes, the most its chunk "
                f"can hold"
            )
        return decoded_buffer

    def _decoded_size(self, chunk_spec: ArraySpec) -> tuple[int, bool, bool]:
        """The most bytes this step may decode to, whether it must be exactly that, and
        whether that comes from the limit on chunks of variable length."""
        if self.sized:
            itemsize = chunk_spec.dtype.to_native_dtype().itemsize
            size, exact = itemsize * math.prod(chunk_spec.shape), True
        else:
            size, exact = max_unsized_chunk_bytes(), False
        for codec in self.before:
            if isinstance(codec, _CHECKSUMS):
                size += 4
            elif not isinstance(codec, nc.Shuffle):
                size, exact = size + size // 8 + 4096, False  # above every compressor's bound
        return size, exact, not self.sized


def _stream(
    start: Callable[[], Any], data: np.ndarray, limit: int, what: str, *, members: bool
) -> bytes:
    """``data`` decompressed by the decompressor objects ``start`` makes, at most ``limit`` bytes.

    ``members``: the stream may be several concatenated streams (gzip members, bzip2
    and xz streams), each decompressed by a new object, as their one-shot decoders do.
    """
    parts: list[bytes] = []
    size = 0
    rest: Any = data
    while True:
        decompressor = start()
        part = decompressor.decompress(rest, limit - size + 1)
        size += len(part)
        parts.append(part)
        if size > limit:
            raise ChunkRefused(f"{what} inflates past {limit} bytes, the most its chunk can hold")
        if not decompressor.eof:
            raise ChunkRefused(f"{what} stream is truncated")
        rest = decompressor.unused_data
        if not (members and rest):
            break
    return parts[0] if len(parts) == 1 else b"".join(parts)


# The standard library's bounded zlib decompressor that writes into one buffer of the size
# asked for: ``decompressobj().decompress(data, max_length)`` grows its output block by block
# and joins the blocks, which made decoding a typical 250 kB chunk 35% slower. It is private
# (``gzip`` uses it) but in every Python this package supports; the public one stands in if a
# later Python drops it.
_Inflater: Callable[..., Any] = getattr(zlib, "_ZlibDecompressor", zlib.decompressobj)


@functools.cache
def _libdeflate() -> tuple[type[Exception], Callable[..., np.ndarray]] | None:
    """imagecodecs' libdeflate decoder (its error and ``deflate_decode``), which inflates zlib
    3x faster than the standard library; None without imagecodecs (the ``formats`` extra).
    Imported on the first zlib chunk: importing the package imports no format library."""
    try:
        module = importlib.import_module("imagecodecs")
    except ImportError:
        return None
    return module.DeflateError, module.deflate_decode


def _zlib(codec: Any, data: np.ndarray, limit: int, exact: bool) -> bytes | np.ndarray:
    """zlib data; a chunk of known size inflates into a buffer of that size, with libdeflate
    where imagecodecs is installed (it refuses to write past the buffer's end)."""
    fast = _libdeflate() if exact else None
    if fast is not None:
        error, deflate_decode = fast
        try:
            return deflate_decode(data, out=np.empty(limit, dtype=np.uint8))
        except error:
            pass  # the standard library's decoder below says what is wrong
    return _stream(_Inflater, data, limit, "the zlib data", members=False)


def _gzip(codec: Any, data: np.ndarray, limit: int, exact: bool) -> bytes:
    def member() -> Any:
        return _Inflater(16 + zlib.MAX_WBITS)

    return _stream(member, data, limit, "the gzip data", members=True)


def _bz2(codec: Any, data: np.ndarray, limit: int, exact: bool) -> bytes:
    return _stream(bz2.BZ2Decompressor, data, limit, "the bzip2 data", members=True)


def _lzma(codec: Any, data: np.ndarray, limit: int, exact: bool) -> bytes:
    settings = codec.codec_config
    fmt, filters = settings.get("format", lzma.FORMAT_XZ), settings.get("filters")

    def stream() -> Any:
        return lzma.LZMADecompressor(format=fmt, filters=filters)

    return _stream(stream, data, limit, "the lzma data", members=fmt != lzma.FORMAT_RAW)


def _zstd(codec: Any, data: np.ndarray, limit: int, exact: bool) -> np.ndarray | bytes:
    """zstd frames whose declared content size fits, decoded into a buffer of that size."""
    declared = _zstd_content_size(data)
    if declared is not None and (declared > limit or (exact and declared != limit)):
        size = "exactly" if exact else "at most"
        raise ChunkRefused(
            f"the zstd frame declares {declared} bytes of content; its chunk decodes to "
            f"{size} {limit}"
        )
    if declared is not None:
        return zstd.decompress(data)  # fails if later frames exceed the declared size
    if not exact:
        raise ChunkRefused(
            "the zstd frame does not declare its content size, and nothing else bounds it "
            "(a chunk of variable length, or zstd after another compressor)"
        )
    # numcodecs fills all of ``out`` or fails, for a frame that does not declare its size
    return zstd.decompress(data, np.empty(limit, dtype=np.uint8))


def _zstd_content_size(data: np.ndarray | bytes) -> int | None:
    """The content size a zstd frame's header declares (``None``: not declared)."""
    head = bytes(data[:18])
    if len(head) < 5 or head[:4] != _ZSTD_MAGIC:
        raise ChunkRefused("the data is not a zstd frame (no zstd magic number)")
    descriptor = head[4]
    single_segment = bool(descriptor & 0x20)
    size_bytes = (1 if single_segment else 0, 2, 4, 8)[descriptor >> 6]
    if not size_bytes:
        return None
    start = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[descriptor & 0x03]
    field = head[start : start + size_bytes]
    if len(field) < size_bytes:
        raise ChunkRefused("the zstd frame header is truncated")
    return int.from_bytes(field, "little") + (256 if size_bytes == 2 else 0)


def _lz4(codec: Any, data: np.ndarray, limit: int, exact: bool) -> bytes:
    """numcodecs' lz4: a 4-byte little-endian decoded size, then an lz4 block."""
    if len(data) < 4:
        raise ChunkRefused(f"the lz4 data is {len(data)} bytes, shorter than its 4-byte header")
    declared = int.from_bytes(bytes(data[:4]), "little")
    if declared > limit or (exact and declared != limit):
        size = "exactly" if exact else "at most"
        raise ChunkRefused(
            f"the lz4 header declares {declared} bytes; its chunk decodes to {size} {limit}"
        )
    return lz4.decompress(data)


def _blosc(codec: Any, data: np.ndarray, limit: int, exact: bool) -> bytes:
    """blosc data whose header c-blosc can trust: checked against the bytes read."""
    _check_blosc_header(data, limit, exact)
    return blosc.decompress(data)


def _check_blosc_header(data: np.ndarray | bytes, limit: int, exact: bool) -> None:
    """Refuse a blosc (v1 format) chunk whose header does not describe ``data``."""
    length = len(data)
    if length < _BLOSC_HEADER.size:
        raise ChunkRefused(f"the blosc data is {length} bytes, shorter than its 16-byte header")
    header = bytes(data[: _BLOSC_HEADER.size])
    version, _, flags, typesize, nbytes, blocksize, cbytes = _BLOSC_HEADER.unpack(header)
    problems = []
    if cbytes != length:
        problems.append(f"declares {cbytes} compressed bytes, the chunk holds {length}")
    if nbytes > limit or (exact and nbytes != limit):
        size = "exactly" if exact else "at most"
        problems.append(f"declares {nbytes} bytes decoded, the chunk decodes to {size} {limit}")
    if not 1 <= version <= 2 or not 1 <= typesize <= _BLOSC_MAX_TYPESIZE:
        problems.append(f"has format version {version} and typesize {typesize}")
    if nbytes and not 1 <= blocksize <= nbytes:
        problems.append(f"has block size {blocksize} for {nbytes} bytes")
    if flags & _BLOSC_MEMCPYED and cbytes != nbytes + _BLOSC_HEADER.size:
        problems.append(f"stores {nbytes} bytes uncompressed in {cbytes} bytes")
    elif nbytes and not flags & _BLOSC_MEMCPYED:
        problems.extend(_blosc_block_problems(data, nbytes, blocksize))
    if problems:
        raise ChunkRefused(f"the blosc header {'; '.join(problems)}")


def _blosc_block_problems(data: np.ndarray | bytes, nbytes: int, blocksize: int) -> list[str]:
    """What is wrong with the block starts of compressed blosc data (none: an empty list)."""
    blocks = -(-nbytes // blocksize)
    first = _BLOSC_HEADER.size + 4 * blocks
    if first > len(data):
        return [f"has {blocks} blocks, whose {4 * blocks}-byte table does not fit"]
    starts = np.frombuffer(bytes(data[_BLOSC_HEADER.size : first]), dtype="<u4")
    if starts.size and (starts.min() < first or starts.max() >= len(data)):
        return ["has a block starting outside the chunk"]
    return []


_BOUNDED: dict[type, Callable[[Any, np.ndarray, int, bool], bytes | np.ndarray]] = {
    nc.Zlib: _zlib,
    nc.GZip: _gzip,
    GzipCodec: _gzip,
    nc.BZ2: _bz2,
    nc.LZMA: _lzma,
    nc.Zstd: _zstd,
    ZstdCodec: _zstd,
    nc.LZ4: _lz4,
    nc.Blosc: _blosc,
    BloscCodec: _blosc,
}
"""The compressors, each with its bounded decoder ``(codec, data, limit, exact) -> bytes``.
A codec of the package's own bounds itself: its method ``decode_within(data, limit, exact)``."""


@dataclasses.dataclass(frozen=True, eq=False)
class _CountedItems(_Guarded, ArrayBytesCodec):
    """``vlen-utf8`` / ``vlen-bytes``, whose header's item count must be the chunk's.

    The header is a 4-byte item count, then each item as a 4-byte length and its
    bytes: a count that disagrees with the chunk, or that the bytes cannot hold, is
    refused before the decoder allocates an item table that large.
    """

    def _decode_sync(self, chunk_data: Buffer, chunk_spec: ArraySpec) -> NDBuffer:
        data = chunk_data.as_numpy_array()
        elements = math.prod(chunk_spec.shape)
        if len(data) < 4:
            raise ChunkRefused(f"the {_name(self.codec)} data has no 4-byte item count")
        count = int.from_bytes(bytes(data[:4]), "little")
        if count != elements or 4 + 4 * count > len(data):
            raise ChunkRefused(
                f"the {_name(self.codec)} header declares {count} items in {len(data)} bytes; "
                f"the chunk holds {elements} elements"
            )
        return self.codec._decode_sync(chunk_data, chunk_spec)


def _name(codec: Any) -> str:
    """The codec's name as a document spells it."""
    return str(codec.to_dict().get("name", type(codec).__name__))
