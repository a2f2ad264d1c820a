"""A DMR++ writer for tests: the sidecar of an HDF5 / netCDF-4 file, as OPeNDAP's ``get_dmrpp``
(``build_dmrpp``) writes it, from what h5py reports of the file.

It follows OPeNDAP's published schema: a DAP4 ``Dataset`` (namespace
``http://xml.opendap.org/ns/DAP/4.0#``) with ``dmrpp:href`` / ``dmrpp:version``;
``<Dimension>`` for each dimension scale of a group, ``<Dim name="/path">`` for
axes with a scale and ``<Dim size=...>`` for the others; one element per
dataset named by its DAP4 type, with its ``<Attribute>``s and its
``dmrpp:chunks`` (``compressionType`` in filter order, ``deflateLevel``,
``fillValue``, ``byteOrder``, ``dmrpp:chunkDimensionSizes`` and one
``dmrpp:chunk`` per stored chunk with ``offset``, ``nBytes`` and
``chunkPositionInArray``), or ``dmrpp:compact`` with base64 values.
"""

from __future__ import annotations

import base64
import os
from xml.sax.saxutils import quoteattr

import h5py
import numpy as np
from h5py import h5d

DAP_NS = "http://xml.opendap.org/ns/DAP/4.0#"
DMRPP_NS = "http://xml.opendap.org/dap/dmrpp/1.0.0#"
HIDDEN = {"DIMENSION_LIST", "REFERENCE_LIST", "CLASS", "NAME", "_Netcdf4Dimid",
          "_Netcdf4Coordinates", "_nc3_strict", "_NCProperties"}  # fmt: skip
DAP_TYPES = {"u1": "Byte", "i1": "Int8", "i2": "Int16", "u2": "UInt16", "i4": "Int32",
             "u4": "UInt32", "i8": "Int64", "u8": "UInt64", "f4": "Float32", "f8": "Float64"}  # fmt: skip
BOOL_ENUM = (
    '    <Enumeration name="bool_enum" basetype="Int8"><EnumConst name="FALSE" value="0"/>'
    '<EnumConst name="TRUE" value="1"/></Enumeration>'
)
FILTERS = {1: "deflate", 2: "shuffle", 3: "fletcher32"}


def write_dmrpp(
    h5path: str | os.PathLike[str],
    dmrpp_path: str | os.PathLike[str] | None = None,
    *,
    href: str | None = None,
    version: str | None = "3.21.1",
    chunk_href: dict[str, str] | None = None,
) -> str:
    """Write the DMR++ of ``h5path`` (by default beside it, as ``<file>.dmrpp``); its path.

    ``href`` is the ``dmrpp:href`` (default: the data file's name, relative);
    ``version=None`` writes a DMR++ of the time before ``dmrpp:version``.
    ``chunk_href`` maps a dataset path to an ``href`` its chunks carry.
    """
    h5path = os.fspath(h5path)
    out = os.fspath(dmrpp_path) if dmrpp_path is not None else f"{h5path}.dmrpp"
    name = os.path.basename(h5path)
    lines = ['<?xml version="1.0" encoding="ISO-8859-1"?>']
    version_attr = f" dmrpp:version={quoteattr(version)}" if version else ""
    lines.append(
        f'<Dataset xmlns="{DAP_NS}" xmlns:dmrpp="{DMRPP_NS}" dapVersion="4.0" dmrVersion="1.0" '
        f"name={quoteattr(name)} dmrpp:href={quoteattr(href if href is not None else name)}"
        f"{version_attr}>"
    )
    with h5py.File(h5path, "r") as f:
        bools: list[str] = []
        f.visititems(
            lambda n, o: bools.append(n) if getattr(o, "dtype", None) is np.dtype(bool) else None
        )
        if bools:
            lines.append(BOOL_ENUM)
        _group(f, lines, "    ", chunk_href or {})
    lines.append("</Dataset>")
    with open(out, "w", encoding="latin-1") as fh:
        fh.write("\n".join(lines) + "\n")
    return out


def _group(group: h5py.Group, lines: list[str], indent: str, chunk_href: dict[str, str]) -> None:
    for name, obj in group.items():
        if isinstance(obj, h5py.Dataset) and h5py.h5ds.is_scale(obj.id):
            lines.append(f'{indent}<Dimension name={quoteattr(name)} size="{obj.shape[0]}"/>')
    for obj in group.values():
        if isinstance(obj, h5py.Dataset):
            scale_name = h5py.h5ds.get_scale_name(obj.id) if h5py.h5ds.is_scale(obj.id) else b""
            if b"This is a netCDF dimension but not a netCDF variable" in (scale_name or b""):
                continue
            _dataset(obj, lines, indent, chunk_href.get(obj.name))
    for key, value in group.attrs.items():
        _attribute(key, value, lines, indent)
    for name, obj in group.items():
        if isinstance(obj, h5py.Group):
            lines.append(f"{indent}<Group name={quoteattr(name)}>")
            _group(obj, lines, indent + "    ", chunk_href)
            lines.append(f"{indent}</Group>")


def _dataset(ds: h5py.Dataset, lines: list[str], indent: str, href: str | None) -> None:
    dtype = ds.dtype
    inner = indent + "    "
    body: list[str] = []
    if dtype.kind == "S":
        kind = "String"
        pad = {0: "null_term", 1: "null_pad", 2: "space_pad"}[ds.id.get_type().get_strpad()]
        body.append(
            f'{inner}<dmrpp:FixedLengthStringArray string_length="{dtype.itemsize}" pad="{pad}"/>'
        )
    elif dtype.kind == "O":
        kind = "String"  # variable-length: values not written, as a DMR++ of vlsa-less tools
    elif dtype.kind == "b":
        kind = "Enum"
    else:
        kind = DAP_TYPES[dtype.newbyteorder("=").str[1:] if dtype.itemsize > 1 else dtype.str[1:]]
    for axis, size in enumerate(ds.shape):
        scales = list(ds.dims[axis].values()) if "DIMENSION_LIST" in ds.attrs else []
        if h5py.h5ds.is_scale(ds.id) and ds.ndim == 1:  # a coordinate variable: its own dimension
            lines_dim = f"{inner}<Dim name={quoteattr(ds.name)}/>"
        elif scales:
            lines_dim = f"{inner}<Dim name={quoteattr(scales[-1].name)}/>"
        else:
            lines_dim = f'{inner}<Dim size="{size}"/>'
        body.insert(axis, lines_dim)
    for key, value in ds.attrs.items():
        _attribute(key, value, body, inner)
    body.extend(_storage(ds, inner, href))
    enum = ' enum="/bool_enum"' if kind == "Enum" else ""
    lines.append(f"{indent}<{kind} name={quoteattr(ds.name.rsplit('/', 1)[-1])}{enum}>")
    lines.extend(body)
    lines.append(f"{indent}</{kind}>")


def _storage(ds: h5py.Dataset, indent: str, href: str | None) -> list[str]:
    dcpl = ds.id.get_create_plist()
    layout = dcpl.get_layout()
    order = "BE" if ds.dtype.byteorder == ">" else "LE"
    attrs = []
    filters = [dcpl.get_filter(i) for i in range(dcpl.get_nfilters())]
    names = [FILTERS[f[0]] for f in filters]
    if names:
        attrs.append(f'compressionType="{" ".join(names)}"')
    levels = [str(f[2][0]) for f in filters if f[0] == 1]
    if levels:
        attrs.append(f'deflateLevel="{" ".join(levels)}"')
    if dcpl.fill_value_defined() != h5d.FILL_VALUE_UNDEFINED and ds.dtype.kind in "iufb":
        fill = np.zeros((1,), dtype=ds.dtype)
        dcpl.get_fill_value(fill)
        value = fill[0]
        text = "nan" if ds.dtype.kind == "f" and np.isnan(value) else repr(value.item())
        text = str(int(value)) if ds.dtype.kind == "b" else text
        attrs.append(f'fillValue="{text}"')
    attrs.append(f'byteOrder="{order}"')
    if layout == h5d.COMPACT:
        data = np.empty(ds.shape, dtype=ds.dtype)
        ds.read_direct(data)
        values = base64.b64encode(data.tobytes()).decode()
        return [
            f"{indent}<dmrpp:chunks {' '.join(attrs)}/>",
            f"{indent}<dmrpp:compact>{values}</dmrpp:compact>",
        ]
    out = [f"{indent}<dmrpp:chunks {' '.join(attrs)}>"]
    extra = f" href={quoteattr(href)}" if href else ""
    if layout == h5d.CHUNKED:
        chunks = ds.chunks
        out.append(
            f"{indent}    <dmrpp:chunkDimensionSizes>{' '.join(map(str, chunks))}</dmrpp:chunkDimensionSizes>"
        )

        def visit(info: h5py.h5d.StoreInfo) -> None:
            position = ",".join(map(str, info.chunk_offset))
            mask = f' fm="{info.filter_mask}"' if info.filter_mask else ""
            out.append(
                f'{indent}    <dmrpp:chunk offset="{info.byte_offset}" nBytes="{info.size}" '
                f'chunkPositionInArray="[{position}]"{mask}{extra}/>'
            )

        ds.id.chunk_iter(visit)
    elif ds.id.get_offset() is not None:
        out.append(
            f'{indent}    <dmrpp:chunk offset="{ds.id.get_offset()}" '
            f'nBytes="{ds.id.get_storage_size()}"{extra}/>'
        )
    out.append(f"{indent}</dmrpp:chunks>")
    return out


def _attribute(name: str, value: object, lines: list[str], indent: str) -> None:
    if name in HIDDEN:
        return
    array = np.asarray(value)
    if array.dtype.kind in "SUO":
        kind = "String"
        texts = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in array.ravel()]
    else:
        kind = DAP_TYPES[
            array.dtype.newbyteorder("=").str[1:]
            if array.dtype.itemsize > 1
            else array.dtype.str[1:]
        ]
        texts = [_number(v) for v in array.ravel()]
    lines.append(f'{indent}<Attribute name={quoteattr(name)} type="{kind}">')
    for text in texts:
        escaped = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
        lines.append(f"{indent}    <Value>{escaped}</Value>")
    lines.append(f"{indent}</Attribute>")


def _number(value: np.generic) -> str:
    if isinstance(value, np.floating):
        if np.isnan(value):
            return "NaN"
        return (
            np.format_float_positional(value, unique=True)
            if abs(value) < 1e16
            else repr(float(value))
        )
    return str(int(value))
