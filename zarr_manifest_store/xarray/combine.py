"""Virtual datasets made comparable for xarray's ``combine_by_coords`` / ``combine_nested``.

xarray decides whether a variable is the same in every file by comparing
(and, for ``compat="no_conflicts"``, filling) values, which a ManifestArray
does not have: its ``==`` raises, which xarray takes for "different". Before
combining, the virtual variables xarray will compare are read, and where every
file holds the same values each file gets those values for the time of
combining; afterwards the first file's ManifestArray is put back.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Mapping
from typing import Any

import numpy as np
import xarray as xr

from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.cf import check_cf_attributes
from zarr_manifest_store.errors import UnsupportedDatasetError
from zarr_manifest_store.xarray.values import read_values, sources_for
from zarr_manifest_store.xarray.virtual import manifest_array, with_variables

__all__ = ["prepare_for_combining", "restore_shared"]


def prepare_for_combining(
    opened: list[tuple[str, xr.Dataset]],
    concat_dims: set[Hashable] | None,
    combine_kwargs: Mapping[str, Any],
    storage_options: Mapping[str, Any] | None,
) -> tuple[list[tuple[str, xr.Dataset]], dict[Hashable, ManifestArray]]:
    """Check CF attributes of virtual variables across files; stand in values for equal ones.

    Virtual variables that xarray will compare — those without a dimension the
    files are concatenated along (``concat_dims``, or for ``combine_by_coords``
    None: those whose index differs) — are read. Where every file holds the
    same values, each file gets those values (one shared array), and the first
    file's ManifestArray is returned by name, to be put back by
    :func:`restore_shared`. ``opened`` pairs each dataset with the path that
    names it in errors.
    """
    shared: dict[Hashable, ManifestArray] = {}
    if len(opened) < 2:
        return opened, shared
    datasets = [ds for _, ds in opened]
    varying = concat_dims if concat_dims is not None else _varying_dimensions(datasets)
    compat = _effective(combine_kwargs, "compat")
    compared = {
        kind: option == "different" or (option == "minimal" and compat != "override")
        for kind in ("coords", "data_vars")
        if isinstance(option := _effective(combine_kwargs, kind), str)
    }
    stand_ins: list[dict[Hashable, xr.Variable]] = [{} for _ in opened]
    for name in _names(datasets):
        holders = [i for i, ds in enumerate(datasets) if name in ds.variables]
        variables = [datasets[i].variables[name] for i in holders]
        if len(variables) < 2 or (arrays := _manifest_arrays(variables)) is None:
            continue
        labels = [opened[i][0] for i in holders]
        check_cf_attributes([v.attrs for v in variables], labels, variable=str(name))
        kind = "coords" if name in datasets[holders[0]].coords else "data_vars"
        if varying.intersection(variables[0].dims) or not compared.get(kind):
            continue
        values = _common_values(variables, arrays, storage_options)
        if values is not None:
            shared[name] = arrays[0]
            for i, v in zip(holders, variables, strict=True):
                stand_ins[i][name] = v.copy(deep=False, data=values)
    prepared = [
        (path, with_variables(ds, replaced) if replaced else ds)
        for (path, ds), replaced in zip(opened, stand_ins, strict=True)
    ]
    return prepared, shared


def restore_shared(combined: xr.Dataset, shared: Mapping[Hashable, ManifestArray]) -> xr.Dataset:
    """Put the ManifestArrays of variables that were combined as values back in place."""
    restored = {}
    for name, array in shared.items():
        var = combined.variables.get(name)
        if var is None:
            continue
        if var.shape != array.shape:
            raise UnsupportedDatasetError(
                f"variable {name!r} was found equal in every file but xarray combined it into "
                f"shape {var.shape}; pass coords= / data_vars= 'minimal' or 'all' explicitly"
            )
        restored[name] = var.copy(deep=False, data=array)
    return with_variables(combined, restored) if restored else combined


def _manifest_arrays(variables: list[xr.Variable]) -> list[ManifestArray] | None:
    """The ManifestArray of each variable, or None unless every one is virtual."""
    arrays = []
    for variable in variables:
        array = manifest_array(variable)
        if array is None:
            return None
        arrays.append(array)
    return arrays


def _varying_dimensions(datasets: Iterable[xr.Dataset]) -> set[Hashable]:
    """Dimensions whose index differs between datasets: those ``combine_by_coords`` concatenates."""
    first, *rest = list(datasets)
    varying: set[Hashable] = set()
    for ds in rest:
        for name, index in ds.xindexes.items():
            known = first.xindexes.get(name)
            if known is None or not index.equals(known):
                varying.update(ds.variables[name].dims)
    return varying


def _effective(kwargs: Mapping[str, Any], name: str) -> Any:
    """A combine keyword as xarray will apply it: as given, or xarray's current default."""
    if name in kwargs:
        return kwargs[name]
    new = xr.get_options().get("use_new_combine_kwarg_defaults", False)
    old_and_new = {
        "compat": ("no_conflicts", "override"),
        "coords": ("different", "minimal"),
        "data_vars": ("all", None),
    }
    return old_and_new[name][1 if new else 0]


def _names(datasets: Iterable[xr.Dataset]) -> list[Hashable]:
    seen: dict[Hashable, None] = {}
    for ds in datasets:
        seen.update(dict.fromkeys(ds.variables))
    return list(seen)


def _common_values(
    variables: list[xr.Variable],
    arrays: list[ManifestArray],
    storage_options: Mapping[str, Any] | None,
) -> np.ndarray | None:
    """The values every variable (``arrays`` their ManifestArrays) holds, or None if they differ.

    References are compared first; the decoding attributes were found equal
    already (``check_cf_attributes``).
    """
    first = variables[0]
    if any(v.dims != first.dims or v.shape != first.shape for v in variables[1:]):
        return None
    if any(a.dtype != arrays[0].dtype for a in arrays[1:]):
        return None
    sources = sources_for(arrays, storage_options)
    try:
        values = read_values(arrays[0], sources)
        if all(a.equals(arrays[0]) for a in arrays[1:]):
            return values
        equal_nan = values.dtype.kind in "fc"
        for a in arrays[1:]:
            if not np.array_equal(values, read_values(a, sources), equal_nan=equal_nan):
                return None
        return values
    finally:
        sources.close()
