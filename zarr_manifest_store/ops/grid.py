"""The result of an operation: a ManifestArray like its input with a new shape, chunk grid and
manifest; the grid stays ``regular`` whenever every axis is evenly chunked."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.manifest import ChunkManifest

__all__ = ["Edges", "chunk_grid", "derive"]

Edges = tuple[tuple[int, ...], ...]
"""The chunk sizes along each dimension (the last one may overhang the array's end)."""


def derive(
    template: ManifestArray,
    shape: Sequence[int],
    edges: Sequence[tuple[int, ...]],
    manifest: ChunkManifest,
    dimension_names: Sequence[str | None] | None,
) -> ManifestArray:
    """A ManifestArray like ``template`` with a new shape, chunk grid and manifest."""
    doc = template.metadata.to_dict()
    doc.update(
        shape=list(shape),
        chunk_grid=chunk_grid(edges, shape),
        dimension_names=None if dimension_names is None else list(dimension_names),
    )
    return ManifestArray(metadata=doc, manifest=manifest)


def chunk_grid(edges: Sequence[tuple[int, ...]], shape: Sequence[int]) -> dict[str, Any]:
    """A ``regular`` grid when every axis is evenly chunked, otherwise ``rectilinear``."""
    steps = [_regular_step(e, n) for e, n in zip(edges, shape, strict=True)]
    if all(s is not None for s in steps):
        return {"name": "regular", "configuration": {"chunk_shape": steps}}
    specs = [s if s is not None else list(e) for s, e in zip(steps, edges, strict=True)]
    return {"name": "rectilinear", "configuration": {"kind": "inline", "chunk_shapes": specs}}


def _regular_step(edges: tuple[int, ...], extent: int) -> int | None:
    """The chunk size if ``edges`` are what a regular grid gives over ``extent``, else None."""
    if not edges:
        return 1
    step = edges[0]
    if edges.count(step) == len(edges) and len(edges) == math.ceil(extent / step):
        return step
    return None
