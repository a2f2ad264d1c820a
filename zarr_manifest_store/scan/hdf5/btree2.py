"""The records of a version 2 B-tree (``BTHD``, HDF5 File Format Specification III.A.2),
read from the file: HDF5 indexes dense attribute storage with them.

Every node's checksum and record counts are checked, and the walk is bounded (depth,
records, bytes read); anything else raises Unrecognised.
"""

from __future__ import annotations

import functools
import struct

from zarr_manifest_store.scan.hdf5.headers import (
    MAX_HEADER_BYTES,
    MAX_MESSAGES,
    UNSIGNED,
    FileBytes,
    Unrecognised,
    verify_checksum,
)

__all__ = ["btree2_records"]

NODE_PREFIX = 10
"""Bytes of a node that are not records or child pointers: signature, version, type, checksum."""
MAX_DEPTH = 16


def _size_of(count: int) -> int:
    """Bytes HDF5 encodes a count of at most ``count`` in (``H5VM_limit_enc_size``)."""
    return (count.bit_length() - 1) // 8 + 1


def btree2_records(file: FileBytes, address: int, kind: int, record_size: int) -> bytes:
    """Every record of the B-tree of type ``kind`` whose header is at ``address``, one after
    another (``record_size`` bytes each: ``struct.iter_unpack`` reads them)."""
    o = file.offset_size
    header = _header(o, file.length_size)
    head = file.at(address, header.size + 4)
    signature, node_size, stored_record_size, depth, root, count, total = header.unpack(head[:-4])
    if signature != b"BTHD\0" + bytes([kind]):
        raise Unrecognised("v2 B-tree signature, version or type")
    verify_checksum(head)
    if stored_record_size != record_size or not 0 <= depth <= MAX_DEPTH:
        raise Unrecognised("v2 B-tree record size or depth")
    if total > MAX_MESSAGES or node_size > MAX_HEADER_BYTES or node_size <= NODE_PREFIX:
        raise Unrecognised("v2 B-tree too large")
    most, pointers, count_size = _shape(node_size, record_size, depth, o)
    records: list[bytes] = []
    found = 0
    pending = [(root, count, depth)] if total else []
    while pending:
        node, count, d = pending.pop()
        found += count
        if count > most[d] or found > total:
            raise Unrecognised("v2 B-tree record count")
        raw = file.at(node, node_size)
        if raw[:6] != (b"BTIN\0" if d else b"BTLF\0") + bytes([kind]):
            raise Unrecognised("v2 B-tree node signature, version or type")
        end = 6 + count * record_size
        records.append(raw[6:end])
        if d:
            for _ in range(count + 1):
                child = file.address(raw, end)
                below_count = int.from_bytes(raw[end + o : end + o + count_size], "little")
                pending.append((child, below_count, d - 1))
                end += pointers[d]
        verify_checksum(raw, end)
    if found != total:
        raise Unrecognised("v2 B-tree record count")
    return records[0] if len(records) == 1 else b"".join(records)


@functools.lru_cache(maxsize=16)
def _header(offset_size: int, length_size: int) -> struct.Struct:
    """A header up to its checksum, for a file's sizes of offsets and lengths: signature,
    version and type; node size, record size, depth; split and merge percents (skipped);
    the root's address and record count; the tree's record count."""
    return struct.Struct(f"<6sIHH2x{UNSIGNED[offset_size]}H{UNSIGNED[length_size]}")


@functools.lru_cache(maxsize=64)
def _shape(
    node_size: int, record_size: int, depth: int, offset_size: int
) -> tuple[list[int], list[int], int]:
    """Per depth, the most records a node holds and the bytes of a child pointer; and the
    bytes of a leaf's record count (``H5B2__hdr_init``'s node info)."""
    most = [(node_size - NODE_PREFIX) // record_size]
    below, pointers = [most[0]], [0]
    count_size = _size_of(most[0])
    for d in range(1, depth + 1):
        pointers.append(offset_size + count_size + (_size_of(below[d - 1]) if d > 1 else 0))
        most.append((node_size - NODE_PREFIX - pointers[d]) // (record_size + pointers[d]))
        below.append((most[d] + 1) * below[d - 1] + most[d])
    return most, pointers, count_size
