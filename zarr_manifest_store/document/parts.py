"""Manifests in parts: one array's references held by several manifests, end to end along an axis.

An append adds a part (a JSON or columnar manifest of the new chunks only, in the
array's ``parts/`` folder) and rewrites only the metadata that lists the parts. No
part is ever changed, so a reader that opened the document before an append keeps
reading exactly the parts it listed. A part may give the array fewer chunks than it
holds (``used``): the others were replaced by a later part.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field

import numpy as np

from zarr_manifest_store.document import wire
from zarr_manifest_store.document.assembly import Limits
from zarr_manifest_store.document.lazy import LazyChunkManifest
from zarr_manifest_store.document.loaders import ColumnarLoader, JsonLoader
from zarr_manifest_store.errors import ManifestError
from zarr_manifest_store.io.fingerprints import differences
from zarr_manifest_store.manifest import (
    ChunkCoords,
    ChunkManifest,
    ChunkRef,
    Fingerprint,
    grid_size,
)

__all__ = ["Part", "PartedChunkManifest", "PartsLoader", "part_grid"]


PartLoader = JsonLoader | ColumnarLoader


@dataclass(frozen=True)
class Part:
    """One part as read: where its chunks start along the axis, how many it gives, and the
    loader of its manifest (over the part's own grid)."""

    start: int
    rows: int
    loader: PartLoader

    def blocks(self) -> Iterator[tuple[tuple[int, ...], tuple[int, ...]]]:
        """``(index, origin)`` of each stored block of the part (a JSON part is one block),
        origins in the part's grid."""
        shape = self.loader.block_shape()
        if shape is None:
            yield (), (0,) * len(self.loader.grid)
            return
        counts = (-(-n // b) for n, b in zip(self.loader.grid, shape, strict=True))
        for index in np.ndindex(*counts):
            yield index, tuple(i * b for i, b in zip(index, shape, strict=True))

    def block(self, index: tuple[int, ...]) -> ChunkManifest:
        """One stored block of the part (for a JSON part, all of it)."""
        if self.loader.block_shape() is None:
            return self.loader.load()
        return self.loader.block(index)


def part_grid(grid: tuple[int, ...], axis: int, extent: int) -> tuple[int, ...]:
    """The chunk grid of a part ``extent`` chunks long along ``axis`` of an array's ``grid``."""
    return tuple(extent if k == axis else n for k, n in enumerate(grid))


@dataclass
class PartsLoader:
    """An array's manifest in parts: each part read by its own loader, the whole put together
    along ``axis``."""

    where: str
    grid: tuple[int, ...]
    axis: int
    parts: list[Part]
    limits: Limits = field(default_factory=Limits)

    @property
    def max_dense_chunks(self) -> int:
        return self.limits.max_dense_chunks

    def block_shape(self) -> None:
        return None  # PartedChunkManifest serves chunks from the parts' blocks

    def block(self, block: tuple[int, ...]) -> ChunkManifest:
        raise NotImplementedError("a manifest in parts is read part by part")

    def paths(self) -> tuple[str, ...]:
        found: dict[str, None] = {}
        for part in self.parts:
            table = part.loader.paths()
            found.update(dict.fromkeys(part.loader.load().paths if table is None else table))
        return tuple(found)

    def fingerprints(self) -> dict[str, Fingerprint]:
        """Every part's fingerprints; two parts recording one source differently are refused."""
        merged: dict[str, Fingerprint] = {}
        for part in self.parts:
            for path, fingerprint in part.loader.fingerprints().items():
                known = merged.setdefault(path, fingerprint)
                if diff := differences(known, fingerprint):
                    raise ManifestError(
                        f"{self.where}: the parts record source {path!r} with fingerprints "
                        f"that cannot both hold ({diff}); a source has one fingerprint"
                    )
        return merged

    def load(self) -> ChunkManifest:
        """The whole manifest: each part loaded in turn and cut to the chunks it gives (the
        rest dropped at once), the pieces laid end to end."""
        if grid_size(self.grid) > self.limits.max_dense_chunks:
            raise ManifestError(
                f"{self.where}: the manifest's grid of {grid_size(self.grid):,} chunks in "
                f"{len(self.parts)} parts is larger than max_dense_chunks="
                f"{self.limits.max_dense_chunks:,}; pass a larger max_dense_chunks to "
                f"ManifestStore.open to load it whole (reading chunks, verify and info read it "
                f"part by part)"
            )
        pieces = [_cut(part.loader.load(), self.axis, part.rows) for part in self.parts]
        table = {p for piece in pieces for p in piece.paths}
        fingerprints = {p: f for p, f in self.fingerprints().items() if p in table}
        try:
            return ChunkManifest.concat(pieces, self.axis, fingerprints=fingerprints)
        except ValueError as e:
            raise ManifestError(f"{self.where}: {e}") from None


class PartedChunkManifest(LazyChunkManifest):
    """A :class:`LazyChunkManifest` in parts: a chunk is served from the stored block of the
    part that holds it (a JSON part is one block), the blocks of every part sharing one
    bounded cache; anything about the whole loads every part."""

    __slots__ = ("_parted", "_starts")

    def __init__(self, loader: PartsLoader) -> None:
        super().__init__(loader)
        self._parted = loader
        self._starts = [part.start for part in loader.parts]

    def get(self, coords: ChunkCoords) -> ChunkRef | bytes | None:
        """The chunk at ``coords``, reading at most the block of the part that holds it."""
        if self.loaded:
            return super().get(coords)
        coords = self._in_grid(coords)
        number, local = self._locate(coords)
        part = self._parted.parts[number]
        shape = part.loader.block_shape()
        index = () if shape is None else tuple(c // b for c, b in zip(local, shape, strict=True))
        if shape is not None:
            local = tuple(c - i * b for c, i, b in zip(local, index, shape, strict=True))
        return self._from_block((number, *index), local, coords, lambda: part.block(index))

    def peek(self, coords: ChunkCoords) -> ChunkRef | bytes | None:
        """The chunk at ``coords`` read once, from the part that holds it (see ``get``)."""
        if self.loaded:
            return super().get(coords)
        number, local = self._locate(coords)
        return self._parted.parts[number].loader.entry(local)

    def _locate(self, coords: ChunkCoords) -> tuple[int, ChunkCoords]:
        """The number of the part holding the chunk at ``coords``, and its place in the part."""
        axis = self._parted.axis
        number = bisect.bisect_right(self._starts, coords[axis]) - 1
        start = self._starts[number]
        return number, tuple(c - start if k == axis else c for k, c in enumerate(coords))

    def blocks(self) -> Iterator[tuple[ChunkCoords, ChunkManifest]]:
        """Each part's stored blocks in turn (cut to the chunks the part gives), one at a time."""
        if self.loaded:
            yield from super().blocks()
            return
        axis = self._parted.axis
        for part in self._parted.parts:
            for index, origin in part.blocks():
                if origin[axis] >= part.rows:
                    continue
                block = _cut(part.block(index), axis, part.rows - origin[axis])
                yield tuple(o + part.start if k == axis else o for k, o in enumerate(origin)), block

    def __reduce__(self) -> tuple[object, ...]:
        if self.loaded:
            return ChunkManifest.__reduce__(self)
        return PartedChunkManifest, (self._parted,)


def _cut(manifest: ChunkManifest, axis: int, rows: int) -> ChunkManifest:
    """``manifest`` without its chunks past ``rows`` along ``axis``."""
    if manifest.shape[axis] <= rows:
        return manifest
    positions = [np.arange(rows if k == axis else n) for k, n in enumerate(manifest.shape)]
    return manifest.take(positions)


def check_parts(
    config: wire.TransformerConfig, grid: tuple[int, ...], where: str, at: str
) -> tuple[int, list[wire.ManifestPart]]:
    """The axis and parts of a ``parts`` configuration, checked against the array's ``grid``."""
    parts, axis = config.parts, config.axis
    if parts is None or axis is None:
        raise ManifestError(f"{where}: field {at}: the parts encoding needs 'axis' and 'parts'")
    if config.sources:
        raise ManifestError(
            f"{where}: field {wire.join(at, 'sources')}: a manifest in parts records each part's "
            "fingerprints with the part"
        )
    if axis >= len(grid):
        raise ManifestError(
            f"{where}: field {wire.join(at, 'axis')}: {axis} is not an axis of the "
            f"{len(grid)}-dimensional chunk grid"
        )
    if not parts or len(parts) > wire.MAX_PARTS:
        raise ManifestError(
            f"{where}: field {wire.join(at, 'parts')}: {len(parts)} parts; a manifest has 1 to "
            f"MAX_PARTS={wire.MAX_PARTS} parts (fixed by the specification, "
            "zarr_manifest_store.document.wire.MAX_PARTS): write the document anew to merge them"
        )
    named: set[str] = set()
    for i, part in enumerate(parts):
        field = wire.join(at, f"parts[{i}]")
        if part.manifest in named:
            raise ManifestError(
                f"{where}: field {field}.manifest: {part.manifest!r} is an earlier part's "
                "manifest too; each part has its own (so reading the parts costs what they hold)"
            )
        named.add(part.manifest)
        if part.used is not None and part.used > part.extent:
            raise ManifestError(
                f"{where}: field {field}.used: {part.used} is more than the part's extent "
                f"{part.extent}"
            )
        if part.encoding == "columnar" and part.sources:
            raise ManifestError(
                f"{where}: field {field}.sources: a columnar part records fingerprints in its "
                "manifest group"
            )
    total = sum(part.rows for part in parts)
    if total != grid[axis]:
        raise ManifestError(
            f"{where}: field {wire.join(at, 'parts')}: the parts give {total} chunks along axis "
            f"{axis}, the chunk grid has {grid[axis]}"
        )
    return axis, parts
