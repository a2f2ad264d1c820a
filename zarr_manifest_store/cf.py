"""CF attribute rules: how attributes are written so xarray decodes them, and which ones
must agree before arrays are combined (they change how stored values decode)."""

from __future__ import annotations

import base64
import math
import re
import struct
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

__all__ = [
    "CF_ATTRIBUTES",
    "TYPED_ATTRIBUTES",
    "check_cf_attributes",
    "fill_value_attribute",
    "fill_value_from_attribute",
    "fill_value_record",
    "json_attribute",
    "stored_attribute",
    "text_attribute",
    "typed_attributes",
    "typed_value",
]

CF_ATTRIBUTES = (
    "scale_factor",
    "add_offset",
    "_FillValue",
    "missing_value",
    "_Unsigned",
    "units",
    "calendar",
)
"""Attributes that change how stored values decode: inputs must agree on them to be combined."""

TYPED_ATTRIBUTES = "_zarr_manifest_types"
"""The attribute that keeps the NumPy values of the attributes whose JSON form loses their type.

A mapping from attribute name to :func:`typed_value`'s record. xarray's Zarr
backend shows attributes as their JSON forms; the ``zarr_manifest`` engine
shows these as the NumPy values netCDF / h5netcdf / scipy give (see
:func:`typed_attributes`).
"""

_PACKING = frozenset({"scale_factor", "add_offset"})
"""Attributes whose NumPy type chooses the dtype xarray unpacks to."""

_JSON_TYPES = frozenset({np.dtype("float64"), np.dtype("int64"), np.dtype("bool")})
"""The NumPy types a JSON number or boolean reads back as."""

_ESCAPED_BYTE = re.compile("[\udc80-\udcff]")
"""A byte of invalid UTF-8 as ``"surrogateescape"`` decoding keeps it."""

_TEXT_ENCODINGS = ("ascii", "utf-8")
"""The character sets of HDF5 strings, which a text record names."""

_ABSENT = object()

NETCDF_DEFAULT_FILLS: dict[str, int | float] = {
    "i1": -127, "u1": 255, "i2": -32767, "u2": 65535, "i4": -2147483647, "u4": 4294967295,
    "i8": -9223372036854775806, "u8": 18446744073709551614, "f4": 9.9692099683868690e36,
    "f8": 9.9692099683868690e36,
}  # fmt: skip
"""netCDF-C's default fill value of each numeric type (``NC_FILL_INT``, ...), keyed by NumPy's
kind and size: what netCDF shows where a variable without ``_FillValue`` was never written."""


def fill_value_attribute(value: Any, dtype: np.dtype) -> Any | None:
    """A ``_FillValue`` attribute encoded the way xarray's Zarr v3 backend decodes it.

    Floats are the base64 of a little-endian float64 (so NaN survives JSON),
    complex numbers a pair of those, integers and booleans plain. For bytes and
    text that backend has no decoding (it raises on opening), so the result is
    None: the attribute is left out and the value lives only in the Zarr
    ``fill_value``, which means such variables are not CF-masked.
    """
    kind = dtype.kind
    if kind == "f":
        return _b64_float(float(value))
    if kind == "c":
        value = complex(value)
        return [_b64_float(value.real), _b64_float(value.imag)]
    if kind in "iu":
        return int(value)
    if kind == "b":
        return bool(value)
    if kind in "SUOTV":
        return None
    raise ValueError(f"no _FillValue encoding for dtype {dtype}")


def fill_value_from_attribute(attribute: Any, dtype: np.dtype) -> Any:
    """A ``_FillValue`` attribute decoded as xarray's Zarr v3 backend decodes it on opening.

    The inverse of :func:`fill_value_attribute`, with the same refusals as
    that backend: a float attribute that is not base64 text (``TypeError``), a
    dtype it has no decoding for, such as bytes or text (``ValueError``).

    >>> fill_value_from_attribute(fill_value_attribute(-9999.0, np.dtype("f4")), np.dtype("f4"))
    -9999.0
    """
    kind = dtype.kind
    if kind == "f":
        return _float_of_b64(attribute, dtype)
    if kind == "c":
        if not (isinstance(attribute, list | tuple) and len(attribute) == 2):
            raise TypeError(f"a _FillValue of dtype {dtype} must be a pair, got {attribute!r}")
        return complex(_float_of_b64(attribute[0], dtype), _float_of_b64(attribute[1], dtype))
    if kind == "b":
        return bool(attribute)
    if kind in "iu":
        if not isinstance(attribute, int | float | np.integer | np.floating):
            raise TypeError(f"a _FillValue of dtype {dtype} must be a number, got {attribute!r}")
        return int(attribute)
    raise ValueError(f"no _FillValue decoding for dtype {dtype}")


def json_attribute(value: Any) -> Any:
    """An HDF5 / netCDF attribute value as JSON: bytes decoded, numpy values as Python numbers.

    One-element arrays become scalars (netCDF stores every attribute as an
    array), arrays of more dimensions nested lists (as h5netcdf gives them);
    NaN and infinities are kept, as zarr writes them.
    """
    if isinstance(value, bytes | np.bytes_):
        return _text(bytes(value))
    if isinstance(value, np.ndarray):
        if value.size == 1:
            return json_attribute(value.reshape(())[()])
        if value.dtype.kind == "O" or value.dtype.kind in "SU":
            return _nested([json_attribute(v) for v in value.ravel()], value.shape)
        return value.tolist() if value.ndim > 1 else value.ravel().tolist()
    if isinstance(value, np.generic):
        return value.item()
    return value


def stored_attribute(name: str, value: Any) -> tuple[Any, dict[str, Any] | None]:
    """An attribute's JSON form, and the record of its NumPy value when that form loses its type.

    The record (see :func:`typed_value`) is made for complex numbers,
    compounds and opaque bytes, which JSON has no type for (their JSON forms:
    ``[real, imag]`` pairs, objects of their fields, base64 text), and for a ``scale_factor`` /
    ``add_offset`` of a type other than float64 (their type chooses the
    unpacked dtype: float32 ones unpack to float32). Text read with invalid UTF-8 kept as
    lone surrogates (h5py's variable-length strings) is a text record (:func:`text_attribute`):
    JSON has no lone surrogates.
    """
    escaped = _surrogate_escaped(value)
    if escaped is not None:
        return text_attribute(escaped, "utf-8")
    array = value if isinstance(value, np.ndarray | np.generic) else None
    if array is None or not (array.dtype.kind in "cV" or name in _PACKING):
        return json_attribute(value), None
    if array.dtype.kind == "O" or any(array.dtype[n].hasobject for n in array.dtype.names or ()):
        return json_attribute(value), None  # variable-length fields: no fixed-size record
    array = np.asarray(array)
    array = array.reshape(()) if array.size == 1 else array  # as netCDF readers give one value
    if array.dtype in _JSON_TYPES:
        return json_attribute(array), None
    return _typed_json(array), typed_value(array)


def _surrogate_escaped(value: Any) -> np.ndarray | None:
    """The bytes of text holding lone surrogates (invalid UTF-8 escaped); None for anything else."""
    if isinstance(value, str) and (value.isascii() or not _ESCAPED_BYTE.search(value)):
        return None  # most attributes: no array made to find that out
    items = value if isinstance(value, np.ndarray) and value.dtype.kind == "O" else None
    if isinstance(value, str):
        items = np.asarray(value, dtype=object)
    if items is None or not all(isinstance(v, str) for v in items.flat):
        return None
    if not any(_ESCAPED_BYTE.search(v) for v in items.flat if not v.isascii()):
        return None
    try:
        encoded = [v.encode("utf-8", "surrogateescape") for v in items.flat]
    except UnicodeEncodeError:  # another lone surrogate: not bytes escaped
        return None
    return np.array(encoded, dtype=np.bytes_).reshape(items.shape)


def text_attribute(value: Any, encoding: str) -> tuple[Any, dict[str, Any] | None]:
    """Text attribute bytes (``bytes``, or an array of them) as JSON, and their record where
    they are not valid ``encoding`` (the string type's character set in HDF5).

    The JSON form is the text as netCDF-C shows it (UTF-8, an invalid byte as
    U+FFFD); the record (:func:`typed_value` with ``"text": encoding``) keeps the
    bytes, which the ``zarr_manifest`` engine decodes as h5netcdf does: in
    ``encoding``, each invalid byte kept as a lone surrogate (``"surrogateescape"``).
    Single characters (``S1``) h5netcdf leaves as bytes: their record has no ``"text"``.
    """
    items = np.asarray(value, dtype=np.bytes_)
    items = items.astype(np.dtype(items.dtype.str))  # without h5py's encoding metadata
    try:
        for item in items.ravel():
            bytes(item).decode(encoding)
    except UnicodeDecodeError:
        if items.dtype.itemsize == 1:
            return json_attribute(items), typed_value(items)
        return json_attribute(items), {**typed_value(items), "text": encoding}
    return json_attribute(value), None


def _typed_json(array: np.ndarray) -> Any:
    """Complex numbers as ``[real, imag]``, compounds as objects of their fields; one value unwrapped."""
    if array.dtype.names:
        if array.ndim:
            return [_typed_json(item) for item in array]
        return {n: _typed_json(np.asarray(array[n])) for n in array.dtype.names}
    if array.dtype.kind == "c":
        pairs = np.stack([array.real, array.imag], axis=-1)
        return json_attribute(pairs) if pairs.ndim > 1 else pairs.tolist()
    if array.dtype.kind == "V":  # opaque bytes (a pickle, HyperSpy's class dumps)
        items = [base64.standard_b64encode(v.tobytes()).decode() for v in array.ravel()]
        return items[0] if array.ndim == 0 else _nested(items, array.shape)
    return json_attribute(array)


def fill_value_record(value: Any, dtype: np.dtype) -> dict[str, Any] | None:
    """A ``_FillValue`` of bytes or text as a typed record (see :data:`TYPED_ATTRIBUTES`).

    xarray's Zarr backend raises on such a ``_FillValue`` attribute, so it is
    kept only as a record, which the ``zarr_manifest`` engine turns back into
    the ``_FillValue`` scipy / h5netcdf show (they mask with it). A
    variable-length string's is kept as text (``np.str_``: its variable is
    shown as text); None for the other types a record cannot hold
    (variable-length sequences).
    """
    if dtype.kind == "O" and isinstance(value, str | bytes):
        text = value.decode("utf-8", "surrogateescape") if isinstance(value, bytes) else value
        return typed_value(np.str_(text))
    if dtype.kind not in "SUV":
        return None
    return typed_value(value, dtype)


def missing_value_record(name: str, value: Any, dtype: np.dtype | None) -> dict[str, Any] | None:
    """The typed record of a ``missing_value`` of bytes on a character (or fixed-length bytes)
    variable: netCDF readers show it as ``np.bytes_`` and xarray masks with it, where its JSON
    text would mask nothing. None for any other attribute."""
    if name != "missing_value" or dtype is None or dtype.kind != "S":
        return None
    items = np.asarray(value)
    if items.dtype.kind != "S" or not items.size:
        return None
    items = items.astype(np.dtype(items.dtype.str))  # without h5py's encoding metadata
    return typed_value(items.reshape(()) if items.size == 1 else items)


def typed_value(value: Any, dtype: np.dtype | None = None) -> dict[str, Any]:
    """The record of a fixed-size NumPy value: its dtype, shape and bytes (base64).

    ``{"dtype": "<f4", "shape": [], "data": "CtcjPA=="}``; a compound's dtype
    is NumPy's description of it (``np.lib.format.dtype_to_descr``).
    """
    array = np.asarray(value, dtype=dtype)
    if not array.dtype.names and array.dtype.byteorder == ">":
        array = array.astype(array.dtype.newbyteorder("<"))
    descr = _json_descr(np.lib.format.dtype_to_descr(array.dtype))
    data = base64.standard_b64encode(np.ascontiguousarray(array).tobytes()).decode()
    return {"dtype": descr, "shape": list(array.shape), "data": data}


def typed_attributes(attributes: Mapping[str, Any]) -> dict[str, Any]:
    """Attributes with their typed records (:data:`TYPED_ATTRIBUTES`) turned back into NumPy values.

    A one-value record gives a NumPy scalar (``np.float32``, ``np.complex128``,
    ``np.void`` for a compound, ``np.bytes_``), as netCDF readers give them.
    """
    out = {k: v for k, v in attributes.items() if k != TYPED_ATTRIBUTES}
    records = attributes.get(TYPED_ATTRIBUTES)
    if not isinstance(records, Mapping):
        return out
    for name, record in records.items():
        try:
            dtype = np.lib.format.descr_to_dtype(_descr(record["dtype"]))
            raw = base64.standard_b64decode(record["data"])
            values = np.frombuffer(raw, dtype=dtype).reshape(record["shape"])
            out[name] = _record_value(values, record.get("text"))
        except (KeyError, TypeError, ValueError, RecursionError) as e:
            raise ValueError(
                f"attribute {TYPED_ATTRIBUTES!r} has a malformed record for {name!r} ({e}); "
                f"expected {{'dtype': ..., 'shape': [...], 'data': base64}}"
            ) from None
    return out


def _record_value(values: np.ndarray, encoding: Any) -> Any:
    """A record's value: a NumPy scalar or array (a list of bytes for characters); for a text
    record (``encoding`` given) its bytes as h5netcdf shows them, decoded, invalid bytes as
    lone surrogates."""
    if encoding is None and values.dtype.kind == "S" and values.ndim:
        return values.tolist()  # characters, as h5netcdf lists them
    if encoding is None:
        return values[()] if values.ndim == 0 else values.copy()
    if values.dtype.kind != "S" or encoding not in _TEXT_ENCODINGS:
        raise ValueError(
            f"a text record holds bytes and names their encoding ({', '.join(_TEXT_ENCODINGS)}), "
            f"not {encoding!r}"
        )
    items = [bytes(v).decode(encoding, "surrogateescape") for v in values.ravel()]
    return items[0] if len(items) == 1 else items


def _json_descr(descr: Any) -> Any:
    """A dtype description as JSON has it: a compound's fields (and shapes) as lists."""
    if isinstance(descr, list | tuple):
        return [_json_descr(part) for part in descr]
    return descr


def _descr(descr: Any) -> Any:
    """A dtype description read back from JSON: a compound's fields as tuples again."""
    if not isinstance(descr, list):
        return descr
    return [(f[0], _descr(f[1]), *(tuple(shape) for shape in f[2:])) for f in descr]


def _nested(items: list[Any], shape: tuple[int, ...]) -> list[Any]:
    """Items in C order as lists nested to ``shape``."""
    if len(shape) <= 1:
        return items
    step = len(items) // shape[0] if shape[0] else 0
    return [_nested(items[i * step : (i + 1) * step], shape[1:]) for i in range(shape[0])]


def _b64_float(x: float) -> str:
    return base64.standard_b64encode(struct.pack("<d", x)).decode()


def _float_of_b64(text: Any, dtype: np.dtype) -> float:
    if not isinstance(text, str | bytes):
        raise TypeError(
            f"a _FillValue of dtype {dtype} must be base64 text of a float64, got {text!r}"
        )
    return struct.unpack("<d", base64.standard_b64decode(text))[0]


def _text(raw: bytes) -> str:
    """Bytes as text the way scipy and netCDF-C show them: UTF-8, an invalid byte as U+FFFD."""
    return raw.decode("utf-8", "replace")


def check_cf_attributes(
    attributes: Sequence[Mapping[str, Any]],
    sources: Sequence[str],
    *,
    names: Iterable[str] = CF_ATTRIBUTES,
    variable: str | None = None,
) -> None:
    """Raise ``ValueError`` if the inputs disagree on an attribute that changes how values decode.

    Combined arrays are decoded with one set of attributes, so inputs packed
    with different ``scale_factor`` / ``add_offset`` / ``_FillValue`` /
    ``missing_value``, or (while values are still encoded) different ``units`` /
    ``calendar``, would silently turn into wrong numbers. ``sources`` names each
    input in the error; ``variable`` names the variable.

    >>> check_cf_attributes([{"scale_factor": 0.1}, {"scale_factor": 0.2}], ["a.nc", "b.nc"])
    ... # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    ValueError: cannot combine the inputs: attribute 'scale_factor' is 0.1 in a.nc but 0.2 in b.nc; ...
    """
    if len(attributes) != len(sources):
        raise ValueError(f"{len(attributes)} attribute mappings but {len(sources)} sources")
    names = tuple(names)
    raw = [{k: json_attribute(attrs[k]) for k in names if k in attrs} for attrs in attributes]
    if all(r == raw[0] for r in raw[1:]):
        return
    what = f"variable {variable!r}" if variable else "the inputs"
    for name in names:
        values = [_attribute(attrs, name) for attrs in attributes]
        for src, value in zip(sources[1:], values[1:], strict=True):
            if not _same(values[0], value):
                raise ValueError(
                    f"cannot combine {what}: attribute {name!r} is {_show(values[0])} in "
                    f"{sources[0]} but {_show(value)} in {src}; combined, every value would be "
                    f"decoded with one {name!r}. Decode each input before combining (load the "
                    f"variable), or rewrite the files with one {name!r}"
                )


def _attribute(attrs: Mapping[str, Any], name: str) -> Any:
    """An attribute as comparable plain data: base64 float fill values decoded, numpy unwrapped."""
    if name not in attrs:
        return _ABSENT
    value = json_attribute(attrs[name])
    if name in ("_FillValue", "missing_value") and isinstance(value, str) and len(value) == 12:
        try:
            return struct.unpack("<d", base64.b64decode(value, validate=True))[0]
        except (ValueError, struct.error):
            pass
    return value


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_same, a, b))
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a is b if a is _ABSENT or b is _ABSENT else bool(a == b)


def _show(value: Any) -> str:
    return "absent" if value is _ABSENT else repr(value)
