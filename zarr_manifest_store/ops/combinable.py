"""What arrays must share to be combined: their encoding, their shape and chunks off the joining
axis, and their CF attributes; each refusal names the inputs by the files they read."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from zarr_manifest_store._zarr import ArrayV3Metadata
from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.cf import check_cf_attributes
from zarr_manifest_store.manifest import ChunkManifest
from zarr_manifest_store.ops.grid import Edges

__all__ = [
    "check_combinable",
    "common_names",
    "describe_paths",
    "describe_sources",
    "manifest_arrays",
]

_ENCODE_ONLY = {
    "gzip": {"level"},
    "zstd": {"level"},
    "blosc": {"clevel"},
    "numcodecs.zlib": {"level"},
    "numcodecs.gzip": {"level"},
    "numcodecs.zstd": {"level"},
    "numcodecs.bz2": {"level"},
    "numcodecs.blosc": {"clevel"},
}
"""Codec settings that only steer compression: chunks written with any value decode alike."""


def describe_sources(manifest: ChunkManifest) -> str:
    """The files a manifest reads, for messages: ``a.nc``, ``a.nc, b.nc`` or ``a.nc … z.nc (40 files)``."""
    if not manifest.paths:
        return "inline data" if manifest.inline else "no source file"
    return describe_paths(manifest.paths)


def describe_paths(paths: Sequence[str]) -> str:
    """Files for messages: ``a.nc``, ``a.nc, b.nc`` or ``a.nc … z.nc (40 files)``."""
    if len(paths) <= 2:
        return ", ".join(paths)
    return f"{paths[0]} … {paths[-1]} ({len(paths)} files)"


def manifest_arrays(arrays: Any, operation: str) -> list[ManifestArray]:
    """``arrays`` as a non-empty list of ManifestArrays; a TypeError names the first that is not."""
    arrays = list(arrays)
    if not arrays:
        raise ValueError(f"need at least one array to {operation}")
    for i, a in enumerate(arrays):
        if not isinstance(a, ManifestArray):
            raise TypeError(
                f"cannot {operation} input {i}, a {type(a).__module__}.{type(a).__name__}, with "
                "ManifestArrays: every input must be a ManifestArray (chunk references), "
                "not values in memory"
            )
    return arrays


def check_combinable(arrays: Sequence[ManifestArray], axis: int | None, *, stacking: bool) -> None:
    """Raise ``ValueError`` naming the first input that differs from input 0, and how."""
    first = arrays[0]
    edges = first.chunk_sizes
    for i, a in enumerate(arrays[1:], start=1):
        problem = _difference(first, a, edges, axis, stacking)
        if problem:
            raise ValueError(f"cannot combine {_label(0, first)} and {_label(i, a)}: {problem}")
    check_cf_attributes(
        [a.attributes for a in arrays],
        [describe_sources(a.manifest) for a in arrays],
    )


def common_names(arrays: Sequence[ManifestArray]) -> tuple[str | None, ...] | None:
    """The inputs' dimension names if they all have the same, else None."""
    names = {a.dimension_names for a in arrays}
    return names.pop() if len(names) == 1 else None


def _label(i: int, a: ManifestArray) -> str:
    return f"input {i} ({describe_sources(a.manifest)})"


def _difference(
    first: ManifestArray, other: ManifestArray, edges: Edges, axis: int | None, stacking: bool
) -> str | None:
    """How ``other`` differs from ``first`` in a way that forbids combining them, if it does."""
    if other.ndim != first.ndim:
        return f"they have {first.ndim} and {other.ndim} dimension(s)"
    if not _same_encoding(first.metadata, other.metadata):
        ref, mine = _encoding(first.metadata), _encoding(other.metadata)
        for field, value in mine.items():
            if value != ref[field]:
                return (
                    f"their {field} differ ({ref[field]} vs {value}); chunks of one array are "
                    "all decoded alike"
                )
    other_edges = other.chunk_sizes
    for k in range(first.ndim):
        if k == axis:
            continue
        if other.shape[k] != first.shape[k]:
            need = "the same shape" if stacking else f"equal lengths except along axis {axis}"
            return f"shapes {first.shape} and {other.shape} differ on axis {k}; they need {need}"
        if other_edges[k] != edges[k]:
            return (
                f"their chunks differ on axis {k} ({_show_edges(edges[k])} vs "
                f"{_show_edges(other_edges[k])}); rechunk one of them or combine along that axis"
            )
    return None


def _same_encoding(a: ArrayV3Metadata, b: ArrayV3Metadata) -> bool:
    """A quick check that chunks of ``a`` and ``b`` decode alike (False may still be alike)."""
    fa, fb = a.fill_value, b.fill_value
    return (
        a.data_type == b.data_type
        and a.codecs == b.codecs
        and a.storage_transformers == b.storage_transformers
        and bool(fa == fb or (fa != fa and fb != fb))  # NaN fill values
    )


def _encoding(metadata: ArrayV3Metadata) -> dict[str, Any]:
    """What decides how a chunk's bytes decode, as comparable JSON."""
    doc = metadata.to_dict()
    codecs = []
    for codec in doc["codecs"]:
        codec = dict(codec)  # type: ignore[arg-type]
        ignored = _ENCODE_ONLY.get(codec.get("name"), set())
        config = {k: v for k, v in (codec.get("configuration") or {}).items() if k not in ignored}
        codecs.append({"name": codec["name"], "configuration": config})
    return {
        "dtypes": doc["data_type"],
        "codecs": codecs,
        "fill values": doc["fill_value"],
        "storage transformers": doc.get("storage_transformers", ()),
    }


def _show_edges(edges: tuple[int, ...]) -> str:
    return f"size {edges[0]}" if len(set(edges)) == 1 else f"sizes {list(edges)}"
