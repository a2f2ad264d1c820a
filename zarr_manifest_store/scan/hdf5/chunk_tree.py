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
import itertools
import math
import struct
import weakref
from typing import NamedTuple

from zarr_manifest_store.scan.common import Refused
from zarr_manifest_store.scan.hdf5.headers import (
    MAX_HEADER_BYTES,
    FileBytes,
    Unrecognised,
    object_messages,
)

__all__ = ["ChunkTree", "btree_columns"]

LAYOUT_V3, CHUNKED = 3, 2
RAW_DATA_NODE = 1
"""Node type of a chunk index (0: a group's symbol table)."""
DEFAULT_K = 32
"""HDF5's ``HDF5_BTREE_CHUNK_IK_DEF``: a node holds at most 2K children."""
BTREE_K_MESSAGE = 0x13
"""The superblock extension's message of non-default B-tree 'K' values."""
_ADDRESS = {2: "H", 4: "I", 8: "Q"}

type Columns = tuple[array.array, array.array, list[int]]


class ChunkTree(NamedTuple):
    """Where a dataset described from its header (:mod:`.parsed`) indexes its chunks in a
    version 1 B-tree: its file, layout message and the layout's dimension sizes."""

    file: FileBytes
    layout: bytes
    dims: tuple[int, ...]

    @classmethod
    def of(cls, file: FileBytes, layout: bytes, dims: tuple[int, ...]) -> ChunkTree | None:
        """The tree of a chunked layout message, or None for another index than a v1 B-tree."""
        return cls(file, layout, dims) if layout[0] == LAYOUT_V3 else None

    def columns(self, grid: tuple[int, ...]) -> Columns:
        """See :func:`btree_columns`."""
        return btree_columns(self.file, self.layout, self.dims, grid)


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
    columns: Columns = (array.array("Q", bytes(8 * n)), array.array("I", bytes(4 * n)), [])
    root = file.address(layout, 3)
    if root != file.undefined and n:
        _Walk(file, dims, grid, columns).tree(root)
    return columns


class _Walk:
    """One walk of a tree into the columns, its node count bounded by the grid's size."""

    def __init__(
        self, file: FileBytes, dims: tuple[int, ...], grid: tuple[int, ...], columns: Columns
    ) -> None:
        self.file = file
        self.dims = dims
        self.grid = grid
        self.strides = [math.prod(grid[a + 1 :]) for a in range(len(grid))]
        self.offsets, self.lengths, self.skipped = columns
        ndims = len(dims)
        self.key_size = 8 + 8 * ndims
        code = _ADDRESS[file.offset_size]
        self.entry = struct.Struct(f"<II{ndims}Q{code}")
        self.last_key = struct.Struct(f"<II{ndims}Q")
        self.two_k = 2 * istore_k(file)
        self.budget = 0

    def tree(self, root: int) -> None:
        level = self._header(root)[0]
        self.budget = math.prod(self.grid) * (level + 1) + 1
        pending = [(root, level, None, None)]
        while pending:
            address, level, low, high = pending.pop()
            self.budget -= 1
            if self.budget < 0:
                raise _damaged("more nodes than the grid has chunks")
            entries, right = self._node(address, level, root_node=low is None)
            keys = [self._scaled(e[2:-1]) for e in entries] + [self._scaled(right)]
            _check_order(keys, low, high)
            if level:
                for i, entry in enumerate(entries):
                    pending.append((entry[-1], level - 1, keys[i], keys[i + 1]))
            else:
                for entry in entries:
                    self._chunk(entry)

    def _header(self, address: int) -> tuple[int, int]:
        head = self._read(address, 8 + 2 * self.file.offset_size)
        if head[:4] != b"TREE" or head[4] != RAW_DATA_NODE:
            raise _damaged("a node's signature or type")
        return head[5], int.from_bytes(head[6:8], "little")

    def _node(self, address: int, level: int, root_node: bool) -> tuple[list[tuple], tuple]:
        """A node's entries (key fields, child address) and its last key's offsets."""
        found, used = self._header(address)
        if found != level or used > self.two_k or not (used or root_node):
            raise _damaged("a node's level or entry count")
        start = address + 8 + 2 * self.file.offset_size
        raw = self._read(start, used * self.entry.size + self.key_size)
        entries = list(self.entry.iter_unpack(raw[: used * self.entry.size]))
        right = self.last_key.unpack_from(raw, used * self.entry.size)[2:]
        return entries, right

    def _read(self, address: int, size: int) -> bytes:
        """``size`` bytes of a node (a node larger than a header is left to HDF5)."""
        if size > MAX_HEADER_BYTES:
            raise Unrecognised("a chunk B-tree node larger than an object header")
        if address == self.file.undefined or self.file.base + address + size > self.file.size:
            raise _damaged("a node outside the file")
        return self.file.at(address, size)

    def _scaled(self, offsets: tuple[int, ...]) -> tuple[int, ...]:
        """A key's offsets in chunks, as HDF5 decodes and compares them."""
        return tuple(o // d for o, d in zip(offsets, self.dims, strict=True))

    def _chunk(self, entry: tuple) -> None:
        """Files one leaf entry (size, filter mask, offsets..., address) in the columns."""
        size, mask, *offsets, address = entry
        if offsets[-1] or not size:
            raise _damaged("a chunk's element offset or size 0")
        k = 0
        for offset, c, n, stride in zip(
            offsets[:-1], self.dims[:-1], self.grid, self.strides, strict=True
        ):
            cell, rest = divmod(offset, c)
            if rest or cell >= n:
                raise _damaged("a chunk offset off its grid")
            k += cell * stride
        start = self.file.base + address
        if address == self.file.undefined or start + size > self.file.size:
            raise _damaged("a chunk outside the file")
        if self.lengths[k]:
            raise _damaged("a chunk indexed twice")
        self.offsets[k] = start
        self.lengths[k] = size
        if mask:
            self.skipped.append(k)


def _damaged(what: str) -> Refused:
    """A tree HDF5's lookups would not read as its entries say: the dataset is refused
    (``chunk_iter`` would list what HDF5 does not read)."""
    return Refused(f"has a damaged chunk index (version 1 B-tree: {what})")


def _check_order(keys: list[tuple], low: tuple | None, high: tuple | None) -> None:
    """Raises unless a node's keys strictly increase (as HDF5 compares them, by offsets) and
    its left keys lie in its parent's range ``[low, high)``, where HDF5's search finds them."""
    for left, right in itertools.pairwise(keys):
        if not left < right:
            raise _damaged("keys out of order")
    if low is not None and (keys[0] < low or (len(keys) > 1 and keys[-2] >= high)):
        raise _damaged("a node outside its parent's range")


def istore_k(file: FileBytes) -> int:
    """The file's K of chunk index nodes: the superblock's (version 1), or the superblock
    extension's B-tree 'K' values message, which overrides it, or HDF5's default."""
    k = _ISTORE_K.get(file)
    if k is None:
        k = _ISTORE_K[file] = _read_istore_k(file)
    return k


_ISTORE_K: weakref.WeakKeyDictionary[FileBytes, int] = weakref.WeakKeyDictionary()
"""``istore_k`` of each file being scanned."""


def _read_istore_k(file: FileBytes) -> int:
    head = file.read(file.superblock, file.superblock + 64)
    version, size = head[8], file.offset_size
    k = DEFAULT_K
    if version in (0, 1):
        if version == 1:
            k = int.from_bytes(head[24:26], "little")
        extension = file.address(head, (24 if version == 0 else 28) + size)
    else:
        extension = file.address(head, 12 + size)
    if extension != file.undefined:
        for message in object_messages(file, extension):
            if message.type == BTREE_K_MESSAGE:
                if message.body[0] != 0:
                    raise Unrecognised("B-tree 'K' values message version")
                k = int.from_bytes(message.body[1:3], "little")
    if not k:
        raise Unrecognised("chunk B-tree K of 0")
    return k
