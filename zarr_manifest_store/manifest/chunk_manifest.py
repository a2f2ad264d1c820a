"""ChunkManifest: where every chunk of one array lives, stored column-wise (see the package)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from zarr_manifest_store.manifest.axes import (
    Rearrangement,
    insertion,
    permutation,
    rearranged_columns,
    rearranged_entries,
    removal,
)
from zarr_manifest_store.manifest.columns import (
    cells,
    check_references,
    dict_entries,
    fingerprint_table,
    grid_columns,
    held_bytes,
    inline_table,
    narrow,
    path_table,
    single_cell_columns,
)
from zarr_manifest_store.manifest.grid import concatenated, from_grids, inlined, taken
from zarr_manifest_store.manifest.refs import (
    INLINE,
    MISSING,
    ChunkCoords,
    ChunkRef,
    Fingerprint,
    chunk_key,
)
from zarr_manifest_store.manifest.sparse import (
    MAX_DENSE_CHUNKS,
    References,
    check_dense,
    comparable,
    coords_at,
    entry_columns,
    extents,
    find,
    flat_position,
    gathered,
    held_sparse,
    scatter,
)

__all__ = ["ChunkManifest"]


class ChunkManifest:
    """The chunk references of one array, column-wise; immutable.

    Build one with :meth:`from_arrays` (grid-shaped paths/offsets/lengths),
    :meth:`from_dict` (``{"0.0": {"path": ..., "offset": ..., "length": ...}}``),
    :meth:`from_entries` (the present chunks only), or directly from the columnar parts.
    A grid much larger than its entries is held *sparse* (see ``manifest.sparse``):
    memory in proportion to the entries; operations that need the grid densify it.

    >>> m = ChunkManifest.from_dict({"0": {"path": "/data/a.nc", "offset": 100, "length": 40}})
    >>> m.get((0,))
    ChunkRef(path='/data/a.nc', offset=100, length=40)
    """

    __slots__ = (
        "_fingerprints",
        "_flat",
        "_index",
        "_inline",
        "_lengths",
        "_offsets",
        "_paths",
        "_shape",
    )

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
        columns = grid_columns(path_index, offsets, lengths)
        self._hold(paths, fingerprints, inline, columns[0].shape, None, *columns)

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
        return cls(**from_grids(paths, offsets, lengths, inline), fingerprints=fingerprints)

    @classmethod
    def whole_inline(cls, data: bytes, ndim: int) -> ChunkManifest:
        """One inline chunk holding a whole ``ndim``-axis array (a grid of one cell per axis):
        what a scan makes of each small dataset, so it skips checks this cannot fail."""
        manifest = cls.__new__(cls)
        manifest._paths, manifest._fingerprints, manifest._flat = (), {}, None
        manifest._index, manifest._offsets, manifest._lengths = single_cell_columns(ndim)
        manifest._inline, manifest._shape = {(0,) * ndim: bytes(data)}, (1,) * ndim
        return manifest

    @classmethod
    def one_file(
        cls, fingerprints: Mapping[str, Fingerprint], *columns: np.ndarray
    ) -> ChunkManifest:
        """Grid-shaped columns of one file's chunks as a scan reads its chunk index (``uint32``
        indices of 0 or MISSING, ``uint64`` offsets and ``uint32`` lengths inside the file),
        nothing inline: what a scan makes of each chunked dataset, so it skips the checks.
        ``fingerprints`` (of that one file) is held as given: a scan's arrays share one."""
        manifest = cls.__new__(cls)
        manifest._paths, manifest._fingerprints = tuple(fingerprints), fingerprints
        manifest._index, manifest._offsets, manifest._lengths = columns
        manifest._inline, manifest._shape, manifest._flat = {}, columns[0].shape, None
        for column in columns:
            column.setflags(write=False)
        return manifest

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
        return cls.from_entries(**dict_entries(entries, shape), fingerprints=fingerprints)

    @classmethod
    def from_entries(
        cls,
        *,
        shape: Sequence[int],
        chunks: npt.ArrayLike,
        paths: Sequence[str],
        path_index: npt.ArrayLike,
        offsets: npt.ArrayLike,
        lengths: npt.ArrayLike,
        inline: Mapping[ChunkCoords, bytes] | None = None,
        fingerprints: Mapping[str, Fingerprint] | None = None,
    ) -> ChunkManifest:
        """Build from the present chunks only, in any order: ``chunks`` holds their positions
        in the C-order grid of ``shape`` (as ``np.ravel_multi_index`` gives them), the other
        columns their path-table rows (``INLINE`` for an inline chunk), offsets and lengths.

        Costs memory in proportion to the entries: a grid much larger than them is held sparse.

        >>> m = ChunkManifest.from_entries(shape=(1000, 1000), chunks=[999_999], paths=["a"],
        ...                                path_index=[0], offsets=[0], lengths=[8])
        >>> m.sparse, m.nchunks, m.get((999, 999))
        (True, 1, ChunkRef(path='a', offset=0, length=8))
        """
        grid = tuple(int(n) for n in shape)
        flat, index, offsets_col, lengths_col = entry_columns(
            grid, chunks, path_index, offsets, lengths
        )
        if not held_sparse(grid, len(flat)):
            columns = scatter(grid, flat, index, offsets_col, lengths_col)
            parts = dict(zip(("path_index", "offsets", "lengths"), columns, strict=True))
            return cls(paths=paths, **parts, inline=inline, fingerprints=fingerprints)
        manifest = cls.__new__(cls)
        columns = (index.astype(np.uint32), offsets_col, narrow(lengths_col))
        manifest._hold(paths, fingerprints, inline, grid, flat, *columns)
        return manifest

    # ------------------------------------------------------------------ accessors

    @property
    def shape(self) -> tuple[int, ...]:
        """The chunk grid shape."""
        return self._shape

    @property
    def ndim(self) -> int:
        """Dimensions of the chunk grid (those of the array)."""
        return len(self._shape)

    @property
    def sparse(self) -> bool:
        """Whether only the present chunks are held (a grid much larger than its entries)."""
        return self._flat is not None

    @property
    def paths(self) -> tuple[str, ...]:
        """The path table: each distinct source path once."""
        return self._paths

    @property
    def path_index(self) -> np.ndarray:
        """Grid-shaped ``uint32`` rows of the path table (or ``MISSING`` / ``INLINE``)."""
        return self.densify()._index

    @property
    def offsets(self) -> np.ndarray:
        """Grid-shaped ``uint64`` byte offsets (0 where missing or inline)."""
        return self.densify()._offsets

    @property
    def lengths(self) -> np.ndarray:
        """Grid-shaped ``uint64`` byte lengths (0 where missing or inline)."""
        return self.densify()._lengths.astype(np.uint64, copy=False)

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
        columns = (self._index, self._offsets, self._lengths, self._flat)
        return held_bytes(self._paths, self._inline, [c for c in columns if c is not None])

    def get(self, coords: ChunkCoords) -> ChunkRef | bytes | None:
        """The chunk at grid ``coords``: a reference, inline bytes, or None if missing."""
        cell: Any = coords
        if self._flat is not None:
            cell = find(self._flat, flat_position(coords, self._shape))
            if cell < 0:
                return None
        return self._chunk(cell, coords)

    def items(self) -> Iterator[tuple[ChunkCoords, ChunkRef | bytes]]:
        """Every present chunk, in C order of the grid."""
        if self._flat is None:
            for coords in cells(self._index != MISSING):
                yield coords, self._chunk(coords, coords)  # type: ignore[misc]
            return
        for row, flat in enumerate(self._flat.tolist()):
            coords = coords_at(flat, self._shape)
            yield coords, self._chunk(row, coords)  # type: ignore[misc]

    def entries(self) -> References:
        """Every present chunk as 1-d columns in C order of the grid (inline ones with the
        path index ``INLINE``); costs memory in proportion to them, not to the grid."""
        if self._flat is not None:
            return References(self._flat, self._index, self._offsets, self._lengths)
        return gathered(self._index != MISSING, self._index, self._offsets, self._lengths)

    def references(self) -> References:
        """The referenced chunks as 1-d columns (inline and missing ones left out), in C order."""
        entries = self.entries()
        referenced = entries.path_index < INLINE
        if referenced.all():
            return entries
        return References(*(np.asarray(column)[referenced] for column in entries))

    def blocks(self) -> Iterator[tuple[ChunkCoords, ChunkManifest]]:
        """``(origin, block)`` pairs that together hold every chunk, each block with this
        manifest's path table; here the manifest itself at the origin. A manifest read from a
        document yields its stored blocks one at a time, so that whole-manifest computations
        (``zarr-manifest info``, ``ManifestStore.verify``) hold one block at once."""
        yield (0,) * self.ndim, self

    def source_extents(self) -> dict[str, int]:
        """For each referenced source, where its last referenced chunk ends (block by block)."""
        extents: dict[str, int] = {}
        for part in map(_block_extents, self.blocks()):  # each block dropped before the next
            for path, end in part.items():
                extents[path] = max(extents.get(path, 0), end)
        return extents

    def densify(self, max_chunks: int = MAX_DENSE_CHUNKS) -> ChunkManifest:
        """This manifest held as a grid (itself if it is one), refused with a ValueError if the
        grid has more than ``max_chunks`` chunks (16 bytes each)."""
        if self._flat is None:
            return self
        check_dense(self._shape, len(self._flat), max_chunks)
        index, offsets, lengths = scatter(
            self._shape, self._flat, self._index, self._offsets, self._lengths
        )
        columns = {"path_index": index, "offsets": offsets, "lengths": lengths}
        return ChunkManifest(**self._parts() | columns)

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
        current = self._parts()
        if unknown := parts.keys() - current.keys():
            raise TypeError(
                f"a ChunkManifest has no part(s) {sorted(unknown)}; it has {list(current)}"
            )
        if self._flat is not None and parts.keys() & {"path_index", "offsets", "lengths"}:
            return self.densify().replace(**parts)  # grid-shaped parts
        return _of_parts(current | parts, self._shape, self._flat)

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
        if self._flat is not None:
            return self.densify().take(positions)
        return ChunkManifest(**taken(self._parts(), self._shape, positions))

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
        return ChunkManifest(**concatenated(manifests, axis), fingerprints=fingerprints)

    def transpose(self, axes: Sequence[int]) -> ChunkManifest:
        """The grid with its axes permuted: axis ``k`` of the result is axis ``axes[k]`` of this one."""
        return self._rearranged(permutation(self.ndim, axes))

    def expand_dims(self, axis: int | Sequence[int]) -> ChunkManifest:
        """The grid with axes of length one inserted at ``axis`` (positions in the result)."""
        return self._rearranged(insertion(self.ndim, axis))

    def squeeze(self, axis: int) -> ChunkManifest:
        """The grid without ``axis``, which must have length one."""
        return self._rearranged(removal(self.shape, axis))

    def with_inline(self, chunks: Mapping[ChunkCoords, bytes]) -> ChunkManifest:
        """A copy in which the chunks at these coordinates are stored inline with these bytes;
        the references they replace go, and with them paths no chunk references any more."""
        if self._flat is not None:
            return self.densify().with_inline(chunks)
        return ChunkManifest(**inlined(self._parts(), self._shape, chunks))

    def equals(self, other: object) -> bool:
        """True if both describe the same bytes for every chunk (path tables may differ in order)."""
        if not isinstance(other, ChunkManifest) or self.shape != other.shape:
            return False
        if self._inline != other._inline:
            return False
        mine = comparable(self._paths, self.entries())
        theirs = comparable(other._paths, other.entries())
        return all(np.array_equal(a, b) for a, b in zip(mine, theirs, strict=True))

    def __eq__(self, other: object) -> bool:
        return self.equals(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"ChunkManifest(shape={self.shape}, chunks={self.nchunks}, "
            f"inline={len(self._inline)}, paths={len(self._paths)})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (*self._parts().values(), self._shape, self._flat)

    # ------------------------------------------------------------------ internals

    def _chunk(self, cell: Any, coords: ChunkCoords) -> ChunkRef | bytes | None:
        """The chunk held in ``cell`` of the columns (a row when sparse), at grid ``coords``."""
        i = self._index.item(cell)
        if i < INLINE:
            return ChunkRef(self._paths[i], self._offsets.item(cell), self._lengths.item(cell))
        return self._inline[tuple(coords)] if i == INLINE else None

    def _rearranged(self, move: Rearrangement) -> ChunkManifest:
        """The same chunks on a grid whose axes moved (see ``manifest.axes``)."""
        if self._flat is None:
            return ChunkManifest(**rearranged_columns(self._parts(), move))
        shape, chunks, parts = rearranged_entries(self._parts(), self._shape, self._flat, move)
        return ChunkManifest.from_entries(shape=shape, chunks=chunks, **parts)

    def _parts(self) -> dict[str, Any]:
        """The constructor's parts (the columns are the entries' when sparse)."""
        held = (self._paths, self._index, self._offsets, self._lengths)
        return dict(zip(_PARTS, (*held, self._inline, self._fingerprints), strict=True))

    def _hold(
        self,
        paths: Sequence[str],
        fingerprints: Mapping[str, Fingerprint] | None,
        inline: Mapping[ChunkCoords, bytes] | None,
        shape: tuple[int, ...],
        flat: np.ndarray | None,
        *columns: np.ndarray,
    ) -> None:
        """Hold checked path-index, offset and length ``columns`` (grid-shaped, or the entries
        at positions ``flat`` of the grid when sparse) with their tables, and check the whole."""
        self._paths = path_table(paths)
        self._fingerprints = fingerprint_table(fingerprints or {}, self._paths)
        self._shape, self._flat = shape, flat
        self._index, self._offsets, self._lengths = columns
        self._inline = inline_table(inline or {}, shape)
        self._validate()

    def _validate(self) -> None:
        flat, shape = self._flat, self._shape
        place = None if flat is None else (lambda cell: coords_at(flat[cell[0]], shape))
        check_references(
            self._paths, self._index, self._offsets, self._lengths, self._inline, place
        )
        for arr in (self._index, self._offsets, self._lengths, flat):
            if arr is not None:
                arr.setflags(write=False)


_PARTS = ("paths", "path_index", "offsets", "lengths", "inline", "fingerprints")
"""The constructor's parts, in the order a pickled manifest holds them."""


def _rebuild(*held: Any) -> ChunkManifest:
    """A pickled manifest: its parts, then its grid shape and (when sparse) entry positions."""
    return _of_parts(dict(zip(_PARTS, held[:6], strict=True)), *held[6:])


def _of_parts(
    parts: dict[str, Any], shape: tuple[int, ...] | None = None, flat: np.ndarray | None = None
) -> ChunkManifest:
    """A manifest of the constructor's ``parts``: grid-shaped columns, or, given the positions
    ``flat`` in a grid of ``shape``, the columns of those entries."""
    if flat is None:
        return ChunkManifest(**parts)
    return ChunkManifest.from_entries(shape=shape, chunks=flat, **parts)  # type: ignore[arg-type]


def _block_extents(block: tuple[ChunkCoords, ChunkManifest]) -> dict[str, int]:
    return extents(block[1].paths, block[1].references())
