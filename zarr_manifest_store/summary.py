"""What a hierarchy holds, counted from its manifests: chunks, references, sources, bytes.

:func:`summarize` gives the totals of a whole hierarchy; :class:`ArraySummary`
the counts of one array. Both read the manifests (a stored document's block by
block, so that memory stays that of one block) and never the source files. ``zarr-manifest info`` prints them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import numpy as np

from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.group import ManifestGroup, Node, root_of
from zarr_manifest_store.manifest import ChunkManifest, grid_size

__all__ = ["ArraySummary", "DocumentSummary", "arrays_of", "groups_of", "summarize"]


@dataclass
class ArraySummary:
    """The chunks of one array: how many, where they are held, and how many bytes.

    >>> import zarr_manifest_store as zms
    >>> s = ArraySummary.of(zms.scan("data/era_2026-01-01.nc")["t2m"])
    >>> s.chunks, s.references, s.inline, s.missing, len(s.sources)
    (4, 4, 0, 0, 1)
    """

    chunks: int
    references: int
    inline: int
    bytes_referenced: int
    bytes_inline: int
    sources: set[str] = field(repr=False)

    @property
    def missing(self) -> int:
        """Chunks with no reference and no inline bytes (read as the fill value)."""
        return self.chunks - self.references - self.inline

    @classmethod
    def of(cls, array: ManifestArray) -> ArraySummary:
        """Count ``array``'s chunks from its manifest, one stored block at a time."""
        m = array.manifest
        summary = cls(grid_size(m.shape), 0, 0, 0, 0, set())
        for part in map(cls._of_block, m.blocks()):  # each block dropped before the next
            summary.references += part.references
            summary.inline += part.inline
            summary.bytes_referenced += part.bytes_referenced
            summary.bytes_inline += part.bytes_inline
            summary.sources |= part.sources
        return summary

    @classmethod
    def _of_block(cls, block: tuple[tuple[int, ...], ChunkManifest]) -> ArraySummary:
        manifest = block[1]
        refs = manifest.references()
        used = np.flatnonzero(np.bincount(refs.path_index, minlength=len(manifest.paths)))
        return cls(
            chunks=0,
            references=len(refs.path_index),
            inline=len(manifest.inline),
            bytes_referenced=int(refs.lengths.sum(dtype=np.uint64)),
            bytes_inline=sum(map(len, manifest.inline.values())),
            sources={manifest.paths[i] for i in used.tolist()},
        )


@dataclass
class DocumentSummary:
    """Totals over every array of a hierarchy (see :func:`summarize`)."""

    arrays: int
    groups: int
    chunks: int
    references: int
    inline: int
    missing: int
    bytes_referenced: int
    sources: int

    @classmethod
    def of(cls, root: Node, arrays: Mapping[str, ArraySummary]) -> DocumentSummary:
        """The totals of ``root`` from the summaries of its arrays (by path)."""
        sources: set[str] = set()
        for s in arrays.values():
            sources |= s.sources
        return cls(
            arrays=len(arrays),
            groups=max(len(groups_of(root)) - 1, 0),
            chunks=sum(s.chunks for s in arrays.values()),
            references=sum(s.references for s in arrays.values()),
            inline=sum(s.inline for s in arrays.values()),
            missing=sum(s.missing for s in arrays.values()),
            bytes_referenced=sum(s.bytes_referenced for s in arrays.values()),
            sources=len(sources),
        )


def summarize(source: object) -> DocumentSummary:
    """Totals of a hierarchy: arrays, groups, chunks, references, sources and referenced bytes.

    ``source`` is a ManifestGroup, a ManifestArray or a ManifestStore (its
    root). Reads every array's manifest (a stored document's block by block);
    never the sources.

    >>> summarize(ManifestGroup()).arrays
    0
    """
    root = root_of(source, "summarize")
    return DocumentSummary.of(root, {p: ArraySummary.of(a) for p, a in arrays_of(root)})


def arrays_of(root: Node) -> Iterator[tuple[str, ManifestArray]]:
    """Every array of the hierarchy by path (``""`` for a root array).

    >>> list(arrays_of(ManifestGroup()))
    []
    """
    nodes = [("", root)] if isinstance(root, ManifestArray) else root.walk()
    for path, node in nodes:
        if isinstance(node, ManifestArray):
            yield path, node


def groups_of(root: Node) -> list[tuple[str, ManifestGroup]]:
    """Every group of the hierarchy by path, the root (``""``) first.

    >>> groups_of(ManifestGroup(groups={"sub": ManifestGroup()}))[1][0]
    'sub'
    """
    if isinstance(root, ManifestArray):
        return []
    return [("", root), *((p, n) for p, n in root.walk() if isinstance(n, ManifestGroup))]
