"""ChunkManifest: where every chunk of one array lives, stored column-wise (see the package)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from itertools import product
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt
from numpy.lib.array_utils import normalize_axis_index, normalize_axis_tuple

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

    # ------------------------------------------------------------------ operations

    def replace(self, **parts: Any) -> ChunkManifest:
        """A copy with some of the constructor's parts replaced (``lengths=...``, ``inline=...``).

        >>> m = ChunkManifest.from_dict({"0": {"path": "/data/a.nc", "offset": 0, "length": 8}})
        >>> m.replace(lengths=[4]).get((0,))
        ChunkRef(path='/data/a.nc', offset=0, length=4)
        """
        current = {
            "paths": self._paths,
            "path_index": self._index,
            "offsets": self._offsets,
            "lengths": self._lengths,
            "inline": self._inline,
            "fingerprints": self._fingerprints,
        }
        if unknown := parts.keys() - current.keys():
            raise TypeError(
                f"a ChunkManifest has no part(s) {sorted(unknown)}; it has {list(current)}"
            )
        return ChunkManifest(**{**current, **parts})

    def rename_paths(self, rename: Mapping[str, str] | Callable[[str], str]) -> ChunkManifest:
        """A copy whose path table is mapped through ``rename`` (a dict or a function)."""
        new = {
            p: rename.get(p, p) if isinstance(rename, Mapping) else rename(p) for p in self._paths
        }
        return self.replace(
            paths=[new[p] for p in self._paths],
            fingerprints={new[p]: f for p, f in self._fingerprints.items()},
        )

    def take(self, positions: Sequence[npt.ArrayLike]) -> ChunkManifest:
        """The chunks at ``positions``, one sequence of grid positions per axis (outer indexing,
        repeats allowed, like ``grid[np.ix_(*positions)]``); unreferenced paths leave the table.

        >>> m = ChunkManifest.from_arrays(paths=[["a", "b"]], offsets=[[0, 7]], lengths=[[7, 9]])
        >>> picked = m.take([[0], [1, 1]])
        >>> picked.shape, picked.paths, picked.get((0, 1))
        ((1, 2), ('b',), ChunkRef(path='b', offset=7, length=9))
        """
        picks = [np.asarray(p, dtype=np.intp).reshape(-1) for p in positions]
        if len(picks) != self.ndim:
            raise ValueError(f"take needs one sequence of positions per axis ({self.ndim})")
        for axis, (p, n) in enumerate(zip(picks, self.shape, strict=True)):
            if p.size and (p.min() < 0 or p.max() >= n):
                raise IndexError(f"a position along axis {axis} lies outside 0..{n - 1}")
        grid = np.ix_(*picks) if picks else ()
        inline: dict[ChunkCoords, bytes] = {}
        for coords, data in self._inline.items():
            hits = [np.flatnonzero(p == c) for p, c in zip(picks, coords, strict=True)]
            for new in product(*hits):
                inline[tuple(int(c) for c in new)] = data
        return _compacted(
            self._paths,
            self._index[grid],
            self._offsets[grid],
            self._lengths[grid],
            inline,
            self._fingerprints,
        )

    @staticmethod
    def concat(
        manifests: Sequence[ChunkManifest],
        axis: int = 0,
        *,
        fingerprints: Mapping[str, Fingerprint],
    ) -> ChunkManifest:
        """Chunk grids laid side by side along ``axis``: one path table (first use first), the
        inline chunks moved to their new places.

        ``fingerprints`` is the inputs' fingerprints merged into one table; the rule for when
        two recorded fingerprints of one file agree lives with the sources
        (``io.fingerprints.merge_fingerprints``).

        >>> a = ChunkManifest.from_arrays(paths=["a"], offsets=[0], lengths=[4])
        >>> b = ChunkManifest.from_arrays(paths=["b", "a"], offsets=[0, 4], lengths=[4, 4])
        >>> joined = ChunkManifest.concat([a, b], fingerprints={})
        >>> joined.shape, joined.paths
        ((3,), ('a', 'b'))
        """
        if not manifests:
            raise ValueError("need at least one manifest to concatenate")
        ndim = manifests[0].ndim
        axis = normalize_axis_index(axis, ndim)
        for i, m in enumerate(manifests):
            if m.ndim != ndim or _without(m.shape, axis) != _without(manifests[0].shape, axis):
                raise ValueError(
                    f"manifest {i} has chunk grid {m.shape}, which does not line up with "
                    f"{manifests[0].shape} along axes other than {axis}"
                )
        # One lookup from every input's path table, stacked, to the merged table.
        paths: dict[str, int] = {}
        lut = np.array(
            [paths.setdefault(p, len(paths)) for m in manifests for p in m.paths], dtype=np.uint32
        )
        table_starts = np.cumsum([0] + [len(m.paths) for m in manifests[:-1]])
        lengths_along = [m.shape[axis] for m in manifests]
        starts = np.repeat(table_starts, lengths_along).reshape(
            [-1 if k == axis else 1 for k in range(ndim)]
        )
        stacked = np.concatenate([m.path_index for m in manifests], axis=axis)
        present = stacked < INLINE
        index = stacked.copy()
        index[present] = lut[(stacked + np.broadcast_to(starts, stacked.shape))[present]]
        inline: dict[ChunkCoords, bytes] = {}
        for m, start in zip(manifests, np.cumsum([0, *lengths_along[:-1]]), strict=True):
            for coords, data in m.inline.items():
                inline[(*coords[:axis], coords[axis] + int(start), *coords[axis + 1 :])] = data
        return ChunkManifest(
            paths=list(paths),
            path_index=index,
            offsets=np.concatenate([m.offsets for m in manifests], axis=axis),
            lengths=np.concatenate([m.lengths for m in manifests], axis=axis),
            inline=inline,
            fingerprints=fingerprints,
        )

    def transpose(self, axes: Sequence[int]) -> ChunkManifest:
        """The grid with its axes permuted: axis ``k`` of the result is axis ``axes[k]`` of this one."""
        perm = normalize_axis_tuple(tuple(axes), self.ndim)
        if len(perm) != self.ndim:
            raise ValueError(f"axes {tuple(axes)} don't match a grid of {self.ndim} dimensions")
        return self._regridded(
            lambda grid: np.transpose(grid, perm), lambda c: tuple(c[k] for k in perm)
        )

    def expand_dims(self, axis: int | Sequence[int]) -> ChunkManifest:
        """The grid with axes of length one inserted at ``axis`` (positions in the result)."""
        axes = (axis,) if isinstance(axis, int | np.integer) else tuple(axis)
        ndim = self.ndim + len(axes)
        new = normalize_axis_tuple(axes, ndim)

        def coords(c: ChunkCoords) -> ChunkCoords:
            old = iter(c)
            return tuple(0 if k in new else next(old) for k in range(ndim))

        return self._regridded(lambda grid: np.expand_dims(grid, new), coords)

    def squeeze(self, axis: int) -> ChunkManifest:
        """The grid without ``axis``, which must have length one."""
        axis = normalize_axis_index(axis, self.ndim)
        if self.shape[axis] != 1:
            raise ValueError(
                f"cannot drop axis {axis} of a chunk grid {self.shape}: not of length 1"
            )
        return self._regridded(lambda grid: np.squeeze(grid, axis), lambda c: _without(c, axis))

    def with_inline(self, chunks: Mapping[ChunkCoords, bytes]) -> ChunkManifest:
        """A copy in which the chunks at these coordinates are stored inline with these bytes;
        the references they replace go, and with them paths no chunk references any more."""
        index = self._index.copy()
        for coords in chunks:
            key = tuple(int(c) for c in coords)
            if not in_grid(key, self.shape):
                raise ValueError(
                    f"inline chunk {chunk_key(key)!r} lies outside the chunk grid {self.shape}"
                )
            index[key] = INLINE
        referenced = index < INLINE
        return _compacted(
            self._paths,
            index,
            np.where(referenced, self._offsets, 0),
            np.where(referenced, self._lengths, 0),
            {**self._inline, **chunks},
            self._fingerprints,
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

    def _regridded(
        self,
        grid: Callable[[np.ndarray], np.ndarray],
        coords: Callable[[ChunkCoords], ChunkCoords],
    ) -> ChunkManifest:
        """The same chunks on a rearranged grid: ``grid`` maps each column, ``coords`` each
        inline chunk's coordinates."""
        return self.replace(
            path_index=grid(self._index),
            offsets=grid(self._offsets),
            lengths=grid(self._lengths),
            inline={coords(c): d for c, d in self._inline.items()},
        )

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


def _compacted(
    paths: Sequence[str],
    index: np.ndarray,
    offsets: np.ndarray,
    lengths: np.ndarray,
    inline: Mapping[ChunkCoords, bytes],
    fingerprints: Mapping[str, Fingerprint],
) -> ChunkManifest:
    """A manifest whose path table (and fingerprints) keep only the paths still referenced."""
    present = index < INLINE
    used = np.bincount(index[present], minlength=len(paths)).astype(bool)
    if not used.all():
        keep = np.flatnonzero(used)
        lut = np.zeros(len(paths), dtype=np.uint32)
        lut[keep] = np.arange(len(keep), dtype=np.uint32)
        index = np.array(index, dtype=np.uint32)
        index[present] = lut[index[present]]
        paths = [paths[i] for i in keep]
        fingerprints = {p: fingerprints[p] for p in paths if p in fingerprints}
    return ChunkManifest(
        paths=paths,
        path_index=index,
        offsets=offsets,
        lengths=lengths,
        inline=inline,
        fingerprints=fingerprints,
    )


def _without(values: tuple[Any, ...], axis: int) -> tuple[Any, ...]:
    return (*values[:axis], *values[axis + 1 :])
