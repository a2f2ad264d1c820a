"""``ds.virtualize``: a virtual dataset as a ManifestGroup, a store, a document or kerchunk refs.

Importing this module registers the accessor on every ``xr.Dataset`` through
xarray's own mechanism, ``xr.register_dataset_accessor("virtualize")``
(``import zarr_manifest_store`` imports it).
"""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from typing import Any, Literal

import numpy as np
import xarray as xr
from zarr.storage import MemoryStore

from zarr_manifest_store._zarr import ArrayV3Metadata
from zarr_manifest_store.array import ManifestArray, chunk_sizes
from zarr_manifest_store.cf import fill_value_attribute, json_attribute
from zarr_manifest_store.document import append_manifest, read_document, write_manifest
from zarr_manifest_store.group import ManifestGroup
from zarr_manifest_store.manifest import INLINE, MISSING, ChunkManifest
from zarr_manifest_store.store import ManifestStore
from zarr_manifest_store.writers.icechunk import stored_attributes, to_icechunk
from zarr_manifest_store.writers.kerchunk import to_kerchunk
from zarr_manifest_store.xarray.virtual import STORAGE_OPTIONS_KEY, manifest_array, with_variables

__all__ = ["References", "VirtualizeAccessor", "serving", "target", "to_group", "write_group"]

type Spec = Literal["manifest", "kerchunk", "icechunk"]
"""What ``to_zarr(spec=...)`` writes."""
type KerchunkFormat = Literal["json", "parquet", "dict"]

_LAYOUT_ENCODING = ("chunks", "preferred_chunks", "shards")
"""Encoding that pins a loaded variable's Zarr chunking to one file's layout: dropped when storing."""


@xr.register_dataset_accessor("virtualize")
class VirtualizeAccessor:
    """``ds.virtualize``: store, write or export a virtual dataset.

    >>> ds = zms.open_virtual_mfdataset("data/*.nc")
    >>> ds.virtualize.nrefs, xr.open_zarr(ds.virtualize.to_store()).t2m.shape
    (24, (72, 73, 144))
    """

    def __init__(self, ds: xr.Dataset) -> None:
        self._ds = ds

    def to_group(self) -> ManifestGroup:
        """The dataset as a :class:`ManifestGroup` (see :func:`to_group`).

        >>> group = zms.open_virtual_dataset("data/era_2026-01-01.nc").virtualize.to_group()
        >>> sorted(group.arrays), group["time"].manifest.inline.keys() == {(0,)}
        (['lat', 'lon', 't2m', 'time', 'tp'], True)
        """
        return to_group(self._ds)

    def to_store(
        self,
        *,
        storage_options: Mapping[str, Any] | None = None,
        allow: Sequence[str] | None = None,
        **store_options: Any,
    ) -> ManifestStore:
        """A read-only :class:`ManifestStore` serving the dataset: ``xr.open_zarr(store)`` reads it.

        ``storage_options`` default to those the dataset was opened with;
        ``allow`` and ``store_options`` (``verify``, I/O tuning) go to the store.

        >>> ds = zms.open_virtual_dataset("data/era_2026-01-01.nc")
        >>> xr.open_zarr(ds.virtualize.to_store(allow=["data/"])).t2m.shape
        (24, 73, 144)
        """
        return serving(self.to_group(), self._ds.encoding, storage_options, allow, store_options)

    def to_zarr(
        self,
        url: str | os.PathLike[str] | None = None,
        *,
        store: str | os.PathLike[str] | None = None,
        spec: Spec = "manifest",
        **writer_options: Any,
    ) -> None:
        """Write the dataset at ``url`` (or ``store=``): a chunk-manifest document, kerchunk refs, Icechunk.

        ``spec="manifest"`` (the default) writes a chunk-manifest document
        (see ``zms.write_manifest``); ``spec="kerchunk"`` writes kerchunk
        references (JSON, or parquet for a path ending in ``.parq``; see
        :meth:`to_kerchunk`); ``spec="icechunk"`` writes into an Icechunk
        session's store given as ``store=`` (see :meth:`to_icechunk`).
        Loaded variables are stored inline, so the output needs only the
        source files of the virtual variables. ``mode="a", append_dim="time"``
        adds the dataset to an existing document along ``time`` (see
        ``zms.append_manifest``: checked as a combine checks, ``allow=`` for
        reading the stored coordinate's sources, ``on_overlap="replace"`` to
        replace a stored tail that the dataset's labels repeat).

        >>> ds = zms.open_virtual_dataset("data/era_2026-01-02.nc")
        >>> ds.virtualize.to_zarr("day2-virtual.zarr", mode="w", encoding="columnar")
        >>> xr.open_dataset("day2-virtual.zarr", engine="zarr_manifest", allow=["data/"]).t2m.shape
        (24, 73, 144)
        >>> ds.virtualize.to_zarr(store="day2-refs.json", spec="kerchunk")
        """
        if spec == "icechunk":
            self.to_icechunk(target(url, store), **writer_options)
            return
        if spec == "kerchunk":
            writer_options.setdefault("source_options", self._ds.encoding.get(STORAGE_OPTIONS_KEY))
        ds = self._ds
        if spec == "manifest" and writer_options.get("append_dim") is not None:
            options = writer_options.get("storage_options")
            stored = read_document(target(url, store), storage_options=options).root
            if isinstance(stored, ManifestGroup):
                attributes = {
                    n: {**a.attributes, "dtype": a.dtype} for n, a in stored.arrays.items()
                }
                ds = _encoded_as_stored(ds, attributes)
        write_group(to_group(ds), target(url, store), spec, writer_options)

    def to_kerchunk(
        self,
        url: str | os.PathLike[str] | None = None,
        format: KerchunkFormat | None = None,
        **options: Any,
    ) -> dict[str, Any] | None:
        """Export kerchunk references: a dict when ``url`` is None, else JSON or parquet written there.

        ``format`` is ``"json"``, ``"parquet"`` or ``"dict"`` (the references
        returned, no ``url``); ``options`` (``record_size``,
        ``inline_threshold``, ...) go to ``zms.to_kerchunk``.

        >>> ds = zms.open_virtual_dataset("data/era_2026-01-01.nc")
        >>> ds.virtualize.to_kerchunk()["version"]
        1
        >>> ds.virtualize.to_kerchunk("day1-virtual.json")
        """
        options.setdefault("source_options", self._ds.encoding.get(STORAGE_OPTIONS_KEY))
        return to_kerchunk(self.to_group(), url, format=format, **options)

    def to_icechunk(
        self,
        store: Any,
        group: str | None = None,
        append_dim: str | None = None,
        region: Mapping[str, slice] | None = None,
        *,
        mode: Literal["w-", "w"] = "w-",
    ) -> None:
        """Write the dataset into an Icechunk session's store (see ``zms.to_icechunk``).

        Virtual variables become virtual references, loaded ones ordinary
        chunks, encoded as ``ds.to_zarr`` would. Appending or writing a region
        encodes loaded variables with the units, calendar and dtype already
        stored (as ``ds.to_zarr(mode="a")`` does), so that new times continue the old.

        >>> import icechunk
        >>> ds = zms.open_virtual_dataset("data/era_2026-01-01.nc")
        >>> (prefix,) = zms.icechunk_containers(ds)
        >>> config = icechunk.RepositoryConfig.default()
        >>> config.set_virtual_chunk_container(icechunk.VirtualChunkContainer(
        ...     prefix, icechunk.local_filesystem_store(prefix.removeprefix("file://"))))
        >>> repo = icechunk.Repository.create(icechunk.in_memory_storage(), config)
        >>> session = repo.writable_session("main")
        >>> ds.virtualize.to_icechunk(session.store)
        >>> sorted(session.status().new_arrays)
        ['/lat', '/lon', '/t2m', '/time', '/tp']
        """
        ds = self._ds
        if append_dim is not None or region is not None:
            ds = _encoded_as_stored(ds, stored_attributes(store, group))
        to_icechunk(
            to_group(ds), store, group=group, mode=mode, append_dim=append_dim, region=region
        )

    @property
    def nbytes(self) -> int:
        """Memory the dataset holds: its manifests plus its loaded variables (not the data referenced)."""
        total = 0
        for name, var in self._ds.variables.items():
            array = manifest_array(var, name)
            total += var.nbytes if array is None else array.manifest.nbytes
        return total

    @property
    def nrefs(self) -> int:
        """How many chunk references into source files the virtual variables hold.

        A property (VirtualiZarr's ``nrefs()`` is a method: calling this
        number says so).

        >>> zms.open_virtual_dataset("data/era_2026-01-01.nc").virtualize.nrefs
        8
        """
        return References.of(self._manifest_arrays().values())

    def rename_paths(self, rename: str | Mapping[str, str] | Callable[[str], str]) -> xr.Dataset:
        """A copy whose chunk references point to renamed source paths (a dict or a function).

        A string renames the one source of a dataset read from a single file.

        Each source's fingerprint (size, and mtime or ETag) moves with it, so
        reading a copy checks that it is the same file: copy with its
        modification time kept (``cp -p``), or read with ``verify="never"``.

        >>> ds = zms.open_virtual_dataset("data/era_2026-01-01.nc")
        >>> moved = ds.virtualize.rename_paths(lambda p: "s3://bucket/era5/" + p.rsplit("/", 1)[-1])
        >>> moved.t2m.data.manifest.paths
        ('s3://bucket/era5/era_2026-01-01.nc',)
        """
        if isinstance(rename, str | os.PathLike):
            rename = _single_source(self._manifest_arrays(), os.fspath(rename))
        variables = self._ds.variables
        replaced = {
            name: variables[name].copy(
                deep=False, data=array.with_manifest(array.manifest.rename_paths(rename))
            )
            for name, array in self._manifest_arrays().items()
        }
        return with_variables(self._ds, replaced)

    def _manifest_arrays(self) -> dict[Hashable, ManifestArray]:
        """The ManifestArray of each virtual variable, by name."""
        found = {name: manifest_array(var, name) for name, var in self._ds.variables.items()}
        return {name: array for name, array in found.items() if array is not None}


class References(int):
    """A count of chunk references; calling it (VirtualiZarr's ``nrefs()``) says it is a property."""

    @classmethod
    def of(cls, arrays: Iterable[ManifestArray]) -> References:
        """How many chunk references into source files ``arrays`` hold."""
        return cls(sum(int(np.count_nonzero(a.manifest.path_index < INLINE)) for a in arrays))

    def __call__(self) -> int:
        raise TypeError(
            "nrefs is a property here, not a method (VirtualiZarr's vds.vz.nrefs()): "
            "write ds.virtualize.nrefs"
        )


def serving(
    group: ManifestGroup,
    opened_with: Mapping[str, Any],
    storage_options: Mapping[str, Any] | None,
    allow: Sequence[str] | None,
    store_options: Mapping[str, Any],
) -> ManifestStore:
    """A read-only store serving ``group``: by default with the storage options its sources
    were opened with (recorded in ``opened_with``, a dataset's encoding)."""
    if storage_options is None:
        storage_options = opened_with.get(STORAGE_OPTIONS_KEY)
    return ManifestStore(group, storage_options=storage_options, allow=allow, **store_options)


def write_group(
    group: ManifestGroup,
    url: str | os.PathLike[str],
    spec: Spec,
    options: Mapping[str, Any],
) -> None:
    """Write a hierarchy at ``url`` as ``spec`` says: a chunk-manifest document, kerchunk refs,
    or (``url`` an Icechunk session's store) Icechunk references."""
    if spec == "manifest" and (options.get("mode") == "a" or "append_dim" in options):
        _append(group, url, options)
    elif spec == "manifest":
        write_manifest(group, url, **options)
    elif spec == "kerchunk":
        to_kerchunk(group, url, **options)
    elif spec == "icechunk":
        to_icechunk(group, url, **options)
    else:
        raise ValueError(f"spec must be 'manifest', 'kerchunk' or 'icechunk', got {spec!r}")


def _encoded_as_stored(ds: xr.Dataset, stored: Mapping[str, Mapping[str, Any]]) -> xr.Dataset:
    """The dataset with its loaded times encoded in the units (and calendar, dtype) already
    stored by the same name, so that appended values continue the stored ones."""
    encoded = {}
    for name, var in ds.variables.items():
        attrs = stored.get(str(name), {})
        if manifest_array(var) is None and var.dtype.kind in "mM" and "units" in attrs:
            var = var.copy(deep=False)
            keep = {k: attrs[k] for k in ("units", "calendar", "dtype") if k in attrs}
            var.encoding = {**var.encoding, **keep}
            encoded[name] = var
    return with_variables(ds, encoded) if encoded else ds


def _append(group: ManifestGroup, url: str | os.PathLike[str], options: Mapping[str, Any]) -> None:
    """``to_zarr(url, mode="a", append_dim=...)``: the group appended to the document at ``url``."""
    options = dict(options)
    if options.pop("mode", "a") != "a" or options.get("append_dim") is None:
        raise ValueError(
            "appending to a document needs mode='a' and append_dim, the dimension to grow: "
            "to_zarr(url, mode='a', append_dim='time')"
        )
    append_manifest(group, url, **options)


def target(
    url: str | os.PathLike[str] | None, store: str | os.PathLike[str] | None
) -> str | os.PathLike[str]:
    """The one place to write to, given as ``url`` or (xarray's spelling) ``store=``."""
    if (url is None) == (store is None):
        raise TypeError(
            "to_zarr needs where to write, once: to_zarr('out.zarr') or to_zarr(store='out.zarr')"
        )
    return url if url is not None else store  # type: ignore[return-value]


def _single_source(arrays: Mapping[Hashable, ManifestArray], new: str) -> dict[str, str]:
    """The renaming of a dataset's one source path to ``new`` (VirtualiZarr's string form)."""
    paths = sorted({p for array in arrays.values() for p in array.manifest.paths})
    if len(paths) != 1:
        raise ValueError(
            f"rename_paths({new!r}) renames the one source of a dataset read from a single file, "
            f"but this dataset references {len(paths)} files; pass a dict {{old: new}} or a "
            "function of the old path"
        )
    return {paths[0]: new}


def to_group(ds: xr.Dataset) -> ManifestGroup:
    """A virtual dataset as a :class:`ManifestGroup`, the way ``ds.to_zarr`` would lay it out.

    Virtual variables keep their chunk references, with the variable's
    attributes and dimension names; every other variable is encoded by
    xarray's own Zarr writer (zarr format 3) and stored as inline chunks, so
    that ``xr.open_zarr`` reads back what ``ds`` holds.
    """
    variables, attrs = xr.conventions.encode_dataset_coordinates(ds)
    arrays: dict[str, ManifestArray] = {}
    loaded: dict[Hashable, xr.Variable] = {}
    for name, var in variables.items():
        if not isinstance(name, str):
            raise TypeError(f"variable names must be strings to be stored, got {name!r}")
        array = manifest_array(var, name)
        if array is None:
            loaded[name] = var
        else:
            arrays[name] = _stored_virtual(array, var)
    arrays.update(_inline_arrays(loaded))
    order = {name: i for i, name in enumerate(variables)}
    arrays = dict(sorted(arrays.items(), key=lambda item: order[item[0]]))
    return ManifestGroup(arrays=arrays, attributes=_json_attributes(attrs))


def _stored_virtual(array: ManifestArray, var: xr.Variable) -> ManifestArray:
    """The ManifestArray of a virtual variable with the variable's attributes and dimensions."""
    attrs = _json_attributes(var.attrs)
    if "_FillValue" in attrs:
        attrs["_FillValue"] = fill_value_attribute(attrs["_FillValue"], array.dtype)
    if attrs == dict(array.attributes) and array.dimension_names == var.dims:
        return array
    return array.with_metadata(attributes=attrs, dimension_names=list(var.dims))


def _inline_arrays(variables: Mapping[Hashable, xr.Variable]) -> dict[str, ManifestArray]:
    """In-memory variables encoded by xarray's Zarr writer, as arrays of inline chunks."""
    if not variables:
        return {}
    cleaned = {}
    for name, var in variables.items():
        var = var.copy(deep=False)
        var.encoding = {k: v for k, v in var.encoding.items() if k not in _LAYOUT_ENCODING}
        cleaned[name] = var
    contents: dict[str, Any] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. zarr's notes about codecs outside the v3 spec
        xr.Dataset(cleaned).to_zarr(
            MemoryStore(contents), mode="w", zarr_format=3, consolidated=False
        )
    arrays = {}
    for name in variables:
        metadata = ArrayV3Metadata.from_dict(json.loads(contents[f"{name}/zarr.json"].to_bytes()))
        arrays[str(name)] = ManifestArray(
            metadata=metadata, manifest=_inline_manifest(metadata, f"{name}/", contents)
        )
    return arrays


def _inline_manifest(
    metadata: ArrayV3Metadata, prefix: str, contents: Mapping[str, Any]
) -> ChunkManifest:
    """The chunks zarr wrote under ``prefix``, as a manifest of inline chunks."""
    grid = tuple(len(sizes) for sizes in chunk_sizes(metadata))
    index = np.full(grid, MISSING, dtype=np.uint32)
    inline = {}
    for coords in np.ndindex(grid):
        value = contents.get(prefix + metadata.encode_chunk_key(coords))
        if value is not None:
            inline[coords] = value.to_bytes()
            index[coords] = INLINE
    zeros = np.zeros(grid, dtype=np.uint64)
    return ChunkManifest(paths=[], path_index=index, offsets=zeros, lengths=zeros, inline=inline)


def _json_attributes(attrs: Mapping[Any, Any]) -> dict[str, Any]:
    return {str(k): json_attribute(v) for k, v in attrs.items()}
