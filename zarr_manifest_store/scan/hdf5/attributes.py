"""HDF5 attributes read as h5py reads them, once each, and written as JSON attributes.

netCDF-4 bookkeeping (dimension lists, ids, ``_NCProperties``) is hidden as
h5netcdf hides it; ``_FillValue`` is encoded for xarray's Zarr backend.
"""

from __future__ import annotations

import functools
import itertools
import os
import warnings
from collections.abc import Iterable, Iterator
from typing import Any

import h5py
import numpy as np
from h5py import h5, h5a, h5f, h5i, h5p, h5r, h5t

from zarr_manifest_store.cf import (
    TYPED_ATTRIBUTES,
    fill_value_attribute,
    fill_value_record,
    missing_value_record,
    stored_attribute,
    text_attribute,
    typed_value,
)
from zarr_manifest_store.scan.hdf5.datatypes import type_key

__all__ = [
    "HIDDEN_ATTRIBUTES",
    "Attributes",
    "attribute_reading",
    "decoded_name",
    "json_attributes",
]


# Attributes that carry HDF5 / netCDF-4 bookkeeping, hidden as h5netcdf hides them.
HIDDEN_ATTRIBUTES = frozenset(
    {
        "REFERENCE_LIST",
        "CLASS",
        "DIMENSION_LIST",
        "NAME",
        "_Netcdf4Dimid",
        "_Netcdf4Coordinates",
        "_nc3_strict",
        "_NCProperties",
    }
)


class Attributes:
    """An HDF5 object's attributes: listed once, each read at most once, in h5py's order.

    A scan asks about the same attributes several times (``_FillValue`` for the
    array, ``_Netcdf4Coordinates`` and ``_Netcdf4Dimid`` for the dimensions,
    ``DIMENSION_LIST`` to look for scales); each value is read once, with
    :func:`_read_attribute`. ``cpl`` is the object's creation property list,
    when the caller has it already. Only the object's identifier is kept (not
    the object, which may keep this), so nothing holds the file open in a cycle.
    """

    def __init__(self, obj: h5py.Group | h5py.Dataset, cpl: h5p.PropID | None = None) -> None:
        self.id = obj.id
        self._h5py = obj.attrs  # h5py's own reading, for the types left to it
        cpl = cpl if cpl is not None else obj.id.get_create_plist()
        tracked = cpl.get_attr_creation_order()
        order = h5.INDEX_CRT_ORDER if tracked & h5p.CRT_ORDER_TRACKED else h5.INDEX_NAME
        stored: list[bytes] = []
        h5a.iterate(obj.id, stored.append, index_type=order)
        self._stored = {decoded_name(n): n for n in stored}
        self._values: dict[str | bytes, Any] = {}

    memo: dict[Any, dict[bytes, Any]] | None = None
    """Attributes converted to JSON, by array dtype and message, shared by a file's objects
    (see :meth:`messages`); lists are kept as tuples (objects the garbage collector skips)."""

    def __iter__(self) -> Iterator[str | bytes]:
        return iter(self._stored)

    def messages(self) -> Iterable[tuple[str | bytes, bytes | None]]:
        """Each name with its attribute message where it was read from the file's bytes (what
        its value is a function of, in the file), else None."""
        return zip(self._stored, itertools.repeat(None))

    def memo_key(self, name: str | bytes, message: bytes) -> Any:
        """What the JSON of attribute ``name`` (its message ``message``) is kept under in the
        memo: the message, unless it points elsewhere in the file (None: not kept)."""
        return message

    def plain_text(self, message: bytes) -> str | None:
        """The value of attribute message ``message`` where it is one ASCII string (its own
        JSON) read without converting it, else None."""
        return None

    def __contains__(self, name: object) -> bool:
        return name in self._stored

    def __getitem__(self, name: str | bytes) -> Any:
        """The value, as ``obj.attrs[name]`` gives it (KeyError if there is none)."""
        if name not in self._values:
            self._values[name] = _read_attribute(self.id, self._stored[name], self._h5py)
        return self._values[name]

    def get(self, name: str, default: Any = None) -> Any:
        """The value, or ``default`` if there is no such attribute."""
        return self[name] if name in self._stored else default

    def encoding(self, name: str | bytes) -> str:
        """The character set of text attribute ``name`` (``"ascii"`` or ``"utf-8"``)."""
        tid = h5a.open(self.id, self._stored[name]).get_type()
        if tid.get_class() == h5t.STRING and tid.get_cset() == h5t.CSET_UTF8:
            return "utf-8"
        return "ascii"

    def where(self) -> str:
        """``file:object``, as warnings name the object (``obj.file.filename:obj.name``)."""
        path = h5i.get_name(self.id)
        return f"{os.fsdecode(h5f.get_name(self.id))}:{path and decoded_name(path)}"


def decoded_name(name: bytes) -> str | bytes:
    """An attribute or link name as h5py gives it: UTF-8 decoded, else the bytes."""
    try:
        return name.decode("utf-8")
    except UnicodeDecodeError:
        return name


_PLAIN_CLASSES = frozenset({h5t.INTEGER, h5t.FLOAT, h5t.STRING})
"""Attribute type classes read here; others (compounds, enums, references, arrays) by h5py."""


def _read_attribute(oid: Any, name: bytes, h5py_attrs: h5py.AttributeManager) -> Any:
    """Attribute ``name`` of object ``oid``, exactly as h5py's ``attrs[name]`` returns it.

    Numbers and strings, nearly every netCDF attribute, are read here with the
    attribute's memory type worked out once per HDF5 type (h5py works it out on
    every read, which costs more than the read); every other type is left to
    h5py (``h5py_attrs``, the object's attributes).
    """
    attr = h5a.open(oid, name)
    reading = attribute_reading(type_key(attr.get_type()))
    if reading is None:
        return h5py_attrs[name]
    dtype, memory_type, vlen_text = reading
    shape = attr.get_space().shape
    if shape is None:  # a null dataspace
        return h5py.Empty(dtype)
    values = np.zeros(shape, dtype=dtype)
    attr.read(values, mtype=memory_type)
    if vlen_text:  # as h5py does: stored bytes to str
        values = np.array(
            [b.decode("utf-8", "surrogateescape") for b in values.flat], dtype=dtype
        ).reshape(values.shape)
    return values[()] if values.ndim == 0 else values


@functools.lru_cache(maxsize=256)
def attribute_reading(key: tuple[Any, ...]) -> tuple[np.dtype, h5t.TypeID, bool] | None:
    """How h5py reads an attribute of the type a :func:`type_key` describes: dtype, memory
    type, and whether it is variable-length text.

    None for the types left to h5py. A function of the type (and h5py's
    options) alone, so the files of a collection share it.
    """
    tid = h5t.decode(key[0])
    if tid.get_class() not in _PLAIN_CLASSES:
        return None
    dtype = tid.dtype
    info = h5t.check_string_dtype(dtype)
    return dtype, h5t.py_create(dtype), bool(info and info.length is None)


def json_attributes(attributes: Attributes, dtype: np.dtype | None = None) -> dict[str, Any]:
    """An object's attributes as JSON, netCDF-4 bookkeeping left out.

    ``_FillValue`` is encoded for xarray's Zarr backend (see ``fill_value_attribute``);
    the NumPy values of attributes whose JSON form loses their type go in
    ``TYPED_ATTRIBUTES`` (see ``stored_attribute``); object references become the
    paths of their objects; attributes that have no JSON form (region references,
    variable-length sequences, names that are not UTF-8) are left out with a warning.
    An attribute read from its message is converted once per file and ``dtype``
    (``Attributes.memo``): the variables of a file repeat the same attributes. One ASCII
    string read from its message (``Attributes.plain_text``) is its own JSON: taken as it is.
    """
    out: dict[str, Any] = {}
    typed: dict[str, Any] = {}
    memo = {} if attributes.memo is None else attributes.memo.setdefault(dtype, {})
    for name, message in attributes.messages():
        if name in HIDDEN_ATTRIBUTES:
            continue
        if isinstance(name, bytes):  # not UTF-8 (decoded_name): JSON names are text
            shown = name.decode("utf-8", "replace")
            warnings.warn(
                f"{attributes.where()}: attribute {shown!r} has a name that is not UTF-8 text; "
                "left out",
                stacklevel=4,
            )
            continue
        if message is None or len(message) > MEMO_BYTES:
            message = None
        else:
            value = memo.get(message, _UNSEEN)
            if value is _UNSEEN and name != "_FillValue":  # text that is its own JSON, or None
                value = _UNSEEN if (text := attributes.plain_text(message)) is None else text
            if value is _UNSEEN and (message := attributes.memo_key(name, message)) is not None:
                value = memo.get(message, _UNSEEN)  # keyed by what the message points at
            if value is not _UNSEEN:
                out[name] = list(value) if isinstance(value, tuple) else value
                continue
        converted = _json_attribute(attributes, name, dtype)
        if isinstance(converted, str):
            warnings.warn(
                f"{attributes.where()}: attribute {name!r} {converted}; left out", stacklevel=4
            )
            continue
        value, record = converted
        if message is not None and _shareable(value, record):
            memo[message] = tuple(value) if isinstance(value, list) else value
        if value is not LEFT_OUT:
            out[name] = value
        if record is not None:
            typed[name] = record
    if typed:
        out[TYPED_ATTRIBUTES] = typed
    return out


LEFT_OUT = object()
"""The JSON value of an attribute only its typed record holds (a ``_FillValue`` that
xarray's Zarr backend cannot decode)."""
_UNSEEN = object()
"""A message the memo has no JSON for (None is JSON's null)."""
MEMO_BYTES = 1024
"""Attribute messages larger than this are converted each time, not kept in the memo."""


def _json_attribute(
    attributes: Attributes, name: str, dtype: np.dtype | None
) -> tuple[Any, dict[str, Any] | None] | str:
    """Attribute ``name``'s JSON value and its typed record (None where the JSON value is
    exact), or why it is left out."""
    try:
        value = attributes[name]
    except (OSError, TypeError, ValueError) as e:
        value = _wide_integers(attributes.id, name)
        if value is None:
            return f"cannot be read ({e})"
    if isinstance(value, h5py.Empty):  # a null dataspace: as h5netcdf shows it
        return ("" if value.dtype.kind in "SUO" else []), None
    if name == "_FillValue" and dtype is not None:
        encoded, record = _fill_value(value, dtype)
        if record is not None and _fixed_text(value):  # h5netcdf shows it as text: no mask
            record = {**typed_value(value), "text": attributes.encoding(name)}
        return (LEFT_OUT if encoded is None else encoded), record
    if type(value) is str and value.isascii():  # most text (h5py's strings): its own JSON
        return value, None
    if isinstance(value, np.ndarray) and value.dtype.kind == "S" and value.dtype.itemsize > 1:
        value = value.ravel()  # h5netcdf decodes text of any shape into a flat list
    if _has_text_bytes(value):
        converted, record = text_attribute(value, attributes.encoding(name))
    else:
        converted, record = stored_attribute(str(name), _object_paths(value, attributes))
    if not _is_json(converted):
        return "has no JSON form"
    return converted, record or missing_value_record(name, value, dtype)


def _shareable(value: Any, record: dict[str, Any] | None) -> bool:
    """Whether a converted attribute can be given to several arrays: no typed record, and a
    value that is immutable or a list of immutable values (kept as a tuple: each array gets
    a list of its own)."""
    if record is not None:
        return False
    if isinstance(value, list):
        return all(isinstance(v, str | int | float) or v is None for v in value)
    return isinstance(value, str | int | float) or value is None


def _fill_value(value: Any, dtype: np.dtype) -> tuple[Any, dict[str, Any] | None]:
    """A ``_FillValue`` attribute for xarray's Zarr backend (see ``fill_value_attribute``), and its
    typed record where that form is not what h5netcdf shows: text, several values (xarray masks
    with each), a value that form cannot hold (NaN for integers, no value at all)."""
    items = np.asarray(value).ravel()
    first = items[0] if items.size else value
    numbers = items.dtype.kind in "iufcb"
    try:
        encoded = fill_value_attribute(first, dtype)
    except (TypeError, ValueError, OverflowError):
        if not numbers:
            raise
        return None, typed_value(value)
    if encoded is None:
        return None, fill_value_record(first, dtype)
    return encoded, typed_value(items) if items.size > 1 and numbers else None


def _fixed_text(value: Any) -> bool:
    """Whether ``value`` is one fixed-length string of more than one byte, which h5netcdf
    decodes into ``str`` (it keeps single characters as bytes)."""
    return (
        isinstance(value, np.bytes_ | np.ndarray)
        and value.dtype.kind == "S"
        and (value.dtype.itemsize > 1 and np.size(value) == 1)
    )


def _has_text_bytes(value: Any) -> bool:
    """Whether ``value`` is fixed-length text with a byte past ASCII (h5netcdf decodes such
    text in its character set, not as UTF-8, and keeps single characters as bytes)."""
    if isinstance(value, np.bytes_):
        return not value.isascii()
    if isinstance(value, np.ndarray) and value.dtype.kind == "S":
        return not value.tobytes().isascii()
    return False


def _object_paths(value: Any, attributes: Attributes) -> Any:
    """Object references as the paths of their objects (None for a null reference); else ``value``.

    h5netcdf shows an ``h5py.Reference``, which only means something with the
    file open; its object's path is the reference's meaning without it.
    Region references are left as they are (a path would lose the region).
    """
    if type(value) is h5py.Reference:
        if not value:
            return None
        return h5r.get_name(value, attributes.id).decode("utf-8", "surrogateescape")
    if not (isinstance(value, np.ndarray) and value.dtype.kind == "O" and value.size):
        return value
    if not all(type(v) is h5py.Reference for v in value.flat):
        return value
    paths = [_object_paths(v, attributes) for v in value.flat]
    return np.array(paths, dtype=object).reshape(value.shape)


def _wide_integers(oid: Any, name: str | bytes) -> int | list[int] | None:
    """An attribute of integers wider than NumPy's (PyTables' 128-bit ones) as Python ints.

    None if the attribute is something else.
    """
    attr = h5a.open(oid, name.encode() if isinstance(name, str) else name)
    tid = attr.get_type()
    shape = attr.get_space().shape
    if tid.get_class() != h5t.INTEGER or tid.get_size() <= 8 or shape is None:
        return None
    raw = np.zeros(shape, dtype=f"V{tid.get_size()}")
    attr.read(raw, mtype=tid)
    order = "little" if tid.get_order() == h5t.ORDER_LE else "big"
    signed = tid.get_sign() == h5t.SGN_2
    ints = [int.from_bytes(v.tobytes(), order, signed=signed) for v in raw.ravel()]
    return ints[0] if len(ints) == 1 else ints


def _is_json(value: Any) -> bool:
    if isinstance(value, str | bool | int | float) or value is None:
        return True
    if isinstance(value, list):
        return all(_is_json(v) for v in value)
    if isinstance(value, dict):  # a compound's fields
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False
