"""``xr.open_dataset(path, engine="virtual")``: xarray's backend entry point for virtual datasets.

The package declares it under ``[project.entry-points."xarray.backends"]``.
It opens any file :func:`zarr_manifest_store.scan` reads as
:func:`~zarr_manifest_store.open_virtual_dataset` opens it: variables wrap
ManifestArrays, coordinates are loaded. ``xr.open_mfdataset`` asks every
engine for dask arrays (``chunks={}``); each variable of a file is then one
dask block over its ManifestArray, which :mod:`.dask_blocks` finds again for
``ds.virtualize``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import Any

import xarray as xr
from xarray.backends import BackendEntrypoint

from zarr_manifest_store.xarray.datatree import open_groups_as_dict
from zarr_manifest_store.xarray.open import open_virtual_dataset

__all__ = ["VirtualBackendEntrypoint"]


class VirtualBackendEntrypoint(BackendEntrypoint):
    """``xr.open_dataset(path, engine="virtual")``: a file as a virtual dataset.

    Takes :func:`~zarr_manifest_store.open_virtual_dataset`'s options
    (``group``, ``loadable_variables``, ``decode_times``,
    ``storage_options``, and ``on_unsupported`` and other scan options);
    ``xr.open_mfdataset(paths, engine="virtual")`` combines such datasets.

    >>> xr.open_dataset("data/era_2026-01-01.nc", engine="virtual").t2m.data
    ManifestArray<shape=(24, 73, 144), dtype=float32, chunks=(6, 73, 144), references=4>
    """

    description = "Open HDF5 / netCDF / kerchunk files as virtual datasets of chunk references"
    url = "https://github.com/zarr-manifest-store/zarr-manifest-store"
    open_dataset_parameters = (
        "filename_or_obj",
        "drop_variables",
        "group",
        "loadable_variables",
        "decode_times",
        "storage_options",
        "on_unsupported",
    )

    def open_dataset(  # type: ignore[override]
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        group: str | None = None,
        loadable_variables: Iterable[str] | None = None,
        decode_times: Any = None,
        storage_options: Mapping[str, Any] | None = None,
        **scan_options: Any,
    ) -> xr.Dataset:
        """The file at ``filename_or_obj`` as a virtual dataset (see ``zms.open_virtual_dataset``)."""
        return open_virtual_dataset(
            _path_of(filename_or_obj),
            group=group,
            drop_variables=drop_variables,
            loadable_variables=loadable_variables,
            decode_times=decode_times,
            storage_options=storage_options,
            **scan_options,
        )

    def open_groups_as_dict(  # type: ignore[override]
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        group: str | None = None,
        **options: Any,
    ) -> dict[str, xr.Dataset]:
        """Every group of the file as a virtual dataset, by path (``xr.open_groups``)."""
        return open_groups_as_dict(
            _path_of(filename_or_obj), group=group, drop_variables=drop_variables, **options
        )

    def open_datatree(  # type: ignore[override]
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        group: str | None = None,
        **options: Any,
    ) -> xr.DataTree:
        """The file's groups as a tree of virtual datasets (``xr.open_datatree``)."""
        groups = self.open_groups_as_dict(
            filename_or_obj, drop_variables=drop_variables, group=group, **options
        )
        return xr.DataTree.from_dict(groups)

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        """Never guessed: virtual datasets are asked for by name, so other engines keep their files."""
        return False


def _path_of(filename_or_obj: Any) -> str:
    """The path or URL xarray passed; open files and buffers are refused (a scan needs a path)."""
    try:
        return os.fspath(filename_or_obj)
    except TypeError:
        raise TypeError(
            f'engine="virtual" opens files by path or URL (their chunk references name them), '
            f"got {type(filename_or_obj).__name__}; pass the file's path"
        ) from None
