"""A header-described dataset's attributes, read from its attribute messages as h5py reads them.

The attributes are listed from the header in h5py's order: by creation order where the
header tracks it (netCDF-4 files do), else by name. Each value is decoded when first
asked for: numbers and strings (fixed or variable length) from the message, exactly as
h5py gives them; any other (object references, compounds, shared types, ...) is read
through h5py, which opens the dataset.
"""

from __future__ import annotations

import functools
import operator
import weakref
from collections.abc import Iterable, Iterator
from typing import Any

import h5py
import numpy as np
from h5py import h5t

from zarr_manifest_store.scan.hdf5.attributes import (
    MEMO_BYTES,
    Attributes,
    attribute_reading,
    decoded_name,
)
from zarr_manifest_store.scan.hdf5.datatypes import type_key
from zarr_manifest_store.scan.hdf5.headers import NOT_RECOGNISED, FileBytes, Unrecognised
from zarr_manifest_store.scan.hdf5.messages import (
    RawAttribute,
    attribute,
    attribute_layout,
    attribute_name,
    dataspace,
    type_size,
)

__all__ = ["HeaderAttributes", "decoded_type"]

PLAIN_CLASSES = frozenset({0, 1, 3})
"""Datatype classes decoded here: fixed-point, floating-point, fixed-length string."""
VLEN, VLEN_STRING = 9, 1
NULLTERM, NULLPAD = 0, 1
_BY_ORDER, _BY_NAME = operator.itemgetter(0), operator.itemgetter(1)
"""Sort keys of (creation index, name, message) triples."""


class HeaderAttributes(Attributes):
    """A dataset's attributes from its attribute messages (``messages``: each body with its
    creation index), in h5py's order: by creation index where ``tracked``, else by name."""

    def __init__(
        self,
        ds: h5py.Dataset,
        messages: list[tuple[int | None, bytes]],
        file: FileBytes,
        tracked: bool,
    ) -> None:
        # A weak reference, as the base class keeps only the identifier: the dataset holds
        # these attributes, and a cycle would leave its h5py objects to the garbage collector,
        # which may free them on a thread reading a store while another holds h5py's lock.
        self._dataset = weakref.ref(ds)
        self._file = file
        named = [(order, attribute_name(body), body) for order, body in messages]
        named.sort(key=_BY_ORDER if tracked else _BY_NAME)
        if tracked and len(set(map(_BY_ORDER, named))) != len(named):
            raise Unrecognised("repeated attribute creation indexes")
        self._bodies = {_shown_name(name): body for _, name, body in named}
        """Each attribute's message, by name as h5py shows it."""
        if len(self._bodies) != len(named):
            raise Unrecognised("repeated attribute names")
        self._values = {}
        self.memo = file.memo
        self._text_heads = file.memo.setdefault(_TEXT_HEADS, {})

    def __getitem__(self, name: str | bytes) -> Any:
        """The value, as ``obj.attrs[name]`` gives it: decoded from its message, or read by h5py
        where this module cannot decode it exactly."""
        if name not in self._values:
            try:
                raw = attribute(self._bodies[name], self._file)
                self._values[name] = _attribute_value(raw, self._file)
            except NOT_RECOGNISED:
                return super().__getitem__(name)
        return self._values[name]

    def messages(self) -> Iterable[tuple[str | bytes, bytes]]:
        return self._bodies.items()

    def __iter__(self) -> Iterator[str | bytes]:
        return iter(self._bodies)

    def __contains__(self, name: object) -> bool:
        return name in self._bodies

    @functools.cached_property
    def _stored(self) -> dict[str | bytes, bytes]:  # type: ignore[override]
        """Each attribute's name as stored, by name as h5py shows it (for h5py's reading of
        what is left to it)."""
        return {shown: attribute_name(body) for shown, body in self._bodies.items()}

    def memo_key(self, name: str | bytes, message: bytes) -> Any:
        """The message, or for variable-length text (whose message holds the addresses of its
        strings in the file's global heap, different for each object) the message up to its
        data and each string's length and bytes (None where they cannot be read here, or
        hold more than ``MEMO_BYTES``: large text is converted each time, not kept)."""
        file = self._file
        try:
            data_at = attribute_layout(message)[4]
        except NOT_RECOGNISED:
            return message
        head = message[:data_at]
        try:
            text = self._text_head(head)
        except NOT_RECOGNISED:
            return None  # text whose dataspace is not read here
        if text is None:
            return message
        try:
            end = data_at + text[0] * (8 + file.offset_size)
            if end > len(message):
                return None
            key: list[Any] = [head]
            total = 0
            for length, stored in file.heap_objects(message[data_at:end]):
                total += length
                if total > MEMO_BYTES:
                    return None
                key += (length, stored[:length])
            return tuple(key)
        except NOT_RECOGNISED:
            return None

    def plain_text(self, message: bytes) -> str | None:
        """The value of a scalar attribute of one variable-length ASCII string (its own JSON),
        read from the global heap (``memo_key`` would read it too, to key the memo with); None
        for any other attribute."""
        try:
            data_at = attribute_layout(message)[4]
            if self._text_head(message[:data_at]) != SCALAR_STRING:
                return None
            text = _vlen_string(*self._file.heap_object(message, data_at))
        except NOT_RECOGNISED:
            return None  # an empty string, or one cut at a NUL, h5py reads
        return text if text.isascii() else None

    def _text_head(self, head: bytes) -> tuple[int, bool] | None:
        """How many strings an attribute message of variable-length text with ``head`` holds,
        and whether it is a scalar string as h5py reads it; None for any other message (each
        head worked out once per file: the attributes of a file repeat a few)."""
        heads = self._text_heads
        found = heads.get(head, _UNSEEN)
        if found is _UNSEEN:
            found = heads[head] = _read_text_head(head, self._file)
        return found

    def raw(self, name: str) -> RawAttribute:
        """Attribute ``name`` as its message stores it."""
        return attribute(self._bodies[name], self._file)

    def _live(self) -> h5py.Dataset:
        ds = self._dataset()
        if ds is None:
            raise ReferenceError("the dataset of these attributes is gone")
        return ds

    @property
    def id(self) -> Any:  # type: ignore[override]
        return self._live().id

    @property
    def _h5py(self) -> h5py.AttributeManager:  # type: ignore[override]
        """h5py's reading of the attributes left to it (opens the dataset)."""
        return self._live().attrs


def _attribute_value(raw: RawAttribute, file: FileBytes) -> Any:
    """An attribute's value, exactly as h5py's ``attrs[name]`` gives it."""
    if raw.datatype[0] & 0x0F == VLEN:
        if raw.datatype[1] & 0x0F != VLEN_STRING:
            raise Unrecognised("variable-length sequence attribute")
    elif raw.datatype[0] & 0x0F not in PLAIN_CLASSES:
        raise Unrecognised("attribute datatype class")
    dtype, vlen, exact = _attribute_type(raw.datatype)
    if raw.space is None:
        return h5py.Empty(dtype)
    if vlen:
        strings = _vlen_strings(raw.data, file)
        if not raw.space.shape and len(strings) == 1:
            return strings[0]  # what a scalar array of them gives: the one str
        values = np.array(strings, dtype=dtype)
    elif exact:
        values = np.frombuffer(raw.data, dtype).copy()
    elif dtype.kind == "S" and raw.datatype[1] & 0x0F in (NULLTERM, NULLPAD):
        # HDF5 converts to h5py's null-padded type by keeping each string up to its first NUL
        width = dtype.itemsize
        items = [raw.data[i : i + width].split(b"\0", 1)[0] for i in range(0, len(raw.data), width)]
        values = np.array(items, dtype=dtype)
    else:
        raise Unrecognised("HDF5 converts this attribute's datatype on reading")
    values = values.reshape(raw.space.shape)
    return values[()] if values.ndim == 0 else values


def _read_text_head(head: bytes, file: FileBytes) -> tuple[int, bool] | None:
    """``HeaderAttributes._text_head`` of an attribute message's head (the message up to its
    data)."""
    try:
        type_at, type_bytes, space_at, space_bytes, _ = attribute_layout(head)
    except NOT_RECOGNISED:
        return None
    if type_at + 2 > len(head) or head[type_at] & 0x0F != VLEN:
        return None
    if head[type_at + 1] & 0x0F != VLEN_STRING:
        return None
    space = dataspace(head[space_at : space_at + space_bytes], file)
    if space is None:
        return 0, False
    datatype = head[type_at : type_at + type_bytes]
    if space.shape or type_size(datatype) != 8 + file.offset_size:
        return space.size, False
    try:
        return 1, _attribute_type(datatype)[1]  # read as text by h5py (not left to it)
    except NOT_RECOGNISED:
        return 1, False


SCALAR_STRING = (1, True)
"""``_text_head`` of a scalar variable-length string."""
_TEXT_HEADS = "variable-length text attribute heads"
"""The key in a file's memo of its attribute messages' ``_text_head`` by head."""
_UNSEEN = object()


def _vlen_strings(data: bytes, file: FileBytes) -> list[str]:
    """Variable-length strings from their global heap ids, decoded as h5py decodes them."""
    return [_vlen_string(length, stored) for length, stored in file.heap_objects(data)]


def _vlen_string(length: int, stored: bytes) -> str:
    """A variable-length string from its length and global heap object, decoded as h5py
    decodes it; an empty one, or one that a NUL would cut, raises Unrecognised (h5py reads it)."""
    text = stored[:length]
    if not length or len(text) != length or b"\0" in text:
        raise Unrecognised("empty or short variable-length string, or one holding a NUL")
    return text.decode("utf-8", "surrogateescape")


@functools.lru_cache(maxsize=4096)
def _shown_name(name: bytes) -> str | bytes:
    """``decoded_name``, once per distinct name (the objects of a file repeat theirs)."""
    return decoded_name(name)


@functools.lru_cache(maxsize=256)
def decoded_type(datatype: bytes) -> h5t.TypeID:
    """A datatype message decoded by HDF5 (``H5Tdecode`` of its serialised form)."""
    return h5t.decode(b"\x03\x00" + datatype)


@functools.lru_cache(maxsize=256)
def _attribute_type(datatype: bytes) -> tuple[np.dtype, bool, bool]:
    """An attribute datatype's NumPy type as h5py reads it, whether it is variable-length
    text, and whether h5py reads it exactly as stored."""
    reading = attribute_reading(type_key(decoded_type(datatype)))
    if reading is None:
        raise Unrecognised("attribute type left to h5py")
    dtype, memory_type, vlen = reading
    return dtype, vlen, decoded_type(datatype).equal(memory_type)
