"""DAP4 types as the HDF5 scanner describes the same HDF5 types: NumPy and Zarr data types,
fill values, and attribute values as JSON.

DMR++ writes numbers as text; each is parsed with the variable's own type, so
that a ``Float32`` value is the float32 nearest its text, as HDF5 stored it.
"""

from __future__ import annotations

import functools
import math
import re
import warnings
from collections.abc import Iterable
from typing import Any

import numpy as np
from zarr.dtype import ZDType, parse_dtype

from zarr_manifest_store.cf import fill_value_attribute, json_attribute
from zarr_manifest_store.scan.common import Refused

__all__ = [
    "DAP_TYPES",
    "attribute_value",
    "fill_value_json",
    "parse_number",
    "zarr_dtype",
]

DAP_TYPES = {
    "Byte": np.dtype("u1"),
    "UByte": np.dtype("u1"),
    "Char": np.dtype("S1"),
    "Int8": np.dtype("i1"),
    "UInt8": np.dtype("u1"),
    "Int16": np.dtype("i2"),
    "UInt16": np.dtype("u2"),
    "Int32": np.dtype("i4"),
    "UInt32": np.dtype("u4"),
    "Int64": np.dtype("i8"),
    "UInt64": np.dtype("u8"),
    "Float32": np.dtype("f4"),
    "Float64": np.dtype("f8"),
}
"""DAP4 atomic numeric types (and ``Char``) and the NumPy types of their values."""

_OCTAL = re.compile(r"\\([0-3][0-7]{2})")
"""How the HDF5 handler writes a control character of a string attribute (``\\013``)."""
TEXT_TYPES = frozenset({"String", "URL", "Url", "Char"})
"""DAP4 attribute types whose values are text."""


@functools.lru_cache(maxsize=256)
def zarr_dtype(dtype: np.dtype) -> ZDType[Any, Any]:
    """zarr's data type for ``dtype`` (little-endian: byte order belongs to the bytes codec)."""
    native = dtype.newbyteorder("<") if dtype.itemsize > 1 and dtype.kind in "iuf" else dtype
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # fixed-length bytes warn that their spec is unstable
        return parse_dtype(native, zarr_format=3)


def parse_number(text: str, dtype: np.dtype) -> Any:
    """A number written as text, as a value of ``dtype`` (ValueError if it is none).

    >>> parse_number("nan", np.dtype("f4")), parse_number("-32767", np.dtype("i2"))
    (np.float32(nan), np.int16(-32767))
    """
    text = text.strip()
    if dtype.kind == "f":
        return dtype.type(float(text))
    if dtype.kind in "iu":
        value = int(text, 0) if text.lower().startswith(("0x", "-0x")) else int(text)
        info = np.iinfo(dtype)
        if not info.min <= value <= info.max:
            raise ValueError(f"{text} does not fit in {dtype}")
        return dtype.type(value)
    if dtype.kind == "b":
        return bool(int(text))
    if dtype.kind == "S":
        return text.encode("utf-8", "surrogateescape")
    raise ValueError(f"no number of type {dtype}")


def fill_value_json(dtype: np.dtype, fill: Any) -> Any:
    """A fill value of ``dtype`` in Zarr's JSON form (``None``: the type's default, zero)."""
    zdtype = zarr_dtype(dtype)
    if fill is None:
        return zdtype.to_json_scalar(zdtype.default_scalar(), zarr_format=3)
    return zdtype.to_json_scalar(zdtype.cast_scalar(fill), zarr_format=3)


def attribute_value(dap_type: str, values: list[str], name: str) -> Any:
    """An attribute's ``<Value>`` texts as the HDF5 scanner writes the attribute (JSON).

    One value is a scalar and several a list, as ``json_attribute`` gives an
    attribute read with h5py; none is what h5py's empty attribute gives.
    """
    if dap_type in TEXT_TYPES:
        texts = [_OCTAL.sub(lambda m: chr(int(m[1], 8)), v) for v in values]
        if not texts:
            return ""
        return texts[0] if len(texts) == 1 else texts
    dtype = DAP_TYPES.get(dap_type)
    if dtype is None:
        raise Refused(f"attribute {name!r} has DAP4 type {dap_type!r}, which has no JSON form")
    if not values:
        return []
    try:
        parsed = np.array([parse_number(v, dtype) for v in values], dtype=dtype)
    except ValueError as e:
        raise Refused(f"attribute {name!r} has a value that is not a {dap_type} ({e})") from None
    return json_attribute(parsed)


def fill_value_attribute_json(values: Iterable[str], dap_type: str, dtype: np.dtype) -> Any:
    """A ``_FillValue`` attribute encoded for xarray's Zarr backend, as the HDF5 scanner does."""
    items = list(values)
    attr_dtype = DAP_TYPES.get(dap_type, dtype)
    if not items or dtype.kind in "SUO" or attr_dtype.kind == "S":
        return None
    try:
        value = parse_number(items[0], attr_dtype)
    except ValueError:
        return None
    if dtype.kind in "iu" and isinstance(value, np.floating) and not math.isfinite(value):
        return None
    return fill_value_attribute(value, dtype)
