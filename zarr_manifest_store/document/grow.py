"""Grow one array's stored manifest by a new part along an axis, rewriting as little as it can.

JSON encoding: the new entries are added to the text of ``manifest.json``
(their keys lie past the old grid, so none repeats), which is copied, never
parsed. Columnar encoding: the columns grow as Zarr arrays grow — the path
table gains the new paths, and only the column blocks the new part reaches
are written. Blocks follow the grid as it grows: while the stored block is
smaller along the axis than the grown grid asks for, the manifest is
rewritten with blocks twice as long, so rewrites get rarer as it grows and
stop once a block holds :data:`~columnar.BLOCK_REFERENCES` references.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterator
from typing import Any

import numpy as np

from zarr_manifest_store.document import columnar, wire
from zarr_manifest_store.document.lazy import LazyChunkManifest
from zarr_manifest_store.document.loaders import Resolver
from zarr_manifest_store.document.write import PathWriter, json_manifest
from zarr_manifest_store.errors import ManifestError, SourceChangedError
from zarr_manifest_store.io.fingerprints import differences
from zarr_manifest_store.manifest import INLINE, MISSING, ChunkManifest, ChunkRef, chunk_key

__all__ = ["grow_columnar", "grow_json", "merged_sources", "stored_chunk"]

_EMPTY_OBJECT = re.compile(rb"\{\s*\}\s*\Z")


def grow_json(
    writer: PathWriter, name: str, part: ChunkManifest, origin: tuple[int, ...]
) -> tuple[dict[str, bytes], dict[str, wire.SourceFingerprint]]:
    """The array's grown ``manifest.json`` and the new part's fingerprints (as written)."""
    added = writer.columns(part)
    entries = json_manifest(added, origin)
    key = f"{name}/{wire.JSON_MANIFEST}"
    old = writer.location.read(key)
    end = len(old.rstrip())
    if not (old.startswith(b"{") and end and old[end - 1 : end] == b"}"):
        raise ManifestError(f"{writer.location.where(key)}: not a JSON object; cannot append to it")
    if entries == b"{}":
        return {}, added.sources
    if _EMPTY_OBJECT.match(old):
        return {key: entries}, added.sources
    return {
        key: b"".join([memoryview(old)[: end - 1], b",", memoryview(entries)[1:]])
    }, added.sources


def grow_columnar(
    writer: PathWriter, name: str, old: LazyChunkManifest, part: ChunkManifest, axis: int
) -> dict[str, bytes]:
    """The files of the array's columnar manifest that change when ``part`` follows it."""
    prefix = f"{name}/{wire.COLUMNAR_MANIFEST}"
    reader = columnar.ColumnarReader(writer.location, prefix, old.shape)
    attributes, columns = reader.header()
    added = writer.columns(part)
    grid = tuple(n + part.shape[k] if k == axis else n for k, n in enumerate(old.shape))
    chunks = reader.chunks
    lengths = columns["length"].dtype
    table = list(attributes.paths)
    rows = {p: i for i, p in enumerate(table)}
    remap = np.array([rows.setdefault(p, len(rows)) for p in added.paths], dtype=np.uint32)
    table.extend(p for p in added.paths if rows[p] >= len(table))
    sources = merged_sources(attributes.sources, added.sources, writer.location.where(prefix))
    index, offsets = added.path_index, added.offset.copy()
    if remap.size:
        index = np.where(index < INLINE, remap[np.minimum(index, remap.size - 1)], index)
    offsets[index == INLINE] += reader.inline_size()  # after the stored inline bytes
    parts = {"path_index": index, "offset": offsets, "length": added.length}
    if not _fits(chunks, grid, axis) or (lengths.itemsize < 8 and added.length.dtype.itemsize == 8):
        stored = _stored_columns(reader, old.shape)
        whole = columnar.Columns(
            paths=table,
            sources=sources,
            inline=stored.pop(wire.INLINE_COLUMN) + added.inline,
            **{n: np.concatenate([stored[n], parts[n]], axis=axis) for n in wire.COLUMNS},
        )
        doubled = tuple(2 * n if k == axis else n for k, n in enumerate(grid))
        return columnar.encode(whole, prefix, columnar.block_shape(doubled))
    new = {n: v.astype(columns[n].dtype) for n, v in parts.items()}
    files, metadata = _grown_inline(reader, columns, added.inline, prefix)
    for column in wire.COLUMNS:
        dtype = columns[column].dtype
        metadata[column] = columnar.column_metadata(grid, dtype, chunks, columnar.FILL[column])
        files[f"{prefix}/{column}/zarr.json"] = wire.dumps(metadata[column])
    for block in _touched(old.shape[axis], grid, chunks, axis):
        pieces = _block_values(reader, block, chunks, old.shape, grid, axis, new)
        for column, piece in pieces.items():
            key, data = columnar.chunk_file(block, piece, chunks, columnar.FILL[column])
            files[f"{prefix}/{column}/{key}"] = data
    grown = wire.ColumnarAttributes(paths=table, sources=sources)
    files[f"{prefix}/zarr.json"] = columnar.group_document(grown, metadata)
    return files


def merged_sources(
    old: dict[str, wire.SourceFingerprint], new: dict[str, wire.SourceFingerprint], where: str
) -> dict[str, wire.SourceFingerprint]:
    """The stored fingerprints and the new part's (paths as written); a source recorded in
    both with fingerprints that cannot both hold raises ``SourceChangedError``."""
    merged = dict(old)
    for path, fingerprint in new.items():
        known = merged.setdefault(path, fingerprint)
        if diff := differences(known.to_fingerprint(), fingerprint.to_fingerprint()):
            raise SourceChangedError(
                f"{where}: source {path!r} changed since the document recorded it ({diff}); "
                "rescan the files it came from and write the document again"
            )
    return merged


def stored_chunk(
    location_reader: Resolver, name: str, old: LazyChunkManifest, coords: tuple[int, ...]
) -> ChunkRef | bytes | None:
    """One chunk of a stored array, reading no more of a columnar manifest than the block that
    holds it (and of its inline bytes, the chunk's); a JSON manifest is read whole."""
    prefix = f"{name}/{wire.COLUMNAR_MANIFEST}"
    location = location_reader.location
    if not location.exists(f"{prefix}/zarr.json"):
        return _json_chunk(location_reader, f"{name}/{wire.JSON_MANIFEST}", coords)
    reader = columnar.ColumnarReader(location, prefix, old.shape)
    chunks = reader.chunks
    block = tuple(c // b for c, b in zip(coords, chunks, strict=True))
    local = tuple(c - i * b for c, i, b in zip(coords, block, chunks, strict=True))
    values = reader.block(block)
    row, offset, length = (int(values[n][local]) for n in wire.COLUMNS)
    if row == MISSING:
        return None
    if row == INLINE:
        return reader.inline_ranges([(offset, offset + length)], length + 2**21)[0]
    written = reader.header()[0].paths[row]
    return ChunkRef(location_reader.resolve(written, f"{prefix}/zarr.json"), offset, length)


def _json_chunk(resolver: Resolver, key: str, coords: tuple[int, ...]) -> ChunkRef | bytes | None:
    """One chunk of a JSON manifest, the other entries decoded but not built into a manifest."""
    where = resolver.location.where(key)
    entries = wire.decode(resolver.location.read(key), dict[str, wire.JsonEntry], where)
    entry = entries.get(chunk_key(coords))
    if entry is None:
        return None
    if isinstance(entry.data, str):
        try:
            return base64.b64decode(entry.data, validate=True)
        except binascii.Error:
            raise ManifestError(
                f"{where}: chunk {chunk_key(coords)!r}: data is not base64"
            ) from None
    if not (
        isinstance(entry.path, str)
        and isinstance(entry.offset, int)
        and isinstance(entry.length, int)
    ):
        raise ManifestError(f"{where}: chunk {chunk_key(coords)!r}: needs path, offset and length")
    return ChunkRef(resolver.resolve(entry.path, key), entry.offset, entry.length)


def _grown_inline(
    reader: columnar.ColumnarReader, columns: dict, blob: bytes, prefix: str
) -> tuple[dict[str, bytes], dict[str, dict]]:
    """The ``inline`` column with ``blob`` after its bytes: its changed files and metadata.

    Its chunks are rewritten whole while they are smaller than the grown column asks
    for (twice its size, up to ``INLINE_CHUNK_BYTES``), else only the last one and new ones.
    """
    stored = columns.get(wire.INLINE_COLUMN)
    size = reader.inline_size()
    if not blob:
        if stored is None:
            return {}, {}
        meta = columnar.column_metadata((size,), np.dtype("uint8"), stored.chunks, 0)
        return {}, {wire.INLINE_COLUMN: meta}
    total = size + len(blob)
    chunk = 0 if stored is None else stored.chunks[0]
    limit = size + chunk  # what reading the kept bytes may decode
    if chunk < min(total, columnar.INLINE_CHUNK_BYTES):
        chunk, first = min(2 * total, columnar.INLINE_CHUNK_BYTES), 0
    else:
        first = size // chunk
    kept = reader.inline_ranges([(first * chunk, size)], limit)[0] if size else b""
    data = np.frombuffer(kept + blob, dtype=np.uint8)
    files = {}
    for i in range(-(-len(data) // chunk)):
        key, encoded = columnar.chunk_file(
            (first + i,), data[i * chunk : (i + 1) * chunk], (chunk,), 0
        )
        files[f"{prefix}/{wire.INLINE_COLUMN}/{key}"] = encoded
    meta = columnar.column_metadata((total,), np.dtype("uint8"), (chunk,), 0)
    files[f"{prefix}/{wire.INLINE_COLUMN}/zarr.json"] = wire.dumps(meta)
    return files, {wire.INLINE_COLUMN: meta}


def _fits(chunks: tuple[int, ...], grid: tuple[int, ...], axis: int) -> bool:
    """Whether blocks of ``chunks`` still suit the grown ``grid`` (as long along the axis as
    a new manifest's, the same across it)."""
    wanted = columnar.block_shape(grid)
    return chunks[axis] >= wanted[axis] and all(
        c == w for k, (c, w) in enumerate(zip(chunks, wanted, strict=True)) if k != axis
    )


def _stored_columns(reader: columnar.ColumnarReader, grid: tuple[int, ...]) -> dict[str, Any]:
    """The stored columns whole, as arrays shaped like ``grid``, and the inline bytes."""
    chunks = reader.chunks
    out: dict[str, Any] = {}
    for block in np.ndindex(*(-(-n // c) for n, c in zip(grid, chunks, strict=True))):
        for name, values in reader.block(block).items():
            if name not in out:
                out[name] = np.empty(grid, dtype=values.dtype)
            region = tuple(
                slice(b * c, b * c + n) for b, c, n in zip(block, chunks, values.shape, strict=True)
            )
            out[name][region] = values
    for name in wire.COLUMNS:
        out.setdefault(name, np.empty(grid, dtype=reader.header()[1][name].dtype))
    size = reader.inline_size()
    limit = size + reader.header()[1][wire.INLINE_COLUMN].chunks[0] if size else 0
    out[wire.INLINE_COLUMN] = reader.inline_ranges([(0, size)], limit)[0] if size else b""
    return out


def _touched(
    start: int, grid: tuple[int, ...], chunks: tuple[int, ...], axis: int
) -> Iterator[tuple[int, ...]]:
    """The blocks holding rows ``start`` and beyond along ``axis`` of ``grid``."""
    first = start // chunks[axis]
    for block in np.ndindex(*(-(-n // c) for n, c in zip(grid, chunks, strict=True))):
        if block[axis] >= first:
            yield block


def _block_values(
    reader: columnar.ColumnarReader,
    block: tuple[int, ...],
    chunks: tuple[int, ...],
    old_grid: tuple[int, ...],
    grid: tuple[int, ...],
    axis: int,
    new: dict[str, np.ndarray],
) -> dict[str, np.ndarray]:
    """One block's columns in the grown grid: the stored rows kept, the new part's after them."""
    origin = [b * c for b, c in zip(block, chunks, strict=True)]
    shape = tuple(min(c, n - o) for c, n, o in zip(chunks, grid, origin, strict=True))
    out = {n: np.full(shape, columnar.FILL[n], dtype=new[n].dtype) for n in wire.COLUMNS}
    stored_rows = old_grid[axis] - origin[axis]
    if stored_rows > 0:
        for n, values in reader.block(block).items():
            out[n][tuple(slice(0, s) for s in values.shape)] = values
    first = max(origin[axis], old_grid[axis])
    region = tuple(
        slice(first - o, s) if k == axis else slice(0, s)
        for k, (o, s) in enumerate(zip(origin, shape, strict=True))
    )
    source = tuple(
        slice(first - old_grid[axis], o + s - old_grid[axis]) if k == axis else slice(o, o + s)
        for k, (o, s) in enumerate(zip(origin, shape, strict=True))
    )
    for n in wire.COLUMNS:
        out[n][region] = new[n][source]
    return out
