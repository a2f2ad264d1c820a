"""ChunkManifest: where every chunk of one array lives, stored column-wise (see the package)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from zarr_manifest_store.manifest.columns import (
    cells,
    check_entry,
    check_references,
    fingerprint_table,
    in_grid,
    inline_table,
    narrow,
    path_table,
    unsigned,
)
from zarr_manifest_store.manifest.refs import (
    INLINE,
    MISSING,
    ChunkCoords,
    ChunkRef,
    Fingerprint,
    chunk_key,
    parse_chunk_key,
)

__all__ = ["ChunkManifest"]


class ChunkManifest:
    """The chunk references of one array, column-wise; immutable.

    Build one with :meth:`from_arrays` (grid-shaped paths/offsets/lengths) or
    :meth:`from_dict` (``{"0.0": {"path": ..., "offset": ..., "length": ...}}``),
    or directly from the columnar parts.

    >>> m = ChunkManifest.from_dict({"0": {"path": "/data/a.nc", "offset": 100, "length": 40}})
    >>> m.get((0,))
    ChunkRef(path='/data/a.nc', offset=100, length=40)
    """

    __slots__ = ("_fingerprints", "_index", "_inline", "_lengths", "_offsets", "_paths")

    def __init__(
        self,
        *,
        paths: Sequence[str],
        path_index: npt.ArrayLike,
        offsets: npt.ArrayLike,
        lengths: npt.ArrayLike,
        inline: Mapping[ChunkCoords, bytes] | None = None,
        fingerprints: Mapping[str, Fingerprint] | None = None,
    ) -> None:
        self._paths = path_table(paths)
        self._fingerprints = fingerprint_table(fingerprints or {}, self._paths)
        self._index = unsigned(path_index, np.uint32, "path_index")
        shape = self._index.shape
        self._offsets = unsigned(offsets, np.uint64, "offset", shape)
        self._lengths = narrow(unsigned(lengths, np.uint64, "length", shape))
        self._inline = inline_table(inline or {}, shape)
        self._validate()

    # ------------------------------------------------------------------ constructors

    @classmethod
    def from_arrays(
        cls,
        *,
        paths: npt.ArrayLike,
        offsets: npt.ArrayLike,
        lengths: npt.ArrayLike,
        inline: Mapping[ChunkCoords, bytes] | None = None,
        fingerprints: Mapping[str, Fingerprint] | None = None,
    ) -> ChunkManifest:
        """Build from grid-shaped arrays; a path of ``""`` marks a missing chunk.

        ``inline`` maps chunk coordinates to the chunk's bytes; those chunks
        must have the path ``""``. ``fingerprints`` maps source paths to
        what they looked like when scanned.
        """
        path_grid = np.asarray(paths)
        if path_grid.dtype.kind not in "UTO" or (
            path_grid.dtype.kind == "O" and not all(isinstance(p, str) for p in path_grid.flat)
        ):
            raise ValueError(f"paths must be an array of strings, got dtype {path_grid.dtype}")
        shape = path_grid.shape
        offsets_grid = unsigned(offsets, np.uint64, "offset", shape)
        lengths_grid = unsigned(lengths, np.uint64, "length", shape)
        table, inverse = np.unique(path_grid.ravel(), return_inverse=True)
        table = [str(p) for p in table]
        index = inverse.astype(np.uint32).reshape(shape)
        if table and table[0] == "":
            index = np.where(index == 0, MISSING, index - 1).astype(np.uint32)
            table = table[1:]
        inline = dict(inline or {})
        for coords in inline:
            if in_grid(coords, shape) and path_grid[coords] != "":
                raise ValueError(
                    f"chunk {chunk_key(coords)!r} is both inline and a reference to "
                    f"{path_grid[coords]!r}; give it the path ''"
                )
            if in_grid(coords, shape):
                index[coords] = INLINE
        absent = index >= INLINE
        return cls(
            paths=table,
            path_index=index,
            offsets=np.where(absent, 0, offsets_grid),
            lengths=np.where(absent, 0, lengths_grid),
            inline=inline,
            fingerprints=fingerprints,
        )

    @classmethod
    def from_dict(
        cls,
        entries: Mapping[str, Mapping[str, Any]],
        *,
        shape: Sequence[int] | None = None,
        fingerprints: Mapping[str, Fingerprint] | None = None,
    ) -> ChunkManifest:
        """Build from ``{"0.0": {"path": ..., "offset": ..., "length": ...}}``.

        An entry ``{"data": b"..."}`` is an inline chunk. ``shape`` is the chunk
        grid shape; by default the smallest grid holding every key.
        """
        ndim = None if shape is None else len(shape)
        parsed: dict[ChunkCoords, Mapping[str, Any]] = {}
        for key, entry in entries.items():
            coords = parse_chunk_key(key, ndim)
            ndim = len(coords)
            parsed[coords] = check_entry(key, entry)
        if shape is None:
            shape = tuple(max(c) + 1 for c in zip(*parsed, strict=True)) if parsed else (0,)
        grid = tuple(int(n) for n in shape)
        table: dict[str, int] = {}
        index = np.full(grid, MISSING, dtype=np.uint32)
        offsets = np.zeros(grid, dtype=np.uint64)
        lengths = np.zeros(grid, dtype=np.uint64)
        inline: dict[ChunkCoords, bytes] = {}
        for coords, entry in parsed.items():
            if not in_grid(coords, grid):
                raise ValueError(f"chunk {chunk_key(coords)!r} lies outside the chunk grid {grid}")
            if "data" in entry:
                inline[coords] = bytes(entry["data"])
                index[coords] = INLINE
                continue
            index[coords] = table.setdefault(entry["path"], len(table))
            offsets[coords] = entry["offset"]
            lengths[coords] = entry["length"]
        return cls(
            paths=list(table),
            path_index=index,
            offsets=offsets,
            lengths=lengths,
            inline=inline,
            fingerprints=fingerprints,
        )

    # ------------------------------------------------------------------ accessors

    @property
    def shape(self) -> tuple[int, ...]:
        """The chunk grid shape."""
        return self._index.shape

    @property
    def ndim(self) -> int:
        """Dimensions of the chunk grid (those of the array)."""
        return self._index.ndim

    @property
    def paths(self) -> tuple[str, ...]:
        """The path table: each distinct source path once."""
        return self._paths

    @property
    def path_index(self) -> np.ndarray:
        """Grid-shaped ``uint32`` rows of the path table (or ``MISSING`` / ``INLINE``)."""
        return self._index

    @property
    def offsets(self) -> np.ndarray:
        """Grid-shaped ``uint64`` byte offsets (0 where missing or inline)."""
        return self._offsets

    @property
    def lengths(self) -> np.ndarray:
        """Grid-shaped ``uint64`` byte lengths (0 where missing or inline)."""
        return self._lengths.astype(np.uint64, copy=False)

    @property
    def inline(self) -> Mapping[ChunkCoords, bytes]:
        """The inline chunks' bytes, by chunk coordinates."""
        return MappingProxyType(self._inline)

    @property
    def fingerprints(self) -> Mapping[str, Fingerprint]:
        """What each source looked like when scanned, by path (sources may have none)."""
        return MappingProxyType(self._fingerprints)

    @property
    def nchunks(self) -> int:
        """How many chunks have bytes (references and inline chunks)."""
        return int(np.count_nonzero(self._index != MISSING))

    @property
    def nbytes_referenced(self) -> int:
        """Total bytes of the chunks: referenced ranges plus inline data."""
        return int(self._lengths.sum(dtype=np.uint64)) + sum(map(len, self._inline.values()))

    @property
    def nbytes(self) -> int:
        """Memory held by this manifest, path table and inline bytes included."""
        table = sys.getsizeof(self._paths) + sum(map(sys.getsizeof, self._paths))
        inline = sys.getsizeof(self._inline) + sum(
            sys.getsizeof(k) + sys.getsizeof(v) for k, v in self._inline.items()
        )
        return self._index.nbytes + self._offsets.nbytes + self._lengths.nbytes + table + inline

    def get(self, coords: ChunkCoords) -> ChunkRef | bytes | None:
        """The chunk at grid ``coords``: a reference, inline bytes, or None if missing."""
        i = self._index.item(coords)
        if i < INLINE:
            return ChunkRef(self._paths[i], self._offsets.item(coords), self._lengths.item(coords))
        return self._inline[tuple(coords)] if i == INLINE else None

    def items(self) -> Iterator[tuple[ChunkCoords, ChunkRef | bytes]]:
        """Every present chunk, in C order of the grid."""
        for coords in cells(self._index != MISSING):
            yield coords, self.get(coords)  # type: ignore[misc]

    def to_dict(self) -> dict[str, dict[str, Any]]:
        """The inverse of :meth:`from_dict`."""
        out: dict[str, dict[str, Any]] = {}
        for coords, chunk in self.items():
            out[chunk_key(coords)] = (
                {"data": chunk} if isinstance(chunk, bytes) else chunk._asdict()
            )
        return out

    def rename_paths(self, rename: Mapping[str, str] | Callable[[str], str]) -> ChunkManifest:
        """A copy whose path table is mapped through ``rename`` (a dict or a function)."""
        new = {
            p: rename.get(p, p) if isinstance(rename, Mapping) else rename(p) for p in self._paths
        }
        return ChunkManifest(
            paths=[new[p] for p in self._paths],
            path_index=self._index,
            offsets=self._offsets,
            lengths=self._lengths,
            inline=self._inline,
            fingerprints={new[p]: f for p, f in self._fingerprints.items()},
        )

    def equals(self, other: object) -> bool:
        """True if both describe the same bytes for every chunk (path tables may differ in order)."""
        if not isinstance(other, ChunkManifest) or self.shape != other.shape:
            return False
        if self._inline != other._inline:
            return False
        mine, theirs = self._resolved_paths(), other._resolved_paths()
        return bool(
            np.array_equal(mine, theirs)
            and np.array_equal(self._offsets, other._offsets)
            and np.array_equal(self._lengths, other._lengths)
        )

    def __eq__(self, other: object) -> bool:
        return self.equals(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"ChunkManifest(shape={self.shape}, chunks={self.nchunks}, "
            f"inline={len(self._inline)}, paths={len(self._paths)})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        parts = (self._paths, self._index, self._offsets, self._lengths, self._inline)
        return _rebuild, (*parts, self._fingerprints)

    # ------------------------------------------------------------------ internals

    def _resolved_paths(self) -> np.ndarray:
        """Per-chunk paths, with sentinels mapped to marker strings (for comparisons)."""
        table = np.array([*self._paths, "\0inline", "\0missing"], dtype=object)
        index = self._index.astype(np.int64)
        index[index == INLINE] = len(self._paths)
        index[index == MISSING] = len(self._paths) + 1
        return table[index]

    def _validate(self) -> None:
        check_references(self._paths, self._index, self._offsets, self._lengths, self._inline)
        for arr in (self._index, self._offsets, self._lengths):
            arr.flags.writeable = False


def _rebuild(paths, index, offsets, lengths, inline, fingerprints) -> ChunkManifest:  # type: ignore[no-untyped-def]
    return ChunkManifest(
        paths=paths,
        path_index=index,
        offsets=offsets,
        lengths=lengths,
        inline=inline,
        fingerprints=fingerprints,
    )
