"""The groups of a DMR++ document: their dimensions, variables and attributes, walked into
a ManifestGroup that matches what the HDF5 scanner gives for the file described.

Dimensions are named as h5netcdf names them: a named ``<Dim>`` by the last
segment of the dimension it refers to, anonymous ``<Dim size=...>`` axes by
``phony_dim_N``, numbered on from the groups above, one per distinct size
(as many as one variable needs), shared with a dimension of the same size
declared in the group, as the HDF5 scanner does for datasets without scales.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any
from xml.etree.ElementTree import Element

import numpy as np

from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.cf import TYPED_ATTRIBUTES, stored_attribute
from zarr_manifest_store.errors import UnsupportedDatasetError
from zarr_manifest_store.group import ManifestGroup
from zarr_manifest_store.scan.common import Refusals, Refused, zarr_name
from zarr_manifest_store.scan.dmrpp.storage import DMRPP, Storage
from zarr_manifest_store.scan.dmrpp.types import (
    DAP_TYPES,
    attribute_value,
    fill_value_attribute_json,
    fill_value_json,
    parse_number,
    zarr_dtype,
)
from zarr_manifest_store.scan.hdf5.attributes import HIDDEN_ATTRIBUTES
from zarr_manifest_store.scan.hdf5.metadata import CHUNK_KEY_ENCODING

__all__ = ["DAP", "Walk"]

DAP = "{http://xml.opendap.org/ns/DAP/4.0#}"
"""The DAP4 namespace, as ElementTree writes it before a tag name."""
NON_COORD_PREFIX = "_nc4_non_coord_"
BOOKKEEPING = frozenset({"build_dmrpp_metadata", "DODS_EXTRA", "drop_container_attribute"})
"""Attribute containers that the DMR++ tools add, not the file: left out."""
_VARIABLES = frozenset(
    f"{DAP}{t}"
    for t in (*DAP_TYPES, "String", "URL", "Url", "Enum", "Opaque", "Structure", "Sequence")
)


@dataclass
class Dimensions:
    """The dimensions of one group: declared ones (``<Dimension>``) and phony ones."""

    declared: dict[str, int]
    parent: Dimensions | None
    phony: dict[str, int] = field(default_factory=dict)
    phony_end: int = 0

    @classmethod
    def of(cls, group: Element, parent: Dimensions | None) -> Dimensions:
        declared = {}
        for dim in group.iterfind(f"{DAP}Dimension"):
            declared[dim.get("name", "")] = dimension_size(dim)
        dims = cls(declared, parent)
        start = parent.phony_end if parent else 0
        unlabeled: dict[int, int] = {}
        # in HDF5's name order, in which h5netcdf meets the datasets of a file made by h5py
        for var in sorted(group, key=lambda v: v.get("name", "").encode()):
            if var.tag in _VARIABLES:
                axes = var.findall(f"{DAP}Dim")
                if axes and all(d.get("name") is None for d in axes):
                    counts: dict[int, int] = {}
                    for d in axes:
                        size = dimension_size(d)
                        counts[size] = counts.get(size, 0) + 1
                    for size, count in counts.items():
                        unlabeled[size] = max(unlabeled.get(size, 0), count)
        labeled: dict[int, int] = {}
        for size in declared.values():
            labeled[size] = labeled.get(size, 0) + 1
        number = start
        for size, count in unlabeled.items():
            for _ in range(labeled.get(size, 0), count):
                dims.phony[f"phony_dim_{number}"] = size
                number += 1
        dims.phony_end = number
        return dims

    def size_of(self, fqn: str) -> int:
        """The size of the dimension a ``<Dim name=...>`` refers to (a path, or a bare name)."""
        name = fqn.rsplit("/", 1)[-1]
        node: Dimensions | None = self
        while node is not None:
            if name in node.declared:
                return node.declared[name]
            node = node.parent
        raise Refused(f"refers to dimension {fqn!r}, which no <Dimension> declares")

    def names(self, var: Element, own: str) -> tuple[list[str], list[int]]:
        """The variable's dimension names and shape."""
        axes = var.findall(f"{DAP}Dim")
        named = [d.get("name") for d in axes]
        if any(n is not None for n in named):
            if None in named:
                raise Refused(
                    "has named dimensions on some axes and none on others, which netCDF-4 "
                    "cannot name (h5netcdf refuses it too)"
                )
            return [n.rsplit("/", 1)[-1] for n in named], [self.size_of(n) for n in named]
        shape = [dimension_size(d) for d in axes]
        if not shape:
            return [], []
        if own in self.all_names():
            return [own] * len(shape), shape
        candidates = {**self.declared, **self.phony}
        names, seen = [], {}
        for size in shape:
            matching = [n for n, s in candidates.items() if s == size]
            if seen.get(size, 0) >= len(matching):
                raise Refused(f"has an axis of length {size} that no dimension matches")
            names.append(matching[seen.get(size, 0)])
            seen[size] = seen.get(size, 0) + 1
        return names, shape

    def all_names(self) -> set[str]:
        names: set[str] = set()
        node: Dimensions | None = self
        while node is not None:
            names |= set(node.declared) | set(node.phony)
            node = node.parent
        return names


@dataclass
class Walk:
    """Walks the groups of one DMR++ document, describing each variable through ``storage``."""

    storage: Storage
    refusals: Refusals
    dropped: set[str]
    enumerations: dict[str, np.dtype] = field(default_factory=dict)

    def group(self, element: Element, prefix: str, dims: Dimensions) -> ManifestGroup:
        """One group: its variables as arrays, its subgroups recursively, its attributes."""
        arrays: dict[str, ManifestArray] = {}
        groups: dict[str, ManifestGroup] = {}
        for enum in element.iterfind(f"{DAP}Enumeration"):
            base = DAP_TYPES.get(enum.get("basetype", ""))
            if base is not None:
                self.enumerations[f"{prefix}{enum.get('name')}"] = _enum_dtype(enum, base)
        for child in element:
            name = child.get("name", "")
            rel = f"{prefix}{name}"
            if rel in self.dropped:
                continue
            if child.tag == f"{DAP}Group":
                groups[zarr_name(name)] = self.group(child, f"{rel}/", Dimensions.of(child, dims))
            elif child.tag in _VARIABLES:
                try:
                    array = self.array(child, name, prefix, dims)
                except Refused as e:
                    self.refusals.add(rel, str(e))
                except ValueError as e:  # zarr refusing the metadata it would make
                    self.refusals.add(rel, f"has no valid Zarr metadata ({e})")
                else:
                    arrays[zarr_name(name.removeprefix(NON_COORD_PREFIX))] = array
        return ManifestGroup(
            arrays=arrays, groups=groups, attributes=attributes(element, rel=prefix)
        )

    def array(self, var: Element, name: str, prefix: str, dims: Dimensions) -> ManifestArray:
        """One variable as a ManifestArray (raises Refused)."""
        dtype = self.dtype(var, prefix)
        names, shape = dims.names(var, name)
        attrs = attributes(var, dtype=dtype, rel=f"{prefix}{name}")
        if attrs.get("origname") == name and attrs.get("fullnamepath") == f"/{prefix}{name}":
            del attrs["origname"], attrs["fullnamepath"]  # what the HDF5 handler adds in CF mode
        fill = fill_value(var, dtype)
        base = {
            "shape": shape,
            "data_type": zarr_dtype(dtype).to_json(zarr_format=3),
            "chunk_key_encoding": CHUNK_KEY_ENCODING,
            "fill_value": fill_value_json(dtype, fill),
            "attributes": attrs,
            "dimension_names": names,
        }
        return self.storage.array(var, base, dtype, fill_known=fill is not None)

    def dtype(self, var: Element, prefix: str) -> np.dtype:
        """The variable's NumPy type (raises Refused for types without an exact Zarr one)."""
        kind = var.tag.removeprefix(DAP)
        if kind in DAP_TYPES and kind != "Char":
            return DAP_TYPES[kind]
        if kind == "Enum":
            ref = (var.get("enum") or "").strip("/")
            found = self.enumerations.get(ref) or self.enumerations.get(f"{prefix}{ref}")
            if found is None:
                raise Refused(f"is an Enum of {ref!r}, which no <Enumeration> declares")
            return found
        if kind in ("String", "Char"):
            fixed = var.find("{http://xml.opendap.org/dap/dmrpp/1.0.0#}FixedLengthStringArray")
            if fixed is None:
                raise Refused("holds variable-length strings, whose bytes have no byte range")
            length, pad = int(fixed.get("string_length", "0")), fixed.get("pad", "")
            if length < 1 or not (pad == "null_pad" or (pad == "null_term" and length == 1)):
                raise Refused(
                    f"holds {pad or 'unpadded'} strings of {length} bytes, which HDF5 converts "
                    "on reading"
                )
            return np.dtype(f"S{length}")
        raise Refused(f"has DAP4 type {kind}, which has no Zarr data type")


def dimension_size(element: Element) -> int:
    """The ``size`` of a ``<Dimension>`` or ``<Dim>`` (UnsupportedDatasetError if it is none)."""
    text = element.get("size", "")
    if not text.isdigit():
        raise UnsupportedDatasetError(
            f"<{element.tag.removeprefix(DAP)} name={element.get('name')!r}> has size {text!r}, "
            "which is not a size"
        )
    return int(text)


def fill_value(var: Element, dtype: np.dtype) -> Any:
    """The fill value of unwritten chunks: ``fillValue`` of ``dmrpp:chunks``, else the
    ``_FillValue`` attribute (None: neither says; the metadata then holds zero).

    DMR++ writes floats with six digits; where the variable's ``_FillValue``
    attribute (written exactly) agrees with it, that value is used.
    """
    chunks = var.find(f"{DMRPP}chunks")
    text = chunks.get("fillValue") if chunks is not None else None
    exact = var.find(f"{DAP}Attribute[@name='_FillValue']/{DAP}Value")
    attribute = None
    if exact is not None and exact.text and dtype.kind in "iuf":
        try:
            attribute = parse_number(exact.text, dtype)
        except ValueError:
            attribute = None
    if text is None or text.startswith("unsupported"):
        return attribute if text is None else None
    try:
        value = parse_number(text, dtype)
    except ValueError:
        raise Refused(f"has fillValue {text!r}, which is not a {dtype} value") from None
    if (
        attribute is not None
        and dtype.kind == "f"
        and np.isclose(attribute, value, rtol=1e-5, equal_nan=True)
    ):
        return attribute
    return value


def _enum_dtype(enum: Element, base: np.dtype) -> np.dtype:
    """An enumeration's type: its base type, or bool for HDF5's FALSE / TRUE (as h5py reads it)."""
    constants = {c.get("name"): c.get("value") for c in enum.iterfind(f"{DAP}EnumConst")}
    return np.dtype(bool) if base == np.int8 and constants == {"FALSE": "0", "TRUE": "1"} else base


def attributes(element: Element, *, dtype: np.dtype | None = None, rel: str = "") -> dict[str, Any]:
    """An element's DAP4 attributes as JSON, as the HDF5 scanner writes the file's.

    netCDF-4 bookkeeping is hidden as h5netcdf hides it, the containers that
    DMR++ tools add are left out, ``HDF5_GLOBAL`` (the HDF5 handler's
    container of a file's attributes) is unwrapped, and ``_FillValue`` is
    encoded for xarray's Zarr backend. Other containers have no JSON form
    here: they are left out with a warning, as the HDF5 scan leaves out
    attributes without one.
    """
    out: dict[str, Any] = {}
    typed: dict[str, Any] = {}
    for attr in element.iterfind(f"{DAP}Attribute"):
        name, kind = attr.get("name", ""), attr.get("type", "")
        if name in HIDDEN_ATTRIBUTES or name in BOOKKEEPING:
            continue
        if kind == "Container":
            if name == "HDF5_GLOBAL":
                out.update(attributes(attr, rel=rel))
                continue
            warnings.warn(
                f"{rel or '/'}: attribute container {name!r} has no JSON form; left out",
                stacklevel=5,
            )
            continue
        values = [v.text or "" for v in attr.iterfind(f"{DAP}Value")]
        if name == "_FillValue" and dtype is not None:
            encoded = fill_value_attribute_json(values, kind, dtype)
            if encoded is not None:
                out[name] = encoded
            continue
        try:
            out[name] = attribute_value(kind, values, name)
        except Refused as e:
            warnings.warn(f"{rel or '/'}: {e}; left out", stacklevel=5)
            continue
        if (record := _typed_record(kind, out[name], name)) is not None:
            typed[name] = record
    if typed:
        out[TYPED_ATTRIBUTES] = typed
    return out


def _typed_record(dap_type: str, value: Any, name: str) -> dict[str, Any] | None:
    """The typed record the HDF5 scanner keeps for this attribute (a float32 ``scale_factor``)."""
    dtype = DAP_TYPES.get(dap_type)
    if dtype is None or isinstance(value, str) or value == []:
        return None
    return stored_attribute(name, np.asarray(value, dtype=dtype))[1]
