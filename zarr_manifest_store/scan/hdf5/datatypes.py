"""HDF5 data types as Zarr: data type, ``bytes`` codec byte order, fill value, extra attributes.

What depends only on an HDF5 type is worked out once per type (keyed by the
type's ``H5Tencode`` serialisation) and shared by the datasets of a file and
the files of a collection.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import h5py
import numpy as np
from h5py import h5d, h5p, h5t
from zarr.dtype import ZDType, parse_dtype

from zarr_manifest_store.cf import NETCDF_DEFAULT_FILLS
from zarr_manifest_store.scan.common import Refused

__all__ = ["DataKind", "fill_undefined", "type_key"]


@dataclass(frozen=True, eq=False)
class DataKind:
    """How a dataset's HDF5 type maps to Zarr: data type, codecs, extra attributes.

    ``materialise`` is the reason the stored bytes cannot be read in place
    (empty when they can). A function of the HDF5 type alone, so datasets of
    the same type (across the files of a collection too) share one, which is
    why it hashes by identity (cheap, for the memoised fill values).
    """

    stored: np.dtype
    """The type as h5py reads it (``Dataset.dtype``)."""
    dtype: np.dtype
    """The type of the Zarr array (an enumeration's base type, say)."""
    zdtype: ZDType[Any, Any]
    endian: str | None
    materialise: str = ""

    @property
    def bytes_codec(self) -> dict[str, Any]:
        config = {"endian": self.endian} if self.endian else {}
        return {"name": "bytes", "configuration": config}

    @property
    def materialised_codec(self) -> dict[str, Any]:
        return {"name": "vlen-utf8"} if self.dtype.kind == "O" else self.bytes_codec

    def fill_value_json(self, dcpl: h5p.PropDCID) -> Any:
        """The HDF5 fill value (what unwritten chunks read as) in Zarr's JSON form.

        An undefined fill value is written as zero: it only matters where data
        was never written, which the layouts refuse (see ``fill_undefined``).
        """
        if self.dtype.kind == "O":
            return ""
        if fill_undefined(dcpl):
            return self.zdtype.to_json_scalar(self.zdtype.default_scalar(), zarr_format=3)
        stored = np.zeros((1,), dtype=self.stored)  # as h5py's Dataset.fillvalue reads it
        dcpl.get_fill_value(stored)
        return _fill_value_json(self, stored.tobytes())

    def padding_json(self, dcpl: h5p.PropDCID, hdf5_fill: Any) -> Any:
        """What netCDF-C pads a variable with past its data along an unlimited dimension, in
        Zarr's JSON form: HDF5's fill value (``hdf5_fill``: its ``_FillValue``), except for a
        number variable written with ``NC_NOFILL`` (HDF5's fill time "never") or without a
        fill value, which netCDF-C pads with netCDF's default fill for the type, whatever its
        ``_FillValue``. A variable of another type without a fill value raises Refused: no
        reader has a value to pad it with (h5netcdf fails on it)."""
        key = f"{self.dtype.kind}{self.dtype.itemsize}"
        undefined = fill_undefined(dcpl)
        if key not in NETCDF_DEFAULT_FILLS and undefined:
            raise Refused(
                "has no fill value and is shorter than its unlimited dimension, which netCDF "
                "readers pad with no value of their own for its type"
            )
        if key not in NETCDF_DEFAULT_FILLS or not (
            undefined or dcpl.get_fill_time() == h5d.FILL_TIME_NEVER
        ):
            return hdf5_fill
        scalar = self.zdtype.cast_scalar(NETCDF_DEFAULT_FILLS[key])
        return self.zdtype.to_json_scalar(scalar, zarr_format=3)

    @classmethod
    def of(cls, tid: h5t.TypeID) -> DataKind:
        """The kind of a dataset's type, worked out once per type (raises Refused)."""
        try:
            key = type_key(tid)
        except Exception:  # a type HDF5 cannot serialise: worked out for this dataset alone
            return cls.of_type(tid)
        return _data_kind(key)

    @classmethod
    def of_type(cls, tid: h5t.TypeID) -> DataKind:
        """The kind of an HDF5 type (raises Refused)."""
        cls_ = tid.get_class()
        try:
            stored = dtype = tid.dtype  # what h5py's Dataset.dtype gives
        except (TypeError, ValueError) as e:  # HDF5 time types, quad precision, ...
            raise Refused(f"has an HDF5 data type that NumPy cannot represent ({e})") from None
        if cls_ == h5t.REFERENCE or h5py.check_ref_dtype(dtype) is not None:
            raise Refused("holds object or region references, which have no Zarr data type")
        if cls_ == h5t.ARRAY or dtype.subdtype is not None:
            raise Refused(f"has an HDF5 array data type ({dtype}), which has no Zarr data type")
        if cls_ == h5t.STRING and tid.is_variable_str():
            zdtype = _zarr_dtype(np.dtypes.StringDType())
            return cls(stored, dtype, zdtype, None, "it holds variable-length strings")
        if cls_ == h5t.VLEN or dtype.kind == "O":
            raise Refused(f"holds variable-length sequences ({dtype}), which have no Zarr codec")
        exact = tid.equal(h5t.py_create(dtype))
        if cls_ == h5t.STRING:
            # Null-terminated strings read as stored unless a byte follows a null inside one
            # element, which cannot happen in netCDF's one-byte chars.
            exact = tid.get_strpad() == h5t.STR_NULLPAD or (
                tid.get_strpad() == h5t.STR_NULLTERM and dtype.itemsize == 1
            )
        if cls_ == h5t.ENUM and dtype.kind != "b":
            # the base integer type, its names left out as h5netcdf / xarray leave them out
            dtype = np.dtype(dtype.str)
            exact = tid.get_super().equal(h5t.py_create(dtype))
        native = _little(dtype)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                zdtype = _zarr_dtype(native)
        except (ValueError, TypeError) as e:
            raise Refused(f"has data type {dtype}, which has no Zarr data type ({e})") from None
        endian = _endian(dtype)
        reason = ""
        if not exact:
            reason = f"HDF5 converts its stored type to {dtype} on reading"
        elif zdtype.to_native_dtype() != native:
            # e.g. compounds with padding between fields: Zarr's struct packs its fields
            reason = f"its layout {dtype} differs from Zarr's {zdtype.to_native_dtype()}"
        elif endian == "mixed":
            reason = "its compound fields mix byte orders"
        if reason and dtype.fields is not None:
            # Zarr's struct of the same fields, packed and little-endian: the values h5py
            # reads are converted to it and stored inline (``materialise``)
            packed = zdtype.to_native_dtype()
            return cls(stored, packed, zdtype, _endian(packed), reason)
        endian = None if endian == "mixed" else endian
        return cls(stored, dtype, zdtype, endian, reason)


def fill_undefined(dcpl: h5p.PropDCID) -> bool:
    """Whether a dataset has no fill value: HDF5 reads its unwritten data as arbitrary bytes."""
    return dcpl.fill_value_defined() == h5d.FILL_VALUE_UNDEFINED


@functools.lru_cache(maxsize=256)
def _data_kind(key: tuple[Any, ...]) -> DataKind:
    """``DataKind.of_type`` of the type a :func:`type_key` describes (refusals are not cached)."""
    return DataKind.of_type(h5t.decode(key[0]))


def type_key(tid: h5t.TypeID) -> tuple[Any, ...]:
    """What h5py's NumPy view of an HDF5 type depends on: the type, serialised by
    ``H5Tencode``, and h5py's names for the members of boolean enums and complex compounds."""
    config = h5py.get_config()
    return (tid.encode(), config.bool_names, config.complex_names)


def _little(dtype: np.dtype) -> np.dtype:
    """``dtype`` with every field in little-endian order (what Zarr's data types describe)."""
    return dtype.newbyteorder("<") if dtype.itemsize > 1 or dtype.fields else dtype


def _endian(dtype: np.dtype) -> str | None:
    """``"little"`` / ``"big"`` for the bytes codec; None when byte order does not matter."""
    orders = set()
    for sub in _scalar_dtypes(dtype):
        if sub.itemsize > 1 and sub.kind in "iufcmM":
            orders.add("big" if sub.byteorder == ">" else "little")
    if len(orders) > 1:
        return "mixed"
    return orders.pop() if orders else None


def _scalar_dtypes(dtype: np.dtype) -> Iterator[np.dtype]:
    if dtype.fields is None:
        yield dtype.base
        return
    for sub, *_ in dtype.fields.values():
        yield from _scalar_dtypes(sub)


@functools.lru_cache(maxsize=256)
def _fill_value_json(kind: DataKind, raw: bytes) -> Any:
    """The Zarr JSON form of a fill value stored as ``raw``, memoised: the datasets of a file
    and the files of a collection repeat their fill values."""
    value = np.frombuffer(raw, dtype=kind.stored).astype(kind.dtype)[0]
    return kind.zdtype.to_json_scalar(kind.zdtype.cast_scalar(value), zarr_format=3)


@functools.lru_cache(maxsize=256)
def _zarr_dtype(native: np.dtype) -> ZDType[Any, Any]:
    """zarr's data type for a NumPy dtype, memoised (zarr tries every registered type in turn)."""
    return parse_dtype(native, zarr_format=3)
