"""The columnar manifest encoding: an array's references as Zarr v3 arrays of its own.

An array's folder holds a group ``manifest/`` whose attributes carry the path
table and the sources' fingerprints, and whose arrays, shaped like the chunk
grid, hold each chunk's ``path_index`` (``uint32``), ``offset`` (``uint64``) and
``length`` (``uint32`` or ``uint64``); a 1-d ``uint8`` array ``inline`` holds the
bytes of inline chunks, which ``offset`` / ``length`` then address. The arrays
are chunked in blocks of about :data:`BLOCK_REFERENCES` references, compressed,
and end with a ``crc32c`` checksum, so a reader can load one block at a time and
detects corruption. Any Zarr v3 implementation can read them.
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import google_crc32c
import msgspec
import numpy as np
from numcodecs import Blosc, Zstd

from zarr_manifest_store.document import wire
from zarr_manifest_store.document.location import Limit, Location
from zarr_manifest_store.errors import ManifestError
from zarr_manifest_store.manifest import MISSING

BLOCK_REFERENCES = 2**17
"""References per manifest chunk: small enough to read one quickly, large enough to compress."""
INLINE_CHUNK_BYTES = 2**20
"""Chunk size of the ``inline`` array."""
MAX_CHUNK_BYTES = 2**26
"""A manifest chunk may decode to at most this many bytes."""
MAX_CHUNK_FILES = 2**20
"""A manifest array may have at most this many chunks."""
_STORED = Limit(
    MAX_CHUNK_BYTES + MAX_CHUNK_BYTES // 64 + 4096,
    f"the limit on one manifest chunk (MAX_CHUNK_BYTES={MAX_CHUNK_BYTES} decoded, plus what its "
    f"codec and checksum may add)",
)

_DTYPES = {
    "path_index": ("uint32",),
    "offset": ("uint64",),
    "length": ("uint32", "uint64"),
    wire.INLINE_COLUMN: ("uint8",),
}
FILL = {"path_index": MISSING, "offset": 0, "length": 0, wire.INLINE_COLUMN: 0}
_COMPRESSOR = Blosc(cname="zstd", clevel=3, shuffle=Blosc.SHUFFLE)


@dataclass
class Columns:
    """A manifest as the columnar encoding stores it (paths as written in the document)."""

    paths: list[str]
    sources: dict[str, wire.SourceFingerprint]
    path_index: np.ndarray
    offset: np.ndarray
    length: np.ndarray
    inline: bytes = b""

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"path_index": self.path_index, "offset": self.offset, "length": self.length}
        if self.inline:
            out[wire.INLINE_COLUMN] = np.frombuffer(self.inline, dtype=np.uint8)
        return out


# ---------------------------------------------------------------------- writing


def encode(
    columns: Columns, prefix: str, chunks: tuple[int, ...] | None = None
) -> dict[str, bytes]:
    """The files of a columnar manifest under ``prefix`` (the manifest group's key), by key;
    the grid-shaped columns in blocks of ``chunks`` (by default :func:`block_shape`'s)."""
    files: dict[str, bytes] = {}
    metadata: dict[str, dict[str, Any]] = {}
    grid_chunks = chunks or block_shape(columns.path_index.shape)
    for name, values in columns.arrays().items():
        chunks = grid_chunks
        if name == wire.INLINE_COLUMN:
            chunks = (min(len(values), INLINE_CHUNK_BYTES),)
        meta = column_metadata(values.shape, values.dtype, chunks, FILL[name])
        metadata[name] = meta
        files[f"{prefix}/{name}/zarr.json"] = wire.dumps(meta)
        for key, data in _encode_chunks(values, chunks, FILL[name]):
            files[f"{prefix}/{name}/{key}"] = data
    attributes = wire.ColumnarAttributes(paths=columns.paths, sources=columns.sources)
    files[f"{prefix}/zarr.json"] = group_document(attributes, metadata)
    return files


def group_document(attributes: wire.ColumnarAttributes, metadata: dict[str, Any]) -> bytes:
    """The manifest group's ``zarr.json``: path table, fingerprints, the columns' metadata."""
    group = {
        "zarr_format": 3,
        "node_type": "group",
        "attributes": msgspec.to_builtins(attributes),
        "consolidated_metadata": {"kind": "inline", "must_understand": False, "metadata": metadata},
    }
    return wire.dumps(group)


def block_shape(grid: tuple[int, ...], target: int | None = None) -> tuple[int, ...]:
    """Chunk shape for manifest arrays: C-order contiguous blocks of about ``target`` references.

    ``target`` defaults to :data:`BLOCK_REFERENCES`.
    """
    shape = [1] * len(grid)
    room = target or BLOCK_REFERENCES
    for axis in reversed(range(len(grid))):
        extent = max(grid[axis], 1)
        if extent <= room:
            shape[axis] = extent
            room //= extent
        else:
            shape[axis] = max(room, 1)
            break
    return tuple(shape)


def column_metadata(
    shape: tuple[int, ...], dtype: np.dtype, chunks: tuple[int, ...], fill: int
) -> dict[str, Any]:
    """The ``zarr.json`` of one column as this package writes it."""
    return {
        "zarr_format": 3,
        "node_type": "array",
        "shape": list(shape),
        "data_type": dtype.name,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(chunks)}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": fill,
        "codecs": [
            {"name": "bytes", "configuration": {"endian": "little"}},
            {
                "name": "blosc",
                "configuration": {
                    "cname": "zstd",
                    "clevel": _COMPRESSOR.clevel,
                    "shuffle": "shuffle",
                    "typesize": dtype.itemsize,
                    "blocksize": 0,
                },
            },
            {"name": "crc32c"},
        ],
        "attributes": {},
    }


def _encode_chunks(
    values: np.ndarray, chunks: tuple[int, ...], fill: int
) -> Iterator[tuple[str, bytes]]:
    for block in np.ndindex(*_chunk_grid(values.shape, chunks)):
        region = tuple(slice(b * c, (b + 1) * c) for b, c in zip(block, chunks, strict=True))
        yield chunk_file(block, values[region], chunks, fill)


def chunk_file(
    block: tuple[int, ...], piece: np.ndarray, chunks: tuple[int, ...], fill: int
) -> tuple[str, bytes]:
    """The key and bytes of one column chunk holding ``piece`` (an edge chunk's values are
    padded to the full chunk size with the fill value)."""
    piece = piece.astype(piece.dtype.newbyteorder("<"), copy=False)
    if piece.shape != chunks:
        padded = np.full(chunks, fill, dtype=piece.dtype)
        padded[tuple(slice(0, n) for n in piece.shape)] = piece
        piece = padded
    data = _COMPRESSOR.encode(np.ascontiguousarray(piece))
    return _chunk_key(block, "default", "/"), data + _crc(data)


def _chunk_grid(shape: tuple[int, ...], chunks: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(math.ceil(n / c) for n, c in zip(shape, chunks, strict=True))


def _crc(data: bytes) -> bytes:
    return struct.pack("<I", google_crc32c.value(data))


# ---------------------------------------------------------------------- reading


@dataclass(frozen=True)
class _Column:
    """What the reader needs of one manifest array's metadata, checked."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    chunks: tuple[int, ...]
    key_encoding: tuple[str, str]
    compressor: str | None

    def key(self, block: tuple[int, ...]) -> str:
        return _chunk_key(block, *self.key_encoding)

    @property
    def grid(self) -> tuple[int, ...]:
        return _chunk_grid(self.shape, self.chunks)


@dataclass
class ColumnarReader:
    """Reads a columnar manifest group, block by block or whole.

    ``prefix`` is the key of the manifest group; ``grid`` the chunk grid shape
    the manifest must have.
    """

    location: Location
    prefix: str
    grid: tuple[int, ...]
    _header: tuple[wire.ColumnarAttributes, dict[str, _Column]] | None = field(
        default=None, repr=False
    )

    def header(self) -> tuple[wire.ColumnarAttributes, dict[str, _Column]]:
        """The path table, fingerprints and checked column metadata (one read, cached)."""
        if self._header is None:
            key = f"{self.prefix}/zarr.json"
            where = self.location.where(key)
            raw = wire.loads(self.location.read(key), where)
            group = wire.convert(raw, wire.ColumnarGroup, where)
            columns = {
                name: self._column(name, meta, where, f"consolidated_metadata.metadata.{name}")
                for name, meta in group.consolidated_metadata.metadata.items()
            }
            for name in wire.COLUMNS:
                if name not in columns:
                    raise ManifestError(f"{where}: the manifest has no {name!r} array")
            if len({columns[n].chunks for n in wire.COLUMNS}) != 1:
                raise ManifestError(
                    f"{where}: path_index, offset and length must share one chunk shape"
                )
            self._header = (group.attributes, columns)
        return self._header

    @property
    def chunks(self) -> tuple[int, ...]:
        """The block shape of the grid-shaped arrays."""
        return self.header()[1]["path_index"].chunks

    def block(self, block: tuple[int, ...]) -> dict[str, np.ndarray]:
        """The grid-shaped columns of one block, trimmed at the grid's edge."""
        columns = self.header()[1]
        keys = {n: f"{self.prefix}/{n}/{columns[n].key(block)}" for n in wire.COLUMNS}
        data = self.location.read_many(list(keys.values()), _STORED)
        return {n: self._decode(columns[n], block, data[keys[n]]) for n in wire.COLUMNS}

    def inline_size(self) -> int:
        """The length of the ``inline`` array (0 when the manifest has no inline chunks)."""
        column = self.header()[1].get(wire.INLINE_COLUMN)
        return 0 if column is None else column.shape[0]

    def inline_ranges(self, ranges: list[tuple[int, int]], max_bytes: int) -> list[bytes]:
        """The bytes ``[start, stop)`` of the ``inline`` array for each range, reading only the
        chunks of it that hold them, at most ``max_bytes`` of them decoded."""
        column = self.header()[1].get(wire.INLINE_COLUMN)
        if column is None:  # no inline array: only empty ranges lie inside it
            return [b"" for _ in ranges]
        size = column.chunks[0]
        needed = sorted(
            {c for a, b in ranges if b > a for c in range(a // size, (b - 1) // size + 1)}
        )
        if len(needed) * size > max_bytes:
            raise ManifestError(
                f"{self.location.where(self.prefix)}: the inline chunks asked for lie in "
                f"{len(needed)} chunks of the inline array ({len(needed) * size:,} bytes), more "
                f"than max_inline_bytes={max_bytes:,}; pass a larger max_inline_bytes to "
                f"ManifestStore.open to read them"
            )
        keys = {c: f"{self.prefix}/{column.name}/{column.key((c,))}" for c in needed}
        data = self.location.read_many(list(keys.values()), _STORED)
        decoded = {c: self._decode(column, (c,), data[keys[c]]) for c in needed}
        return [
            b"".join(
                decoded[c][max(a - c * size, 0) : b - c * size].tobytes()
                for c in range(a // size, (b - 1) // size + 1)
            )
            if b > a
            else b""
            for a, b in ranges
        ]

    def _column(self, name: str, raw: dict[str, Any], where: str, at: str) -> _Column:
        if name not in _DTYPES:
            raise ManifestError(f"{where}: field {at}: unknown manifest array {name!r}")
        meta = wire.convert(raw, wire.ColumnArray, where, at)

        def refuse(field: str, problem: str) -> ManifestError:
            return ManifestError(f"{where}: field {wire.join(at, field)}: {problem}")

        if meta.data_type not in _DTYPES[name]:
            allowed = " or ".join(_DTYPES[name])
            raise refuse("data_type", f"{name} must be {allowed}, got {meta.data_type!r}")
        if meta.storage_transformers:
            raise refuse("storage_transformers", "must be empty")
        shape = tuple(meta.shape)
        if name != wire.INLINE_COLUMN and shape != self.grid:
            raise refuse("shape", f"{list(shape)} differs from the chunk grid {list(self.grid)}")
        if name == wire.INLINE_COLUMN and len(shape) != 1:
            raise refuse("shape", "the inline array must be 1-dimensional")
        if meta.chunk_grid.name != "regular":
            raise refuse("chunk_grid.name", "must be 'regular'")
        field = "chunk_grid.configuration.chunk_shape"
        grid = wire.convert(
            meta.chunk_grid.configuration,
            wire.RegularGrid,
            where,
            wire.join(at, "chunk_grid.configuration"),
        )
        chunks = tuple(grid.chunk_shape)
        dtype = np.dtype(meta.data_type)
        if len(chunks) != len(shape):
            raise refuse(field, f"rank {len(chunks)} differs from the shape's {len(shape)}")
        if math.prod(chunks) * dtype.itemsize > MAX_CHUNK_BYTES:
            raise refuse(field, f"chunks of {chunks} exceed {MAX_CHUNK_BYTES} bytes")
        if math.prod(_chunk_grid(shape, chunks)) > MAX_CHUNK_FILES:
            raise refuse(field, f"more than {MAX_CHUNK_FILES} chunks")
        return _Column(
            name=name,
            shape=shape,
            dtype=dtype.newbyteorder("<"),
            chunks=chunks,
            key_encoding=_key_encoding(
                meta.chunk_key_encoding, where, wire.join(at, "chunk_key_encoding")
            ),
            compressor=_codecs(meta.codecs, where, wire.join(at, "codecs")),
        )

    def _decode(self, col: _Column, block: tuple[int, ...], data: bytes) -> np.ndarray:
        where = f"{self.location.where(self.prefix)}/{col.name}/{col.key(block)}"
        expected = math.prod(col.chunks) * col.dtype.itemsize
        if len(data) < 4 or _crc(data[:-4]) != data[-4:]:
            raise ManifestError(f"{where}: crc32c checksum mismatch: the manifest chunk is corrupt")
        raw = _decompress(col.compressor, data[:-4], expected, where)
        values = np.frombuffer(raw, dtype=col.dtype).reshape(col.chunks)
        region = tuple(
            slice(0, min(c, n - b * c))
            for b, c, n in zip(block, col.chunks, col.shape, strict=True)
        )
        return values[region]


def _key_encoding(encoding: wire.NamedConfig, where: str, at: str) -> tuple[str, str]:
    default = {"default": "/", "v2": "."}.get(encoding.name)
    separator = encoding.configuration.get("separator", default)
    if default is None or separator not in ("/", "."):
        raise ManifestError(
            f"{where}: field {at}: expected 'default' or 'v2' with separator "
            f"'/' or '.', got {msgspec.to_builtins(encoding)}"
        )
    return encoding.name, separator


def _chunk_key(block: tuple[int, ...], name: str, separator: str) -> str:
    if name == "v2":
        return separator.join(map(str, block)) or "0"
    return separator.join(["c", *map(str, block)])


def _codecs(codecs: list[wire.NamedConfig], where: str, at: str) -> str | None:
    """The compressor of a manifest array's codec list, which must be bytes, [compressor], crc32c."""
    names = [c.name for c in codecs]
    if (
        len(codecs) not in (2, 3)
        or names[0] != "bytes"
        or names[-1] != "crc32c"
        or (len(codecs) == 3 and names[1] not in ("blosc", "zstd", "gzip"))
    ):
        raise ManifestError(
            f"{where}: field {at}: a manifest array's codecs are 'bytes', then optionally one "
            f"of 'blosc', 'zstd', 'gzip', then 'crc32c'; got {names}"
        )
    for i, codec in enumerate(codecs):
        field = wire.join(at, f"[{i}].configuration")
        config = wire.convert(codec.configuration, wire.CODEC_CONFIGS[codec.name], where, field)
        if isinstance(config, wire.BytesConfig) and config.endian != "little":
            raise ManifestError(f"{where}: field {field}.endian: must be 'little'")
    return names[1] if len(codecs) == 3 else None


def _decompress(
    compressor: str | None, data: bytes, expected: int, where: str
) -> bytes | np.ndarray:
    """Decompress a chunk that must decode to exactly ``expected`` bytes, never allocating more."""
    try:
        if compressor is None:
            out = data
        elif compressor == "blosc":
            out = _blosc(data, expected, where)
        elif compressor == "zstd":
            out = _zstd(data, expected, where)
        else:
            inflate = zlib.decompressobj(wbits=31)
            out = inflate.decompress(data, expected + 1)
            if not inflate.eof or inflate.unconsumed_tail or inflate.unused_data:
                raise ManifestError(f"{where}: the gzip stream does not end where the chunk does")
    except ManifestError:
        raise
    except Exception as e:  # a corrupt stream, whatever the library makes of it
        raise ManifestError(f"{where}: cannot decompress ({compressor}): {e}") from None
    if len(out) != expected:
        raise ManifestError(
            f"{where}: the chunk decodes to {len(out)} bytes, {expected} were expected"
        )
    return out


def _blosc(data: bytes, expected: int, where: str) -> np.ndarray:
    if len(data) < 16:
        raise ManifestError(f"{where}: the blosc header is truncated")
    nbytes, _, cbytes = struct.unpack_from("<III", data, 4)
    if nbytes != expected or cbytes != len(data):
        raise ManifestError(
            f"{where}: the blosc header announces {nbytes} bytes in {cbytes}; "
            f"{expected} in {len(data)} were expected"
        )
    out = np.empty(expected, dtype=np.uint8)
    Blosc().decode(data, out=out)
    return out


def _zstd(data: bytes, expected: int, where: str) -> bytes:
    size = _zstd_content_size(data)
    if size != expected:
        raise ManifestError(
            f"{where}: the zstd frame announces {size} bytes; {expected} were expected"
        )
    return Zstd().decode(data)  # sized by the frame header, checked above: no copy into `out`


def _zstd_content_size(data: bytes) -> int | None:
    """The content size a zstd frame header declares (RFC 8878 3.1.1.1), or None if absent."""
    if len(data) < 6 or data[:4] != b"\x28\xb5\x2f\xfd":
        return None
    descriptor = data[4]
    fcs_flag, single_segment, dict_flag = descriptor >> 6, (descriptor >> 5) & 1, descriptor & 3
    position = 5 + (0 if single_segment else 1) + (0, 1, 2, 4)[dict_flag]
    width = (1 if single_segment else 0, 2, 4, 8)[fcs_flag]
    if width == 0 or len(data) < position + width:
        return None
    size = int.from_bytes(data[position : position + width], "little")
    return size + 256 if width == 2 else size
