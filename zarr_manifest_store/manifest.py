"""ChunkManifest: where every chunk of one array lives, stored column-wise.

A manifest is a path table (each distinct source path once) plus three arrays
shaped like the chunk grid: a ``uint32`` index into the path table, the byte
``offset`` (``uint64``) and the byte ``length`` of each chunk. Two sentinel
index values mark a chunk that is *missing* (Zarr fills it) or *inline* (its
bytes live in the manifest itself, for small or materialised data).

Lengths are kept in ``uint32`` whenever every length fits (always the case for
HDF5 chunks), which holds a reference to 16 bytes plus its share of the path
table; the ``lengths`` property always returns ``uint64``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt

MISSING = 0xFFFF_FFFF
"""Path-index value of a chunk that has no bytes: Zarr returns the fill value."""
INLINE = 0xFFFF_FFFE
"""Path-index value of a chunk whose bytes are stored in the manifest itself."""
MAX_PATHS = INLINE
"""A path table holds at most this many paths (indices below the sentinels)."""
MAX_END = 2**63 - 1
"""The largest byte position a chunk may reach: file offsets are signed 64-bit."""

ChunkCoords = tuple[int, ...]


class Fingerprint(NamedTuple):
    """What a source file looked like when it was scanned, so that later changes are detected.

    Local files record ``size`` and ``mtime_ns``; remote objects ``size`` and
    their ``etag`` (or, without one, ``mtime_ns`` from Last-Modified). A field
    left ``None`` is not checked.
    """

    size: int | None = None
    mtime_ns: int | None = None
    etag: str | None = None


class ChunkRef(NamedTuple):
    """A chunk's bytes: ``length`` bytes of ``path`` starting at ``offset``.

    >>> ref = ChunkRef("/data/era_2026-01-01.nc", offset=4096, length=4000)
    >>> ref.path, ref.offset + ref.length
    ('/data/era_2026-01-01.nc', 8096)
    """

    path: str
    offset: int
    length: int


def chunk_key(coords: ChunkCoords) -> str:
    """The manifest key of a chunk: its grid coordinates joined by ``.`` (``"0"`` for scalars)."""
    return ".".join(map(str, coords)) or "0"


def parse_chunk_key(key: str, ndim: int | None = None) -> ChunkCoords:
    """Grid coordinates from a manifest key like ``"0.3"``; raises ``ValueError`` naming the key."""
    if not isinstance(key, str):
        raise ValueError(f"chunk key {key!r} is not a string")
    if ndim == 0 and key in ("", "0"):
        return ()
    parts = key.split(".")
    if not all(p.isdecimal() and p.isascii() for p in parts) or (
        ndim is not None and len(parts) != ndim
    ):
        dims = "" if ndim is None else f" with {ndim} dimension(s)"
        raise ValueError(f"chunk key {key!r} is not a chunk grid index like '0.1'{dims}")
    return tuple(int(p) for p in parts)


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
        self._paths = _path_table(paths)
        self._fingerprints = _fingerprint_table(fingerprints or {}, self._paths)
        self._index = _unsigned(path_index, np.uint32, "path_index")
        shape = self._index.shape
        self._offsets = _unsigned(offsets, np.uint64, "offset", shape)
        self._lengths = _narrow(_unsigned(lengths, np.uint64, "length", shape))
        self._inline = _inline_table(inline or {}, shape)
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
        offsets_grid = _unsigned(offsets, np.uint64, "offset", shape)
        lengths_grid = _unsigned(lengths, np.uint64, "length", shape)
        table, inverse = np.unique(path_grid.ravel(), return_inverse=True)
        table = [str(p) for p in table]
        index = inverse.astype(np.uint32).reshape(shape)
        if table and table[0] == "":
            index = np.where(index == 0, MISSING, index - 1).astype(np.uint32)
            table = table[1:]
        inline = dict(inline or {})
        for coords in inline:
            if _in_grid(coords, shape) and path_grid[coords] != "":
                raise ValueError(
                    f"chunk {chunk_key(coords)!r} is both inline and a reference to "
                    f"{path_grid[coords]!r}; give it the path ''"
                )
            if _in_grid(coords, shape):
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
            parsed[coords] = _check_entry(key, entry)
        if shape is None:
            shape = tuple(max(c) + 1 for c in zip(*parsed, strict=True)) if parsed else (0,)
        grid = tuple(int(n) for n in shape)
        table: dict[str, int] = {}
        index = np.full(grid, MISSING, dtype=np.uint32)
        offsets = np.zeros(grid, dtype=np.uint64)
        lengths = np.zeros(grid, dtype=np.uint64)
        inline: dict[ChunkCoords, bytes] = {}
        for coords, entry in parsed.items():
            if not _in_grid(coords, grid):
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
        for coords in _cells(self._index != MISSING):
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
        index = self._index
        bad = (index >= len(self._paths)) & (index < INLINE)
        if bad.any():
            coords = _first(bad)
            raise ValueError(
                f"chunk {chunk_key(coords)!r}: path_index {int(index[coords])} is outside the "
                f"path table of {len(self._paths)} path(s)"
            )
        inline_mask = index == INLINE
        if self._inline or inline_mask.any():  # most manifests have no inline chunk to list
            inline_cells = set(_cells(inline_mask))
            if inline_cells != set(self._inline):
                coords = min(inline_cells ^ set(self._inline))
                raise ValueError(
                    f"chunk {chunk_key(coords)!r}: inline data and the INLINE path_index must "
                    "go together"
                )
        # Each chunk is checked only when the largest offset and length together could overflow.
        if index.size and int(self._offsets.max()) + int(self._lengths.max()) > MAX_END:
            present = index < INLINE
            too_far = present & (
                (self._offsets > MAX_END)
                | (self._lengths > MAX_END - np.minimum(self._offsets, MAX_END))
            )
            if too_far.any():
                coords = _first(too_far)
                raise ValueError(
                    f"chunk {chunk_key(coords)!r}: offset {int(self._offsets[coords])} + length "
                    f"{int(self._lengths[coords])} overflows the largest file position {MAX_END}"
                )
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


def _path_table(paths: Sequence[str]) -> tuple[str, ...]:
    table = tuple(paths)
    for i, p in enumerate(table):
        if not isinstance(p, str) or not p:
            raise ValueError(f"path table entry {i} must be a non-empty string, got {p!r}")
    if len(table) > MAX_PATHS:
        raise ValueError(f"a manifest holds at most {MAX_PATHS} distinct paths, got {len(table)}")
    return table


def _fingerprint_table(
    fingerprints: Mapping[str, Fingerprint], paths: tuple[str, ...]
) -> dict[str, Fingerprint]:
    table: dict[str, Fingerprint] = {}
    known = set(paths)
    for path, fp in fingerprints.items():
        if path not in known:
            raise ValueError(f"fingerprint given for {path!r}, which no chunk references")
        table[path] = fp if isinstance(fp, Fingerprint) else Fingerprint(*fp)
    return table


def _unsigned(
    values: npt.ArrayLike,
    dtype: type[np.unsignedinteger],
    field: str,
    shape: tuple[int, ...] | None = None,
) -> np.ndarray:
    """``values`` as a read-only ``dtype`` array; a ValueError names the first bad chunk."""
    # Python sequences go through object arrays so that big or mixed ints are not turned into floats.
    arr = values if isinstance(values, np.ndarray) else np.array(values, dtype=object)
    if shape is not None and arr.shape != shape:
        raise ValueError(f"{field}s have shape {arr.shape}, but the chunk grid has shape {shape}")
    if arr.dtype.kind == "O":
        arr = _objects_to_int(arr, field)
    if arr.dtype.kind not in "iu":
        bad = (
            ~np.isfinite(arr) | (arr != np.round(arr))
            if arr.dtype.kind == "f"
            else np.ones(arr.shape, bool)
        )
        coords = _first(bad if bad.any() else np.ones(arr.shape, bool))
        raise ValueError(
            f"chunk {chunk_key(coords)!r}: {field} must be an integer, got {arr[coords].item()!r} "
            f"(an array of dtype {arr.dtype})"
        )
    if arr.dtype.kind == "i" and arr.size and (neg := arr < 0).any():
        coords = _first(neg)
        raise ValueError(f"chunk {chunk_key(coords)!r}: {field} is negative ({int(arr[coords])})")
    limit = np.iinfo(dtype).max
    if arr.size and arr.dtype.itemsize > np.dtype(dtype).itemsize and (big := arr > limit).any():
        coords = _first(big)
        raise ValueError(f"chunk {chunk_key(coords)!r}: {field} {int(arr[coords])} exceeds {limit}")
    out = arr.astype(dtype, copy=False)
    return out.view() if out is arr or np.shares_memory(out, arr) else out


def _objects_to_int(arr: np.ndarray, field: str) -> np.ndarray:
    out = np.empty(arr.shape, dtype=np.uint64)
    for coords, v in np.ndenumerate(arr):
        if isinstance(v, bool | np.bool_) or not isinstance(v, int | np.integer):
            raise ValueError(f"chunk {chunk_key(coords)!r}: {field} must be an integer, got {v!r}")
        if not 0 <= v <= MAX_END:
            what = "is negative" if v < 0 else f"exceeds {MAX_END}"
            raise ValueError(f"chunk {chunk_key(coords)!r}: {field} {what} ({v})")
        out[coords] = v
    return out


def _narrow(lengths: np.ndarray) -> np.ndarray:
    """Lengths in ``uint32`` when every one fits, to keep references small."""
    if lengths.size == 0 or int(lengths.max()) <= np.iinfo(np.uint32).max:
        return lengths.astype(np.uint32)
    return lengths


def _inline_table(
    inline: Mapping[ChunkCoords, bytes], shape: tuple[int, ...]
) -> dict[ChunkCoords, bytes]:
    table: dict[ChunkCoords, bytes] = {}
    for coords, data in inline.items():
        key = tuple(int(c) for c in coords)
        if not _in_grid(key, shape):
            raise ValueError(f"inline chunk {chunk_key(key)!r} lies outside the chunk grid {shape}")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ValueError(
                f"inline chunk {chunk_key(key)!r} must be bytes, got {type(data).__name__}"
            )
        table[key] = bytes(data)
    return table


def _check_entry(key: str, entry: Mapping[str, Any]) -> Mapping[str, Any]:
    """Validate one ``from_dict`` entry, naming the key and field of any problem."""
    if not isinstance(entry, Mapping):
        raise ValueError(f"chunk {key!r}: entry must be a mapping, got {type(entry).__name__}")
    if "data" in entry:
        if set(entry) != {"data"} or not isinstance(entry["data"], bytes | bytearray | memoryview):
            raise ValueError(
                f"chunk {key!r}: an inline entry is {{'data': <bytes>}}, got {dict(entry)!r}"
            )
        return entry
    if set(entry) != {"path", "offset", "length"}:
        raise ValueError(
            f"chunk {key!r}: entry needs exactly the fields path, offset, length; got {sorted(entry)}"
        )
    if not isinstance(entry["path"], str) or not entry["path"]:
        raise ValueError(f"chunk {key!r}: path must be a non-empty string, got {entry['path']!r}")
    for field in ("offset", "length"):
        v = entry[field]
        if isinstance(v, bool) or not isinstance(v, int | np.integer):
            raise ValueError(f"chunk {key!r}: {field} must be an integer, got {v!r}")
        if not 0 <= v <= MAX_END:
            raise ValueError(f"chunk {key!r}: {field} {v} is out of range [0, {MAX_END}]")
    if entry["offset"] + entry["length"] > MAX_END:
        raise ValueError(
            f"chunk {key!r}: offset {entry['offset']} + length {entry['length']} overflows {MAX_END}"
        )
    return entry


def _in_grid(coords: ChunkCoords, shape: tuple[int, ...]) -> bool:
    return len(coords) == len(shape) and all(0 <= c < n for c, n in zip(coords, shape, strict=True))


def _cells(mask: np.ndarray) -> Iterator[ChunkCoords]:
    """Coordinates of every True cell of ``mask`` in C order (0-d masks included)."""
    for row in np.argwhere(mask):
        yield tuple(int(c) for c in row)


def _first(mask: np.ndarray) -> ChunkCoords:
    """Coordinates of the first True cell of ``mask`` in C order."""
    return tuple(int(c) for c in np.unravel_index(int(np.argmax(mask)), mask.shape))
