"""The attribute messages of a header with dense attribute storage (issue #18): the name
index's records (a version 2 B-tree of type 8) give each message's fractal heap ID and
creation index, as ``H5A__dense_build_table`` lists them; h5py's order is then the sort
:class:`~.header_attributes.HeaderAttributes` applies to attributes in the header.

A shared attribute message raises Unrecognised (the scan opens the object with h5py).
"""

from __future__ import annotations

import struct

from zarr_manifest_store.scan.hdf5.btree2 import btree2_records
from zarr_manifest_store.scan.hdf5.fractal_heap import FractalHeap
from zarr_manifest_store.scan.hdf5.headers import FileBytes, Unrecognised

__all__ = ["dense_attributes"]

NAME_INDEX = 8
"""The v2 B-tree record type of an attribute name index."""
HEAP_ID_BYTES = 8
NAME_RECORD = struct.Struct("<QBI4x")
"""Its records: a heap ID of ``HEAP_ID_BYTES`` (read as one integer), message flags, creation
index, name hash."""


def dense_attributes(
    file: FileBytes, heap: int, names: int, tracked: bool
) -> list[tuple[int | None, bytes]]:
    """Each attribute message in the heap at ``heap`` indexed by the name index at ``names``,
    with its creation index where ``tracked`` (else None)."""
    objects = FractalHeap(file, heap)
    if objects.id_size != HEAP_ID_BYTES:
        raise Unrecognised("fractal heap ID size")
    heap_ids, found = [], []
    records = btree2_records(file, names, NAME_INDEX, NAME_RECORD.size)
    for heap_id, flags, order in NAME_RECORD.iter_unpack(records):
        if flags:
            raise Unrecognised("shared attribute message in dense storage")
        heap_ids.append(heap_id)
        found.append(order if tracked else None)
    return list(zip(found, objects.objects(heap_ids), strict=True))
