"""netCDF views: ``xr.open_zarr`` of the scan against ``xr.open_dataset`` of the file.

For each group xarray can open (the root, then subgroups up to a limit), the
first engine that opens the file is the reference: h5netcdf then netcdf4 for
HDF5, scipy then netcdf4 for netCDF3. Each variable (and the group's own
attributes, as ``(attributes)``) is classified ``equal``, ``mismatch`` (with
the first difference: missing / extra variable, dimensions, dtype kind,
values, attributes, coordinate status) or ``refused`` (a scan warning names it).
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import xarray as xr

from .compare import difference, plain, same
from .datasets import first_line, named_in, reason_for, refused_by, zarr_path

ENGINES = {"hdf5": ("h5netcdf", "netcdf4"), "netcdf3": ("scipy", "netcdf4")}
HIDDEN = frozenset({"_NCProperties", "_Netcdf4Dimid", "_Netcdf4Coordinates", "_nc3_strict"})
GROUP_ATTRIBUTES = "(attributes)"
ATTRIBUTE_WARNING = re.compile(r"attribute '([^']*)'")


class UnreadableReference(Exception):
    """xarray opens the file but cannot load (decode) the group itself."""


def load_reference(path: str, fmt: str, group: str) -> tuple[xr.Dataset, str, float] | None:
    """(the group loaded, engine, seconds) from the first engine that opens it; None: none does."""
    for engine in ENGINES[fmt]:
        start = time.perf_counter()
        try:
            ds = xr.open_dataset(path, engine=engine, group=group or None)
        except Exception:
            continue
        with ds:
            try:
                return ds.load(), engine, time.perf_counter() - start
            except Exception as e:
                raise UnreadableReference(f"{engine}: {first_line(e)}") from e
    return None


def check_views(
    path: str, fmt: str, store: Any, groups: list[str], messages: list[str]
) -> Iterator[dict]:
    """Records for each group view: one per variable, plus the group's timing."""
    for group in groups:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                reference = load_reference(path, fmt, group)
        except UnreadableReference as e:
            yield {"group": group, "engine": "", "variable": "", "class": "unreadable",
                   "reason": f"xr.open_dataset cannot load it: {e}"}  # fmt: skip
            continue
        if reference is None:
            continue
        expected, engine, reference_seconds = reference
        base = {"group": group, "engine": engine}
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                actual = xr.open_zarr(store, group=zarr_path(group) or None, chunks=None).load()
        except Exception as e:
            for name in [*expected.variables, GROUP_ATTRIBUTES]:
                reason = f"open_zarr raises {first_line(e)}"
                yield {**base, "variable": name, "class": "mismatch", "reason": reason}
            continue
        seconds = time.perf_counter() - start
        yield {**base, "timing": {"open_dataset": reference_seconds, "open_zarr": seconds}}
        for name, (cls, reason) in compare_datasets(expected, actual, group, messages).items():
            yield {**base, "variable": name, "class": cls, "reason": reason}


def compare_datasets(
    expected: xr.Dataset, actual: xr.Dataset, group: str, messages: list[str]
) -> dict[str, tuple[str, str]]:
    """Per variable (and the group's attributes): class and reason."""
    out: dict[str, tuple[str, str]] = {}
    named, warned = named_in(messages), warned_attributes(messages)
    for name, var in expected.variables.items():
        if name not in actual.variables:
            path = f"{group}/{name}".strip("/")
            if refused_by(path, named):
                out[str(name)] = ("refused", reason_for(path, messages))
            else:
                out[str(name)] = ("mismatch", "missing variable")
            continue
        try:
            reason = variable_difference(var, actual.variables[name], warned)
        except Exception as e:
            reason = f"cannot compare: {first_line(e)}"
        if reason is None and (name in expected.coords) != (name in actual.coords):
            reason = "a coordinate in one view only"
        out[str(name)] = ("mismatch", reason) if reason else ("equal", "")
    for name in actual.variables:
        if name not in expected.variables:
            out[str(name)] = ("mismatch", "extra variable")
    reason = attributes_difference(expected.attrs, actual.attrs, warned)
    out[GROUP_ATTRIBUTES] = ("mismatch", reason) if reason else ("equal", "")
    return out


def variable_difference(
    e: xr.Variable, a: xr.Variable, warned: frozenset[str] = frozenset()
) -> str | None:
    """Dimensions, dtype kind, values, attributes: the first that differs."""
    if e.dims != a.dims:
        return f"dims {a.dims} where {e.dims} were expected"
    if e.dtype.kind != a.dtype.kind:
        kinds = f"{a.dtype} (kind {a.dtype.kind}) where {e.dtype} (kind {e.dtype.kind})"
        return f"dtype {kinds} was expected"
    ev, av = np.asarray(e.values), np.asarray(a.values)
    if e.dtype.kind in "fc" and e.dtype != a.dtype:
        return _float_size_difference(ev, av) or attributes_difference(e.attrs, a.attrs, warned)
    found = difference(ev, av)
    if found:
        return f"values: {found}"
    return attributes_difference(e.attrs, a.attrs, warned)


def _float_size_difference(e: np.ndarray, a: np.ndarray) -> str | None:
    """Floats of another size (packed data decoded through Zarr attributes come back float64).

    Equal once rounded to the expected size: no difference; else whether only rounding differs.
    """
    found = difference(e, a.astype(e.dtype))
    if found is None:
        return None
    ulps = np.finfo(e.dtype).eps * 4
    scale = float(np.nanmax(np.abs(e))) if e.size and not np.isnan(e).all() else 0.0
    if np.allclose(e, a, rtol=ulps, atol=ulps * scale, equal_nan=True):
        return f"values differ in the last digits of {e.dtype} ({a.dtype} decoded): {found}"
    return f"values: {found}"


def attributes_difference(e: dict, a: dict, warned: frozenset[str] = frozenset()) -> str | None:
    """Attribute names and values, compared as plain values (numbers by value).

    Missing attributes are told apart by whether a scan warning named them (``warned``).
    """
    e_names = {k for k in e if k not in HIDDEN}
    a_names = {k for k in a if k not in HIDDEN}
    if e_names != a_names:
        missing, extra = e_names - a_names, a_names - e_names
        silent, told = missing - warned, missing & warned
        parts = [f"missing {_names(silent)} silently" if silent else "",
                 f"missing {_names(told)} with a warning" if told else "",
                 f"extra {_names(extra)}" if extra else ""]  # fmt: skip
        return "attributes: " + ", ".join(p for p in parts if p)
    for key in sorted(e_names):
        x, y = _attribute(e[key]), _attribute(a[key])
        if not same(x, y):
            return f"attribute {key!r}: {_brief(y)} where {_brief(x)} was expected"
    return None


def _names(names: set[str]) -> str:
    """Attribute names unquoted, so that failure classes keep them."""
    return ", ".join(sorted(names))


def warned_attributes(messages: list[str]) -> frozenset[str]:
    """Names of the attributes scan warnings say were left out."""
    return frozenset(m.group(1) for m in map(ATTRIBUTE_WARNING.search, messages) if m)


def _attribute(value: Any) -> Any:
    """An attribute as plain nested lists; a one-element array or list as its element."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, list | tuple):
        items = [_attribute(v) for v in value]
        return items[0] if len(items) == 1 else items
    return plain(value)


def _brief(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
