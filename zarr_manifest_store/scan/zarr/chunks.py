"""An array's chunk objects, found in the store's listing, as a ChunkManifest.

Zarr names a chunk by its grid coordinates: ``c/1/2`` or ``c.1.2`` (Zarr v3's
``default`` encoding), ``1.2`` or ``1/2`` (Zarr v2, and v3's ``v2`` encoding),
``c`` and ``0`` for a scalar. Only keys spelled exactly as Zarr writes them
(decimal coordinates without leading zeros, within the grid) are chunks: any
other object is one Zarr never reads, and so is left out. A chunk without an
object is missing, and reads as the fill value, as in Zarr.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from zarr_manifest_store.manifest import ChunkManifest
from zarr_manifest_store.scan.zarr.listing import Listing

__all__ = ["KeyScheme", "chunk_manifest"]

_COORD = "(?:0|[1-9][0-9]{0,17})"  # a coordinate as Zarr writes it (and fits int64)


@dataclass(frozen=True)
class KeyScheme:
    """How an array names its chunk objects: a prefix (``c`` or none) and a separator."""

    prefix: str
    separator: str

    @classmethod
    def of_v3(cls, encoding: dict[str, object]) -> KeyScheme:
        """The scheme of a Zarr v3 ``chunk_key_encoding``."""
        name = encoding.get("name")
        config = encoding.get("configuration") or {}
        default = "/" if name == "default" else "."
        separator = str(config.get("separator", default)) if isinstance(config, dict) else default
        if name not in ("default", "v2") or separator not in "./" or len(separator) != 1:
            raise ValueError(f"the chunk key encoding {encoding} is not one Zarr defines")
        return cls("c" if name == "default" else "", separator)

    def pattern(self, ndim: int) -> re.Pattern[str]:
        """What a chunk key of an ``ndim``-dimensional array matches, relative to the array."""
        if ndim == 0:
            return re.compile(re.escape(self.prefix or "0"))
        sep = re.escape(self.separator)
        coords = sep.join([_COORD] * ndim)
        return re.compile(f"{re.escape(self.prefix)}{sep}{coords}" if self.prefix else coords)


def chunk_manifest(
    listing: Listing, array_path: str, scheme: KeyScheme, grid: tuple[int, ...]
) -> ChunkManifest:
    """The manifest of the array at ``array_path`` from the chunk objects the listing holds."""
    base = f"{array_path}/" if array_path else ""
    pattern = scheme.pattern(len(grid))
    positions = listing.under(base)
    keys = listing.keys
    start = len(base)
    found = [i for i in positions if pattern.fullmatch(keys[i], start)]
    if grid:
        coords = _coordinates([keys[i][start:] for i in found], scheme, len(grid))
        inside = (coords < np.asarray(grid)).all(axis=1)
        found = [i for i, keep in zip(found, inside.tolist(), strict=True) if keep]
        flat = np.ravel_multi_index(tuple(coords[inside].T), grid)
    else:
        flat = np.zeros(len(found), dtype=np.intp)
    paths = listing.paths(found)
    return ChunkManifest.from_entries(
        shape=grid,
        chunks=flat,
        paths=paths,
        path_index=np.arange(len(found), dtype=np.uint32),
        offsets=np.zeros(len(found), dtype=np.uint64),
        lengths=np.array([listing.sizes[i] for i in found], dtype=np.uint64),
        fingerprints={p: listing.fingerprints[i] for p, i in zip(paths, found, strict=True)},
    )


def _coordinates(keys: list[str], scheme: KeyScheme, ndim: int) -> np.ndarray:
    """The grid coordinates of chunk keys that match the scheme, one row per key."""
    if not keys:
        return np.zeros((0, ndim), dtype=np.int64)
    skip = len(scheme.prefix) + 1 if scheme.prefix else 0
    text = scheme.separator.join(key[skip:] for key in keys)
    numbers = np.array(text.split(scheme.separator), dtype=np.int64)
    return numbers.reshape(len(keys), ndim)
