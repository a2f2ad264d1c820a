"""What makes an ``xr.Dataset`` virtual: variables that wrap ManifestArrays, and the storage
options their sources are read with."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import xarray as xr

from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.xarray.dask_blocks import is_dask_array, manifest_array_of_blocks

__all__ = ["STORAGE_OPTIONS_KEY", "manifest_array", "with_variables"]

STORAGE_OPTIONS_KEY = "storage_options"
"""``Dataset.encoding`` key of the storage options a virtual dataset's sources are read with."""


def manifest_array(variable: xr.Variable, name: Hashable = None) -> ManifestArray | None:
    """The ManifestArray a variable wraps (its chunk references), or None if it holds values.

    ``Variable.data`` returns a duck array as it is, also from inside the
    ``CopyOnWriteArray`` / ``MemoryCachedArray`` that ``xr.open_dataset``
    wraps variables in (checked with xarray 2026.9.0); a lazily opened
    variable that is not virtual is loaded by it, as storing it would. A dask
    array that ``xr.open_mfdataset(..., engine="virtual")`` made gives the
    ManifestArray its blocks concatenate to (``name`` names the variable in
    errors).
    """
    data = variable.data
    if is_dask_array(data):
        return manifest_array_of_blocks(data, name)
    return data if isinstance(data, ManifestArray) else None


def with_variables(ds: xr.Dataset, replaced: Mapping[Hashable, xr.Variable]) -> xr.Dataset:
    """``ds`` with some non-index variables replaced, no index rebuilt."""
    coords = xr.Coordinates(
        {k: replaced.get(k, v) for k, v in ds.coords.variables.items()}, indexes=dict(ds.xindexes)
    )
    data_vars = {k: replaced.get(k, v) for k, v in ds.data_vars.variables.items()}
    out = xr.Dataset(data_vars, coords=coords, attrs=ds.attrs)
    out.encoding = dict(ds.encoding)
    return out
