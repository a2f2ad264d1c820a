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
from zarr_manifest_store.document.columnar import ColumnarReader
from zarr_manifest_store.document.location import Location, is_absolute
from zarr_manifest_store.errors import ManifestError
from zarr_manifest_store.io.sources import Sources
from zarr_manifest_store.manifest import (
    INLINE,
    MAX_END,
    MISSING,
    ChunkManifest,
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
    _check_sizes(manifest, where, origin)
    return manifest


def _check_sizes(manifest: ChunkManifest, where: str, origin: tuple[int, ...] | None) -> None:
    """Every reference must end within its source's recorded size."""
    recorded = {p: fp.size for p, fp in manifest.fingerprints.items() if fp.size is not None}
    if not recorded:
        return
    table = manifest.paths
    sizes = np.array([recorded.get(p, MAX_END) for p in table] + [MAX_END], dtype=np.uint64)
    index = manifest.path_index
    present = index < len(table)
    row = np.where(present, index, len(table))
    too_far = present & (manifest.offsets + manifest.lengths > sizes[row])
    if too_far.any():
        coords = tuple(int(c) for c in np.argwhere(too_far)[0])
        path = table[int(index[coords])]
        end = int(manifest.offsets[coords]) + int(manifest.lengths[coords])
        key = chunk_key(_offset(coords, origin))
        raise ManifestError(
            f"{where}: chunk {key!r}: offset + length = {end} lies past the end of {path!r}, "
            f"whose recorded size is {recorded[path]} bytes"
        )


def _offset(coords: tuple[int, ...], origin: tuple[int, ...] | None) -> tuple[int, ...]:
    if origin is None:
        return coords
    return tuple(c + o for c, o in zip(coords, origin, strict=True))


def _shift(message: str, origin: tuple[int, ...] | None) -> str:
    """Rewrite "chunk '0.1'" in a block's message as the chunk's key in the whole grid."""
    if not origin or not message.startswith("chunk '"):
        return message
    key, _, rest = message[len("chunk '") :].partition("'")
    try:
        coords = parse_chunk_key(key, len(origin))
    except ValueError:
        return message
    return f"chunk {chunk_key(_offset(coords, origin))!r}{rest}"


# ---------------------------------------------------------------------- JSON encoding


@dataclass
class JsonLoader:
    """An array's manifest in the JSON encoding (also the prior-art ``chunk-manifest-json``)."""

    resolver: Resolver
    key: str
    grid: tuple[int, ...]
    sources: dict[str, wire.SourceFingerprint] = field(default_factory=dict)

    @property
    def where(self) -> str:
        return self.resolver.location.where(self.key)

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
        index = np.full(self.grid, MISSING, dtype=np.uint32)
        offsets = np.zeros(self.grid, dtype=np.uint64)
        lengths = np.zeros(self.grid, dtype=np.uint64)
        inline: dict[tuple[int, ...], bytes] = {}
        table: dict[str, int] = {}
        for key, entry in entries.items():
            coords = self._coords(key)
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
                index[coords] = INLINE
                continue
            for name in ("path", "offset", "length"):
                if getattr(entry, name) is UNSET:
                    raise ManifestError(f"{self.where}: chunk {key!r}: field {name!r} is missing")
            index[coords] = table.setdefault(entry.path, len(table))  # type: ignore[arg-type]
            offsets[coords] = entry.offset
            lengths[coords] = entry.length
        paths, fingerprints = self.resolver.table(list(table), self.sources, self.key)
        return build(
            where=self.where,
            paths=paths,
            path_index=index,
            offsets=offsets,
            lengths=lengths,
            inline=inline,
            fingerprints=fingerprints,
        )

    def _coords(self, key: str) -> tuple[int, ...]:
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


# ---------------------------------------------------------------------- columnar encoding


@dataclass
class ColumnarLoader:
    """An array's manifest in the columnar encoding, readable block by block."""

    resolver: Resolver
    reader: ColumnarReader
    _table: tuple[list[str], dict[str, Fingerprint]] | None = field(default=None, repr=False)

    @property
    def where(self) -> str:
        return self.resolver.location.where(self.reader.prefix)

    @property
    def grid(self) -> tuple[int, ...]:
        return self.reader.grid

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
        return self._build(self.reader.block(block), None, origin)

    def load(self) -> ChunkManifest:
        columns = self.reader.everything()
        return self._build(columns, columns.get(wire.INLINE_COLUMN), None)

    def _build(
        self,
        columns: dict[str, np.ndarray],
        inline_bytes: np.ndarray | None,
        origin: tuple[int, ...] | None,
    ) -> ChunkManifest:
        paths, fingerprints = self._resolved()
        index, offsets, lengths = columns["path_index"], columns["offset"], columns["length"]
        inline: dict[tuple[int, ...], bytes] = {}
        is_inline = index == INLINE
        if is_inline.any():
            blob = inline_bytes.tobytes() if inline_bytes is not None else self.reader.inline()
            for row in np.argwhere(is_inline):
                coords = tuple(int(c) for c in row)
                start, length = int(offsets[coords]), int(lengths[coords])
                if start + length > len(blob):
                    raise ManifestError(
                        f"{self.where}: chunk {chunk_key(_offset(coords, origin))!r}: inline "
                        f"bytes {start}..{start + length} lie past the end of the inline array "
                        f"({len(blob)} bytes)"
                    )
                inline[coords] = blob[start : start + length]
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
