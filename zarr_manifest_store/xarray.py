"""The xarray layer: virtual datasets whose variables are ManifestArrays, combined like files.

:func:`open_virtual_dataset` scans one file into an ``xr.Dataset`` whose
variables wrap :class:`~zarr_manifest_store.ManifestArray` (chunk references,
no data), except the *loadable* variables — by default the dimension
coordinates — which hold values decoded as ``xr.open_dataset`` decodes them.
:func:`open_virtual_mfdataset` does what ``xr.open_mfdataset`` does with such
datasets: xarray's own ``combine_by_coords`` / ``combine_nested`` concatenate
them, and NumPy's protocol turns that into manifest concatenation. The
``.virtualize`` accessor turns a virtual dataset into a store, a
chunk-manifest document or kerchunk references; the ``zarr_manifest`` engine
opens a document with ``xr.open_dataset``.

This is the only module that imports xarray.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import glob
import itertools
import json
import math
import multiprocessing
import os
import threading
import warnings
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import numpy as np
import xarray as xr
import zarr
from xarray.backends import BackendEntrypoint
from xarray.backends.zarr import FillValueCoder, ZarrBackendEntrypoint
from zarr.codecs import BytesCodec
from zarr.storage import MemoryStore, StorePath

from zarr_manifest_store._zarr import ArrayV3Metadata
from zarr_manifest_store.array import ManifestArray, chunk_sizes
from zarr_manifest_store.cf import check_cf_attributes, fill_value_attribute, json_attribute
from zarr_manifest_store.errors import UnsupportedDatasetError
from zarr_manifest_store.group import ManifestGroup
from zarr_manifest_store.io.paths import in_scheme_of, is_local, source_path
from zarr_manifest_store.io.sources import ByteData, Sources, coalesce
from zarr_manifest_store.manifest import (
    INLINE,
    MISSING,
    ChunkCoords,
    ChunkManifest,
    ChunkRef,
    Fingerprint,
)
from zarr_manifest_store.ops import EdgeChunks
from zarr_manifest_store.ops import edge_chunks as edge_chunk_handling
from zarr_manifest_store.scan import scan
from zarr_manifest_store.store import ManifestStore

__all__ = [
    "ManifestBackendEntrypoint",
    "VirtualizeAccessor",
    "open_virtual_dataset",
    "open_virtual_mfdataset",
    "virtual_dataset",
]

type Parallel = bool | Literal["threads", "processes"] | concurrent.futures.Executor | Any | None
"""How to open files in parallel; ``Any`` stands for a ``dask.distributed.Client``."""

STORAGE_OPTIONS_KEY = "storage_options"
"""``Dataset.encoding`` key of the storage options a virtual dataset's sources are read with."""

_LAYOUT_ENCODING = ("chunks", "preferred_chunks", "shards")
"""Encoding that pins a loaded variable's Zarr chunking to one file's layout: dropped when storing."""


# ---------------------------------------------------------------------- one file


def open_virtual_dataset(
    url: str | os.PathLike[str],
    *,
    group: str | None = None,
    drop_variables: str | Iterable[str] | None = None,
    loadable_variables: Iterable[str] | None = None,
    decode_times: Any = None,
    storage_options: Mapping[str, Any] | None = None,
    **scan_options: Any,
) -> xr.Dataset:
    """Open a file as an ``xr.Dataset`` of chunk references, like ``xr.open_dataset`` but virtual.

    Every variable wraps a :class:`~zarr_manifest_store.ManifestArray` and
    keeps its stored (CF-encoded) attributes, except ``loadable_variables``
    (default: the dimension coordinates), which are read and CF-decoded as
    ``xr.open_dataset`` would, so that they can index and combine. Variables
    that CF ``coordinates`` attributes name become coordinates. ``group``
    opens one group of the file; ``storage_options`` configure fsspec for
    remote URLs. The format is recognised from the file's first bytes (HDF5 /
    netCDF-4, netCDF3, kerchunk references: see ``zms.scan``), and
    ``scan_options`` (``on_unsupported``, ...) go to its scanner.

    >>> ds = zms.open_virtual_dataset("data/era_2026-01-01.nc")
    >>> ds.t2m.data
    ManifestArray<shape=(24, 73, 144), dtype=float32, chunks=(6, 73, 144), references=4>
    >>> ds.virtualize.to_zarr("day1-virtual.zarr", mode="w")
    """
    opener = _Opener(
        group=group,
        drop_variables=drop_variables,
        loadable_variables=loadable_variables,
        decode_times=decode_times,
        storage_options=storage_options,
        scan_options=scan_options,
    )
    return opener.dataset(url, opener.scan(url))


def virtual_dataset(
    group: ManifestGroup,
    *,
    loadable_variables: Iterable[str] | None = None,
    decode_times: Any = None,
    storage_options: Mapping[str, Any] | None = None,
) -> xr.Dataset:
    """The arrays of a scanned group as a virtual ``xr.Dataset`` (see :func:`open_virtual_dataset`).

    Subgroups are left out, as ``xr.open_dataset`` leaves them out.

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
    variables = {name: _encoded_variable(name, array) for name, array in arrays.items()}
    indexes: dict[Hashable, xr.Index] = {}
    if load:
        sources = _sources_for([arrays[n] for n in load], storage_options)
        try:
            values = _read_values_together([arrays[n] for n in load], sources)
            raw = {n: variables[n].copy(data=v) for n, v in zip(load, values, strict=True)}
        finally:
            sources.close()
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
        attrs["_FillValue"] = FillValueCoder.decode(attrs["_FillValue"], array.dtype)
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


# ---------------------------------------------------------------------- many files


def open_virtual_mfdataset(
    paths: str | os.PathLike[str] | Sequence[Any],
    *,
    combine: Literal["by_coords", "nested"] = "by_coords",
    concat_dim: Any = None,
    parallel: Parallel = None,
    preprocess: Callable[[xr.Dataset], xr.Dataset] | None = None,
    attrs_file: str | os.PathLike[str] | None = None,
    combine_attrs: str = "override",
    errors: Literal["raise", "warn", "ignore"] = "raise",
    edge_chunks: EdgeChunks = "refuse",
    group: str | None = None,
    drop_variables: str | Iterable[str] | None = None,
    loadable_variables: Iterable[str] | None = None,
    decode_times: Any = None,
    storage_options: Mapping[str, Any] | None = None,
    scan_options: Mapping[str, Any] | None = None,
    **xarray_combine_kwargs: Any,
) -> xr.Dataset:
    """Open many files as one virtual dataset, as ``xr.open_mfdataset`` would combine them.

    ``paths`` is a glob (local or any fsspec URL), a list, or for
    ``combine="nested"`` a nested list. Each file is opened with
    :func:`open_virtual_dataset` (``group``, ``drop_variables``,
    ``loadable_variables``, ``decode_times``, ``storage_options``,
    ``scan_options``), in parallel with ``parallel="threads"``,
    ``"processes"``, a ``concurrent.futures.Executor`` or a
    ``dask.distributed.Client``; then ``preprocess`` runs on each and xarray
    combines them (``compat``, ``data_vars``, ``coords``, ``join``,
    ``fill_value`` go to ``xr.combine_by_coords`` / ``xr.combine_nested``,
    with ``xr.open_mfdataset``'s defaults). Virtual variables that xarray
    compares across files are read to decide whether they are equal; ones
    that differ in ``scale_factor``, ``add_offset``, ``_FillValue``,
    ``missing_value``, ``units`` or ``calendar`` are refused. Files whose
    length is not a multiple of a compressed variable's chunk size are refused
    unless ``edge_chunks="inline"``, which reads and inlines those edge chunks.

    >>> ds = zms.open_virtual_mfdataset("data/*.nc", parallel="threads")
    >>> ds.sizes["time"], ds.virtualize.nrefs
    (72, 24)
    >>> ds.virtualize.to_zarr("all-days.zarr", mode="w")
    """
    if combine not in ("by_coords", "nested"):
        raise ValueError(f"combine must be 'by_coords' or 'nested', got {combine!r}")
    if combine == "by_coords" and concat_dim is not None:
        raise ValueError(
            "concat_dim has no effect with combine='by_coords'; to combine along a given "
            "dimension, pass combine='nested' with concat_dim"
        )
    if errors not in ("raise", "warn", "ignore"):
        raise ValueError(f"errors must be 'raise', 'warn' or 'ignore', got {errors!r}")
    nested = _expand_paths(paths, storage_options)
    flat = list(_leaves(nested))
    if not flat:
        raise OSError(f"no files to open: {paths!r} matched nothing")
    opener = _Opener(
        group=group,
        drop_variables=drop_variables,
        loadable_variables=loadable_variables,
        decode_times=decode_times,
        storage_options=storage_options,
        scan_options=dict(scan_options or {}),
    )
    results = _map(opener, flat, parallel)
    for path, result in zip(flat, results, strict=True):
        if isinstance(result, BaseException):
            if errors == "raise":
                raise result
            if errors == "warn":
                warnings.warn(f"could not open {path}: {result}; ignoring it", stacklevel=2)
    opened = [
        (path, ds if preprocess is None else preprocess(ds))
        for path, ds in zip(flat, results, strict=True)
        if not isinstance(ds, BaseException)
    ]
    if not opened:
        raise OSError(f"none of the {len(flat)} file(s) could be opened")
    concat_dims = _concat_dims(concat_dim) if combine == "nested" else None
    prepared, shared = _prepare_for_combining(
        opened, concat_dims, xarray_combine_kwargs, storage_options
    )
    try:
        with edge_chunk_handling(edge_chunks, storage_options=storage_options):
            if combine == "nested":
                done = iter(ds for _, ds in prepared)
                leaves = [None if isinstance(r, BaseException) else next(done) for r in results]
                combined = xr.combine_nested(
                    _rebuild(nested, iter(leaves)),
                    concat_dim=concat_dim,
                    combine_attrs=combine_attrs,
                    **xarray_combine_kwargs,
                )
            else:
                combined = xr.combine_by_coords(
                    [ds for _, ds in prepared], combine_attrs=combine_attrs, **xarray_combine_kwargs
                )
    except UnsupportedDatasetError as e:
        if edge_chunks == "refuse" and "edge_chunks='inline'" in str(e):
            e.add_note(
                "open_virtual_mfdataset(..., edge_chunks='inline') reads those edge chunks "
                "once and stores them inline"
            )
        raise
    combined = _restore_shared(combined, shared)
    if attrs_file is not None:
        key = _normalise_path(os.fspath(attrs_file))
        chosen = next((ds for p, ds in prepared if p == key), None)
        if chosen is None:
            raise ValueError(f"attrs_file {attrs_file!r} is not one of the opened files")
        combined.attrs = dict(chosen.attrs)
    if storage_options:
        combined.encoding[STORAGE_OPTIONS_KEY] = dict(storage_options)
    return combined


@dataclass(frozen=True)
class _Opener:
    """Opens files as :func:`open_virtual_dataset` does, in its two steps: scan, then dataset.

    Called with a path (as executors call it), it returns the dataset or the
    exception that prevented it, so that ``errors=`` can act on it.
    """

    group: str | None
    drop_variables: str | Iterable[str] | None
    loadable_variables: Iterable[str] | None
    decode_times: Any
    storage_options: Mapping[str, Any] | None
    scan_options: Mapping[str, Any]

    def scan(self, url: str | os.PathLike[str]) -> ManifestGroup:
        drop = self.drop_variables
        return scan(
            url,
            group=self.group,
            drop_variables=[drop] if isinstance(drop, str) else list(drop or ()),
            storage_options=self.storage_options,
            **self.scan_options,
        )

    def dataset(self, url: str | os.PathLike[str], scanned: ManifestGroup) -> xr.Dataset:
        ds = virtual_dataset(
            scanned,
            loadable_variables=self.loadable_variables,
            decode_times=self.decode_times,
            storage_options=self.storage_options,
        )
        ds.encoding["source"] = source_path(url)
        return ds

    def __call__(self, path: str) -> xr.Dataset | Exception:
        return self.in_phases([path])[0]

    def in_phases(self, paths: list[str]) -> list[xr.Dataset | Exception]:
        """The files opened one after another, all scanned before any becomes a dataset.

        Each phase runs the same code file after file (h5py's, then xarray's),
        which stays in the processor's caches: about 15% faster than
        opening the files one by one.
        """
        scanned = [_attempt(path, partial(self.scan, path)) for path in paths]
        return [
            found
            if isinstance(found, Exception)
            else _attempt(path, partial(self.dataset, path, found))
            for path, found in zip(paths, scanned, strict=True)
        ]


def _attempt(path: str, step: Callable[[], Any]) -> Any:
    """``step()``, or the exception that prevented it, noted with the file it was opening."""
    try:
        return step()
    except Exception as e:
        e.add_note(f"while opening {path}")
        return e


def _map(opener: _Opener, paths: list[str], parallel: Parallel) -> list[Any]:
    """``opener`` over ``paths``, serially (in phases) or on the executor ``parallel`` names."""
    distributed = hasattr(parallel, "get_executor") and hasattr(parallel, "gather")
    if not (
        parallel in (None, False, True, "threads", "processes")
        or isinstance(parallel, concurrent.futures.Executor)
        or distributed
    ):
        raise ValueError(
            "parallel must be None, 'threads', 'processes', a concurrent.futures.Executor or a "
            f"dask.distributed.Client, got {parallel!r}"
        )
    if parallel is None or parallel is False or len(paths) == 1:
        return opener.in_phases(paths)
    if isinstance(parallel, concurrent.futures.Executor):
        return list(parallel.map(opener, paths))
    if distributed:
        return list(parallel.get_executor().map(opener, paths))
    if parallel == "processes":
        pool = _process_pool()
        size = max(1, len(paths) // (4 * _process_count()))
        shares = [paths[i : i + size] for i in range(0, len(paths), size)]
        try:  # each worker opens its share of the files in phases too
            return [ds for share in pool.map(opener.in_phases, shares) for ds in share]
        except concurrent.futures.process.BrokenProcessPool:
            _discard_process_pool(pool)
            raise
    with concurrent.futures.ThreadPoolExecutor() as pool:  # "threads", or True as in xarray
        return list(pool.map(opener, paths))


_process_pool_lock = threading.Lock()
_process_pools: list[concurrent.futures.ProcessPoolExecutor] = []


def _process_pool() -> concurrent.futures.ProcessPoolExecutor:
    """The worker processes of ``parallel="processes"``: started on first use, then kept.

    Starting a process and importing xarray and zarr in it costs more than
    opening a hundred files, so later calls reuse the workers. They are
    started by a fork server (not ``fork``), since zarr and fsspec run
    event-loop threads that ``fork`` would copy half-alive.
    """
    with _process_pool_lock:
        if not _process_pools:
            context = multiprocessing.get_context("forkserver")
            _process_pools.append(
                concurrent.futures.ProcessPoolExecutor(_process_count(), mp_context=context)
            )
            atexit.register(_shut_down_process_pools)
        return _process_pools[0]


def _shut_down_process_pools() -> None:
    """Stop the workers while the interpreter can still do it cleanly."""
    with _process_pool_lock:
        pools = list(_process_pools)
        _process_pools.clear()
    for pool in pools:
        pool.shutdown(wait=True, cancel_futures=True)


def _process_count() -> int:
    return os.cpu_count() or 1


def _discard_process_pool(pool: concurrent.futures.ProcessPoolExecutor) -> None:
    """Forget a pool whose worker died, so that the next call starts a new one."""
    with _process_pool_lock:
        if pool in _process_pools:
            _process_pools.remove(pool)
    pool.shutdown(wait=False, cancel_futures=True)


# ---------------------------------------------------------------------- paths


def _expand_paths(paths: Any, storage_options: Mapping[str, Any] | None) -> Any:
    """A glob expanded (sorted), a path normalised, or a (nested) list of paths normalised."""
    if isinstance(paths, str | os.PathLike):
        path = os.fspath(paths)
        if not glob.has_magic(path):
            return [_normalise_path(path)]
        if is_local(path):
            return sorted(os.path.abspath(p) for p in glob.glob(os.path.expanduser(path)))
        fs = Sources(storage_options).filesystem(path)
        return sorted(in_scheme_of(path, fs.unstrip_protocol(p)) for p in fs.glob(path))
    if isinstance(paths, Sequence):
        return [
            _expand_paths(p, storage_options)
            if isinstance(p, list | tuple)
            else _normalise_path(os.fspath(p))
            for p in paths
        ]
    raise TypeError(f"paths must be a string, a path or a (nested) list of them, got {paths!r}")


def _normalise_path(path: str) -> str:
    return source_path(os.path.expanduser(path)) if is_local(path) else path


def _leaves(nested: Any) -> Iterable[str]:
    for item in nested:
        if isinstance(item, list):
            yield from _leaves(item)
        else:
            yield item


def _rebuild(nested: Any, leaves: Iterator[xr.Dataset | None]) -> Any:
    """The nested list of paths with each path's dataset in its place; failed files left out."""
    out = []
    for item in nested:
        if isinstance(item, list):
            out.append(_rebuild(item, leaves))
        elif (ds := next(leaves)) is not None:
            out.append(ds)
    return out


def _concat_dims(concat_dim: Any) -> set[Hashable]:
    dims = concat_dim if isinstance(concat_dim, list | tuple) else [concat_dim]
    return {getattr(d, "name", d) for d in dims if d is not None}


# ---------------------------------------------------------------------- before combining


def _prepare_for_combining(
    opened: list[tuple[str, xr.Dataset]],
    concat_dims: set[Hashable] | None,
    combine_kwargs: Mapping[str, Any],
    storage_options: Mapping[str, Any] | None,
) -> tuple[list[tuple[str, xr.Dataset]], dict[Hashable, ManifestArray]]:
    """Check CF attributes of virtual variables across files; stand in values for equal ones.

    xarray decides whether a variable is the same in every file by comparing
    (and, for ``compat="no_conflicts"``, filling) values, which a ManifestArray
    does not have: its ``==`` raises, which xarray takes for "different".
    Virtual variables that xarray will compare — those without a dimension the
    files are concatenated along — are read here. Where every file holds the
    same values, each file gets those values (one shared array) for the time
    of combining, and the first file's ManifestArray is returned by name, to
    be put back by :func:`_restore_shared`. ``opened`` pairs each dataset
    with the path that names it in errors.
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
        if len(variables) < 2 or not all(_is_virtual(v) for v in variables):
            continue
        labels = [opened[i][0] for i in holders]
        check_cf_attributes([v.attrs for v in variables], labels, variable=str(name))
        kind = "coords" if name in datasets[holders[0]].coords else "data_vars"
        if varying.intersection(variables[0].dims) or not compared.get(kind):
            continue
        values = _common_values(variables, storage_options)
        if values is not None:
            shared[name] = variables[0].data
            for i, v in zip(holders, variables, strict=True):
                stand_ins[i][name] = v.copy(deep=False, data=values)
    prepared = [
        (path, _with_variables(ds, replaced) if replaced else ds)
        for (path, ds), replaced in zip(opened, stand_ins, strict=True)
    ]
    return prepared, shared


def _restore_shared(combined: xr.Dataset, shared: Mapping[Hashable, ManifestArray]) -> xr.Dataset:
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
    return _with_variables(combined, restored) if restored else combined


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
    variables: list[xr.Variable], storage_options: Mapping[str, Any] | None
) -> np.ndarray | None:
    """The values every variable holds, or None if they differ (references compared first).

    Their decoding attributes were found equal already (``check_cf_attributes``).
    """
    first = variables[0]
    arrays = [v.data for v in variables]
    if any(v.dims != first.dims or v.shape != first.shape for v in variables[1:]):
        return None
    if any(a.dtype != arrays[0].dtype for a in arrays[1:]):
        return None
    sources = _sources_for(arrays, storage_options)
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


def _with_variables(ds: xr.Dataset, replaced: Mapping[Hashable, xr.Variable]) -> xr.Dataset:
    """``ds`` with some non-index variables replaced, no index rebuilt."""
    coords = xr.Coordinates(
        {k: replaced.get(k, v) for k, v in ds.coords.variables.items()}, indexes=dict(ds.xindexes)
    )
    data_vars = {k: replaced.get(k, v) for k, v in ds.data_vars.variables.items()}
    out = xr.Dataset(data_vars, coords=coords, attrs=ds.attrs)
    out.encoding = dict(ds.encoding)
    return out


def _is_virtual(variable: xr.Variable) -> bool:
    """Whether a variable wraps chunk references (xarray keeps a duck array as ``_data`` itself)."""
    return isinstance(variable._data, ManifestArray)


# ---------------------------------------------------------------------- reading values


def _sources_for(
    arrays: Iterable[ManifestArray], storage_options: Mapping[str, Any] | None
) -> Sources:
    """A reader that checks the arrays' sources against the fingerprints their scan recorded."""
    fingerprints: dict[str, list[Fingerprint]] = {}
    for array in arrays:
        for path, fingerprint in array.manifest.fingerprints.items():
            fingerprints.setdefault(path, []).append(fingerprint)
    return Sources(storage_options, fingerprints=fingerprints)


def read_values(array: ManifestArray, sources: Sources) -> np.ndarray:
    """The values of a (small) array, decoded exactly as zarr decodes its chunks.

    Chunks stored raw (one ``bytes`` codec, a fixed-size numeric type) are
    read with ``sources`` and reinterpreted in place; anything else goes
    through zarr-python's own codec pipeline.
    """
    return _read_values_together([array], sources)[0]


def _read_values_together(arrays: Sequence[ManifestArray], sources: Sources) -> list[np.ndarray]:
    """The values of several (small) arrays, as :func:`read_values` reads each.

    Their raw chunks are read together: those of one file that lie close to
    each other (as a file's coordinates usually do) in one read.
    """
    stored = [_raw_dtype(array) for array in arrays]
    present = [
        list(array.manifest.items()) if raw is not None else []
        for array, raw in zip(arrays, stored, strict=True)
    ]
    chunks = _read_chunks(
        [ref for items in present for _, ref in items if isinstance(ref, ChunkRef)], sources
    )
    return [
        _read_raw(array, raw, items, chunks) if raw is not None else _read_with_zarr(array, sources)
        for array, raw, items in zip(arrays, stored, present, strict=True)
    ]


_GAP_READ_BYTES = 2**16
"""Bytes between two chunks of a file that are read rather than asked for separately."""
_MAX_READ_BYTES = 2**24
"""The largest read that serves several chunks (a longer chunk is read alone)."""


def _read_chunks(refs: Iterable[ChunkRef], sources: Sources) -> dict[ChunkRef, ByteData]:
    """The bytes of each chunk reference; references close together in a file read at once."""
    by_path: dict[str, list[ChunkRef]] = {}
    for ref in refs:
        by_path.setdefault(ref.path, []).append(ref)
    out: dict[ChunkRef, ByteData] = {}
    for path, found in by_path.items():
        ranges = [(ref.offset, ref.offset + ref.length) for ref in found]
        plan = coalesce(ranges, max_gap_bytes=_GAP_READ_BYTES, max_coalesced_bytes=_MAX_READ_BYTES)
        for start, stop, members in plan:
            data = memoryview(sources.read_sync(path, start, stop - start))
            for i in members:
                ref = found[i]
                out[ref] = data[ref.offset - start : ref.offset - start + ref.length]
    return out


def _read_with_zarr(array: ManifestArray, sources: Sources) -> np.ndarray:
    """An array read through zarr-python's codec pipeline."""
    store = ManifestStore(array, storage_options=sources.storage_options)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zarr warns about codecs outside the v3 spec
            reader = zarr.Array(
                zarr.AsyncArray(metadata=array.metadata, store_path=StorePath(store))
            )
            return np.asarray(reader[...])
    finally:
        store.close()


def _raw_dtype(array: ManifestArray) -> np.dtype | None:
    """The dtype chunks are stored in, byte order included, if they are raw bytes; else None."""
    codecs = array.metadata.codecs
    if len(codecs) != 1 or not isinstance(codecs[0], BytesCodec):
        return None
    dtype = array.dtype
    endian = getattr(codecs[0].endian, "value", codecs[0].endian)  # an Enum before zarr 3.4
    if dtype.kind not in "biufcmM" or (endian is None and dtype.itemsize > 1):
        return None
    return dtype.newbyteorder(">" if endian == "big" else "<") if dtype.itemsize > 1 else dtype


def _read_raw(
    array: ManifestArray,
    stored: np.dtype,
    present: Iterable[tuple[ChunkCoords, ChunkRef | bytes]],
    chunks: Mapping[ChunkRef, ByteData],
) -> np.ndarray:
    """An array whose chunks (``present``, their bytes read into ``chunks``) are raw bytes:
    each reinterpreted in place, edges cropped."""
    out = np.full(array.shape, array.fill_value, dtype=array.dtype)
    starts = [list(itertools.accumulate(sizes, initial=0)) for sizes in array.chunk_sizes]
    for coords, chunk in present:
        shape = tuple(sizes[c] for sizes, c in zip(array.chunk_sizes, coords, strict=True))
        data = chunk if isinstance(chunk, bytes) else chunks[chunk]
        expected = math.prod(shape) * stored.itemsize
        if len(data) != expected:
            raise UnsupportedDatasetError(
                f"chunk {coords} of an array read from {_where(array)} holds {len(data)} bytes, "
                f"not the {expected} its shape {shape} needs"
            )
        block = np.frombuffer(data, dtype=stored).reshape(shape)
        region = tuple(
            slice(s[c], min(s[c] + n, extent))
            for s, c, n, extent in zip(starts, coords, shape, array.shape, strict=True)
        )
        out[region] = block[tuple(slice(0, r.stop - r.start) for r in region)]
    return out


def _where(array: ManifestArray) -> str:
    paths = array.manifest.paths
    return paths[0] if len(paths) == 1 else f"{len(paths)} files"


# ---------------------------------------------------------------------- Dataset -> ManifestGroup


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
        if _is_virtual(var):
            arrays[name] = _stored_virtual(name, var)
        else:
            loaded[name] = var
    arrays.update(_inline_arrays(loaded))
    order = {name: i for i, name in enumerate(variables)}
    arrays = dict(sorted(arrays.items(), key=lambda item: order[item[0]]))
    return ManifestGroup(arrays=arrays, attributes=_json_attributes(attrs))


def _stored_virtual(name: str, var: xr.Variable) -> ManifestArray:
    array: ManifestArray = var._data
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


# ---------------------------------------------------------------------- the accessor


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
        if storage_options is None:
            storage_options = self._ds.encoding.get(STORAGE_OPTIONS_KEY)
        return ManifestStore(
            self.to_group(), storage_options=storage_options, allow=allow, **store_options
        )

    def to_zarr(self, url: str | os.PathLike[str], **writer_options: Any) -> None:
        """Write the dataset as a chunk-manifest document at ``url`` (see ``zms.write_manifest``).

        Loaded variables are stored inline, so the document needs only the
        source files of the virtual variables.

        >>> ds = zms.open_virtual_dataset("data/era_2026-01-02.nc")
        >>> ds.virtualize.to_zarr("day2-virtual.zarr", mode="w", encoding="columnar")
        >>> xr.open_dataset("day2-virtual.zarr", engine="zarr_manifest", allow=["data/"]).t2m.shape
        (24, 73, 144)
        """
        from zarr_manifest_store.document import write_manifest

        write_manifest(self.to_group(), url, **writer_options)

    def to_kerchunk(
        self,
        url: str | os.PathLike[str] | None = None,
        *,
        format: Literal["json", "parquet"] | None = None,
        **options: Any,
    ) -> dict[str, Any] | None:
        """Export kerchunk references: a dict when ``url`` is None, else JSON or parquet written there.

        >>> ds = zms.open_virtual_dataset("data/era_2026-01-01.nc")
        >>> ds.virtualize.to_kerchunk()["version"]
        1
        >>> ds.virtualize.to_kerchunk("day1-virtual.json")
        """
        from zarr_manifest_store.writers.kerchunk import to_kerchunk

        return to_kerchunk(self.to_group(), url, format=format, **options)

    @property
    def nbytes(self) -> int:
        """Memory the dataset holds: its manifests plus its loaded variables (not the data referenced)."""
        return sum(
            var._data.manifest.nbytes if _is_virtual(var) else var.nbytes
            for var in self._ds.variables.values()
        )

    @property
    def nrefs(self) -> int:
        """How many chunk references into source files the virtual variables hold.

        >>> zms.open_virtual_dataset("data/era_2026-01-01.nc").virtualize.nrefs
        8
        """
        return sum(
            int(np.count_nonzero(var._data.manifest.path_index < INLINE))
            for var in self._ds.variables.values()
            if _is_virtual(var)
        )

    def rename_paths(self, rename: Mapping[str, str] | Callable[[str], str]) -> xr.Dataset:
        """A copy whose chunk references point to renamed source paths (a dict or a function).

        Each source's fingerprint (size, and mtime or ETag) moves with it, so
        reading a copy checks that it is the same file: copy with its
        modification time kept (``cp -p``), or read with ``verify="never"``.

        >>> ds = zms.open_virtual_dataset("data/era_2026-01-01.nc")
        >>> moved = ds.virtualize.rename_paths(lambda p: "s3://bucket/era5/" + p.rsplit("/", 1)[-1])
        >>> moved.t2m.data.manifest.paths
        ('s3://bucket/era5/era_2026-01-01.nc',)
        """
        replaced = {
            name: var.copy(
                deep=False, data=var._data.with_manifest(var._data.manifest.rename_paths(rename))
            )
            for name, var in self._ds.variables.items()
            if _is_virtual(var)
        }
        return _with_variables(self._ds, replaced)


# ---------------------------------------------------------------------- the backend engine


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
