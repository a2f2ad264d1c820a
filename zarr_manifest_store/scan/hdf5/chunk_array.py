"""The chunk indexes of layout messages version 4 and 5 that list every chunk of a fixed-size
dataset, read from the file's bytes: a single chunk, and a fixed array.

The HDF5 1.10 file format (``libver="latest"``) indexes the chunks of a dataset
without unlimited axes with one of these (HDF5 File Format Specification,
"Data Layout Message", and III.H's fixed array): a single chunk's address (and,
filtered, its size and filter mask) in the layout message itself; or a fixed
array, a header ``FAHD`` and a data block ``FADB``, each checksummed, whose
elements are the chunks' addresses (and, filtered, sizes and filter masks) in
C order of the grid of the dataset's maximum shape, an undefined address for
a chunk never written; a data block of more than 2^page-bits elements holds
them in checksummed pages after it, and a bitmap of the pages written. Fields
are read as ``H5FA__cache_hdr_deserialize``, ``H5FA__cache_dblock_deserialize``,
``H5FA__cache_dblk_page_deserialize`` and ``H5Dfarray.c``'s element decoders
read them. A fixed array that is damaged (signature, version, checksum, an
element outside the file) refuses its dataset; a block larger than an object
header raises :class:`~.headers.Unrecognised`, and the chunks are read with
``chunk_iter``.
"""

from __future__ import annotations

import math

import numpy as np

from zarr_manifest_store.scan.hdf5.chunk_tree import (
    FIXED_ARRAY,
    SINGLE_CHUNK,
    Columns,
    damaged,
    empty_columns,
)
from zarr_manifest_store.scan.hdf5.headers import (
    MAX_HEADER_BYTES,
    FileBytes,
    Unrecognised,
    lookup3,
)

__all__ = ["array_columns"]

FILTERED_SINGLE_CHUNK = 0x02
"""The layout flag of a single chunk stored filtered (its size and filter mask follow)."""
UNFILTERED, FILTERED = 0, 1
"""Fixed array client ids: elements of chunk addresses, or of addresses, sizes and masks."""


def array_columns(
    file: FileBytes,
    layout: bytes,
    dims: tuple[int, ...],
    grid: tuple[int, ...],
    maxshape: tuple[int | None, ...],
) -> Columns:
    """The chunk index of a chunked layout message ``layout`` (version 4 or 5) of a single
    chunk or a fixed array, as :func:`~.chunk_tree.btree_columns` gives a tree's; ``dims``
    are the layout's dimension sizes, ``maxshape`` the dataset's maximum shape."""
    if layout[0] not in (4, 5) or layout[3] != len(dims):
        raise Unrecognised("not a version 4 chunked layout of this rank")
    flags, width = layout[2], layout[4]
    at = 5 + len(dims) * width
    kind = layout[at]
    columns = empty_columns(math.prod(grid))
    chunk_bytes = math.prod(dims)
    if kind == SINGLE_CHUNK:
        info = file.length_size + 4 if flags & FILTERED_SINGLE_CHUNK else 0
        address = file.address(layout, at + 1 + info)
        if address != file.undefined:
            if any(n != 1 for n in grid):
                raise Unrecognised("a single chunk index of more than one chunk")
            size, mask = chunk_bytes, 0
            if info:
                size = file.length(layout, at + 1)
                mask = int.from_bytes(layout[at + 1 + file.length_size : at + 1 + info], "little")
            _place(file, columns, 0, address, size, mask)
        return columns
    if kind != FIXED_ARRAY or None in maxshape:
        raise Unrecognised(f"chunk index type {kind}")
    max_grid = tuple(-(-m // c) for m, c in zip(maxshape, dims[:-1], strict=True))
    header = file.address(layout, at + 2)
    if header == file.undefined:  # no chunk written yet
        return columns
    elements, client, size = _elements(file, header, math.prod(max_grid))
    o = file.offset_size
    addresses = np.frombuffer(elements, np.uint8).reshape(-1, size)[:, :o]
    present = np.flatnonzero((addresses != 0xFF).any(axis=1))  # an undefined address: all ones
    cells = np.unravel_index(present, max_grid)
    if any(np.any(c >= n) for c, n in zip(cells, grid, strict=True)):
        raise damaged("fixed array", "a chunk outside its extent")
    for i, k in zip(present.tolist(), np.ravel_multi_index(cells, grid).tolist(), strict=True):
        element = elements[i * size : (i + 1) * size]
        nbytes, mask = chunk_bytes, 0
        if client == FILTERED:
            nbytes = int.from_bytes(element[o:-4], "little")
            mask = int.from_bytes(element[-4:], "little")
        _place(file, columns, k, file.address(element, 0), nbytes, mask)
    return columns


def _elements(file: FileBytes, header: int, count: int) -> tuple[bytes, int, int]:
    """The ``count`` elements of the fixed array whose header is at ``header`` (those of
    pages never written: undefined addresses), its client id and element size, checked."""
    o, length = file.offset_size, file.length_size
    head = _read(file, header, 8 + length + o + 4)
    if head[:5] != b"FAHD\0" or not _summed(head):
        raise damaged("fixed array", "its header's signature, version or checksum")
    client, size, page_bits = head[5], head[6], head[7]
    # an address; or an address, a chunk size of 1 to 8 bytes and a filter mask
    sized = size == o if client == UNFILTERED else client == FILTERED and o + 5 <= size <= o + 12
    if not sized or file.length(head, 8) != count:
        raise damaged("fixed array", "its client, element size or count")
    block = file.address(head, 8 + length)
    if block == file.undefined:  # no chunk written yet
        return b"\xff" * (count * size), client, size
    per_page = 1 << page_bits
    pages = -(-count // per_page) if count > per_page else 0
    bitmap = (pages + 7) // 8
    prefix = _read(file, block, 6 + o + bitmap + (0 if pages else count * size) + 4)
    if (
        prefix[:5] != b"FADB\0"
        or prefix[5] != client
        or file.address(prefix, 6) != header
        or not _summed(prefix)
    ):
        raise damaged("fixed array", "its data block's signature, header or checksum")
    if not pages:
        return prefix[6 + o : -4], client, size
    parts = []
    for page in range(pages):  # each page its elements and checksum, after the prefix
        n = min(per_page, count - page * per_page)
        if not prefix[6 + o + page // 8] & 0x80 >> page % 8:  # never written
            parts.append(b"\xff" * (n * size))
            continue
        raw = _read(file, block + len(prefix) + page * (per_page * size + 4), n * size + 4)
        if not _summed(raw):
            raise damaged("fixed array", "a page's checksum")
        parts.append(raw[:-4])
    return b"".join(parts), client, size


def _summed(raw: bytes) -> bool:
    """Whether a metadata block's last four bytes are the checksum of the others."""
    return lookup3(raw, len(raw) - 4) == int.from_bytes(raw[-4:], "little")


def _read(file: FileBytes, address: int, size: int) -> bytes:
    if size > MAX_HEADER_BYTES:
        raise Unrecognised("a fixed array larger than an object header")
    if address == file.undefined or file.base + address + size > file.size:
        raise damaged("fixed array", "a block outside the file")
    return file.at(address, size)


def _place(file: FileBytes, columns: Columns, k: int, address: int, size: int, mask: int) -> None:
    start = file.base + address
    if not size or start + size > file.size:
        raise damaged("chunk index", "a chunk of size 0 or outside the file")
    offsets, lengths, skipped = columns
    offsets[k] = start
    lengths[k] = size
    if mask:
        skipped.append(k)
