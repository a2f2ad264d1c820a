"""The bodies of the object header messages a small dataset has, decoded exactly or not at all.

Dataspaces, data layouts (compact, contiguous and chunked), filter pipelines, fill
values (new form) and attributes (versions 1-3) are decoded into plain values; a datatype stays its
raw message, which HDF5 itself decodes once per distinct type (``H5Tdecode``,
:mod:`.parsed`). What these functions do not know exactly — a version, a
layout class, a shared message — raises :class:`~.headers.Unrecognised`.
"""

from __future__ import annotations

import functools
import math
import struct
from typing import NamedTuple

from zarr_manifest_store.scan.hdf5.headers import SHARED, UNSIGNED, FileBytes, Message, Unrecognised

__all__ = [
    "CHUNKED",
    "COMPACT",
    "CONTIGUOUS",
    "AttributeInfo",
    "RawAttribute",
    "Space",
    "attribute",
    "attribute_info",
    "attribute_name",
    "chunk_dims",
    "dataspace",
    "fill_value",
    "filter_pipeline",
    "layout",
    "type_size",
]

COMPACT, CONTIGUOUS, CHUNKED = 0, 1, 2
"""Layout classes (virtual ones are left to h5py)."""
SINGLE_INDEX_WITH_FILTER = 0x02
"""The one layout flag (version 4) read here: a single-chunk index holds the filtered size.
The other, "don't filter partial edge chunks", is left to h5py."""
INDEX_INFO_SIZES = {2: 0, 3: 1, 4: 5, 5: 6}
"""Bytes of the index parameters after each chunk index type (version 4): implicit,
fixed array (page bits), extensible array (five sizes), v2 B-tree (node size, split and
merge percentages); a single chunk (1) has them only with ``SINGLE_INDEX_WITH_FILTER``."""
RESERVED_FILTERS = 256
"""Filter ids below this are HDF5's own, whose names version 2 pipelines do not store."""
MAX_FILTERS = 32
"""HDF5's ``H5Z_MAX_NFILTERS``."""
NAME_BUFFER = 256
"""The filter name buffer h5py's ``get_filter`` passes (longer names are cut)."""


class PipelineStage(NamedTuple):
    """One filter of a pipeline message as stored (``name`` None where the message stores
    none); ``filters.Filter`` is a filter as HDF5 reports it."""

    id: int
    flags: int
    cd_values: tuple[int, ...]
    name: bytes | None


FILL_TIME_NEVER = 1
"""A fill value message's fill time "never" (HDF5's ``H5D_FILL_TIME_NEVER``)."""
UNDEFINED_FILL = -1
"""``fill_value``'s size for a fill value the dataset does not define (HDF5's own -1)."""


class Space(NamedTuple):
    """A dataspace as h5py reports it: shape (``()`` scalar) and maximum shape (None: unlimited)."""

    shape: tuple[int, ...]
    maxshape: tuple[int | None, ...]

    @property
    def size(self) -> int:
        return math.prod(self.shape)


class RawAttribute(NamedTuple):
    """An attribute message: its name, raw datatype message, dataspace (None: null) and data."""

    name: bytes
    datatype: bytes
    space: Space | None
    data: bytes


def unshared(message: Message) -> bytes:
    """A message's body, when it is its own (not shared in the file's shared-message heap)."""
    if message.flags & SHARED:
        raise Unrecognised(f"shared message {message.type}")
    return message.body


def dataspace(body: bytes, file: FileBytes) -> Space | None:
    """A dataspace message: simple or scalar (None: a null dataspace)."""
    return _dataspace(body, file.length_size)


@functools.lru_cache(maxsize=1024)
def _dataspace(body: bytes, length_size: int) -> Space | None:
    """``dataspace``, once per distinct message (the variables of a file share a few shapes)."""
    version, rank, flags = body[0], body[1], body[2]
    if version == 1:
        at, null = 8, False
        if flags & 0x02:
            raise Unrecognised("dataspace permutation")
    elif version == 2:
        at, null = 4, body[3] == 2
        if body[3] not in (0, 1, 2) or (body[3] != 1 and rank):
            raise Unrecognised("dataspace type")
    else:
        raise Unrecognised(f"dataspace version {version}")
    if flags & ~0x03:
        raise Unrecognised("dataspace flags")
    counts = rank * (2 if flags & 1 else 1)
    if len(body) < at + counts * length_size:
        raise Unrecognised("short dataspace")
    values = struct.unpack_from(f"<{counts}{UNSIGNED[length_size]}", body, at)
    shape = values[:rank]
    if not flags & 1:
        return None if null else Space(shape, shape)
    unlimited = (1 << (8 * length_size)) - 1
    maxshape = tuple(None if m == unlimited else m for m in values[rank:])
    return None if null else Space(shape, maxshape)


def layout(body: bytes, file: FileBytes) -> tuple[int, int | None, int | bytes]:
    """A data layout message (version 3 or 4) of a compact or contiguous dataset:
    ``(COMPACT, None, data)`` or ``(CONTIGUOUS, address or None, size)``."""
    version, kind = body[0], body[1]
    if version not in (3, 4):
        raise Unrecognised(f"layout version {version}")
    if kind == COMPACT:
        size = struct.unpack_from("<H", body, 2)[0]
        data = body[4 : 4 + size]
        if len(data) != size:
            raise Unrecognised("short compact data")
        return COMPACT, None, data
    if kind == CONTIGUOUS:
        address = file.address(body, 2)
        size = file.length(body, 2 + file.offset_size)
        return CONTIGUOUS, None if address == file.undefined else address, size
    raise Unrecognised(f"layout class {kind}")


def chunk_dims(body: bytes, file: FileBytes) -> tuple[int, ...]:
    """A chunked layout message's dimension sizes (version 3, or 4 and 5, which HDF5 2.0
    writes alike): the chunk shape followed by the element size, as HDF5 stores them."""
    version, kind = body[0], body[1]
    if kind != CHUNKED:
        raise Unrecognised(f"layout class {kind}")
    if version == 3:
        rank, at, size = body[2], 3 + file.offset_size, 4
        end = at + rank * size
    elif version in (4, 5):
        flags, rank, size = body[2], body[3], body[4]
        if flags & ~SINGLE_INDEX_WITH_FILTER or not 1 <= size <= 8:
            raise Unrecognised("chunked layout flags or dimension size")
        at = 5
        index = at + rank * size
        info = INDEX_INFO_SIZES.get(body[index])
        if body[index] == 1:
            info = file.length_size + 4 if flags else 0
        if info is None or (flags and body[index] != 1):
            raise Unrecognised(f"chunk index type {body[index]}")
        end = index + 1 + info + file.offset_size
    else:
        raise Unrecognised(f"layout version {version}")
    if len(body) < end or rank < 2:
        raise Unrecognised("short chunked layout")
    code = UNSIGNED.get(size)
    if code is not None:
        dims = struct.unpack_from(f"<{rank}{code}", body, at)
    else:
        dims = tuple(
            int.from_bytes(body[i : i + size], "little") for i in range(at, at + rank * size, size)
        )
    if not all(dims):
        raise Unrecognised("chunk dimension 0")
    return dims


def filter_pipeline(body: bytes) -> list[PipelineStage]:
    """A filter pipeline message (version 1, or 2 that stores no names of HDF5's own filters),
    decoded as HDF5's ``H5O__pline_decode`` decodes it."""
    version, count = body[0], body[1]
    if version not in (1, 2) or count > MAX_FILTERS:
        raise Unrecognised(f"filter pipeline version {version}")
    at = 8 if version == 1 else 2
    filters = []
    for _ in range(count):
        code = struct.unpack_from("<H", body, at)[0]
        at += 2
        name_length = 0
        if version == 1 or code >= RESERVED_FILTERS:
            name_length = struct.unpack_from("<H", body, at)[0]
            at += 2
            if version == 1 and name_length % 8:
                raise Unrecognised("filter name length")
        flags, values = struct.unpack_from("<HH", body, at)
        at += 4
        name = None
        if name_length:
            stored = body[at : at + name_length]
            if b"\0" not in stored or len(stored) != name_length:
                raise Unrecognised("filter name")
            name = stored.split(b"\0", 1)[0]
            at += name_length
        cd_values = struct.unpack_from(f"<{values}I", body, at)
        at += 4 * (values + (version == 1 and values % 2))
        if len(body) < at or (name is not None and len(name) >= NAME_BUFFER):
            raise Unrecognised("short filter pipeline or long filter name")
        filters.append(PipelineStage(code, flags, cd_values, name))
    return filters


@functools.lru_cache(maxsize=256)
def fill_value(body: bytes) -> bytes | None:
    """A fill value message (new form, versions 1-3): the value's bytes (``b""``: the
    default, zeros), or None when the dataset defines none (HDF5 reads such data as
    whatever the file holds). A fill time of "never" (where HDF5 reads unwritten data as
    whatever its buffer held) raises Unrecognised: h5py describes such datasets. Once per
    distinct message: the variables of a file repeat a few."""
    version = body[0]
    if (body[2] if version in (1, 2) else body[1] >> 2 & 0x03) == FILL_TIME_NEVER:
        raise Unrecognised("fill time 'never'")
    if version in (1, 2):
        if not body[3]:  # "fill value defined"
            return None
        size = struct.unpack_from("<i", body, 4)[0]
        start = 8
    elif version == 3:
        flags = body[1]
        if flags & ~0x3F or (flags & 0x30) == 0x30:
            raise Unrecognised("fill value flags")
        if flags & 0x10:
            return None
        if not flags & 0x20:
            return b""
        size = struct.unpack_from("<I", body, 2)[0]
        start = 6
    else:
        raise Unrecognised(f"fill value version {version}")
    value = body[start : start + max(size, 0)]
    if size < 0 or len(value) != size:
        raise Unrecognised("fill value size")
    return value


class AttributeInfo(NamedTuple):
    """An attribute info message: whether creation order is tracked, and the addresses of
    the fractal heap and name index of dense attribute storage (None: none, every
    attribute is a message in the header)."""

    tracked: bool
    heap: int | None
    names: int | None


def attribute_info(body: bytes, file: FileBytes) -> AttributeInfo:
    """An attribute info message, version 0."""
    version, flags = body[0], body[1]
    if version != 0 or flags & ~0x03:
        raise Unrecognised(f"attribute info version {version} or flags")
    at = 2 + (2 if flags & 0x01 else 0)  # after the maximum creation index, where tracked
    if len(body) < at + 2 * file.offset_size:
        raise Unrecognised("short attribute info")
    heap, names = file.address(body, at), file.address(body, at + file.offset_size)
    if (heap == file.undefined) != (names == file.undefined):
        raise Unrecognised("dense attribute storage without its heap or name index")
    if heap == file.undefined:
        return AttributeInfo(bool(flags & 0x01), None, None)
    return AttributeInfo(bool(flags & 0x01), heap, names)


def type_size(datatype: bytes) -> int:
    """The size in bytes of one element of a datatype message."""
    return struct.unpack_from("<I", datatype, 4)[0]


def attribute_name(body: bytes) -> bytes:
    """The name of an attribute message, versions 1-3 (without its terminating NUL)."""
    end = (9 if body[0] == 3 else 8) + int.from_bytes(body[2:4], "little")
    if end <= MEMO_BYTES:  # the objects of a file repeat the same names: memoised on the
        return _memo_name(body[:end])  # message up to its name's end (its values may differ)
    return _name(body)


MEMO_BYTES = 1024
"""Names up to this size (with the message's head) are memoised."""


@functools.lru_cache(maxsize=4096)
def _memo_name(body: bytes) -> bytes:
    return _name(body)


def _name(body: bytes) -> bytes:
    version = body[0]
    if version not in (1, 2, 3):
        raise Unrecognised(f"attribute version {version}")
    at = 9 if version == 3 else 8  # version 3 stores the name's character set first
    size = struct.unpack_from("<H", body, 2)[0]
    name = body[at : at + size]
    if len(name) != size or not name.endswith(b"\0") or b"\0" in name[:-1]:
        raise Unrecognised("attribute name")  # HDF5 would cut it at its first NUL
    return name[:-1]


def attribute(body: bytes, file: FileBytes) -> RawAttribute:
    """An attribute message, versions 1-3, its datatype and dataspace its own."""
    name = attribute_name(body)
    type_at, type_bytes, space_at, space_bytes, at = attribute_layout(body)
    datatype = body[type_at : type_at + type_bytes]
    space = dataspace(body[space_at : space_at + space_bytes], file)
    if len(datatype) != type_bytes:
        raise Unrecognised("attribute datatype")
    count = 0 if space is None else space.size
    size = count * type_size(datatype)
    data = body[at : at + size]
    if len(data) != size:
        raise Unrecognised("short attribute data")
    return RawAttribute(name, datatype, space, data)


def attribute_layout(body: bytes) -> tuple[int, int, int, int, int]:
    """Where an attribute message (versions 1-3, its datatype and dataspace its own) keeps its
    datatype and dataspace (offset and size of each) and its data (offset): version 1 pads
    each part to 8 bytes. A function of the message's first 8 bytes, which the attributes of
    a file repeat: worked out once for each."""
    return _layout(body[:8])


@functools.lru_cache(maxsize=1024)
def _layout(head: bytes) -> tuple[int, int, int, int, int]:
    version, flags = head[0], head[1]
    name_size, type_bytes, space_bytes = struct.unpack_from("<HHH", head, 2)
    if version == 1:
        at, pad = 8, 8
    elif version not in (2, 3):
        raise Unrecognised(f"attribute version {version}")
    elif flags:
        raise Unrecognised("shared attribute datatype or dataspace")
    else:
        at, pad = (8, 1) if version == 2 else (9, 1)
    type_at = at + _padded(name_size, pad)
    space_at = type_at + _padded(type_bytes, pad)
    return type_at, type_bytes, space_at, space_bytes, space_at + _padded(space_bytes, pad)


def _padded(size: int, pad: int) -> int:
    return -(-size // pad) * pad
