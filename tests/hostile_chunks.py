"""Hostile chunks for the tests of the read path's guards: documents of one array whose chunk
bytes lie in a header a C decoder trusts, inflate far past the chunk's size, or declare more
items than the chunk holds (``ATTACKS``, by codec), and the codecs they are read through."""

from __future__ import annotations

import bz2
import gzip
import lzma
import struct
import zlib
from pathlib import Path
from typing import Any

import numcodecs
import numpy as np
from imagecodecs import lz4_encode, lzf_encode

import zarr_manifest_store as zms
from zarr_manifest_store.array import parse_array_metadata

N = 1024
"""Elements per chunk: a float32 chunk decodes to exactly 4096 bytes."""
DATA = np.arange(N, dtype="<f4")
BOMB = 16 << 20
"""What a bomb inflates to: far past 4096 bytes, yet harmless if a guard were missing."""
BYTES = {"name": "bytes", "configuration": {"endian": "little"}}


def write_document(
    folder: Path,
    codecs: list[Any],
    chunk: bytes,
    *,
    data_type: str = "float32",
    source: str | None = None,
) -> Path:
    """A document of one array 'a': two chunks of ``N`` elements, both the bytes ``chunk``.

    The bytes are written to ``chunk.bin`` beside the document (the reference is
    ``source`` when given, e.g. a URL serving that file).
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "chunk.bin").write_bytes(chunk)
    name = source or str(folder / "chunk.bin")
    metadata = parse_array_metadata(
        {
            "shape": [2 * N],
            "data_type": data_type,
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [N]}},
            "chunk_key_encoding": {"name": "default"},
            "fill_value": 0 if data_type == "float32" else "",
            "codecs": codecs,
        }
    )
    manifest = zms.ChunkManifest.from_arrays(
        paths=np.array([name, name]),
        offsets=np.array([0, 0]),
        lengths=np.array([len(chunk)] * 2),
    )
    group = zms.ManifestGroup(arrays={"a": zms.ManifestArray(metadata=metadata, manifest=manifest)})
    zms.write_manifest(group, folder / "doc.zarr")
    return folder / "doc.zarr"


def zeros_compressed(compressor: Any, size: int = BOMB) -> bytes:
    """``size`` zero bytes through a streaming ``compressor`` (never all in memory)."""
    block = bytes(1 << 20)
    parts = [compressor.compress(block) for _ in range(size >> 20)]
    return b"".join(parts) + compressor.flush()


def zstd_rle_bomb(size: int = BOMB) -> bytes:
    """A zstd frame that declares no content size, of run-length blocks adding to ``size``."""
    block = 1 << 17
    count = size // block
    frame = bytearray(b"\x28\xb5\x2f\xfd\x00\x58")  # no content size; an 8 MiB window
    for i in range(count):
        header = (block << 3) | (1 << 1) | (1 if i == count - 1 else 0)
        frame += header.to_bytes(3, "little") + b"\x07"
    return bytes(frame)


def blosc_chunk(**fields: int) -> bytes:
    """A valid blosc chunk of ``DATA``, with header ``fields`` (nbytes, blocksize, cbytes, ...)
    overwritten."""
    chunk = bytearray(numcodecs.blosc.compress(DATA.tobytes(), b"lz4", 5, 1))
    offsets = {"flags": (2, "B"), "nbytes": (4, "<I"), "blocksize": (8, "<I"), "cbytes": (12, "<I")}
    for name, value in fields.items():
        at, fmt = offsets[name]
        struct.pack_into(fmt, chunk, at, value)
    return bytes(chunk)


def blosc_memcpy_lie() -> bytes:
    """A blosc header claiming 256 MiB stored uncompressed, in 32 bytes: c-blosc copies past them."""
    nbytes = 256 << 20
    return struct.pack("<BBBBIII", 2, 1, 0x03, 4, nbytes, nbytes, nbytes + 16) + bytes(16)


def blosc_block_lie() -> bytes:
    """Compressed blosc data whose block start points 256 MiB past the chunk."""
    chunk = bytearray(blosc_chunk())
    struct.pack_into("<I", chunk, 12, 1 << 29)  # cbytes: c-blosc's own bound
    struct.pack_into("<I", chunk, 16, 1 << 28)  # the first block's start
    return bytes(chunk)


BLOSC = {
    "name": "blosc",
    "configuration": {
        "cname": "lz4",
        "clevel": 5,
        "shuffle": "shuffle",
        "typesize": 4,
        "blocksize": 0,
    },
}
NC_BLOSC = {"name": "numcodecs.blosc", "configuration": {"cname": "lz4", "clevel": 5}}
ZSTD = {"name": "zstd", "configuration": {"level": 1, "checksum": False}}

HDF5_LZF = {"name": "zarr_manifest_store.hdf5_lzf", "configuration": {}}
HDF5_LZ4 = {"name": "zarr_manifest_store.hdf5_lz4", "configuration": {}}
HDF5_BITSHUFFLE = {
    "name": "zarr_manifest_store.hdf5_bitshuffle",
    "configuration": {"element_size": 4, "block_size": 1024, "compression": "lz4"},
}


def hdf5_header(size: int, block: int) -> bytes:
    """The 12-byte header of HDF5's LZ4 and compressed bitshuffle chunks."""
    return size.to_bytes(8, "big") + block.to_bytes(4, "big")


def lz4_block(data: bytes) -> bytes:
    """One block as both filters frame it: its 4-byte big-endian size, then raw LZ4."""
    block = lz4_encode(data)
    return len(block).to_bytes(4, "big") + block


ATTACKS: dict[str, tuple[list[Any], Any]] = {
    "blosc: uncompressed copy past the chunk": ([BYTES, BLOSC], blosc_memcpy_lie),
    "blosc: block start past the chunk": ([BYTES, BLOSC], blosc_block_lie),
    "blosc: compressed size longer than the chunk": (
        [BYTES, BLOSC],
        lambda: blosc_chunk(cbytes=1 << 30)[:40],
    ),
    "blosc: 2 GiB decoded size": ([BYTES, BLOSC], lambda: blosc_chunk(nbytes=2**31 - 32)),
    "blosc: zero block size": ([BYTES, BLOSC], lambda: blosc_chunk(blocksize=0)),
    "numcodecs.blosc: uncompressed copy past the chunk": ([BYTES, NC_BLOSC], blosc_memcpy_lie),
    "numcodecs.lz4: 2 GiB declared size": (
        [BYTES, {"name": "numcodecs.lz4", "configuration": {}}],
        lambda: struct.pack("<I", 2**31 - 1) + numcodecs.lz4.compress(DATA.tobytes())[4:],
    ),
    "zstd: 1 TiB declared content size": (
        [BYTES, ZSTD],
        lambda: b"\x28\xb5\x2f\xfd\xe0" + (1 << 40).to_bytes(8, "little") + b"\x01\x00\x00",
    ),
    "zstd: run-length bomb without a content size": ([BYTES, ZSTD], zstd_rle_bomb),
    "numcodecs.zstd: run-length bomb": (
        [BYTES, {"name": "numcodecs.zstd", "configuration": {"level": 1}}],
        zstd_rle_bomb,
    ),
    "numcodecs.zlib: bomb": (
        [BYTES, {"name": "numcodecs.zlib", "configuration": {"level": 1}}],
        lambda: zeros_compressed(zlib.compressobj(9)),
    ),
    "numcodecs.zlib after shuffle: bomb": (
        [
            BYTES,
            {"name": "numcodecs.shuffle", "configuration": {"elementsize": 4}},
            {"name": "numcodecs.zlib", "configuration": {"level": 1}},
            {"name": "numcodecs.fletcher32", "configuration": {}},
        ],
        lambda: (lambda z: z + struct.pack("<I", 0))(zeros_compressed(zlib.compressobj(9))),
    ),
    "gzip: bomb": (
        [BYTES, {"name": "gzip", "configuration": {"level": 1}}],
        lambda: zeros_compressed(zlib.compressobj(9, zlib.DEFLATED, 31)),
    ),
    "numcodecs.gzip: bomb of many members": (
        [BYTES, {"name": "numcodecs.gzip", "configuration": {"level": 1}}],
        lambda: gzip.compress(bytes(1 << 20), 9) * (BOMB >> 20),
    ),
    "numcodecs.bz2: bomb": (
        [BYTES, {"name": "numcodecs.bz2", "configuration": {"level": 9}}],
        lambda: zeros_compressed(bz2.BZ2Compressor(9)),
    ),
    "numcodecs.lzma: bomb": (
        [BYTES, {"name": "numcodecs.lzma", "configuration": {}}],
        lambda: zeros_compressed(lzma.LZMACompressor()),
    ),
    "numcodecs.fletcher32: no room for its checksum": (
        [BYTES, {"name": "numcodecs.fletcher32", "configuration": {}}],
        lambda: b"ab",
    ),
    "numcodecs.crc32: no room for its checksum": (
        [BYTES, {"name": "numcodecs.crc32", "configuration": {}}],
        lambda: b"ab",
    ),
    "crc32c: no room for its checksum": ([BYTES, {"name": "crc32c"}], lambda: b"ab"),
    "numcodecs.shuffle: a length that is not whole items": (
        [BYTES, {"name": "numcodecs.shuffle", "configuration": {"elementsize": 4}}],
        lambda: bytes(4095),
    ),
    "bytes: a chunk of the wrong length": ([BYTES], lambda: bytes(100)),
    "zarr_manifest_store.hdf5_lzf: bomb": ([BYTES, HDF5_LZF], lambda: lzf_encode(bytes(BOMB))),
    "zarr_manifest_store.hdf5_lz4: 1 TiB declared size": (
        [BYTES, HDF5_LZ4],
        lambda: hdf5_header(1 << 40, 1 << 30) + lz4_block(bytes(BOMB)),
    ),
    "zarr_manifest_store.hdf5_bitshuffle: 1 TiB declared size": (
        [BYTES, HDF5_BITSHUFFLE],
        lambda: hdf5_header(1 << 40, 4096) + lz4_block(bytes(BOMB)),
    ),
    "zarr_manifest_store.hdf5_bitshuffle: a block that inflates past its size": (
        [BYTES, HDF5_BITSHUFFLE],
        lambda: hdf5_header(4 * N, 4096) + lz4_block(bytes(BOMB)),
    ),
}


def vlen_count_lie(count: int) -> bytes:
    """A vlen chunk header declaring ``count`` items, followed by one short item."""
    return struct.pack("<I", count) + struct.pack("<I", 2) + b"hi"


def vlen_zlib_document(folder: Path) -> Path:
    """Strings of 4000 characters in zlib: a chunk decoding to 4 MiB, of variable length."""
    items = numcodecs.VLenUTF8().encode(np.array(["x" * 4000] * N, dtype=object))
    codecs = [{"name": "vlen-utf8"}, {"name": "numcodecs.zlib", "configuration": {"level": 1}}]
    return write_document(folder, codecs, zlib.compress(items), data_type="string")


def sharded_bomb_document(folder: Path) -> Path:
    """A shard of two inner chunks, each a zlib bomb."""
    inner = zeros_compressed(zlib.compressobj(9))
    index = np.array([[0, len(inner)], [0, len(inner)]], dtype="<u8").tobytes()
    shard = inner + index + numcodecs.CRC32C().encode(index)[-4:].tobytes()
    configuration = {
        "chunk_shape": [N // 2],
        "codecs": [BYTES, {"name": "numcodecs.zlib", "configuration": {"level": 1}}],
        "index_codecs": [BYTES, {"name": "crc32c"}],
        "index_location": "end",
    }
    return write_document(
        folder, [{"name": "sharding_indexed", "configuration": configuration}], shard
    )
