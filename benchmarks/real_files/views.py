"""netCDF views: the scan opened by xarray against ``xr.open_dataset`` of the file.

For each group xarray can open (the root, then subgroups up to a limit), the
first engine that opens the file is the reference: h5netcdf then netcdf4 for
HDF5, scipy then netcdf4 for netCDF3. The view compared is the package's,
``xr.open_dataset(store, engine="zarr_manifest")``. Each variable (and the
group's own attributes, as ``(attributes)``) is classified ``equal``,
``mismatch`` (with the first difference: missing / extra variable,
dimensions, dtype kind, values, attributes, coordinate status), ``refused``
(a scan warning names it, or every attribute it lacks, or it differs only as
the reference would without the variables the scan refused,
:func:`refusal_consequences`) or ``unreadable`` (the
reference cannot show it: a streamed netCDF3 file's records, :data:`STREAMED`). A variable whose name Zarr reserves is looked for
under the name the scan stores it by (docs/howto/scanning.md, "Names"). An object reference the reference engine shows is
compared as the path of its object (the scan's form of it).

``xr.open_zarr(store)`` decodes the same arrays from the same attributes, save
those whose NumPy types JSON loses (``cf.TYPED_ATTRIBUTES``) and group
attributes named ``_nc...``: where such a variable or group differs in that
view, it is recorded as ``open_zarr-differs`` (documented in
docs/howto/scanning.md); any other difference there is a ``mismatch``.
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Iterator
from typing import Any

import h5py
import numpy as np
import xarray as xr

from zarr_manifest_store.cf import TYPED_ATTRIBUTES
from zarr_manifest_store.scan.netcdf3 import read_netcdf3_header

from .compare import difference, plain, same
from .datasets import escaped, first_line, named_in, reason_for, refused_by, zarr_path

ENGINES = {
    "netcdf4": ("h5netcdf", "netcdf4"),
    "hdf5": ("h5netcdf",),
    "netcdf3": ("scipy", "netcdf4"),
}
"""Reference engines, first that opens a group wins. A plain HDF5 file is not given to
netCDF-C (it has crashed the process on types it does not know, such as quad floats)."""
xr.backends.list_engines()
"""xarray imports every installed backend (cfgrib: ecCodes, 0.2-0.9 s) the first time it looks up
an engine it does not ship, such as ``zarr_manifest``: done once here, where the runner's
server imports the checker, not in the timing of each file's first view."""
NETCDF4_MARKS = frozenset({"_NCProperties", "_Netcdf4Dimid", "_Netcdf4Coordinates"})
HIDDEN = frozenset({"_NCProperties", "_Netcdf4Dimid", "_Netcdf4Coordinates", "_nc3_strict"})
GROUP_ATTRIBUTES = "(attributes)"
REFUSED_ATTRIBUTES = "attributes refused:"
"""How a difference of nothing but attributes the scan warned it left out begins."""
ATTRIBUTE_WARNING = re.compile(r"attribute '([^']*)'")


class UnreadableReference(Exception):
    """xarray opens the file but cannot load (decode) the group itself."""


def netcdf_kind(path: str, fmt: str) -> str:
    """``netcdf4`` for an HDF5 file netCDF-C wrote (its bookkeeping attributes), else ``fmt``."""
    if fmt != "hdf5":
        return fmt
    with h5py.File(path, "r") as f:
        if NETCDF4_MARKS & set(f.attrs):
            return "netcdf4"
        found = f.visititems(lambda _name, obj: True if NETCDF4_MARKS & set(obj.attrs) else None)
    return "netcdf4" if found else fmt


DECODINGS: tuple[dict[str, Any], ...] = ({}, {"decode_times": False})
"""Options each view is opened with: xarray's defaults, else without time decoding (a
calendar without cftime), which still compares everything else."""


def load_reference(
    path: str, kind: str, group: str
) -> tuple[xr.Dataset, str, float, dict[str, Any]] | str:
    """(the group loaded, engine, seconds, options) from the first engine for ``kind`` (see
    :func:`netcdf_kind`) and options (:data:`DECODINGS`) that open it; else why none does."""
    failures = []
    for options in DECODINGS:
        for engine in ENGINES[kind]:
            start = time.perf_counter()
            try:
                ds = xr.open_dataset(path, engine=engine, group=group or None, **options)
            except Exception as e:
                failures.append(f"{engine}: {first_line(e)}")
                continue
            with ds:
                try:
                    return ds.load(), engine, time.perf_counter() - start, options
                except Exception as e:
                    raise UnreadableReference(f"{engine}: {first_line(e)}") from e
    return "; ".join(dict.fromkeys(failures))


def check_views(
    path: str, fmt: str, store: Any, groups: list[str], messages: list[str]
) -> Iterator[dict]:
    """Records for each group view: one per variable, plus the group's timing."""
    kind = netcdf_kind(path, fmt)
    for group in groups:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                reference = load_reference(path, kind, group)
        except UnreadableReference as e:
            yield {"group": group, "engine": "", "variable": "", "class": "unreadable",
                   "reason": f"xr.open_dataset cannot load it: {e}"}  # fmt: skip
            continue
        if isinstance(reference, str):
            yield {"group": group, "engine": "", "variable": "", "class": "unreadable",
                   "reason": f"no engine opens it: {reference}"}  # fmt: skip
            continue
        expected, engine, reference_seconds, options = reference
        if fmt == "hdf5":
            expected = with_reference_paths(expected, path)
        base = {
            "group": group,
            "engine": ", ".join([engine, *(f"{k}={v}" for k, v in options.items())]),
        }
        start = time.perf_counter()
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                actual = open_view(store, group, options).load()
        except Exception as e:
            for name in [*expected.variables, GROUP_ATTRIBUTES]:
                reason = f"the zarr_manifest engine raises {first_line(e)}"
                yield {**base, "variable": name, "class": "mismatch", "reason": reason}
            continue
        seconds = time.perf_counter() - start
        yield {**base, "timing": {"open_dataset": reference_seconds, "open_zarr": seconds}}
        unread = streamed_records(path, fmt, expected)
        found = compare_datasets(expected, actual, group, messages)
        found = refusal_consequences(path, fmt, group, options, found, actual, messages)
        for name, (cls, reason) in found.items():
            if name in unread and cls == "mismatch":
                cls, reason = "unreadable", f"{STREAMED}; ours: {reason}"
            yield {**base, "variable": name, "class": cls, "reason": reason}
        for name, (cls, reason) in open_zarr_differences(actual, store, group, options).items():
            yield {**base, "variable": name, "class": cls, "reason": reason}


WHOLE_GROUP = (
    "xarray decides over the whole group which variables are coordinates (those named like a "
    "dimension any of its variables uses) and which character dimensions it joins (those no "
    "other variable uses but as its last)"
)


def refusal_consequences(
    path: str,
    fmt: str,
    group: str,
    options: dict[str, Any],
    found: dict[str, tuple[str, str]],
    actual: xr.Dataset,
    messages: list[str],
) -> dict[str, tuple[str, str]]:
    """``found``, with each mismatch that the scan's refusals alone explain as ``refused``.

    A variable refused alone can change how xarray decodes its neighbours (:data:`WHOLE_GROUP`):
    such a mismatch is ``refused`` when the variable equals the reference's view of the group
    with the refused variables left out before xarray decodes it, as if the file had not held
    them (:func:`reference_without`), the reference being the first engine that loads that
    view, as for the file (:data:`ENGINES`).
    """
    gone = [n for n, (cls, _) in found.items() if cls == "refused" and escaped(n) not in actual]
    mismatched = [n for n, (cls, _) in found.items() if cls == "mismatch"]
    if not gone or not mismatched:
        return found
    for engine in ENGINES[netcdf_kind(path, fmt)]:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                without = reference_without(path, engine, group, options, gone)
        except Exception:
            continue
        if fmt == "hdf5":
            without = with_reference_paths(without, path)
        again = compare_datasets(without, actual, group, messages)
        out = dict(found)
        for name in mismatched:
            if again.get(name) == ("equal", ""):
                reason = f"{WHOLE_GROUP}: equal to {engine}'s view without {_names(set(gone))}"
                out[name] = ("refused", f"{reason}; with them: {found[name][1]}")
        return out
    return found


def reference_without(
    path: str, engine: str, group: str, options: dict[str, Any], names: list[str]
) -> xr.Dataset:
    """The group as ``engine`` shows it with ``names`` left out before xarray decodes it: opened
    undecoded without them, then decoded (``drop_variables`` alone leaves them out after xarray
    has looked at their dimensions)."""
    with xr.open_dataset(
        path, engine=engine, group=group or None, decode_cf=False, drop_variables=names
    ) as raw:
        return decoded(raw, options)


def decoded(raw: xr.Dataset, options: dict[str, Any]) -> xr.Dataset:
    """``raw`` (opened with ``decode_cf=False``) decoded as a fresh dataset of its variables,
    so that xarray decides coordinates and character dimensions anew (loaded)."""
    return xr.decode_cf(xr.Dataset(dict(raw.variables), attrs=raw.attrs), **options).load()


STREAMED = (
    "netCDF-C reads the record count of a file written while streaming (numrecs "
    "0xFFFFFFFF) as 0, and scipy cannot open it; the scan counts the records the file holds"
)


def streamed_records(path: str, fmt: str, expected: xr.Dataset) -> frozenset[str]:
    """The record variables of a netCDF3 file written while streaming, where the reference
    shows no records: the reference engine's limitation (:data:`STREAMED`), not a mismatch."""
    if fmt != "netcdf3":
        return frozenset()
    with open(path, "rb") as f:
        if f.read(8)[4:] != b"\xff\xff\xff\xff":
            return frozenset()
    record = [d.name for d in read_netcdf3_header(path).dimensions if d.length is None]
    if not record or expected.sizes.get(record[0], 0) != 0:
        return frozenset()
    return frozenset(str(n) for n, v in expected.variables.items() if record[0] in v.dims)


def open_view(store: Any, group: str, options: dict[str, Any]) -> xr.Dataset:
    """The package's xarray view of one group of the scan (lazy)."""
    return xr.open_dataset(
        store, engine="zarr_manifest", group=zarr_path(group) or None, chunks=None, **options
    )


def open_zarr_differences(
    view: xr.Dataset, store: Any, group: str, options: dict[str, Any]
) -> dict[str, tuple[str, str]]:
    """Where ``xr.open_zarr``'s view differs from the package's ``view`` (loaded).

    Only variables with typed attributes and the group's own attributes can
    (the rest decode from the same attributes): ``open_zarr-differs`` where the
    typed attributes or ``_nc...`` group attributes explain it, else ``mismatch``.
    """
    out: dict[str, tuple[str, str]] = {}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            plain_view = xr.open_zarr(store, group=zarr_path(group) or None, chunks=None, **options)
    except Exception as e:
        return {GROUP_ATTRIBUTES: ("mismatch", f"xr.open_zarr raises {first_line(e)}")}
    node = store.root[zarr_path(group)] if zarr_path(group) else store.root
    for name, var in plain_view.variables.items():
        if name not in view.variables or name not in node:
            continue
        if TYPED_ATTRIBUTES not in node[name].attributes:
            continue
        try:
            reason = variable_difference(view.variables[name], var.load())
        except Exception as e:
            reason = f"cannot compare: {first_line(e)}"
        if reason:
            out[str(name)] = ("open_zarr-differs", f"xr.open_zarr: {reason}")
    records = node.attributes.get(TYPED_ATTRIBUTES) or {}
    explained = {
        TYPED_ATTRIBUTES,
        *records,
        *(k for k in view.attrs if k.lower().startswith("_nc")),
    }
    reason = attributes_difference(view.attrs, plain_view.attrs)
    if reason:
        rest = attributes_difference(
            _without(view.attrs, explained), _without(plain_view.attrs, explained)
        )
        out[GROUP_ATTRIBUTES] = (
            "mismatch" if rest else "open_zarr-differs",
            f"xr.open_zarr: {reason}",
        )
    return out


def _without(attrs: dict, names: set[str]) -> dict:
    return {k: v for k, v in attrs.items() if k not in names}


def with_reference_paths(ds: xr.Dataset, path: str) -> xr.Dataset:
    """``ds`` with every object-reference attribute replaced by its object's path in ``path``."""
    if not any(_has_reference(v) for a in _all_attrs(ds) for v in a.values()):
        return ds
    ds = ds.copy()
    with h5py.File(path, "r") as f:
        for attrs in _all_attrs(ds):
            for key, value in list(attrs.items()):
                if _has_reference(value):
                    attrs[key] = _reference_path(value, f)
    return ds


def _all_attrs(ds: xr.Dataset) -> list[dict]:
    return [ds.attrs, *(v.attrs for v in ds.variables.values())]


def _has_reference(value: Any) -> bool:
    if isinstance(value, np.ndarray) and value.dtype.kind == "O":
        return any(type(v) is h5py.Reference for v in value.flat)
    return type(value) is h5py.Reference


def _reference_path(value: Any, f: h5py.File) -> Any:
    if isinstance(value, np.ndarray):
        return np.array([_reference_path(v, f) for v in value.flat], object).reshape(value.shape)
    if type(value) is h5py.Reference:
        return f[value].name if value else None
    return value


def compare_datasets(
    expected: xr.Dataset, actual: xr.Dataset, group: str, messages: list[str]
) -> dict[str, tuple[str, str]]:
    """Per variable (and the group's attributes): class and reason."""
    out: dict[str, tuple[str, str]] = {}
    named, warned = named_in(messages), warned_attributes(messages)
    stored = {name: escaped(str(name)) for name in expected.variables}  # documented renames
    for name, var in expected.variables.items():
        if stored[name] not in actual.variables:
            path = f"{group}/{name}".strip("/")
            if refused_by(path, named):
                out[str(name)] = ("refused", reason_for(path, messages))
            else:
                out[str(name)] = ("mismatch", "missing variable")
            continue
        try:
            reason = variable_difference(var, actual.variables[stored[name]], warned)
        except Exception as e:
            reason = f"cannot compare: {first_line(e)}"
        if reason is None and (name in expected.coords) != (stored[name] in actual.coords):
            reason = "a coordinate in one view only"
        out[str(name)] = verdict(reason)
    for name in actual.variables:
        if name not in stored.values():
            out[str(name)] = ("mismatch", "extra variable")
    out[GROUP_ATTRIBUTES] = verdict(attributes_difference(expected.attrs, actual.attrs, warned))
    return out


def variable_difference(
    e: xr.Variable, a: xr.Variable, warned: frozenset[str] = frozenset()
) -> str | None:
    """Dimensions (named as the scan stores them), dtype kind, values, attributes: the first
    that differs."""
    if tuple(escaped(str(d)) for d in e.dims) != a.dims:
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
    missing, extra = e_names - a_names, a_names - e_names
    silent, told = missing - warned, missing & warned
    if silent or extra:
        parts = [f"missing {_names(silent)} silently" if silent else "",
                 f"missing {_names(told)} with a warning" if told else "",
                 f"extra {_names(extra)}" if extra else ""]  # fmt: skip
        return "attributes: " + ", ".join(p for p in parts if p)
    for key in sorted(e_names & a_names):
        x, y = _attribute(e[key]), _attribute(a[key])
        if not same(x, y):
            return f"attribute {key!r}: {_brief(y)} where {_brief(x)} was expected"
    return f"{REFUSED_ATTRIBUTES} {_names(told)} left out with a warning" if told else None


def verdict(reason: str | None) -> tuple[str, str]:
    """A difference's class: ``equal`` (none), ``refused`` (only attributes a scan warning
    named as left out, such as region references), else ``mismatch``."""
    if not reason:
        return ("equal", "")
    return ("refused" if reason.startswith(REFUSED_ATTRIBUTES) else "mismatch", reason)


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
