"""What one seed of the file fuzzer (``fuzz_files.py``) draws: a :class:`Plan` of groups,
dimensions, variables, attributes and data, for one writer kind, with NumPy's generator.

The plan is the same wherever it is drawn: in the test process, and in the subprocess
that writes a netCDF4-python file from the seed alone.
"""

from __future__ import annotations

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
        all_unlimited = all(scope[d]["unlimited"] for d in var["dims"])
        if filters.get("compression") == "szip" and (
            int(np.prod(storage["chunks"])) < 32 or all_unlimited
        ):  # netCDF-C refuses szip on fewer than 32 elements, or on no fixed dimension
            filters.pop("compression")
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
