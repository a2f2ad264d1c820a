"""Loaders: read one array's manifest from a document, resolved, checked and validated.

Both encodings end in the same place: paths resolved against the document
folder and checked against the allow-list (:class:`Resolver`), fingerprints
attached, every reference validated by :class:`ChunkManifest` itself, and each
reference checked against its source's recorded size. Any problem names the
document file it came from.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
from msgspec import UNSET

from zarr_manifest_store.document import wire
from zarr_manifest_store.document.assembly import Assembly, Limits, shifted
from zarr_manifest_store.document.columnar import ColumnarReader
from zarr_manifest_store.document.location import Location, is_absolute
from zarr_manifest_store.errors import ManifestError
from zarr_manifest_store.io.sources import Sources
from zarr_manifest_store.manifest import (
    INLINE,
    MAX_END,
    MISSING,
    ChunkManifest,
    ChunkRef,
    Fingerprint,
    chunk_key,
    parse_chunk_key,
)


class Resolver:
    """Resolves a document's source paths against its folder.

    Relative paths must be well formed and stay inside the document folder, also
    through symlinks. Absolute paths are returned as written: whether they may be
    read is the allow-list's decision, which ``Sources`` enforces on every read.
    """

    def __init__(self, location: Location) -> None:
        self.location = location
        self._inside = Sources(allow=[location.url])

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return Resolver, (self.location,)

    def resolve(self, written: str, where: str) -> str:
        """The path to read for ``written`` (found in the document file ``where``)."""
        path = self.location.resolve(written, where)
        if not is_absolute(written):
            try:
                self._inside.check_allowed(path)
            except PermissionError:
                raise PermissionError(
                    f"{self.location.where(where)}: relative path {written!r} resolves outside "
                    f"the document folder {self.location.url} (through a symlink); relative "
                    f"paths may not leave it"
                ) from None
        return path

    def table(
        self, written: Sequence[str], sources: Mapping[str, wire.SourceFingerprint], where: str
    ) -> tuple[list[str], dict[str, Fingerprint]]:
        """A path table and its fingerprints, resolved; fingerprints must name listed paths."""
        resolved = {p: self.resolve(p, where) for p in dict.fromkeys(written)}
        fingerprints = {}
        for path, fp in sources.items():
            if path not in resolved:
                raise ManifestError(
                    f"{self.location.where(where)}: field sources: a fingerprint is recorded for "
                    f"{path!r}, which no chunk references"
                )
            fingerprints[resolved[path]] = fp.to_fingerprint()
        return [resolved[p] for p in written], fingerprints


def build(
    *,
    where: str,
    paths: list[str],
    path_index: np.ndarray,
    offsets: np.ndarray,
    lengths: np.ndarray,
    inline: Mapping[tuple[int, ...], bytes],
    fingerprints: Mapping[str, Fingerprint],
    origin: tuple[int, ...] | None = None,
) -> ChunkManifest:
    """A validated ChunkManifest; every problem is a ManifestError naming ``where``.

    ``origin`` is the grid position of a block, so that messages name the
    chunk's key in the whole grid.
    """
    try:
        manifest = ChunkManifest(
            paths=paths,
            path_index=path_index,
            offsets=offsets,
            lengths=lengths,
            inline=inline,
            fingerprints=fingerprints,
        )
    except ValueError as e:
        raise ManifestError(f"{where}: {_shift(str(e), origin)}") from None
    check_sizes(manifest, where, origin)
    return manifest


def check_sizes(manifest: ChunkManifest, where: str, origin: tuple[int, ...] | None) -> None:
    """Every reference must end within its source's recorded size."""
    recorded = {p: fp.size for p, fp in manifest.fingerprints.items() if fp.size is not None}
    if not recorded:
        return
    table = manifest.paths
    sizes = np.array([recorded.get(p, MAX_END) for p in table], dtype=np.uint64)
    refs = manifest.references()
    too_far = refs.offsets + refs.lengths > sizes[refs.path_index]
    if too_far.any():
        row = int(np.argmax(too_far))
        coords = tuple(int(c) for c in np.unravel_index(int(refs.flat[row]), manifest.shape))
        path = table[int(refs.path_index[row])]
        end = int(refs.offsets[row]) + int(refs.lengths[row])
        key = chunk_key(shifted(coords, origin))
        raise ManifestError(
            f"{where}: chunk {key!r}: offset + length = {end} lies past the end of {path!r}, "
            f"whose recorded size is {recorded[path]} bytes"
        )


def _shift(message: str, origin: tuple[int, ...] | None) -> str:
    """Rewrite "chunk '0.1'" in a block's message as the chunk's key in the whole grid."""
    if not origin or not message.startswith("chunk '"):
        return message
    key, _, rest = message[len("chunk '") :].partition("'")
    try:
        coords = parse_chunk_key(key, len(origin))
    except ValueError:
        return message
    return f"chunk {chunk_key(shifted(coords, origin))!r}{rest}"


# ---------------------------------------------------------------------- JSON encoding


@dataclass
class JsonLoader:
    """An array's manifest in the JSON encoding (also the prior-art ``chunk-manifest-json``)."""

    resolver: Resolver
    key: str
    grid: tuple[int, ...]
    sources: dict[str, wire.SourceFingerprint] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)

    @property
    def where(self) -> str:
        return self.resolver.location.where(self.key)

    @property
    def max_dense_chunks(self) -> int:
        return self.limits.max_dense_chunks

    def block_shape(self) -> None:
        return None

    def block(self, block: tuple[int, ...]) -> ChunkManifest:
        raise NotImplementedError("the JSON encoding is read whole")

    def paths(self) -> None:
        return None

    def fingerprints(self) -> dict[str, Fingerprint]:
        return {
            self.resolver.resolve(path, self.key): fp.to_fingerprint()
            for path, fp in self.sources.items()
        }

    def load(self) -> ChunkManifest:
        entries = wire.decode(
            self.resolver.location.read(self.key), dict[str, wire.JsonEntry], self.where
        )
        chunks: list[tuple[int, ...]] = []
        rows: list[int] = []
        offsets: list[int] = []
        lengths: list[int] = []
        inline: dict[tuple[int, ...], bytes] = {}
        table: dict[str, int] = {}
        for key, entry in entries.items():
            coords = self._coords(key)
            chunks.append(coords)
            if entry.data is not UNSET:
                if (
                    entry.path is not UNSET
                    or entry.offset is not UNSET
                    or entry.length is not UNSET
                ):
                    raise ManifestError(
                        f"{self.where}: chunk {key!r}: an inline chunk has only the field 'data'"
                    )
                inline[coords] = self._base64(key, entry.data)
                rows.append(INLINE)
                offsets.append(0)
                lengths.append(0)
                continue
            for name in ("path", "offset", "length"):
                if getattr(entry, name) is UNSET:
                    raise ManifestError(f"{self.where}: chunk {key!r}: field {name!r} is missing")
            rows.append(table.setdefault(entry.path, len(table)))  # type: ignore[arg-type]
            offsets.append(entry.offset)  # type: ignore[arg-type]
            lengths.append(entry.length)  # type: ignore[arg-type]
        paths, fingerprints = self.resolver.table(list(table), self.sources, self.key)
        try:
            manifest = ChunkManifest.from_entries(
                shape=self.grid,
                chunks=_positions(chunks, self.grid),
                paths=paths,
                path_index=np.array(rows, dtype=np.uint32),
                offsets=np.array(offsets, dtype=np.uint64),
                lengths=np.array(lengths, dtype=np.uint64),
                inline=inline,
                fingerprints=fingerprints,
            )
        except ValueError as e:
            raise ManifestError(f"{self.where}: {e}") from None
        check_sizes(manifest, self.where, None)
        return manifest

    def entry(self, coords: tuple[int, ...]) -> ChunkRef | bytes | None:
        """One chunk, the file decoded but no manifest built (cheaper than ``load`` for one)."""
        entries = wire.decode(
            self.resolver.location.read(self.key), dict[str, wire.JsonEntry], self.where
        )
        key = chunk_key(coords)
        entry = entries.get(key)
        if entry is None:
            return None
        if entry.data is not UNSET:
            return self._base64(key, entry.data)
        if entry.path is UNSET or entry.offset is UNSET or entry.length is UNSET:
            raise ManifestError(f"{self.where}: chunk {key!r}: needs path, offset and length")
        return ChunkRef(self.resolver.resolve(entry.path, self.key), entry.offset, entry.length)

    def _coords(self, key: str) -> tuple[int, ...]:
        """The grid coordinates of a chunk key, checked to be canonical and in the grid."""
        try:
            coords = parse_chunk_key(key, len(self.grid))
        except ValueError as e:
            raise ManifestError(f"{self.where}: {e}") from None
        if chunk_key(coords) != key:
            raise ManifestError(
                f"{self.where}: chunk key {key!r} is not canonical (write {chunk_key(coords)!r})"
            )
        if not all(c < n for c, n in zip(coords, self.grid, strict=True)):
            raise ManifestError(
                f"{self.where}: chunk {key!r} lies outside the chunk grid {self.grid}"
            )
        return coords

    def _base64(self, key: str, text: str) -> bytes:
        try:
            return binascii.a2b_base64(text.encode("ascii"), strict_mode=True)
        except (binascii.Error, UnicodeEncodeError) as e:
            raise ManifestError(
                f"{self.where}: chunk {key!r}: field 'data' is not base64 ({e})"
            ) from None


def _positions(coords: list[tuple[int, ...]], grid: tuple[int, ...]) -> np.ndarray:
    """The C-order positions of grid coordinates (each inside the grid)."""
    if not grid:
        return np.zeros(len(coords), dtype=np.int64)
    table = np.array(coords, dtype=np.int64).reshape(len(coords), len(grid))
    return np.ravel_multi_index(tuple(table.T), grid).astype(np.int64)


# ---------------------------------------------------------------------- columnar encoding


@dataclass
class ColumnarLoader:
    """An array's manifest in the columnar encoding, readable block by block."""

    resolver: Resolver
    reader: ColumnarReader
    limits: Limits = field(default_factory=Limits)
    _table: tuple[list[str], dict[str, Fingerprint]] | None = field(default=None, repr=False)

    @property
    def where(self) -> str:
        return self.resolver.location.where(self.reader.prefix)

    @property
    def grid(self) -> tuple[int, ...]:
        return self.reader.grid

    @property
    def max_dense_chunks(self) -> int:
        return self.limits.max_dense_chunks

    def block_shape(self) -> tuple[int, ...]:
        return self.reader.chunks

    def _resolved(self) -> tuple[list[str], dict[str, Fingerprint]]:
        if self._table is None:
            attributes, _ = self.reader.header()
            self._table = self.resolver.table(
                attributes.paths, attributes.sources, f"{self.reader.prefix}/zarr.json"
            )
        return self._table

    def paths(self) -> tuple[str, ...]:
        return tuple(self._resolved()[0])

    def fingerprints(self) -> dict[str, Fingerprint]:
        return dict(self._resolved()[1])

    def block(self, block: tuple[int, ...]) -> ChunkManifest:
        origin = tuple(b * c for b, c in zip(block, self.reader.chunks, strict=True))
        return self._build(self.reader.block(block), origin, self.limits.max_inline_bytes)

    def entry(self, coords: tuple[int, ...]) -> ChunkRef | bytes | None:
        """One chunk, from the columns of its block, no manifest built (cheaper than ``block``
        for one chunk: a block may hold 2^17 of them)."""
        chunks = self.reader.chunks
        block = tuple(c // b for c, b in zip(coords, chunks, strict=True))
        local = tuple(c - i * b for c, i, b in zip(coords, block, chunks, strict=True))
        row, offset, length = (int(v[local]) for v in self.reader.block(block).values())
        key = chunk_key(coords)
        if row == MISSING:
            return None
        if row == INLINE:
            if offset + length > self.reader.inline_size():
                raise ManifestError(f"{self.where}: chunk {key!r}: inline bytes past the end")
            budget = self.limits.max_inline_bytes
            return self.reader.inline_ranges([(offset, offset + length)], budget)[0]
        written = self.reader.header()[0].paths
        if row >= len(written):
            raise ManifestError(f"{self.where}: chunk {key!r}: path_index {row} past the table")
        path = self.resolver.resolve(written[row], f"{self.reader.prefix}/zarr.json")
        return ChunkRef(path, offset, length)

    def load(self) -> ChunkManifest:
        """The whole manifest, read block by block: held as a grid up to ``max_dense_chunks``
        chunks; a larger grid sparse, with at most a quarter as many present chunks (each
        costs its position too, and the cap leaves room for the block being read)."""
        lengths = self.reader.header()[1]["length"].dtype
        whole = Assembly(self.grid, lengths, self.limits, self.where)
        for block in np.ndindex(*_block_grid(self.grid, self.reader.chunks)):
            origin = tuple(b * c for b, c in zip(block, self.reader.chunks, strict=True))
            whole.add(origin, self.block(block))  # the block goes once placed
        paths, fingerprints = self._resolved()
        try:
            return whole.manifest(paths, fingerprints)
        except ValueError as e:
            raise ManifestError(f"{self.where}: {e}") from None

    def _build(
        self, columns: dict[str, np.ndarray], origin: tuple[int, ...], budget: int
    ) -> ChunkManifest:
        paths, fingerprints = self._resolved()
        index, offsets, lengths = columns["path_index"], columns["offset"], columns["length"]
        inline: dict[tuple[int, ...], bytes] = {}
        is_inline = index == INLINE
        if is_inline.any():
            inline = self._inline(is_inline, offsets, lengths, origin, budget)
            offsets = np.where(is_inline, 0, offsets)
            lengths = np.where(is_inline, 0, lengths)
        return build(
            where=self.where,
            paths=paths,
            path_index=index,
            offsets=offsets,
            lengths=lengths,
            inline=inline,
            fingerprints=fingerprints,
            origin=origin,
        )

    def _inline(
        self,
        is_inline: np.ndarray,
        offsets: np.ndarray,
        lengths: np.ndarray,
        origin: tuple[int, ...],
        budget: int,
    ) -> dict[tuple[int, ...], bytes]:
        """The bytes of a block's inline chunks, reading only the inline array's chunks that
        hold them; their total and their ranges are checked first."""
        cells = [tuple(int(c) for c in row) for row in np.argwhere(is_inline)]
        starts, sizes = offsets[is_inline].tolist(), lengths[is_inline].tolist()
        if sum(sizes) > budget:
            raise ManifestError(
                f"{self.where}: the inline chunks of block {chunk_key(origin)!r} hold "
                f"{sum(sizes):,} bytes, more than max_inline_bytes={budget:,}; pass a larger "
                f"max_inline_bytes to ManifestStore.open to read them"
            )
        end = self.reader.inline_size()
        for coords, start, size in zip(cells, starts, sizes, strict=True):
            if start + size > end:
                raise ManifestError(
                    f"{self.where}: chunk {chunk_key(shifted(coords, origin))!r}: inline "
                    f"bytes {start}..{start + size} lie past the end of the inline array "
                    f"({end} bytes)"
                )
        ranges = [(a, a + n) for a, n in zip(starts, sizes, strict=True)]
        return dict(zip(cells, self.reader.inline_ranges(ranges, budget), strict=True))


def _block_grid(grid: tuple[int, ...], blocks: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(-(-n // b) for n, b in zip(grid, blocks, strict=True))
