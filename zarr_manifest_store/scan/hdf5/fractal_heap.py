"""Managed objects of a fractal heap (``FRHP``), read from the file: HDF5 keeps there the
attribute messages of a header with dense attribute storage.

Only managed objects of an unfiltered heap are read (HDF5 File Format Specification III.G):
a heap ID of a huge or tiny object, a filtered heap, a bad checksum or a block out of place
raises Unrecognised, and the scan opens the object with h5py instead. The blocks read are
bounded: at most ``MAX_HEADER_BYTES`` in all for one heap.
"""

from __future__ import annotations

import functools
import struct

from zarr_manifest_store.scan.hdf5.headers import (
    MAX_HEADER_BYTES,
    UNSIGNED,
    FileBytes,
    Unrecognised,
    lookup3,
    verify_checksum,
)

__all__ = ["FractalHeap"]

CHECKSUMMED_DIRECT_BLOCKS = 0x02
"""Header flag: direct blocks carry a checksum."""
MAX_DEPTH = 16
"""Indirect blocks below the root followed at most (a heap of 2**64 bytes needs fewer)."""


def _log2(value: int) -> int:
    """The exponent of ``value``, a power of two (raises Unrecognised otherwise)."""
    if value <= 0 or value & (value - 1):
        raise Unrecognised(f"{value} is not a power of two")
    return value.bit_length() - 1


@functools.lru_cache(maxsize=16)
def _header(offset_size: int, length_size: int) -> struct.Struct:
    """A heap header up to its checksum, for a file's sizes of offsets (``O``) and lengths
    (``L``): signature and version, heap ID length, filters' length, flags, largest managed
    object, huge objects' next ID and index, free space and its manager, 8 sizes and counts,
    table width, starting and largest direct block sizes, heap offset bits, starting rows,
    root block and its rows."""
    o, n = UNSIGNED[offset_size], UNSIGNED[length_size]
    return struct.Struct(f"<5sHHBI{n}{o}{n}{o}8{n}H{n}{n}HH{o}H")


@functools.lru_cache(maxsize=64)
def _geometry(
    width: int, start: int, maximum: int, heap_bits: int, max_object: int
) -> tuple[int, int, int, int]:
    """The bits of the first row's heap offsets, the rows of direct blocks, and the sizes of
    a heap ID's offset and length (raises Unrecognised for sizes not powers of two)."""
    first_row_bits = _log2(start) + _log2(width)
    direct_rows = _log2(maximum) - _log2(start) + 2
    length_size = min((_log2(maximum) + 7) // 8, (max_object.bit_length() - 1) // 8 + 1)
    return first_row_bits, direct_rows, (heap_bits + 7) // 8, length_size


class FractalHeap:
    """The fractal heap whose header is at ``address``: :meth:`objects` reads managed objects."""

    def __init__(self, file: FileBytes, address: int) -> None:
        self._file, self._address = file, address
        header = _header(file.offset_size, file.length_size)
        head = file.at(address, header.size + 4)
        fields = header.unpack_from(head)
        if fields[0] != b"FRHP\0":
            raise Unrecognised("fractal heap signature or version")
        self.id_size, filters, self._flags, max_object = fields[1:5]
        if filters:
            raise Unrecognised("filtered fractal heap")
        verify_checksum(head)
        width, self._start, maximum, heap_bits, _, self._root, self._root_rows = fields[-7:]
        self._width = width
        geometry = _geometry(width, self._start, maximum, heap_bits, max_object)
        self._first_row_bits, self._direct_rows, self._offset_size, length_size = geometry
        self._offset_mask = (1 << 8 * self._offset_size) - 1
        self._length_shift = 8 + 8 * self._offset_size
        self._length_mask = (1 << 8 * length_size) - 1
        # blocks read, by address and heap offset (each checked at that offset)
        self._blocks: dict[tuple[int, int], bytes] = {}
        self._children: dict[tuple[int, int], list[int]] = {}
        self._budget = MAX_HEADER_BYTES
        checksum = 4 if self._flags & CHECKSUMMED_DIRECT_BLOCKS else 0
        self._direct_header = 5 + file.offset_size + self._offset_size + checksum
        """Bytes of a direct block before its objects: signature, version, heap, offset, checksum."""

    def objects(self, heap_ids: list[int]) -> list[bytes]:
        """The managed objects of ``heap_ids`` (heap IDs of ``id_size`` bytes, each read as one
        little-endian integer); raises Unrecognised for any other kind of object."""
        offset_mask, length_shift, length_mask = (
            self._offset_mask,
            self._length_shift,
            self._length_mask,
        )
        # the root is the heap's one direct block where it has no rows
        root = (
            self._direct(self._root, 0, self._start) if heap_ids and not self._root_rows else None
        )
        header = self._direct_header
        found = []
        block = root
        for fields in heap_ids:  # version and type, offset, length
            offset = (fields >> 8) & offset_mask
            stop = offset + ((fields >> length_shift) & length_mask)
            if root is None:  # in a direct block below the root's indirect block
                block, start = self._find(offset)
                offset, stop = offset - start, stop - start
            if fields & 0xFF or offset < header or stop > len(block):  # version 0, managed
                raise Unrecognised("fractal heap ID not of a managed object in its block")
            found.append(block[offset:stop])
        return found

    def _row_size(self, row: int) -> int:
        return self._start if row == 0 else self._start << (row - 1)

    def _find(self, offset: int) -> tuple[bytes, int]:
        """The direct block holding heap ``offset``, and the heap offset where it starts."""
        address, rows, start = self._root, self._root_rows, 0
        for _ in range(MAX_DEPTH):
            entries = self._indirect(address, rows, start)
            row, row_start = 0, start
            while row < rows and offset >= row_start + self._width * self._row_size(row):
                row_start += self._width * self._row_size(row)
                row += 1
            if row == rows:
                raise Unrecognised("fractal heap offset past its blocks")
            size = self._row_size(row)
            column = (offset - row_start) // size
            child, start = entries[row * self._width + column], row_start + column * size
            if row < self._direct_rows:
                return self._direct(child, start, size), start
            address, rows = child, _log2(size) - self._first_row_bits + 1
        raise Unrecognised("fractal heap too deep")

    def _read(self, address: int, size: int, signature: bytes, start: int) -> bytes:
        """The block at ``address`` after checking its signature, heap and offset."""
        if address == self._file.undefined:
            raise Unrecognised("fractal heap block not allocated")
        self._budget -= size
        if self._budget < 0:
            raise Unrecognised("fractal heap larger than read here")
        raw = self._file.at(address, size)
        o = self._file.offset_size
        if (
            raw[:5] != signature + b"\0"
            or self._file.address(raw, 5) != self._address
            or int.from_bytes(raw[5 + o : 5 + o + self._offset_size], "little") != start
        ):
            raise Unrecognised("fractal heap block signature, heap or offset")
        return raw

    def _indirect(self, address: int, rows: int, start: int) -> list[int]:
        entries = self._children.get((address, start))
        if entries is None:
            o = self._file.offset_size
            count = rows * self._width
            at = 5 + o + self._offset_size
            raw = self._read(address, at + count * o + 4, b"FHIB", start)
            verify_checksum(raw)
            entries = [self._file.address(raw, at + i * o) for i in range(count)]
            self._children[address, start] = entries
        return entries

    def _direct(self, address: int, start: int, size: int) -> bytes:
        block = self._blocks.get((address, start))
        if block is None:
            block = self._read(address, size, b"FHDB", start)
            if self._flags & CHECKSUMMED_DIRECT_BLOCKS:
                at = self._direct_header - 4
                zeroed = bytearray(block)  # the checksum is of the block with its own zeroed
                zeroed[at : at + 4] = bytes(4)
                if lookup3(zeroed) != int.from_bytes(block[at : at + 4], "little"):
                    raise Unrecognised("checksum mismatch")
            self._blocks[address, start] = block
        return block
