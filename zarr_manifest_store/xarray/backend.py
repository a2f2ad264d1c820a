"""``xr.open_dataset(url, engine="zarr_manifest")``: xarray's backend entry point for documents.

The package declares it under ``[project.entry-points."xarray.backends"]``;
it opens a :class:`~zarr_manifest_store.ManifestStore` and hands it to
xarray's own Zarr backend, which does the decoding.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import xarray as xr
from xarray.backends import BackendEntrypoint, ZarrBackendEntrypoint

from zarr_manifest_store.store import ManifestStore

__all__ = ["ManifestBackendEntrypoint"]


class ManifestBackendEntrypoint(BackendEntrypoint):
    """``xr.open_dataset(url, engine="zarr_manifest")``: open a chunk-manifest document.

    ``allow`` lists the path / URL prefixes the document's chunks may be read
    from (besides its own folder); ``storage_options`` configure fsspec.

    >>> zms.open_virtual_dataset("data/era_2026-01-03.nc").virtualize.to_zarr("day3-engine.zarr", mode="w")
    >>> xr.open_dataset("day3-engine.zarr", engine="zarr_manifest", allow=["data/"]).t2m.shape
    (24, 73, 144)
    """

    description = "Open a zarr-manifest-store chunk-manifest document"
    url = "https://github.com/zarr-manifest-store/zarr-manifest-store"
    open_dataset_parameters = (
        "filename_or_obj",
        "drop_variables",
        "mask_and_scale",
        "decode_times",
        "concat_characters",
        "decode_coords",
        "use_cftime",
        "decode_timedelta",
        "group",
        "allow",
        "storage_options",
    )

    def open_dataset(  # type: ignore[override]
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        mask_and_scale: bool = True,
        decode_times: Any = True,
        concat_characters: bool = True,
        decode_coords: Any = True,
        use_cftime: bool | None = None,
        decode_timedelta: Any = None,
        group: str | None = None,
        allow: Sequence[str] | None = None,
        storage_options: Mapping[str, Any] | None = None,
    ) -> xr.Dataset:
        """The document at ``filename_or_obj`` (or an open ManifestStore), CF-decoded by xarray."""
        store = (
            filename_or_obj
            if isinstance(filename_or_obj, ManifestStore)
            else ManifestStore.open(
                os.fspath(filename_or_obj), allow=allow, storage_options=storage_options
            )
        )
        return ZarrBackendEntrypoint().open_dataset(
            store,
            drop_variables=drop_variables,
            mask_and_scale=mask_and_scale,
            decode_times=decode_times,
            concat_characters=concat_characters,
            decode_coords=decode_coords,
            use_cftime=use_cftime,
            decode_timedelta=decode_timedelta,
            group=group,
            consolidated=False,
            zarr_format=3,
        )

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        """Only an open ManifestStore: a document folder looks like any Zarr store, so ask for it."""
        return isinstance(filename_or_obj, ManifestStore)
