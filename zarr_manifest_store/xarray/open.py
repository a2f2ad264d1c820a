"""One file as a virtual ``xr.Dataset``: variables wrap ManifestArrays, loaded ones are decoded.

A scanned group becomes a dataset the way xarray's Zarr backend presents a
store before CF decoding; the *loadable* variables (by default the dimension
coordinates) are read and CF-decoded as ``xr.open_dataset`` decodes them, so
that they can index and combine.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Hashable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any

import numpy as np
import xarray as xr

from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.cf import fill_value_from_attribute
from zarr_manifest_store.document.read import MAX_INDEX_ELEMENTS
from zarr_manifest_store.group import ManifestGroup
from zarr_manifest_store.io.paths import source_path
from zarr_manifest_store.io.remote_file import sharing
from zarr_manifest_store.io.sources import Sources
from zarr_manifest_store.scan import scan
from zarr_manifest_store.xarray.values import read_values_together, sources_for
from zarr_manifest_store.xarray.virtual import STORAGE_OPTIONS_KEY

__all__ = ["Opener", "open_virtual_dataset", "refuse_virtualizarr_options", "virtual_dataset"]


def open_virtual_dataset(
    url: str | os.PathLike[str],
    *,
    group: str | None = None,
    drop_variables: str | Iterable[str] | None = None,
    loadable_variables: Iterable[str] | None = None,
    decode_times: Any = None,
    storage_options: Mapping[str, Any] | None = None,
    max_index_elements: int = MAX_INDEX_ELEMENTS,
    **scan_options: Any,
) -> xr.Dataset:
    """Open a file as an ``xr.Dataset`` of chunk references, like ``xr.open_dataset`` but virtual.

    Every variable wraps a :class:`~zarr_manifest_store.ManifestArray` and
    keeps its stored (CF-encoded) attributes, except ``loadable_variables``
    (default: the dimension coordinates), which are read and CF-decoded as
    ``xr.open_dataset`` would, so that they can index and combine. Variables
    that CF ``coordinates`` attributes name become coordinates. ``group``
    opens one group of the file; ``storage_options`` configure fsspec for
    remote URLs. A loaded variable may have at most ``max_index_elements``
    elements (a small file could declare gigabytes of them). The format is recognised from the file's first bytes (HDF5 /
    netCDF-4, netCDF3, kerchunk references: see ``zms.scan``), and
    ``scan_options`` (``on_unsupported``, ...) go to its scanner.

    >>> ds = zms.open_virtual_dataset("data/era_2026-01-01.nc")
    >>> ds.t2m.data
    ManifestArray<shape=(24, 73, 144), dtype=float32, chunks=(6, 73, 144), references=4>
    >>> ds.virtualize.to_zarr("day1-virtual.zarr", mode="w")
    """
    opener = Opener(
        group=group,
        drop_variables=drop_variables,
        loadable_variables=loadable_variables,
        decode_times=decode_times,
        storage_options=storage_options,
        scan_options=scan_options,
        max_index_elements=max_index_elements,
    )
    with sharing():  # a remote file's blocks read by the scan serve its loaded variables
        return opener.dataset(url, opener.scan(url))


@dataclass(frozen=True)
class Opener:
    """The options of :func:`open_virtual_dataset`, applied in its two steps: scan, then dataset.

    Plain data, so that executors and worker processes can run it.
    """

    group: str | None = None
    drop_variables: str | Iterable[str] | None = None
    loadable_variables: Iterable[str] | None = None
    decode_times: Any = None
    storage_options: Mapping[str, Any] | None = None
    scan_options: Mapping[str, Any] = field(default_factory=dict)
    max_index_elements: int = MAX_INDEX_ELEMENTS

    def __post_init__(self) -> None:
        refuse_virtualizarr_options(self.scan_options)

    @classmethod
    def of(cls, options: Mapping[str, Any]) -> Opener:
        """The opener of :func:`open_virtual_dataset`'s keyword ``options``; those it does
        not name are the scanner's."""
        named = {f.name for f in fields(cls)} - {"scan_options"}
        rest = {k: v for k, v in options.items() if k not in named}
        return cls(**{k: v for k, v in options.items() if k in named}, scan_options=rest)

    @property
    def dropped(self) -> list[str]:
        """The names of ``drop_variables``, as a list."""
        drop = self.drop_variables
        return [drop] if isinstance(drop, str) else list(drop or ())

    def scan(self, url: str | os.PathLike[str]) -> ManifestGroup:
        """The file scanned into a group (the step that reads the file's layout)."""
        return scan(
            url,
            group=self.group,
            drop_variables=self.dropped,
            storage_options=self.storage_options,
            **self.scan_options,
        )

    def dataset(self, url: str | os.PathLike[str], scanned: ManifestGroup) -> xr.Dataset:
        """The scanned group as a virtual dataset whose ``encoding["source"]`` names ``url``."""
        ds = virtual_dataset(
            scanned,
            loadable_variables=self.loadable_variables,
            decode_times=self.decode_times,
            storage_options=self.storage_options,
            max_index_elements=self.max_index_elements,
        )
        ds.encoding["source"] = source_path(url)
        return ds


_VIRTUALIZARR_OPTIONS = {
    "parser": "the format is recognised from the file's first bytes (see zms.scan); leave it out",
    "registry": "sources are read with fsspec / obstore; pass storage_options={...} for "
    "credentials and endpoints instead",
}
"""VirtualiZarr's ways of choosing a format and a store, and what to write instead."""


def refuse_virtualizarr_options(options: Mapping[str, Any]) -> None:
    """A TypeError for VirtualiZarr's ``parser=`` / ``registry=``, saying what to write instead."""
    for name, instead in _VIRTUALIZARR_OPTIONS.items():
        if name in options:
            raise TypeError(f"{name}= is VirtualiZarr's option, not taken here: {instead}")


def virtual_dataset(
    group: ManifestGroup,
    *,
    loadable_variables: Iterable[str] | None = None,
    decode_times: Any = None,
    storage_options: Mapping[str, Any] | None = None,
    sources: Sources | None = None,
    max_index_elements: int = MAX_INDEX_ELEMENTS,
) -> xr.Dataset:
    """The arrays of a scanned group as a virtual ``xr.Dataset`` (see :func:`open_virtual_dataset`).

    Subgroups are left out, as ``xr.open_dataset`` leaves them out. Loaded
    variables are read with ``sources`` (kept open) if given, else with a
    reader that checks their scan's fingerprints.

    >>> ds = virtual_dataset(zms.scan_hdf5("data/era_2026-01-01.nc"))
    >>> sorted(ds.data_vars), sorted(ds.indexes)
    (['t2m', 'tp'], ['lat', 'lon', 'time'])
    """
    arrays = dict(group.arrays)
    if loadable_variables is None:
        load = [n for n, a in arrays.items() if a.ndim == 1 and a.dimension_names == (n,)]
    else:
        load = list(loadable_variables)
        if missing := [n for n in load if n not in arrays]:
            raise ValueError(
                f"loadable_variables {missing} are not variables of this dataset; "
                f"it has {sorted(arrays)}"
            )
    for name in load:
        if arrays[name].size > max_index_elements:
            raise ValueError(
                f"variable {name!r} has {arrays[name].size:,} elements, more than "
                f"max_index_elements={max_index_elements:,} allows loading; pass a larger "
                f"max_index_elements, or leave it out of loadable_variables"
            )
    variables = {name: _encoded_variable(name, array) for name, array in arrays.items()}
    indexes: dict[Hashable, xr.Index] = {}
    if load:
        reader = sources or sources_for([arrays[n] for n in load], storage_options)
        try:
            values = read_values_together([arrays[n] for n in load], reader)
            raw = {n: variables[n].copy(data=v) for n, v in zip(load, values, strict=True)}
        finally:
            if sources is None:
                reader.close()
        decoded, indexes = _decode_loaded(raw, decode_times)
        variables.update(decoded)
    attrs = dict(group.attributes)
    coord_names = _coordinates_from_attributes(variables, attrs)
    coord_names.update(n for n, v in variables.items() if v.dims == (n,))
    # Only loaded dimension coordinates get an index: an index of a virtual one would need values.
    coords = xr.Coordinates({n: variables[n] for n in coord_names}, indexes=indexes)
    data_vars = {n: v for n, v in variables.items() if n not in coord_names}
    ds = xr.Dataset(data_vars, coords=coords, attrs=attrs)
    if storage_options:
        ds.encoding[STORAGE_OPTIONS_KEY] = dict(storage_options)
    return ds


def _encoded_variable(name: str, array: ManifestArray) -> xr.Variable:
    """An array as xarray's Zarr backend presents it before CF decoding (``_FillValue`` decoded)."""
    dims = array.dimension_names
    if dims is None and array.ndim:
        raise ValueError(
            f"array {name!r} has no dimension_names, so xarray cannot name its dimensions; "
            "give the array dimension names"
        )
    attrs = dict(array.attributes)
    if "_FillValue" in attrs:
        attrs["_FillValue"] = fill_value_from_attribute(attrs["_FillValue"], array.dtype)
    return xr.Variable(tuple(dims or ()), array, attrs)


def _coordinates_from_attributes(
    variables: dict[Hashable, xr.Variable], attrs: dict[str, Any]
) -> set[Hashable]:
    """The variables CF ``coordinates`` attributes name; each attribute moved to the encoding.

    Mirrors ``decode_coords=True`` of ``xr.open_dataset``, the global attribute included.
    """
    names: set[Hashable] = set()
    for name, var in list(variables.items()):
        text = var.attrs.get("coordinates")
        if isinstance(text, str):
            var = variables[name] = var.copy(deep=False)
            var.encoding["coordinates"] = var.attrs.pop("coordinates")
            names.update(c for c in text.split() if c in variables)
    if isinstance(attrs.get("coordinates"), str):
        names.update(c for c in attrs.pop("coordinates").split() if c in variables)
    return names


# ---------------------------------------------------------------------- decoding loaded variables


def _decode_loaded(
    raw: dict[Hashable, xr.Variable], decode_times: Any
) -> tuple[dict[Hashable, xr.Variable], dict[Hashable, xr.Index]]:
    """Loaded variables CF-decoded as ``xr.open_dataset`` decodes them; dimension coordinates indexed.

    The files of a collection mostly repeat their coordinates (lat / lon), so
    a dimension coordinate decoded before from the same name, bytes and
    attributes is reused, index included. That is only done when decoding
    each variable alone equals decoding them together: every loaded variable
    is a numeric dimension coordinate and none is another's bounds.
    """
    decoders = {} if decode_times is None else {"decode_times": decode_times}
    independent = decode_times in (None, True, False) and all(
        var.dims == (name,)
        and var.dtype.kind in "biufcmM"
        and not {var.attrs.get("bounds"), var.attrs.get("climatology")} & raw.keys()
        for name, var in raw.items()
    )
    decoded: dict[Hashable, xr.Variable] = {}
    indexes: dict[Hashable, xr.Index] = {}
    keys: dict[Hashable, tuple[Any, ...] | None] = {}
    for name, var in raw.items():
        key = keys[name] = _decoded_key(name, var, decode_times) if independent else None
        known = _decoded_coordinates.get(key) if key is not None else None
        if known is not None:
            decoded[name], indexes[name] = known[0].copy(deep=False), known[1]
    todo = {name: var for name, var in raw.items() if name not in decoded}
    if todo:
        fresh, _, _ = xr.conventions.decode_cf_variables(todo, {}, decode_coords=False, **decoders)
        for name, var in fresh.items():
            if var.dims != (name,):
                decoded[name] = var.load()
                continue
            coordinate = xr.Coordinates({name: var})
            decoded[name], indexes[name] = coordinate.variables[name], coordinate.xindexes[name]
            if (key := keys[name]) is not None:
                _decoded_coordinates.put(key, (decoded[name], indexes[name]))
                decoded[name] = decoded[name].copy(deep=False)
    return decoded, indexes


def _decoded_key(name: Hashable, var: xr.Variable, decode_times: Any) -> tuple[Any, ...] | None:
    """What decoding a dimension coordinate depends on; None for one too large to remember."""
    values = np.ascontiguousarray(var.values)
    if values.nbytes > _MemoryLRU.MAX_VALUE_BYTES:
        return None
    attrs = repr(sorted(var.attrs.items(), key=lambda item: str(item[0])))
    return (name, values.dtype.str, values.shape, values.tobytes(), attrs, decode_times)


class _MemoryLRU:
    """A small least-recently-used memo (thread-safe; a race only costs a recomputation)."""

    MAX_VALUE_BYTES = 64 * 2**10
    """Coordinates larger than this are decoded every time rather than remembered."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: dict[Any, Any] = {}
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            value = self._items.pop(key, None)
            if value is not None:
                self._items[key] = value
            return value

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._items.pop(key, None)
            self._items[key] = value
            while len(self._items) > self._size:
                del self._items[next(iter(self._items))]


_decoded_coordinates = _MemoryLRU(64)
"""Decoded dimension coordinates with their index, by :func:`_decoded_key`."""
