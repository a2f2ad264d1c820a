"""``xr.open_dataset(url, engine="zarr_manifest")``: xarray's backend entry point for documents.

The package declares it under ``[project.entry-points."xarray.backends"]``;
it opens a :class:`~zarr_manifest_store.ManifestStore` and hands it to
xarray's own Zarr backend, which does the decoding, with the attributes JSON
cannot type given back their NumPy values first (``cf.TYPED_ATTRIBUTES``:
float32 packing, ``char`` fill values, complex and compound attributes), so
that the view is the one netCDF / h5netcdf / scipy give.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import xarray as xr
import zarr
from xarray.backends import BackendEntrypoint, StoreBackendEntrypoint, ZarrStore
from zarr.storage import StorePath

from zarr_manifest_store._zarr import ArrayConfig
from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.cf import TYPED_ATTRIBUTES, typed_attributes
from zarr_manifest_store.group import ManifestGroup
from zarr_manifest_store.io.paths import is_local, local_path
from zarr_manifest_store.store import ManifestStore

__all__ = ["ManifestBackendEntrypoint"]

_DECODERS = (
    "drop_variables",
    "mask_and_scale",
    "decode_times",
    "concat_characters",
    "decode_coords",
    "use_cftime",
    "decode_timedelta",
    "group",
)
"""The options xarray's Zarr backend decodes with; the others go to the store."""


class ManifestBackendEntrypoint(BackendEntrypoint):
    """``xr.open_dataset(url, engine="zarr_manifest")``: open a chunk-manifest document.

    ``allow`` lists the path / URL prefixes the document's chunks may be read
    from (besides its own folder); ``storage_options`` configure fsspec;
    ``verify``, ``max_chunks`` and the store's I/O options go to
    ``ManifestStore.open``. A netCDF / HDF5 file is not a document: it is
    refused with the engine that opens it (``engine="virtual"``).
    ``xr.open_datatree(url, engine="zarr_manifest", ...)`` opens every group.

    >>> zms.open_virtual_dataset("data/era_2026-01-03.nc").virtualize.to_zarr("day3-engine.zarr", mode="w")
    >>> xr.open_dataset("day3-engine.zarr", engine="zarr_manifest", allow=["data/"]).t2m.shape
    (24, 73, 144)
    """

    description = "Open a zarr-manifest-store chunk-manifest document"
    url = "https://github.com/zarr-manifest-store/zarr-manifest-store"
    open_dataset_parameters = (
        "filename_or_obj",
        *_DECODERS,
        "allow",
        "storage_options",
        "verify",
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
        **store_options: Any,
    ) -> xr.Dataset:
        """The document at ``filename_or_obj`` (or an open ManifestStore), CF-decoded by xarray."""
        store = _store(filename_or_obj, allow, storage_options, store_options)
        zarr_store = TypedZarrStore.open_group(
            store, group=group, mode="r", consolidated=False, zarr_format=3
        )
        return _decoded(
            zarr_store,
            drop_variables=drop_variables,
            mask_and_scale=mask_and_scale,
            decode_times=decode_times,
            concat_characters=concat_characters,
            decode_coords=decode_coords,
            use_cftime=use_cftime,
            decode_timedelta=decode_timedelta,
        )

    def open_groups_as_dict(  # type: ignore[override]
        self,
        filename_or_obj: Any,
        *,
        allow: Sequence[str] | None = None,
        storage_options: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> dict[str, xr.Dataset]:
        """Every group of the document as a dataset, by path (``xr.open_groups``)."""
        decoders, store_options = _split(options)
        store = _store(filename_or_obj, allow, storage_options, store_options)
        parent = "/" + (decoders.pop("group", None) or "").strip("/")
        stores = _group_stores(store, parent)
        return {
            _relative(path, parent): _decoded(zarr_store, **decoders)
            for path, zarr_store in stores.items()
        }

    def open_datatree(  # type: ignore[override]
        self,
        filename_or_obj: Any,
        *,
        allow: Sequence[str] | None = None,
        storage_options: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> xr.DataTree:
        """The document's groups as a tree (``xr.open_datatree``), CF-decoded by xarray."""
        return xr.DataTree.from_dict(
            self.open_groups_as_dict(
                filename_or_obj, allow=allow, storage_options=storage_options, **options
            )
        )

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        """Only an open ManifestStore: a document folder looks like any Zarr store, so ask for it."""
        return isinstance(filename_or_obj, ManifestStore)


class TypedZarrStore(ZarrStore):
    """xarray's Zarr store, with typed attributes turned back into NumPy values before decoding.

    The typed records are read from the ManifestStore's nodes (it does not serve
    them to Zarr readers). Group attributes are shown whole: xarray's Zarr backend
    hides those whose names start with ``_nc`` (NCZarr's bookkeeping), which
    h5netcdf shows.
    """

    __slots__ = ()

    def _fetch_members(self) -> dict[str, zarr.Array | zarr.Group]:
        """The group's members, in the store's order. An array's zarr node is built from the
        store's tree where that is exact (:meth:`ManifestStore.parsed_metadata`): xarray's
        own listing reads and parses every member's ``zarr.json``, about a quarter of a
        millisecond an array (seconds for a file of 15,000)."""
        store = self.zarr_group.store
        if not isinstance(store, ManifestStore) or not isinstance(store.root, ManifestGroup):
            return super()._fetch_members()
        base = self.zarr_group.path
        config = ArrayConfig.from_dict({})  # zarr's defaults, read once, not once an array
        members: dict[str, zarr.Array | zarr.Group] = {}
        for name, node in (store.root[base] if base else store.root).items():
            path = f"{base}/{name}" if base else name
            metadata = store.parsed_metadata(path) if isinstance(node, ManifestArray) else None
            members[name] = (
                self.zarr_group[name]
                if metadata is None
                else zarr.Array(zarr.AsyncArray(metadata, StorePath(store, path), config))
            )
        return members

    def open_store_variable(self, name: str) -> xr.Variable:
        variable = super().open_store_variable(name)
        try:
            variable.attrs = self._typed(variable.attrs, name)
        except ValueError as e:
            raise ValueError(f"array {name!r}: {e}") from None
        return variable

    def get_attrs(self) -> dict[str, Any]:
        attributes = self.zarr_group.attrs.asdict()
        try:
            return self._typed({k: v for k, v in attributes.items() if not _nczarr(k)})
        except ValueError as e:
            raise ValueError(
                f"group {self.zarr_group.path!r} of {self.zarr_group.store}: {e}"
            ) from None

    def _typed(self, attributes: Mapping[str, Any], name: str = "") -> dict[str, Any]:
        """``attributes`` of the node ``name`` (the group: ``""``), its typed records applied."""
        root = self.zarr_group.store.root
        path = "/".join(part for part in (self.zarr_group.path.strip("/"), name) if part)
        records = (root[path] if path else root).attributes.get(TYPED_ATTRIBUTES)
        return typed_attributes(
            {**attributes, TYPED_ATTRIBUTES: records} if records else attributes
        )


def _group_stores(store: ManifestStore, parent: str) -> dict[str, ZarrStore]:
    """xarray's Zarr store of each group at or below ``parent`` (``"/"``-led), by path.

    The groups are found in the store's tree: xarray's own ``open_store`` lists every
    group's members once to find its subgroups and again to open it, building each
    array's zarr node twice (seconds for a file of 15,000 arrays).
    """
    if not isinstance(store.root, ManifestGroup):
        return TypedZarrStore.open_store(
            store, group=parent, mode="r", consolidated=False, zarr_format=3
        )
    top = zarr.open_group(store, path=parent, mode="r", use_consolidated=False, zarr_format=3)
    below = store.root[top.path] if top.path else store.root
    paths = [parent] + [
        f"{parent.rstrip('/')}/{path}"
        for path, node in below.walk()
        if isinstance(node, ManifestGroup)
    ]
    return {
        path: TypedZarrStore(
            top if path == parent else top[path[len(parent) :].strip("/")],
            mode="r",
            use_zarr_fill_value_as_mask=False,
        )
        for path in paths
    }


def _nczarr(name: str) -> bool:
    return name.lower().startswith("_nczarr")


def _decoded(zarr_store: ZarrStore, **decoders: Any) -> xr.Dataset:
    """The dataset xarray decodes from an open Zarr store (as its Zarr backend does)."""
    try:
        return StoreBackendEntrypoint().open_dataset(zarr_store, **decoders)
    except BaseException:
        zarr_store.close()
        raise


def _relative(path: str, parent: str) -> str:
    """A group's name as xarray's Zarr backend gives it: its path, or relative to ``group=``."""
    if parent == "/":
        return path
    return path[len(parent) :].strip("/") or "."


_NOT_DOCUMENTS = {b"\x89HDF\r\n\x1a\n": "an HDF5 / netCDF-4 file", b"CDF": "a netCDF-3 file"}
"""First bytes of files that are sources, not chunk-manifest documents."""


def _split(options: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """xarray's decoding options (``open_dataset_parameters``), and the store's options."""
    return (
        {k: v for k, v in options.items() if k in _DECODERS},
        {k: v for k, v in options.items() if k not in _DECODERS},
    )


def _store(
    filename_or_obj: Any,
    allow: Sequence[str] | None,
    storage_options: Mapping[str, Any] | None,
    options: Mapping[str, Any],
) -> ManifestStore:
    """An open store as it is, or the document at a path opened with the store's options."""
    if isinstance(filename_or_obj, ManifestStore):
        return filename_or_obj
    url = os.fspath(filename_or_obj)
    _refuse_source_file(url)
    return ManifestStore.open(url, allow=allow, storage_options=storage_options, **options)


def _refuse_source_file(url: str) -> None:
    """A local netCDF / HDF5 file given for a document: say which engine opens it."""
    if not is_local(url) or not os.path.isfile(path := local_path(url)):
        return
    with open(path, "rb") as f:
        start = f.read(8)
    for magic, kind in _NOT_DOCUMENTS.items():
        if start.startswith(magic):
            raise ValueError(
                f"{url!r} is {kind}, not a chunk-manifest document (a folder): "
                f'open it with engine="virtual" for chunk references, or with engine="h5netcdf" '
                f'/ "netcdf4" for values'
            )
