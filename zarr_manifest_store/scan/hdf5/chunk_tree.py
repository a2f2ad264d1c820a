"""A chunked dataset's version 1 B-tree chunk index, read from the file's bytes.

``chunk_iter`` needs the dataset opened through HDF5, which costs more than
everything else a scan does for a dataset of one chunk. Datasets whose layout
message is version 3 (HDF5's default file format, and netCDF-4's) index their
chunks with a version 1 B-tree (HDF5 File Format Specification, III.A.1),
which this module walks: nodes ``TREE`` of type 1 (raw data chunks), each key
a chunk's stored size, filter mask and offsets (rank + 1 of them, the last
the element size's, 0), each child at level 0 a chunk's address. Every node,
key and address is checked as HDF5 reads it (``H5B__cache_deserialize``,
``H5D__btree_decode_key``) and a chunk is taken only where HDF5's own search
of the tree (``H5B_find``) would find it: keys strictly increasing in a node,
each subtree inside its keys' range. A tree that breaks any of this is
damaged, and its dataset refused: ``chunk_iter`` would list chunks that HDF5's
lookups, which reading goes through, do not find. What this module does not
read (another layout version, a node larger than an object header) raises
:class:`~.headers.Unrecognised`, and the chunks are read with ``chunk_iter``.
"""

from __future__ import annotations

import array
import functools
import itertools
import math
import operator
import struct
from typing import NamedTuple

from zarr_manifest_store.scan.common import Refused
from zarr_manifest_store.scan.hdf5.headers import (
    MAX_HEADER_BYTES,
    UNSIGNED,
    FileBytes,
    Unrecognised,
)

__all__ = ["Columns", "StoredIndex", "btree_columns", "damaged", "empty_columns"]

LAYOUT_V3, CHUNKED = 3, 2
SINGLE_CHUNK, FIXED_ARRAY = 1, 3
"""Chunk index types of layout messages version 4 and 5 read from the file."""
RAW_DATA_NODE = 1
"""Node type of a chunk index (0: a group's symbol table)."""

type Columns = tuple[array.array, array.array, list[int]]
"""Chunk offsets and lengths in C order of the grid (0: never written), and the flat indices
of chunks whose filter mask is not zero."""


class StoredIndex(NamedTuple):
    """A chunk index that the scan reads from the file: a version 1 B-tree (here), or a
    single chunk or fixed array (:mod:`.chunk_array`), of a dataset described from its
    header (:mod:`.parsed`): its file, layout message and the layout's dimension sizes."""

    file: FileBytes
    layout: bytes
    dims: tuple[int, ...]

    @classmethod
    def of(cls, file: FileBytes, layout: bytes, dims: tuple[int, ...]) -> StoredIndex | None:
        """The index of a chunked layout message (checked by ``messages.chunk_dims``), or
        None for one read through HDF5 (implicit, extensible array, version 2 B-tree)."""
        if layout[0] == LAYOUT_V3:
            return cls(file, layout, dims)
        kind = layout[5 + layout[3] * layout[4]]  # versions 4 and 5: after the dimensions
        return cls(file, layout, dims) if kind in (SINGLE_CHUNK, FIXED_ARRAY) else None


def empty_columns(n: int) -> Columns:
    """Columns of ``n`` chunks never written."""
    return array.array("Q", bytes(8 * n)), array.array("I", bytes(4 * n)), []


def btree_columns(
    file: FileBytes, layout: bytes, dims: tuple[int, ...], grid: tuple[int, ...]
) -> Columns:
    """The chunk index of a version 3 chunked layout message ``layout``: chunk offsets
    (absolute) and lengths in C order of ``grid`` (0: never written), and the flat indices
    of chunks with a nonzero filter mask. ``dims`` are the layout's dimension sizes (the
    chunk shape, then the element size); a chunk off ``grid`` is refused."""
    if layout[0] != LAYOUT_V3 or layout[1] != CHUNKED or layout[2] != len(dims):
        raise Unrecognised("not a version 3 chunked layout of this rank")
    n = math.prod(grid)
    columns = empty_columns(n)
    root = file.address(layout, 3)
    if root != file.undefined and n:
        _walk(file, root, dims, grid, columns)
    return columns


def _walk(
    file: FileBytes, root: int, dims: tuple[int, ...], grid: tuple[int, ...], columns: Columns
) -> None:
    """Files every chunk of the tree at ``root`` in the columns, depth first; the nodes
    visited are bounded by the grid's size (each subtree must hold chunks of its own)."""
    entry, last_key, head, node_size, axes = _plan(dims, grid, file.offset_size, file.chunk_btree_k)
    two_k = 2 * file.chunk_btree_k
    if node_size > MAX_HEADER_BYTES:
        raise Unrecognised("a chunk B-tree node larger than an object header")
    budget = math.prod(grid) * 256  # at most a node a level per chunk (levels: one byte)
    pending: list[tuple[int, int | None, tuple | None, tuple | None]] = [(root, None, None, None)]
    while pending:
        address, level, low, high = pending.pop()
        budget -= 1
        if address == file.undefined or file.base + address + head > file.size or budget < 0:
            raise damaged("version 1 B-tree", "a node outside the file, or more nodes than chunks")
        raw = file.at(address, min(node_size, file.size - file.base - address))
        used = int.from_bytes(raw[6:8], "little")
        if raw[:5] != b"TREE\x01" or (level is not None and raw[5] != level):
            raise damaged("version 1 B-tree", "a node's signature, type or level")
        stop = head + used * entry.size
        if used > two_k or not (used or low is None) or len(raw) < stop + last_key.size:
            raise damaged("version 1 B-tree", "a node's entries used")
        entries = list(entry.iter_unpack(raw[head:stop]))
        right = _scaled(last_key.unpack_from(raw, stop)[2:], dims)
        level = raw[5]
        if level:
            keys = [_scaled(e[2:-1], dims) for e in entries]
            keys.append(right)
            _check_order(keys, low, high)
            for i, e in enumerate(entries):
                pending.append((e[-1], level - 1, keys[i], keys[i + 1]))
        elif entries:
            # a leaf: _place checks that its keys increase, so only its ends meet its range here
            _place(file, entries, axes, columns)
            ends = entries if len(entries) < 3 else [entries[0], entries[-1]]
            _check_order([*[_scaled(e[2:-1], dims) for e in ends], right], low, high)


class _Plan(NamedTuple):
    """How a tree of chunks of one shape and grid is read (the same for many datasets)."""

    entry: struct.Struct
    """A node's entry: chunk size, filter mask, offsets (the element size's last), child."""
    last_key: struct.Struct
    """A node's last key: an entry without its child."""
    head: int
    """Bytes before a node's first key: signature, type, level, entries used, siblings."""
    node_size: int
    """Bytes of a node as HDF5 allocates it (2K entries)."""
    axes: list[tuple[int, int, int]]
    """Each axis's chunk size, chunk count and stride in the grid's C order."""


@functools.lru_cache(maxsize=1024)
def _plan(dims: tuple[int, ...], grid: tuple[int, ...], offset_size: int, k: int) -> _Plan:
    entry = struct.Struct(f"<II{len(dims)}Q{UNSIGNED[offset_size]}")
    last_key = struct.Struct(f"<II{len(dims)}Q")
    head = 8 + 2 * offset_size
    node_size = head + 2 * k * entry.size + last_key.size
    axes = [
        (c, n, math.prod(grid[a + 1 :]))
        for a, (c, n) in enumerate(zip(dims[:-1], grid, strict=True))
    ]
    return _Plan(entry, last_key, head, node_size, axes)


def _place(
    file: FileBytes, entries: list[tuple], axes: list[tuple[int, int, int]], columns: Columns
) -> None:
    """Files leaf entries (size, filter mask, offsets..., address) in the columns; ``axes``
    are each axis's chunk size, chunk count and stride in the grid (the element size last)."""
    offsets, lengths, skipped = columns
    base, undefined, end = file.base, file.undefined, file.size
    previous = -1
    for entry in entries:
        size, mask, address = entry[0], entry[1], entry[-1]
        if entry[-2] or not size:
            raise damaged("version 1 B-tree", "a chunk's element offset or size 0")
        k = 0
        for offset, (c, n, stride) in zip(entry[2:-2], axes, strict=True):  # bar the element's
            cell, rest = divmod(offset, c)
            if rest or cell >= n:
                raise damaged("version 1 B-tree", "a chunk offset off its grid")
            k += cell * stride
        if k <= previous:  # cells in the grid: their keys increase as their places in C order
            raise damaged("version 1 B-tree", "keys out of order")
        previous = k
        start = base + address
        if address == undefined or start + size > end:
            raise damaged("version 1 B-tree", "a chunk outside the file")
        if lengths[k]:
            raise damaged("version 1 B-tree", "a chunk indexed twice")
        offsets[k] = start
        lengths[k] = size
        if mask:
            skipped.append(k)


def _scaled(offsets: tuple[int, ...], dims: tuple[int, ...]) -> tuple[int, ...]:
    """A key's offsets in chunks, as HDF5 compares keys (``H5D__btree_decode_key``)."""
    return tuple(map(operator.floordiv, offsets, dims))


def damaged(index: str, what: str) -> Refused:
    """An index HDF5 would not read as its entries say: the dataset is refused
    (``chunk_iter`` would list what HDF5's reading does not find)."""
    return Refused(f"has a damaged chunk index ({index}: {what})")


def _check_order(keys: list[tuple], low: tuple | None, high: tuple | None) -> None:
    """Raises unless a node's keys strictly increase (as HDF5 compares them, by offsets) and
    its left keys lie in its parent's range ``[low, high)``, where HDF5's search finds them."""
    for left, right in itertools.pairwise(keys):
        if not left < right:
            raise damaged("version 1 B-tree", "keys out of order")
    if low is not None and (keys[0] < low or (len(keys) > 1 and keys[-2] >= high)):
        raise damaged("version 1 B-tree", "a node outside its parent's range")
