"""A seeded generator of netCDF-4 / HDF5 / netCDF-3 files that combine features (issue #18).

``build(seed, path, kind)`` writes one file and returns the features it combines.
A seed first draws a *plan* (``fuzz_plan.py``: groups, dimensions, variables, attributes, data) with
NumPy's generator, then one writer puts it in a file:

- ``netcdf4``: netCDF4-python (in a subprocess, which draws the same plan: netCDF4 sets
  ``HDF5_PLUGIN_PATH`` on import and brings its own HDF5), format ``NETCDF4``: nested
  groups, dimensions of parent groups, several unlimited dimensions with variables of
  different lengths, zlib / shuffle / fletcher32 / szip / zstd / bzip2 / blosc, endianness,
  enum, vlen, compound (nested), vlen strings, char, fill modes;
- ``nc3``: the same writer, formats ``NETCDF3_CLASSIC``, ``NETCDF3_64BIT_OFFSET`` and
  ``NETCDF3_64BIT_DATA`` (CDF5: unsigned and 64-bit integers);
- ``h5netcdf``: h5netcdf's API;
- ``h5py``: plain HDF5: compact layout, opaque and fixed-length string types, compounds with
  strings, big-endian types, dimension scales shared across groups, hdf5plugin filters;
- ``scipy``: scipy's netCDF-3 writer, classic and 64-bit offset.

Every kind draws CF attributes (``_FillValue``, ``missing_value``, ``valid_range``, packing,
``_Unsigned``, ``coordinates``, ``bounds``, time units and calendars, some of them wrong) and
attributes of every type, and names with spaces, non-ASCII letters and leading underscores.

    python tests/fuzz_files.py KIND SEED PATH   # what the subprocess runs
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
from fuzz_plan import Plan


def build(seed: int, path: str | Path, kind: str) -> list[str]:
    """Write the file of ``seed`` at ``path`` with the writer ``kind``; the features it combines."""
    plan = Plan(seed, kind)
    if kind in ("netcdf4", "nc3") or (kind == "h5py" and "netCDF4" in sys.modules):
        # netCDF4's HDF5 plugin path breaks hdf5plugin's filters in a process that imported it
        env = {k: v for k, v in os.environ.items() if k != "HDF5_PLUGIN_PATH"}  # netCDF4's
        done = subprocess.run(
            [sys.executable, __file__, kind, str(seed), str(path)],
            capture_output=True, text=True, env=env,
        )  # fmt: skip
        if done.returncode:
            raise RuntimeError(f"seed {seed} ({kind}): the writer failed: {done.stderr[-2000:]}")
    else:
        WRITERS[kind](plan, str(path))
    return sorted(plan.features)


def box(region: list[tuple[int, int]] | None) -> tuple[slice, ...] | None:
    """The index of the written box; None when nothing is written."""
    if region is None or any(b <= a for a, b in region):
        return None
    return tuple(slice(a, b) for a, b in region)


def type_name(var: dict) -> str:
    """A named type's name (ASCII: h5netcdf encodes them so), one per variable."""
    return f"t{var['name'].encode().hex()}"


def _netcdf_type(group: Any, var: dict) -> Any:
    datatype, name = var["type"], type_name(var)
    kind = datatype["kind"]
    if kind == "number":
        return datatype["dtype"].newbyteorder("=").str
    if kind == "char":
        return "S1"
    if kind == "str":
        return str
    if kind == "enum":
        return group.createEnumType(np.dtype(datatype["base"]), name, datatype["members"])
    if kind == "vlen":
        return group.createVLType(np.dtype(datatype["base"]), name)
    dtype = datatype["dtype"]
    if "inner" in dtype.names:
        group.createCompoundType(dtype["inner"], f"{type_name(var)}_inner")
    return group.createCompoundType(dtype, name)


def _netcdf_storage(plan: Plan, var: dict) -> dict:
    storage, kwargs = var["storage"], {}
    if storage["layout"] == "contiguous" and not plan.classic:
        kwargs["contiguous"] = True
    if storage["layout"] == "chunked":
        kwargs["chunksizes"] = storage["chunks"]
        kwargs["compression"] = storage.get("compression")
        kwargs["shuffle"] = storage.get("shuffle", False)
        kwargs["fletcher32"] = storage.get("fletcher32", False)
    if var["type"]["kind"] == "number" and var["type"]["dtype"].byteorder == ">":
        kwargs["endian"] = "big"
    fill = var["fill"]
    if fill["mode"] == "off":
        kwargs["fill_value"] = False
    elif fill["mode"] == "value":
        kwargs["fill_value"] = fill["value"]
    return kwargs


def write_netcdf(plan: Plan, path: str) -> None:
    """netCDF4-python (run in its own process: see the module's docstring)."""
    import netCDF4

    with netCDF4.Dataset(path, "w", format=plan.format) as nc:
        if plan.nofill:
            nc.set_fill_off()
        _netcdf_group(plan, nc, plan.root)


def _netcdf_group(plan: Plan, group: Any, spec: dict) -> None:
    for dim in spec["dims"]:
        group.createDimension(dim["name"], None if dim["unlimited"] else dim["size"])
    group.setncatts(spec["attrs"])
    for var in spec["vars"]:
        v = group.createVariable(var["name"], _netcdf_type(group, var), var["dims"],
                                 **_netcdf_storage(plan, var))  # fmt: skip
        v.set_auto_maskandscale(False)
        v.set_auto_chartostring(False)
        for key, value in var["attrs"].items():
            if isinstance(value, list):
                v.setncattr_string(key, value)
            else:
                v.setncattr(key, value)
    for var in spec["vars"]:
        index = box(var["region"])
        if index is not None or (not var["dims"] and var["region"] is not None):
            group.variables[var["name"]][index or ...] = var["data"]
    for sub in spec["groups"]:
        _netcdf_group(plan, group.createGroup(sub["name"]), sub)


def write_scipy(plan: Plan, path: str) -> None:
    """scipy's netCDF-3 writer (classic or 64-bit offset)."""
    from scipy.io import netcdf_file

    codes = {"i1": "b", "char": "c", "i2": "h", "i4": "i", "f4": "f", "f8": "d"}
    with netcdf_file(path, "w", version=int(plan.format)) as f:
        spec = plan.root
        for dim in sorted(spec["dims"], key=lambda d: not d["unlimited"]):  # scipy: record first
            f.createDimension(dim["name"], None if dim["unlimited"] else dim["size"])
        for key, value in spec["attrs"].items():
            setattr(f, key, _scipy_attribute(value))
        for var in spec["vars"]:
            datatype = var["type"]
            code = codes[
                datatype["kind"] if datatype["kind"] == "char" else datatype["dtype"].str[1:]
            ]
            v = f.createVariable(var["name"], code, tuple(var["dims"]))
            if var["fill"]["mode"] == "value":
                v._FillValue = var["fill"]["value"]
            for key, value in var["attrs"].items():
                setattr(v, key, _scipy_attribute(value))
            index = box(var["region"])
            if index is not None:
                v[index] = var["data"]
            elif not var["dims"] and var["region"] is not None:
                v.assignValue(var["data"])


def _scipy_attribute(value: Any) -> Any:
    """Text as its UTF-8 bytes (scipy writes ``str`` as ASCII only)."""
    return value.encode() if isinstance(value, str) else value


def write_h5netcdf(plan: Plan, path: str) -> None:
    """h5netcdf's API (its own HDF5 conventions for dimensions)."""
    import h5netcdf

    with h5netcdf.File(path, "w") as f:
        _h5netcdf_group(f, plan.root)


def _h5netcdf_group(group: Any, spec: dict) -> None:
    import h5py

    for dim in spec["dims"]:
        group.dimensions[dim["name"]] = None if dim["unlimited"] else dim["size"]
        if dim["unlimited"] and dim["size"]:  # before any variable uses it
            group.resize_dimension(dim["name"], dim["size"])
    for key, value in spec["attrs"].items():
        group.attrs[key] = value
    for var in spec["vars"]:
        datatype, kwargs = var["type"], {}
        if datatype["kind"] == "enum" and not var["name"].isascii():
            dtype = np.dtype(datatype["base"])  # h5netcdf writes enum variables of ASCII names only
        elif datatype["kind"] == "enum":
            dtype = group.create_enumtype(np.dtype(datatype["base"]), type_name(var),
                                          datatype["members"])  # fmt: skip
        else:
            dtype = h5py.string_dtype() if datatype["kind"] == "str" else datatype["dtype"]
        storage = var["storage"]
        if storage["layout"] == "chunked":
            kwargs["chunks"] = tuple(storage["chunks"])
            kwargs["compression"] = "gzip" if storage.get("compression") else None
            kwargs["shuffle"] = storage.get("shuffle", False)
            kwargs["fletcher32"] = storage.get("fletcher32", False)
        if var["fill"]["mode"] == "value":
            kwargs["fillvalue"] = var["fill"]["value"]
        v = group.create_variable(var["name"], tuple(var["dims"]), dtype=dtype, **kwargs)
        for key, value in var["attrs"].items():
            v.attrs[key] = value
    for var in spec["vars"]:
        index = box(var["region"])
        if index is not None or (not var["dims"] and var["region"] is not None):
            group.variables[var["name"]][index or ...] = var["data"]
    for sub in spec["groups"]:
        _h5netcdf_group(group.create_group(sub["name"]), sub)


NOT_A_VARIABLE = "This is a netCDF dimension but not a netCDF variable."


def write_h5py(plan: Plan, path: str) -> None:
    """Plain HDF5 with h5py: dimension scales (shared down the groups), compact layout, opaque,
    fixed-length strings, compounds with strings, hdf5plugin filters, null-dataspace attributes."""
    import h5py

    with h5py.File(path, "w") as f:
        _h5py_group(plan, f, plan.root, {})


def _h5py_dtype(datatype: dict) -> Any:
    import h5py

    kind = datatype["kind"]
    if kind == "char":
        return np.dtype("S1")
    if kind == "str":
        return h5py.string_dtype()
    if kind == "enum":
        return h5py.enum_dtype(datatype["members"], basetype=datatype["base"])
    return datatype["dtype"]


def _h5py_filters(storage: dict, dtype: np.dtype) -> dict:
    import hdf5plugin

    kwargs: dict[str, Any] = {"chunks": tuple(storage["chunks"])}
    compression = storage.get("compression")
    if compression == "zlib":
        kwargs["compression"] = "gzip"
    elif compression == "lzf":
        kwargs["compression"] = "lzf"
    elif compression == "zstd_plugin":
        kwargs.update(hdf5plugin.Zstd())
    elif compression == "blosc_plugin":
        kwargs.update(hdf5plugin.Blosc(cname="lz4"))
    elif compression == "scaleoffset" and dtype.byteorder != ">":  # HDF5: native order only
        kwargs["scaleoffset"] = 0
    kwargs["shuffle"] = storage.get("shuffle", False)
    kwargs["fletcher32"] = storage.get("fletcher32", False)
    return kwargs


def _h5py_attribute(value: Any) -> Any:
    import h5py

    if isinstance(value, str) and value == "EMPTY":
        return h5py.Empty("f8")
    if isinstance(value, list):
        return np.array(value, dtype=h5py.string_dtype())
    if isinstance(value, bytes):
        return np.bytes_(value)
    return value


def _h5py_group(plan: Plan, group: Any, spec: dict, scales: dict[str, Any]) -> None:
    for key, value in spec["attrs"].items():
        group.attrs[key] = _h5py_attribute(value)
    own = {v["name"]: v for v in spec["vars"] if v["dims"] == [v["name"]]}
    scales = dict(scales)
    for dim in spec["dims"]:
        if dim["name"] in own:
            continue
        plan.features.add("dimension-only-scale")
        scale = group.create_dataset(dim["name"], shape=(dim["size"],), dtype="f4",
                                     maxshape=(None,) if dim["unlimited"] else None,
                                     chunks=(4,) if dim["unlimited"] else None)  # fmt: skip
        scale.make_scale(f"{NOT_A_VARIABLE}{dim['size']:10d}")
        scales[dim["name"]] = scale
    sizes = {d["name"]: d for d in spec["dims"]}
    for var in sorted(spec["vars"], key=lambda v: v["name"] not in own):
        ds = _h5py_dataset(plan, group, var, {**{k: {"size": s.shape[0], "unlimited":
                                                     s.maxshape[0] is None} for k, s in scales.items()}, **sizes})  # fmt: skip
        if var["name"] in own:
            ds.make_scale(var["name"])
            scales[var["name"]] = ds
            continue
        for axis, dim in enumerate(var["dims"]):
            if dim not in sizes:
                plan.features.add("shared-scale")
            ds.dims[axis].attach_scale(scales[dim])
    for sub in spec["groups"]:
        _h5py_group(plan, group.create_group(sub["name"]), sub, scales)


def _h5py_dataset(plan: Plan, group: Any, var: dict, dims: dict[str, dict]) -> Any:
    from h5py import h5d, h5p

    shape = tuple(dims[d]["size"] for d in var["dims"])
    kwargs: dict[str, Any] = {"dtype": _h5py_dtype(var["type"])}
    storage = var["storage"]
    if storage["layout"] == "chunked":
        kwargs.update(_h5py_filters(storage, np.dtype(kwargs["dtype"])))
        kwargs["maxshape"] = tuple(None if dims[d]["unlimited"] or not dims[d]["size"]
                                   else dims[d]["size"] for d in var["dims"])  # fmt: skip
    elif storage["layout"] == "compact":
        dcpl = h5p.create(h5p.DATASET_CREATE)
        dcpl.set_layout(h5d.COMPACT)
        kwargs["dcpl"] = dcpl
    if var["fill"]["mode"] == "value":
        kwargs["fillvalue"] = var["fill"]["value"]
        if plan.chance(0.7, "_FillValue-attribute"):
            var["attrs"] = {"_FillValue": var["fill"]["value"], **var["attrs"]}
    ds = group.create_dataset(var["name"], shape=shape, **kwargs)
    for key, value in var["attrs"].items():
        ds.attrs[key] = _h5py_attribute(value)
    index = box(var["region"])
    if index is not None:
        ds[index] = var["data"]
    elif not var["dims"] and var["region"] is not None:
        ds[()] = var["data"]
    return ds


WRITERS = {"h5netcdf": write_h5netcdf, "h5py": write_h5py, "scipy": write_scipy}

if __name__ == "__main__":
    _kind, _seed, _path = sys.argv[1:4]
    _plan = Plan(int(_seed), _kind)
    WRITERS.get(_kind, write_netcdf)(_plan, _path)
