"""Checks and conversions of a manifest's columnar parts, each error naming the chunk at fault.

``ChunkManifest`` runs every part through here, so that a manifest built by a
scanner, read from a document or made by hand holds the same guarantees.
"""

from __future__ import annotations

import functools
import math
import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from zarr_manifest_store.manifest.refs import (
    INLINE,
    MAX_END,
    MAX_PATHS,
    ChunkCoords,
    Fingerprint,
    chunk_key,
    parse_chunk_key,
)

__all__ = [
    "cells",
    "check_entry",
    "check_references",
    "dict_entries",
    "fingerprint_table",
    "first_cell",
    "grid_columns",
    "held_bytes",
    "in_grid",
    "inline_table",
    "narrow",
    "path_table",
    "unsigned",
]


Place = Callable[[ChunkCoords], ChunkCoords] | None
"""Maps a cell of the columns to the chunk's grid coordinates (None: they are the grid)."""


def check_references(
    paths: tuple[str, ...],
    index: np.ndarray,
    offsets: np.ndarray,
    lengths: np.ndarray,
    inline: Mapping[ChunkCoords, bytes],
    place: Place = None,
) -> None:
    """Every index points into the path table, inline chunks and INLINE marks go together, and
    no chunk reaches past the largest file position."""
    # Each check runs whole only where the largest index says it could fail: a file of thousands
    # of tiny datasets builds thousands of manifests, and NumPy's cost is per call there.
    top = int(index.max()) if index.size else 0
    if top >= len(paths) and (bad := (index >= len(paths)) & (index < INLINE)).any():
        cell = first_cell(bad)
        raise ValueError(
            f"chunk {_key(cell, place)!r}: path_index {int(index[cell])} is outside the "
            f"path table of {len(paths)} path(s)"
        )
    if inline or top >= INLINE:  # no INLINE mark when every index is below it
        inline_cells = {c if place is None else place(c) for c in cells(index == INLINE)}
        if inline_cells != set(inline):
            coords = min(inline_cells ^ set(inline))
            raise ValueError(
                f"chunk {chunk_key(coords)!r}: inline data and the INLINE path_index must "
                "go together"
            )
    # Each chunk is checked only when the largest offset and length together could overflow.
    if index.size and int(offsets.max()) + int(lengths.max()) > MAX_END:
        present = index < INLINE
        too_far = present & (
            (offsets > MAX_END) | (lengths > MAX_END - np.minimum(offsets, MAX_END))
        )
        if too_far.any():
            cell = first_cell(too_far)
            raise ValueError(
                f"chunk {_key(cell, place)!r}: offset {int(offsets[cell])} + length "
                f"{int(lengths[cell])} overflows the largest file position {MAX_END}"
            )


def _key(cell: ChunkCoords, place: Place) -> str:
    return chunk_key(cell if place is None else place(cell))


def path_table(paths: Sequence[str]) -> tuple[str, ...]:
    table = tuple(paths)
    for i, p in enumerate(table):
        if not isinstance(p, str) or not p:
            raise ValueError(f"path table entry {i} must be a non-empty string, got {p!r}")
    if len(table) > MAX_PATHS:
        raise ValueError(f"a manifest holds at most {MAX_PATHS} distinct paths, got {len(table)}")
    return table


def fingerprint_table(
    fingerprints: Mapping[str, Fingerprint], paths: tuple[str, ...]
) -> dict[str, Fingerprint]:
    table: dict[str, Fingerprint] = {}
    known = set(paths)
    for path, fp in fingerprints.items():
        if path not in known:
            raise ValueError(f"fingerprint given for {path!r}, which no chunk references")
        table[path] = fp if isinstance(fp, Fingerprint) else Fingerprint(*fp)
    return table


def unsigned(
    values: npt.ArrayLike,
    dtype: type[np.unsignedinteger],
    field: str,
    shape: tuple[int, ...] | None = None,
    place: Place = None,
) -> np.ndarray:
    """``values`` as a read-only ``dtype`` array; a ValueError names the first bad chunk."""
    if isinstance(values, np.ndarray) and values.dtype == dtype and shape in (None, values.shape):
        return values.view()  # already what the checks below would make of it
    # Python sequences go through object arrays so that big or mixed ints are not turned into floats.
    arr = values if isinstance(values, np.ndarray) else np.array(values, dtype=object)
    if shape is not None and arr.shape != shape:
        raise ValueError(f"{field}s have shape {arr.shape}, but the chunk grid has shape {shape}")
    if arr.dtype.kind == "O":
        arr = _objects_to_int(arr, field, place)
    if arr.dtype.kind not in "iu":
        bad = (
            ~np.isfinite(arr) | (arr != np.round(arr))
            if arr.dtype.kind == "f"
            else np.ones(arr.shape, bool)
        )
        cell = first_cell(bad if bad.any() else np.ones(arr.shape, bool))
        raise ValueError(
            f"chunk {_key(cell, place)!r}: {field} must be an integer, got {arr[cell].item()!r} "
            f"(an array of dtype {arr.dtype})"
        )
    if arr.dtype.kind == "i" and arr.size and (neg := arr < 0).any():
        cell = first_cell(neg)
        raise ValueError(f"chunk {_key(cell, place)!r}: {field} is negative ({int(arr[cell])})")
    if arr.size and arr.dtype.itemsize > np.dtype(dtype).itemsize:
        limit = np.iinfo(dtype).max
        if (big := arr > limit).any():
            cell = first_cell(big)
            raise ValueError(
                f"chunk {_key(cell, place)!r}: {field} {int(arr[cell])} exceeds {limit}"
            )
    out = arr.astype(dtype, copy=False)
    return out.view() if out is arr or np.shares_memory(out, arr) else out


def _objects_to_int(arr: np.ndarray, field: str, place: Place) -> np.ndarray:
    out = np.empty(arr.shape, dtype=np.uint64)
    for cell, v in np.ndenumerate(arr):
        if isinstance(v, bool | np.bool_) or not isinstance(v, int | np.integer):
            raise ValueError(f"chunk {_key(cell, place)!r}: {field} must be an integer, got {v!r}")
        if not 0 <= v <= MAX_END:
            what = "is negative" if v < 0 else f"exceeds {MAX_END}"
            raise ValueError(f"chunk {_key(cell, place)!r}: {field} {what} ({v})")
        out[cell] = v
    return out


def grid_columns(
    path_index: npt.ArrayLike, offsets: npt.ArrayLike, lengths: npt.ArrayLike
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid-shaped path-index, offset and length columns, checked; lengths held as given when
    ``uint32``, else narrowed to it when every one fits (never widened)."""
    index = unsigned(path_index, np.uint32, "path_index")
    shape = index.shape
    narrowed = np.uint32 if getattr(lengths, "dtype", None) == np.uint32 else np.uint64
    return (
        index,
        unsigned(offsets, np.uint64, "offset", shape),
        narrow(unsigned(lengths, narrowed, "length", shape)),
    )


def held_bytes(
    paths: tuple[str, ...], inline: Mapping[ChunkCoords, bytes], columns: Sequence[np.ndarray]
) -> int:
    """Memory held by a manifest's path table, inline chunks and columns."""
    table = sys.getsizeof(paths) + sum(map(sys.getsizeof, paths))
    chunks = sys.getsizeof(inline) + sum(
        sys.getsizeof(k) + sys.getsizeof(v) for k, v in inline.items()
    )
    return sum(c.nbytes for c in columns) + table + chunks


def narrow(lengths: np.ndarray) -> np.ndarray:
    """Lengths in ``uint32`` when every one fits, to keep references small."""
    if lengths.dtype == np.uint32:
        return lengths
    if lengths.size == 0 or int(lengths.max()) <= np.iinfo(np.uint32).max:
        return lengths.astype(np.uint32, copy=False)
    return lengths


@functools.cache
def single_cell_columns(ndim: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read-only path-index, offset and length columns of a one-cell grid whose chunk is
    inline: shared by every such manifest (a file of thousands of small datasets makes one each)."""
    grid = (1,) * ndim
    columns = (
        np.full(grid, INLINE, dtype=np.uint32),
        np.zeros(grid, dtype=np.uint64),
        np.zeros(grid, dtype=np.uint32),
    )
    for column in columns:
        column.setflags(write=False)
    return columns


def inline_table(
    inline: Mapping[ChunkCoords, bytes], shape: tuple[int, ...]
) -> dict[ChunkCoords, bytes]:
    table: dict[ChunkCoords, bytes] = {}
    for coords, data in inline.items():
        key = tuple(int(c) for c in coords)
        if not in_grid(key, shape):
            raise ValueError(f"inline chunk {chunk_key(key)!r} lies outside the chunk grid {shape}")
        if not isinstance(data, bytes | bytearray | memoryview):
            raise ValueError(
                f"inline chunk {chunk_key(key)!r} must be bytes, got {type(data).__name__}"
            )
        table[key] = bytes(data)
    return table


def check_entry(key: str, entry: Mapping[str, Any]) -> Mapping[str, Any]:
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


def in_grid(coords: ChunkCoords, shape: tuple[int, ...]) -> bool:
    return len(coords) == len(shape) and all(0 <= c < n for c, n in zip(coords, shape, strict=True))


def cells(mask: np.ndarray) -> Iterator[ChunkCoords]:
    """Coordinates of every True cell of ``mask`` in C order (0-d masks included)."""
    if not mask.ndim:
        return iter([()] if mask else [])
    return zip(*(axis.tolist() for axis in mask.nonzero()), strict=True)


def first_cell(mask: np.ndarray) -> ChunkCoords:
    """Coordinates of the first True cell of ``mask`` in C order."""
    return tuple(int(c) for c in np.unravel_index(int(np.argmax(mask)), mask.shape))


def dict_entries(
    entries: Mapping[str, Mapping[str, Any]], shape: Sequence[int] | None
) -> dict[str, Any]:
    """The arguments of ``ChunkManifest.from_entries`` for the entries of ``from_dict``; the
    grid is by default the smallest holding every key."""
    ndim = None if shape is None else len(shape)
    parsed: dict[ChunkCoords, Mapping[str, Any]] = {}
    for key, entry in entries.items():
        coords = parse_chunk_key(key, ndim)
        ndim = len(coords)
        parsed[coords] = check_entry(key, entry)
    if shape is None:
        shape = tuple(max(c) + 1 for c in zip(*parsed, strict=True)) if parsed else (0,)
    grid = tuple(int(n) for n in shape)
    for coords in parsed:
        if not in_grid(coords, grid):
            raise ValueError(f"chunk {chunk_key(coords)!r} lies outside the chunk grid {grid}")
    inline = {c: bytes(e["data"]) for c, e in parsed.items() if "data" in e}
    refs = [(c, e) for c, e in parsed.items() if "data" not in e]
    table: dict[str, int] = {}
    rows = [table.setdefault(e["path"], len(table)) for _, e in refs]
    cells = [*inline, *(c for c, _ in refs)]
    return {
        "shape": grid,
        "chunks": [sum(c * math.prod(grid[k + 1 :]) for k, c in enumerate(x)) for x in cells],
        "paths": list(table),
        "path_index": [INLINE] * len(inline) + rows,
        "offsets": [0] * len(inline) + [e["offset"] for _, e in refs],
        "lengths": [0] * len(inline) + [e["length"] for _, e in refs],
        "inline": inline,
    }
