"""How the differential fuzzer (benchmarks/fuzz_views.py) classes a view that differs from the
reference engine's for a reason that is not the scan's (issue #18).

A ``mismatch`` of the corpus checker (benchmarks/real_files/views.py) is
``engines-differ`` where another engine's view agrees with the scan
(:func:`reclassified`), or an engine's view corrected as a narrow rule says: h5netcdf's
padding of NC_NOFILL variables (:data:`NOFILL_PADDING`), netCDF4-python's text
``missing_value`` of char variables (:data:`CHAR_MISSING_VALUE`); it is
``reference-misreads`` where the reference itself is at fault: netCDF-C's reading of
variables shorter than several unlimited dimensions (:data:`NETCDF_C_MISREADS`), values of
another shape than their variable's (:data:`SHAPELESS`), xarray's unsigned fill values of
big-endian variables (:data:`BIG_ENDIAN_UNSIGNED`). Each rule that vouches for the scan's
values compares them with a reference view it computes (the engine's own, corrected).
"""

from __future__ import annotations

import re
import warnings
from typing import Any

import numpy as np
import xarray as xr

from benchmarks.real_files.compare import difference
from benchmarks.real_files.datasets import escaped
from benchmarks.real_files.fetch import sniff_path
from benchmarks.real_files.views import (
    ENGINES,
    compare_datasets,
    decoded,
    netcdf_kind,
    open_view,
    variable_difference,
)
from zarr_manifest_store.scan.hdf5.walk import NON_COORD_PREFIX


def reclassified(result: dict[str, Any], path: str) -> list[dict]:
    """The view records, each mismatch that a cause other than the scan explains classed as
    :func:`_explained` says (its reason first)."""
    out, others = [], {}
    for record in result["views"]:
        if record["class"] == "mismatch" and record["engine"]:
            key = (record["group"], record["engine"])
            if key not in others:
                padded = _padded_classes(path, record, result)
                others[key] = (_other_engine(path, record, result["warnings"]), padded)
            explained = _explained(path, record, result["warnings"], *others[key])
            if explained:
                cls, why = explained
                record = {**record, "class": cls, "reason": f"{why}; {record['reason']}"}
        out.append(record)
    return out


def _explained(
    path: str,
    record: dict,
    messages: list[str],
    other: tuple[str, dict[str, str]],
    padded: dict[str, str],
) -> tuple[str, str] | None:
    """(class, why) of a mismatch the first of the rules explains, else None: another engine's
    view agrees (``other``: that engine's view of the variable is equal; or, for a name the
    first engine decodes otherwise, its view of the whole group is), h5netcdf's view padded as
    netCDF-C pads does (``padded``), or one of the references' faults (module docstring)."""
    engine, classes = other
    variable = record["variable"]
    netcdf4 = record["engine"].startswith("netcdf4")
    if _agrees(classes, variable):
        return "engines-differ", f"{engine} agrees with the scan"
    if _agrees(padded, variable):
        return "engines-differ", NOFILL_PADDING
    if _native_order_agrees(path, record, messages):
        return "reference-misreads", BIG_ENDIAN_UNSIGNED
    if netcdf4 and char_unmasked(path, record):
        return "engines-differ", CHAR_MISSING_VALUE
    if netcdf4 and padded_inside(path, record):
        return "reference-misreads", NETCDF_C_MISREADS
    if "values: shape" in record["reason"] and _shapeless(path, record):
        return "reference-misreads", SHAPELESS
    return None


def _agrees(classes: dict[str, str], variable: str) -> bool:
    """Whether another view, classed ``classes``, agrees with the scan on ``variable`` (or, for
    a name it does not have, on every variable)."""
    cls = classes.get(variable)
    return cls == "equal" or (cls is None and bool(classes) and "mismatch" not in classes.values())


NOFILL_PADDING = (
    "h5netcdf pads a variable written with NC_NOFILL past its data with HDF5's fill value, "
    "netCDF-C (and the scan) with netCDF's default fill for its type: h5netcdf's view padded "
    "so (and without the variables the scan refused) agrees with the scan (netCDF-C's own "
    "view cannot vouch for it where it misreads, or fails to decode the times of another "
    "variable)"
)


def _padded_classes(path: str, record: dict, result: dict[str, Any]) -> dict[str, str]:
    """The class of each variable of the record's group against h5netcdf's view with every
    NC_NOFILL variable padded as netCDF-C pads it (:data:`NOFILL_PADDING`), with the record's
    options, else without time decoding (as the reference would fall back); ``{}`` if the
    group has no such variable or the views do not open."""
    import zarr_manifest_store as zms

    group = record["group"]
    store = zms.ManifestStore(zms.scan(path, on_unsupported="skip"))
    first = _options(record)
    for options in (first, DECODED):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                actual = open_view(store, group, options).load()
                expected = _netcdf_padded(path, group, options, result["warnings"])
                if expected is None:
                    return {}
        except Exception:
            continue
        found = compare_datasets(expected, actual, group, result["warnings"])
        return {name: cls for name, (cls, _) in found.items()}
    return {}


def _netcdf_padded(path: str, group: str, options: dict, messages: list[str]) -> xr.Dataset | None:
    """h5netcdf's view of ``group`` (loaded) with each variable written with NC_NOFILL (HDF5's
    fill time "never") padded past its stored shape with netCDF's default fill, as netCDF-C
    pads it, and without the variables the scan refused (as :func:`check_views` compares a
    group with refusals, :func:`reference_without`); None if no variable is so padded."""
    import h5py
    import netCDF4

    if not h5py.is_hdf5(path):
        return None
    with h5py.File(path, "r") as f:
        node = f[group] if group else f
        stored = {
            name.removeprefix(NON_COORD_PREFIX): ds.shape
            for name, ds in node.items()
            if isinstance(ds, h5py.Dataset)
            and ds.chunks is not None
            and ds.id.get_create_plist().get_fill_time() == h5py.h5d.FILL_TIME_NEVER
        }
    if not stored:
        return None
    gone = _refused(group, messages)
    with xr.open_dataset(
        path, engine="h5netcdf", group=group or None, decode_cf=False, drop_variables=gone
    ) as raw:  # not loaded whole: h5netcdf gives padded text values of another shape
        variables, padded = dict(raw.variables), False
        for name, shape in stored.items():
            var = variables.get(name)
            fill = netCDF4.default_fillvals.get(var.dtype.str[1:]) if var is not None else None
            if fill is None or var.shape == shape:
                continue
            values = np.full(var.shape, fill, var.dtype)
            inside = tuple(slice(0, n) for n in shape)
            values[inside] = var[inside].values  # all of it can come in the stored shape
            variables[name] = xr.Variable(var.dims, values, var.attrs, var.encoding)
            padded = True
        return decoded(xr.Dataset(variables, attrs=raw.attrs), options) if padded else None


BIG_ENDIAN_UNSIGNED = (
    "xarray (2026.9) turns the _FillValue of a big-endian variable with _Unsigned into an "
    "unsigned number by viewing its big-endian bytes in native order, so it masks other values "
    "than the fill; with the variable in native byte order its view agrees with the scan"
)


def _native_order_agrees(path: str, record: dict, messages: list[str]) -> bool:
    """Whether the record's variable, big-endian with ``_Unsigned``, equals the first engine's
    view decoded from the same values in native byte order (:data:`BIG_ENDIAN_UNSIGNED`)."""
    import zarr_manifest_store as zms

    engine = record["engine"].split(", ")[0]
    group, variable = record["group"], record["variable"]
    options = _options(record)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with xr.open_dataset(
            path, engine=engine, group=group or None, decode_cf=False,
            drop_variables=_refused(group, messages),
        ) as raw:  # fmt: skip
            var = raw.variables.get(variable)
            stored = np.dtype(var.encoding.get("dtype", "u1")) if var is not None else None
            if stored is None or stored.byteorder != ">" or "_Unsigned" not in var.attrs:
                return False
            expected = decoded(raw, options)  # undecoded values come in native byte order
        store = zms.ManifestStore(zms.scan(path, on_unsupported="skip"))
        actual = open_view(store, group, options).variables[escaped(variable)]
        return variable_difference(expected.variables[variable], actual) is None


CHAR_MISSING_VALUE = (
    "netCDF4-python reads a char variable's missing_value as text, which xarray never finds "
    "among the variable's bytes; h5netcdf reads it as bytes and masks them, as the scan does"
)


def char_unmasked(path: str, record: dict) -> bool:
    """Whether the record's variable holds bytes with a text ``missing_value`` in netCDF4's
    view, and the scan's view equals it with those bytes masked (:data:`CHAR_MISSING_VALUE`)."""
    import zarr_manifest_store as zms

    group, variable = record["group"], record["variable"]
    options = _options(record)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with xr.open_dataset(path, engine="netcdf4", group=group or None, **options) as ds:
            var = ds.variables[variable].load()
        missing = var.encoding.get("missing_value")
        values = np.asarray(var.values, object)
        if not isinstance(missing, str) or not any(isinstance(v, bytes) for v in values.flat):
            return False
        masked = np.where(values == missing.encode(), np.nan, values)
        store = zms.ManifestStore(zms.scan(path, on_unsupported="skip"))
        actual = open_view(store, group, options).variables[escaped(variable)].values
    return difference(masked, actual) is None


NETCDF_C_MISREADS = (
    "netCDF-C (4.10.1) misplaces the values of a variable shorter than one of its unlimited "
    "dimensions when an axis other than its first is unlimited (it reads them as if stored "
    "at the dimensions' lengths)"
)


def padded_inside(path: str, record: dict) -> bool:
    """Whether the record's variable is shorter than one of its unlimited dimensions and has
    one that is not its first axis (:data:`NETCDF_C_MISREADS`)."""
    import h5py
    import netCDF4

    name = f"{record['group']}/{record['variable']}".strip("/")
    if not h5py.is_hdf5(path):  # netCDF-3: no unlimited dimension but the first
        return False
    with h5py.File(path, "r") as f:
        ds = f.get(name)
        if not isinstance(ds, h5py.Dataset) or not ds.maxshape:
            return False
        shape, maxshape = ds.shape, ds.maxshape
    with netCDF4.Dataset(path) as nc:
        var = nc[name]
        lengths = [len(d) for d in var.get_dims()]
    shorter = any(m is None and n < d for n, m, d in zip(shape, maxshape, lengths, strict=True))
    return shorter and None in maxshape[1:]


SHAPELESS = "the reference engine's values do not have its variable's shape"


def _shapeless(path: str, record: dict) -> bool:
    """Whether the reference engine gives the record's variable values of another shape than
    the variable's (h5netcdf, for text padded along an unlimited dimension): :data:`SHAPELESS`."""
    engine = record["engine"].split(", ")[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        group = record["group"] or None
        with xr.open_dataset(path, engine=engine, group=group, **_options(record)) as ds:
            var = ds.variables[record["variable"]]
            shape = var.shape  # before loading, which gives the values' shape
            return np.asarray(var.values).shape != shape


def _other_engine(path: str, record: dict, messages: list[str]) -> tuple[str, dict[str, str]]:
    """(engine, class of each variable) of the group's view against the first other engine
    (of those the corpus uses for the file: netCDF-C never reads a plain HDF5 file) that
    opens it, with the record's options, else without time decoding (where the two engines
    disagree on a time variable's values, one of them may not decode); ``("", {})`` if none
    does."""
    import zarr_manifest_store as zms

    first = record["engine"].split(", ")[0]
    group = record["group"]
    store = zms.ManifestStore(zms.scan(path, on_unsupported="skip"))
    for options in (_options(record), DECODED):
        for engine in ENGINES[netcdf_kind(path, sniff_path(path) or "")]:
            if engine == first:
                continue
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    with xr.open_dataset(path, engine=engine, group=group or None, **options) as ds:
                        expected = ds.load()
                    actual = open_view(store, group, options).load()
            except Exception:
                continue
            found = compare_datasets(expected, actual, group, messages)
            return engine, {name: cls for name, (cls, _) in found.items()}
    return "", {}


DECODED = {"decode_times": False}


def _options(record: dict) -> dict[str, Any]:
    """The options the record's view was opened with."""
    return dict(DECODED) if "decode_times=False" in record["engine"] else {}


LEFT_OUT = re.compile(r"left out dataset (?:'([^']*)'|\"([^\"]*)\")")
NETCDF_NAME = re.compile(r"\(netCDF variable (?:'([^']*)'|\"([^\"]*)\")\)$")


def _refused(group: str, messages: list[str]) -> list[str]:
    """The names of the variables of ``group`` that scan warnings say were left out (as datasets,
    and as the netCDF variables a ``_nc4_non_coord_`` dataset holds)."""
    out = []
    for message in messages:
        for pattern in (LEFT_OUT, NETCDF_NAME):
            found = pattern.search(message)
            parent, _, name = "".join(found.groups("")).rpartition("/") if found else ("", "", "")
            if name and parent.strip("/") == group:
                out.append(name)
    return out
