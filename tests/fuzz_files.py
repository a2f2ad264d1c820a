"""A seeded generator of netCDF-4 / HDF5 / netCDF-3 files that combine features (issue #18).

``build(seed, path, kind)`` writes one file and returns the features it combines.
A seed first draws a *plan* (groups, dimensions, variables, attributes, data) with
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

KINDS = ("netcdf4", "nc3", "h5netcdf", "h5py", "scipy")
INTS = ("i1", "u1", "i2", "u2", "i4", "u4", "i8", "u8")
FLOATS = ("f4", "f8")
NC3_TYPES = ("i1", "i2", "i4", "f4", "f8", "char")
CDF5_TYPES = (*NC3_TYPES, "u1", "u2", "u4", "i8", "u8")
NC4_TYPES = (*INTS, *FLOATS, "char", "str", "enum", "vlen", "compound")
H5_TYPES = (*INTS, *FLOATS, "str", "fixed_str", "enum", "compound", "opaque", "char")
NAMES = ("v", "with space", "ünï", "_lead", "x.y", "日本", "a-b", "__dunder", "back\\slash")
NC3_NAMES = ("v", "with space", "ünï", "_lead", "x.y", "a-b")
CALENDARS = ("standard", "noleap", "360_day", "julian", "all_leap", "proleptic_gregorian")
TIME_UNITS = ("days since 2000-01-01", "hours since 1970-01-01 00:00:00", "seconds since 2020-2-3")
BAD_UNITS = ("days since banana", "months since 2000-01-01", "days since 0000-01-01")
COMPACT_BYTES = 60_000
"""Data at most this large is given the compact layout (HDF5's limit is 64 KiB less a header)."""
TEXT = ("", "a", "héllo", "日本語", "x y", "tab\there", "°C")


class Plan:
    """What one seed draws: a tree of groups, and the features they combine."""

    def __init__(self, seed: int, kind: str) -> None:
        self.rng = np.random.default_rng(seed)
        self.kind = kind
        self.features: set[str] = set()
        self.format = self._format()
        self.nofill = self.kind in ("netcdf4", "nc3") and self.chance(0.2, "nofill")
        self.root = self.group("", {}, 0)

    def chance(self, p: float, feature: str = "") -> bool:
        hit = bool(self.rng.random() < p)
        if hit and feature:
            self.features.add(feature)
        return hit

    def pick(self, options: tuple | list) -> Any:
        return options[int(self.rng.integers(len(options)))]

    def _format(self) -> str:
        if self.kind == "nc3":
            fmt = self.pick(("NETCDF3_CLASSIC", "NETCDF3_64BIT_OFFSET", "NETCDF3_64BIT_DATA"))
        elif self.kind == "scipy":
            fmt = self.pick(("1", "2"))
        else:
            return "NETCDF4"
        self.features.add(f"format:{fmt}")
        return fmt

    @property
    def classic(self) -> bool:
        return self.kind in ("nc3", "scipy")

    def types(self) -> tuple[str, ...]:
        if self.kind == "scipy":
            return NC3_TYPES
        if self.kind == "nc3":
            return CDF5_TYPES if self.format == "NETCDF3_64BIT_DATA" else NC3_TYPES
        if self.kind == "h5netcdf":
            return (*INTS, *FLOATS, "str", "enum")
        return H5_TYPES if self.kind == "h5py" else NC4_TYPES

    def name(self, taken: set[str]) -> str:
        names = NC3_NAMES if self.classic else NAMES
        for _ in range(20):
            base = self.pick(names) if self.chance(0.4) else "v"
            name = f"{base}{len(taken)}"
            if name not in taken:
                if base != "v":
                    self.features.add("name:odd")
                taken.add(name)
                return name
        raise AssertionError("no free name")

    def group(self, name: str, scope: dict[str, dict], depth: int) -> dict:
        """A group: its own dimensions, variables drawn on those in scope, attributes, subgroups."""
        taken: set[str] = set(scope)
        dims = [self.dimension(taken, depth) for _ in range(int(self.rng.integers(1, 4)))]
        scope = {**scope, **{d["name"]: d for d in dims}}
        if depth:
            self.features.add("nested-group")
        group = {"name": name, "dims": dims, "vars": [], "groups": [], "attrs": self.attrs(None)}
        for _ in range(int(self.rng.integers(1, 6))):
            names = {v["name"] for v in group["vars"]}
            group["vars"].append(self.variable(taken, scope, depth, names))
        own = {d["name"] for d in dims}
        if any(d not in own for v in group["vars"] for d in v["dims"]):
            self.features.add("parent-dim")
        self.coordinates(group, scope, taken)
        if not self.classic and depth < 2:
            for _ in range(int(self.rng.integers(0, 3))):
                group["groups"].append(self.group(self.name(taken), scope, depth + 1))
        return group

    def dimension(self, taken: set[str], depth: int) -> dict:
        unlimited = self.chance(0.35)
        if self.classic and (depth or any_unlimited(self)):
            unlimited = False
        if unlimited:
            self.features.add("unlimited" if not depth else "nested-unlimited")
            self._unlimited = True
        size = int(self.pick((0, 1, 2, 3, 5, 40))) if not unlimited else 0
        if size == 0 and not unlimited:
            size = 1 if self.kind != "h5py" else 0  # netCDF: a size 0 means unlimited
        dim = {"name": self.name(taken), "size": size, "unlimited": unlimited}
        if unlimited and self.classic:  # one record count for every record variable
            dim["size"] = dim["records"] = int(self.rng.integers(0, 4))
        return dim

    def variable(
        self, taken: set[str], scope: dict[str, dict], depth: int, taken_vars: set[str]
    ) -> dict:
        names = list(scope)
        ndim = int(self.rng.integers(0, 4))
        dims = [self.pick(names) for _ in range(ndim)]
        dims = list(dict.fromkeys(dims))
        if self.classic:  # the record dimension first, if at all
            dims = sorted(dims, key=lambda d: not scope[d]["unlimited"])
            dims = [d for i, d in enumerate(dims) if i == 0 or not scope[d]["unlimited"]]
        if ndim == 0:
            self.features.add("scalar")
        kind = self.pick(self.types())
        self.features.add(f"type:{kind}")
        name = self.name(taken)
        if (
            dims
            and names[0] not in dims
            and names[0] not in taken_vars
            and self.kind in ("netcdf4", "h5netcdf")
            and self.chance(0.15)
        ):
            name = names[0]  # named like a dimension, not its coordinate
            self.features.add("dim-named-variable")
        var = {"name": name, "dims": dims, "type": self.datatype(kind), "attrs": {}}
        var["storage"] = self.storage(var, scope)
        var["region"] = self.region(var, scope)
        var["fill"] = self.fill(var)
        var["attrs"] = {**self.attrs(var), **self.cf(var)}
        var["data"] = self.values(var["type"], tuple(b - a for a, b in var["region"] or ()))
        return var

    def datatype(self, kind: str) -> dict:
        endian = ">" if self.kind in ("h5py", "netcdf4") and self.chance(0.2) else "<"
        if kind in INTS or kind in FLOATS:
            if endian == ">":
                self.features.add("big-endian")
            return {"kind": "number", "dtype": np.dtype(endian + kind)}
        if kind == "enum":
            base = self.pick(("i1", "u1", "i2", "u4"))
            return {"kind": "enum", "base": base, "members": {"clear": 0, "cloudy": 1, "fog": 7}}
        if kind == "vlen":
            return {"kind": "vlen", "base": self.pick(("i4", "f8", "u1"))}
        if kind == "compound":
            return {"kind": "compound", "dtype": self.compound()}
        if kind == "fixed_str":
            return {"kind": "fixed_str", "dtype": np.dtype(f"S{int(self.rng.integers(1, 6))}")}
        if kind == "opaque":
            return {"kind": "opaque", "dtype": np.dtype(f"V{int(self.rng.integers(1, 7))}")}
        return {"kind": kind}  # char, str

    def compound(self) -> np.dtype:
        fields = [("a", self.pick(("<i4", "<f8", ">i2", "<u1")))]
        if self.chance(0.5, "nested-compound"):
            fields.append(("inner", np.dtype([("x", "<f4"), ("y", "<i2")])))
        if self.kind == "h5py" and self.chance(0.5, "compound-string"):
            fields.append(("s", "S4"))
        fields.append(("b", self.pick(("<f4", "<i8"))))
        return np.dtype(fields)

    def storage(self, var: dict, scope: dict[str, dict]) -> dict:
        if self.classic:
            return {"layout": "contiguous"}
        shape = [max(scope[d]["size"], 1) for d in var["dims"]]
        growing = any(scope[d]["unlimited"] for d in var["dims"])
        number = var["type"]["kind"] == "number"
        layout = "chunked"
        if not growing and self.chance(0.3):
            layout = "contiguous"
        elif not growing and self.kind == "h5py" and self.chance(0.2):
            # HDF5 holds compact data in the object header: under 64 KiB (at most 32 B an item)
            layout = "compact" if np.prod(shape) * 32 < COMPACT_BYTES else layout
        if not var["dims"]:
            layout = "contiguous" if self.kind != "h5py" or self.chance(0.5) else "compact"
        self.features.add(f"layout:{layout}")
        storage: dict[str, Any] = {"layout": layout}
        if layout != "chunked":
            return storage
        storage["chunks"] = [int(self.rng.integers(1, s + 2 if g else s + 1)) for s, g in
                             zip(shape, [scope[d]["unlimited"] for d in var["dims"]], strict=True)]  # fmt: skip
        if var["type"]["kind"] in ("str", "vlen"):
            return storage  # HDF5: variable-length types take no filters
        filters = self.filters(number and var["type"]["dtype"].kind in "iuf")
        if filters.get("compression") == "szip" and int(np.prod(storage["chunks"])) < 32:
            filters.pop("compression")  # netCDF-C refuses szip on fewer than 32 elements
        storage.update(filters)
        return storage

    def filters(self, numeric: bool) -> dict:
        out: dict[str, Any] = {}
        compressors = ["zlib"]
        if self.kind == "netcdf4" and numeric:
            compressors += ["szip", "zstd", "bzip2"]  # its blosc fails on uncompressible chunks
        if self.kind == "h5py":
            compressors += ["lzf", "zstd_plugin", "blosc_plugin", "scaleoffset"]
        if self.chance(0.5):
            out["compression"] = self.pick(compressors)
            self.features.add(out["compression"])
        if self.chance(0.3, "shuffle"):
            out["shuffle"] = True
        if self.chance(0.2, "fletcher32"):
            out["fletcher32"] = True
        if out.get("compression") == "scaleoffset" and (not numeric or out.get("fletcher32")):
            out.pop("compression")
        return out

    def region(self, var: dict, scope: dict[str, dict]) -> list[tuple[int, int]] | None:
        """The box written: None for nothing (a never-written variable)."""
        if self.chance(0.12, "never-written"):
            return None
        box = []
        for d in var["dims"]:
            dim = scope[d]
            if dim["unlimited"]:
                if self.classic:  # netCDF-C fills the records a variable was not given
                    n = dim["records"]
                    if self.kind == "nc3" and n and self.chance(0.3, "short-record-variable"):
                        n = int(self.rng.integers(0, n))
                else:
                    n = int(self.rng.integers(0, 5))
                    self.features.add("ragged-unlimited")
                    dim["size"] = max(dim["size"], n)
                box.append((0, n))
            elif self.kind != "scipy" and dim["size"] > 1 and self.chance(0.15, "partial"):
                start = int(self.rng.integers(0, dim["size"]))
                box.append((start, int(self.rng.integers(start, dim["size"] + 1))))
            else:
                box.append((0, dim["size"]))
        return box

    def fill(self, var: dict) -> dict:
        """``mode``: default (the library's), value (``_FillValue`` set), off (netCDF's nofill)."""
        kind = var["type"]["kind"]
        if kind in ("vlen", "compound", "opaque") or (kind == "str" and self.kind != "h5py"):
            return {"mode": "default"}
        if self.kind in ("netcdf4", "nc3") and self.chance(0.1, "fill-off"):
            return {"mode": "off"}
        if self.chance(0.4, "_FillValue"):
            return {"mode": "value", "value": self.one_value(var["type"])}
        return {"mode": "default"}

    def one_value(self, datatype: dict) -> Any:
        return self.values(datatype, ())[()]

    def values(self, datatype: dict, shape: tuple[int, ...]) -> np.ndarray:
        kind, rng = datatype["kind"], self.rng
        if kind == "number":
            dtype = datatype["dtype"]
            if dtype.kind == "f":
                data = np.asarray(rng.normal(size=shape) * 100).astype(dtype)
                data[rng.random(shape) < 0.1] = np.nan
                return data
            info = np.iinfo(dtype)
            low, high = (info.min, info.max) if self.chance(0.5) else (-5 if info.min else 0, 5)
            return rng.integers(low, high, size=shape, dtype=dtype.newbyteorder("="),
                                endpoint=True).astype(dtype)  # fmt: skip
        if kind == "char":
            return np.array(rng.choice(list(b"abc z\xe9"), size=shape), "u1").view("S1")
        if kind in ("str", "fixed_str"):
            text = [
                t for t in TEXT if kind == "str" or len(t.encode()) <= datatype["dtype"].itemsize
            ]
            chosen = np.array([self.pick(text) for _ in range(int(np.prod(shape)))], object)
            if kind == "fixed_str":
                chosen = np.array([t.encode() for t in chosen], datatype["dtype"])
            return chosen.reshape(shape)
        if kind == "enum":
            members = list(datatype["members"].values())
            return rng.choice(members, size=shape).astype(datatype["base"])
        if kind == "vlen":
            flat = [np.arange(int(rng.integers(0, 4)), dtype=datatype["base"]) for _ in
                    range(int(np.prod(shape)))]  # fmt: skip
            out = np.empty(len(flat), object)
            out[:] = flat
            return out.reshape(shape)
        if kind == "compound":
            raw = rng.integers(0, 256, size=(*shape, datatype["dtype"].itemsize), dtype="u1")
            data = raw.view(datatype["dtype"]).reshape(shape).copy()
            for name in datatype["dtype"].names:
                if datatype["dtype"][name].kind == "f":
                    data[name] = rng.normal(size=shape)
                if datatype["dtype"][name].names:
                    data[name]["x"] = rng.normal(size=shape)
            return data
        if kind == "opaque":
            raw = rng.integers(0, 256, size=(*shape, datatype["dtype"].itemsize), dtype="u1")
            return raw.view(datatype["dtype"]).reshape(shape)
        raise AssertionError(kind)

    def attrs(self, var: dict | None) -> dict:
        """Attributes of every type: numbers of each type (scalars, arrays, NaN), text
        (empty, non-ASCII), arrays of text, and (HDF5) empty ones."""
        out: dict[str, Any] = {}
        types = ("i1", "i2", "i4", "f4", "f8") if self.classic and self.format != "NETCDF3_64BIT_DATA" else (
            ("i1", "i2", "i4", "f4", "f8", "u1", "u2", "u4", "i8", "u8"))  # fmt: skip
        for i in range(int(self.rng.integers(0, 4))):
            choice = self.pick(("number", "array", "text", "nan", "texts", "empty", "bytes"))
            name = self.pick(("units", "long_name", f"attr {i}", f"ä{i}", f"_x{i}", "comment"))
            if choice == "number":
                value = np.array(self.rng.integers(-100, 100)).astype(self.pick(types))[()]
            elif choice == "array":
                value = np.arange(int(self.rng.integers(1, 4))).astype(self.pick(types))
            elif choice == "nan":
                value = np.array([np.nan, 1.5], self.pick(("f4", "f8")))
            elif choice == "text":
                value = self.pick(TEXT)
            elif choice == "texts" and not self.classic and self.kind != "h5netcdf":
                value = [self.pick(TEXT[1:]) for _ in range(int(self.rng.integers(1, 3)))]
            elif choice == "empty" and self.kind == "h5py":
                value = "EMPTY"
            elif choice == "bytes" and self.kind in ("h5py", "scipy"):
                value = b"raw bytes"
            else:
                continue
            self.features.add(f"attr:{choice}")
            out[name] = value
        return out

    def cf(self, var: dict) -> dict:
        """CF attributes of a variable: fill values, packing, ranges, _Unsigned, time units."""
        out: dict[str, Any] = {}
        datatype = var["type"]
        if datatype["kind"] != "number":
            if datatype["kind"] == "char" and self.chance(0.3, "char-missing_value"):
                out["missing_value"] = np.bytes_(b"z")
            return out
        dtype = datatype["dtype"].newbyteorder("=")
        if self.chance(0.3, "missing_value"):
            same = self.chance(0.7)
            out["missing_value"] = self.one_value(datatype).astype(dtype if same else "f8")
        if self.chance(0.2, "valid_range"):
            out["valid_range"] = np.array([-50, 50], dtype if dtype.kind != "u" else "i4")
        if dtype.kind in "iu" and self.chance(0.3, "packed"):
            scale_type = self.pick(("f4", "f8"))
            out["scale_factor"] = np.array(0.5, scale_type)[()]
            if self.chance(0.6):
                out["add_offset"] = np.array(10.0, scale_type)[()]
        if dtype.kind == "i" and self.chance(0.2, "_Unsigned"):
            out["_Unsigned"] = self.pick(("true", "false"))
        if len(var["dims"]) == 1 and self.chance(0.2, "time"):
            bad = self.chance(0.3, "bad-time-units")
            out["units"] = self.pick(BAD_UNITS if bad else TIME_UNITS)
            if self.chance(0.7, "calendar"):
                out["calendar"] = self.pick(CALENDARS)
        return out

    def coordinates(self, group: dict, scope: dict[str, dict], taken: set[str]) -> None:
        """Coordinate variables of some dimensions, 2-D coordinates, bounds."""
        numbers = [v for v in group["vars"] if v["type"]["kind"] == "number" and v["dims"]]
        for dim in group["dims"]:
            if dim["name"] in {v["name"] for v in group["vars"]} or not self.chance(0.5):
                continue
            self.features.add("coordinate")
            var = {"name": dim["name"], "dims": [dim["name"]], "attrs": {},
                   "type": {"kind": "number", "dtype": np.dtype(self.pick(("f8", "i4", "f4")))}}  # fmt: skip
            var["storage"] = self.storage(var, scope)
            var["region"] = self.region(var, scope)
            var["fill"] = self.fill(var)
            var["attrs"] = self.cf(var)
            if dim["unlimited"] and self.chance(0.5, "bounds") and not self.classic:
                var["attrs"]["bounds"] = f"{dim['name']}_bnds"
            var["data"] = self.values(var["type"], tuple(b - a for a, b in var["region"] or ()))
            group["vars"].append(var)
        if numbers and self.chance(0.3, "coordinates-attribute"):
            two_d = [v for v in group["vars"] if len(v["dims"]) == 2]
            target = self.pick(numbers)
            target["attrs"]["coordinates"] = " ".join(
                [v["name"] for v in two_d[:1]] or [self.pick(group["vars"])["name"]]
            )


def any_unlimited(plan: Plan) -> bool:
    return getattr(plan, "_unlimited", False)


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
