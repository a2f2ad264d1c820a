"""What makes an ``xr.Dataset`` virtual: variables that wrap ManifestArrays, and the storage
options their sources are read with."""

from __future__ import annotations

from collections.abc import Hashable, Mapping

import xarray as xr

from zarr_manifest_store.array import ManifestArray

__all__ = ["STORAGE_OPTIONS_KEY", "manifest_array", "with_variables"]

STORAGE_OPTIONS_KEY = "storage_options"
"""``Dataset.encoding`` key of the storage options a virtual dataset's sources are read with."""


def manifest_array(variable: xr.Variable) -> ManifestArray | None:
    """The ManifestArray a variable wraps (its chunk references), or None if it holds values.

    ``Variable.data`` returns a duck array as it is, also from inside the
    ``CopyOnWriteArray`` / ``MemoryCachedArray`` that ``xr.open_dataset``
    wraps variables in (checked with xarray 2026.9.0); a lazily opened
    variable that is not virtual is loaded by it, as storing it would.
    """
    data = variable.data
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
