"""A header-described dataset's dimension scales, named from its ``DIMENSION_LIST`` attribute.

``DIMENSION_LIST`` (HDF5's dimension scale API, which netCDF-4 uses for every
variable's dimensions) holds, per axis, a variable-length list of object
references, addresses of the scales' object headers, stored in the global heap.
h5py's path names an axis after the last scale attached (``objects``): a scale
with a single hard link listed already is named by that link, any other by a
search of the file. Here only the first case is answered, from the headers
alone; anything else raises :class:`~.headers.Unrecognised` and h5py's path
decides (a reference to a deleted scale, a scale with several links, ...).
"""

from __future__ import annotations

import struct
from collections.abc import Mapping

from h5py import h5t

from zarr_manifest_store.scan.hdf5.headers import FileBytes, Message, Unrecognised, object_messages
from zarr_manifest_store.scan.hdf5.messages import RawAttribute

__all__ = ["dimension_list", "scale_names"]

DATASPACE, LINK_INFO, DATATYPE, SYMBOL_TABLE, REFERENCE_COUNT = 0x01, 0x02, 0x03, 0x11, 0x16

SCALE_REFERENCES = h5t.vlen_create(h5t.STD_REF_OBJ).encode()[2:]
"""The datatype message of ``DIMENSION_LIST``: variable-length lists of old-style object
references (``H5Tvlen_create(H5T_STD_REF_OBJ)``), each of 8 bytes."""
_LINK_COUNTS = "hard-link counts"
"""The key in ``FileBytes.memo`` of the link counts of the scales looked up, by address (a
file's few scales are named by thousands of datasets)."""


def dimension_list(raw: RawAttribute, ndim: int, file: FileBytes) -> tuple[tuple[int, ...], ...]:
    """The scale addresses a ``DIMENSION_LIST`` attribute lists for each of ``ndim`` axes:
    a list of old-style object references per axis, as the dimension scale API writes it."""
    if (
        raw.datatype != SCALE_REFERENCES
        or file.offset_size != 8
        or raw.space is None
        or raw.space.shape != (ndim,)
    ):
        raise Unrecognised("dimension list type or shape")
    axes = []
    for count, stored in file.heap_objects(raw.data):
        if len(stored) != count * file.offset_size:
            raise Unrecognised("dimension list references")
        axes.append(struct.unpack(f"<{count}Q", stored))
    return tuple(axes)


def scale_names(
    references: tuple[tuple[int, ...], ...], linked_names: Mapping[int, str], file: FileBytes
) -> list[str | None] | None:
    """Per axis, the name of the last scale of ``references`` (None: no scale on that axis),
    or None when no axis has one, as ``objects._attached_scale_names`` gives them.

    Every scale listed must be a dataset linked from the groups walked so far
    (``linked_names``, by address: h5py would open each), and the last of each
    axis linked once (else h5py searches the file for its name).
    """
    names: list[str | None] = []
    for scales in references:
        if not scales:
            names.append(None)
            continue
        for address in scales:  # each a dataset (h5py would open each), the last linked once
            if address not in linked_names:
                raise Unrecognised("a scale not linked from the groups walked")
            count = _dataset_link_count(file, address)
        if count != 1:
            raise Unrecognised("a scale of several hard links")
        names.append(linked_names[scales[-1]])
    return None if names.count(None) == len(names) else names


def _dataset_link_count(file: FileBytes, address: int) -> int:
    """The hard-link count (``H5Oget_info``'s ``rc``) of the dataset whose object header is at
    ``address`` (raises Unrecognised for any other object)."""
    counts = file.memo.setdefault(_LINK_COUNTS, {})
    if address not in counts:
        messages = object_messages(file, address)
        types = {m.type for m in messages}
        if not {DATASPACE, DATATYPE} <= types or types & {LINK_INFO, SYMBOL_TABLE}:
            raise Unrecognised("a scale that is no dataset")
        counts[address] = _link_count(file, address, messages)
    return counts[address]


def _link_count(file: FileBytes, address: int, messages: list[Message]) -> int:
    """An object's hard-link count: a version 1 header's prefix field; in a version 2 header, its
    reference count message, or 1 where it has none."""
    prefix = file.at(address, 16)
    if prefix[:4] != b"OHDR":
        return struct.unpack_from("<I", prefix, 4)[0]
    found = [m.body for m in messages if m.type == REFERENCE_COUNT]
    if not found:
        return 1
    if len(found) > 1 or found[0][0] != 0:
        raise Unrecognised("reference count message")
    return struct.unpack_from("<I", found[0], 1)[0]
