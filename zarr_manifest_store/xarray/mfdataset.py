"""Many files as one virtual dataset, combined as ``xr.open_mfdataset`` combines files.

Each file is opened as :func:`~zarr_manifest_store.xarray.open.open_virtual_dataset`
opens it — serially, on threads, in worker processes, on any
``concurrent.futures.Executor`` or a ``dask.distributed.Client`` — then
xarray's own ``combine_by_coords`` / ``combine_nested`` join them, and NumPy's
protocol turns that into manifest concatenation.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import glob
import multiprocessing
import os
import warnings
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Sequence
from functools import partial
from typing import Any, Literal

import xarray as xr

try:
    import dask
except ImportError:  # parallel="dask" says how to install it
    dask = None

from zarr_manifest_store.errors import UnsupportedDatasetError
from zarr_manifest_store.io.listing import glob_objects
from zarr_manifest_store.io.paths import in_scheme_of, is_local, source_path
from zarr_manifest_store.io.remote_file import sharing
from zarr_manifest_store.io.sources import Sources
from zarr_manifest_store.ops import EdgeChunks
from zarr_manifest_store.ops import edge_chunks as edge_chunk_handling
from zarr_manifest_store.xarray.combine import prepare_for_combining, restore_shared
from zarr_manifest_store.xarray.open import Opener, refuse_virtualizarr_options
from zarr_manifest_store.xarray.virtual import STORAGE_OPTIONS_KEY

__all__ = ["Parallel", "open_virtual_mfdataset"]

type Parallel = (
    bool | Literal["threads", "processes", "dask"] | concurrent.futures.Executor | Any | None
)
"""How to open files in parallel; ``Any`` stands for a ``dask.distributed.Client``."""


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
    ``"processes"``, ``"dask"`` (``dask.delayed`` on dask's current
    scheduler), a ``concurrent.futures.Executor`` or a
    ``dask.distributed.Client``. Without ``parallel``, remote files are opened
    concurrently anyway (up to ``REMOTE_SCANS_AT_ONCE`` at a time, in threads: their
    time goes to waiting for the network), local ones one after another; then ``preprocess`` runs on each and xarray
    combines them (``compat``, ``data_vars``, ``coords``, ``join``,
    ``fill_value`` go to ``xr.combine_by_coords`` / ``xr.combine_nested``,
    with ``xr.open_mfdataset``'s defaults). Virtual variables that xarray
    compares across files are read to decide whether they are equal; ones
    that differ in ``scale_factor``, ``add_offset``, ``_FillValue``,
    ``missing_value``, ``units`` or ``calendar`` are refused. Files whose
    length is not a multiple of a compressed variable's chunk size are refused
    unless ``edge_chunks="inline"``, which reads and inlines those edge chunks.

    ``parallel="processes"`` starts workers for the call and stops them (a
    second or two: each imports xarray, zarr and h5py); to keep workers
    between calls, pass a ``ProcessPoolExecutor`` made with a ``"forkserver"``
    or ``"spawn"`` context (``fork`` would copy zarr's threads half-alive).

    >>> ds = zms.open_virtual_mfdataset("data/*.nc", parallel="threads")
    >>> ds.sizes["time"], ds.virtualize.nrefs
    (72, 24)
    >>> ds.virtualize.to_zarr("all-days.zarr", mode="w")
    """
    _check_choices(combine, concat_dim, errors)
    refuse_virtualizarr_options(xarray_combine_kwargs)
    nested = _expand_paths(paths, storage_options)
    flat = _files_in(nested, paths)
    opener = Opener(
        group=group,
        drop_variables=drop_variables,
        loadable_variables=loadable_variables,
        decode_times=decode_times,
        storage_options=storage_options,
        scan_options=dict(scan_options or {}),
    )
    results = _open_all(opener, flat, parallel, errors, preprocess)
    opened = [(path, ds) for path, ds in zip(flat, results, strict=True) if ds is not None]
    concat_dims = _concat_dims(concat_dim) if combine == "nested" else None
    prepared, shared = prepare_for_combining(
        opened, concat_dims, xarray_combine_kwargs, storage_options
    )
    datasets: list[Any] = [ds for _, ds in prepared]
    if combine == "nested":
        datasets = _in_place(nested, results, datasets)
        xarray_combine_kwargs = {"concat_dim": concat_dim, **xarray_combine_kwargs}
    join = xr.combine_nested if combine == "nested" else xr.combine_by_coords
    with _explaining_refusals(prepared, edge_chunks, storage_options):
        combined = join(datasets, combine_attrs=combine_attrs, **xarray_combine_kwargs)
    return _finished(restore_shared(combined, shared), attrs_file, prepared, storage_options)


def _finished(
    combined: xr.Dataset,
    attrs_file: str | os.PathLike[str] | None,
    prepared: list[tuple[str, xr.Dataset]],
    storage_options: Mapping[str, Any] | None,
) -> xr.Dataset:
    """The combined dataset with the attributes of ``attrs_file`` (if named) and the storage
    options its files are read with."""
    if attrs_file is not None:
        combined.attrs = _attributes_of(attrs_file, prepared)
    if storage_options:
        combined.encoding[STORAGE_OPTIONS_KEY] = dict(storage_options)
    return combined


def _files_in(nested: Any, paths: Any) -> list[Any]:
    """The files of the (nested) list, in order; refuse an empty one, naming what matched nothing."""
    flat = list(_leaves(nested))
    if not flat:
        raise OSError(f"no files to open: {paths!r} matched nothing")
    return flat


@contextlib.contextmanager
def _explaining_refusals(
    prepared: list[tuple[str, xr.Dataset]],
    edge_chunks: EdgeChunks,
    storage_options: Mapping[str, Any] | None,
) -> Iterator[None]:
    """Around xarray's combine: the edge-chunk handling, and hints that explain its refusals."""
    with (
        _edge_chunks_hint(edge_chunks),
        _partial_variables_hint(prepared),
        edge_chunk_handling(edge_chunks, storage_options=storage_options),
    ):
        yield


def _check_choices(combine: str, concat_dim: Any, errors: str) -> None:
    if combine not in ("by_coords", "nested"):
        raise ValueError(f"combine must be 'by_coords' or 'nested', got {combine!r}")
    if combine == "by_coords" and concat_dim is not None:
        raise ValueError(
            "concat_dim has no effect with combine='by_coords'; to combine along a given "
            "dimension, pass combine='nested' with concat_dim"
        )
    if errors not in ("raise", "warn", "ignore"):
        raise ValueError(f"errors must be 'raise', 'warn' or 'ignore', got {errors!r}")


@contextlib.contextmanager
def _edge_chunks_hint(edge_chunks: EdgeChunks) -> Iterator[None]:
    """Ragged edge chunks refused while combining: the error says how to inline them."""
    try:
        yield
    except UnsupportedDatasetError as e:
        if edge_chunks == "refuse" and "edge_chunks='inline'" in str(e):
            e.add_note(
                "open_virtual_mfdataset(..., edge_chunks='inline') reads those edge chunks "
                "once and stores them inline"
            )
        raise


@contextlib.contextmanager
def _partial_variables_hint(opened: list[tuple[str, xr.Dataset]]) -> Iterator[None]:
    """A variable that only some files hold, which xarray pads, is refused naming those files."""
    try:
        yield
    except IndexError as e:
        holders: dict[Hashable, list[str]] = {}
        for path, ds in opened:
            for name in ds.data_vars:
                holders.setdefault(name, []).append(path)
        partial = {name: paths for name, paths in holders.items() if len(paths) < len(opened)}
        if not partial:
            raise
        name, paths = next(iter(partial.items()))
        lacking = [path for path, _ in opened if path not in paths]
        others = [str(n) for n in partial if n != name]
        raise UnsupportedDatasetError(
            f"variable {name!r} is in {len(paths)} of {len(opened)} files; xarray would fill "
            "it with missing values in the others, which chunk references cannot express "
            f"where a chunk spans files. Files without it: {', '.join(lacking)}. Leave it out "
            f"(drop_variables=[{name!r}]) or combine the files that hold it on their own"
            + (f"; also in only some files: {', '.join(others)}" if others else "")
        ) from e


def _attributes_of(
    attrs_file: str | os.PathLike[str], opened: list[tuple[str, xr.Dataset]]
) -> dict[Hashable, Any]:
    """The attributes of the dataset opened from ``attrs_file``."""
    key = _normalise_path(os.fspath(attrs_file))
    chosen = next((ds for path, ds in opened if path == key), None)
    if chosen is None:
        raise ValueError(f"attrs_file {attrs_file!r} is not one of the opened files")
    return dict(chosen.attrs)


# ---------------------------------------------------------------------- opening the files


def _open_all(
    opener: Opener,
    paths: list[str],
    parallel: Parallel,
    errors: str,
    preprocess: Callable[[xr.Dataset], xr.Dataset] | None,
) -> list[xr.Dataset | None]:
    """Each file opened and preprocessed; None for one that failed (raised, or warned about,
    per ``errors``). Raises ``OSError`` if none opened."""
    opened: list[xr.Dataset | None] = []
    for path, result in zip(paths, _map(opener, paths, parallel), strict=True):
        if isinstance(result, BaseException):
            if errors == "raise":
                raise result
            if errors == "warn":
                warnings.warn(f"could not open {path}: {result}; ignoring it", stacklevel=3)
            result = None
        opened.append(result)
    if all(ds is None for ds in opened):
        raise OSError(f"none of the {len(paths)} file(s) could be opened")
    return [ds if ds is None or preprocess is None else preprocess(ds) for ds in opened]


def _open(opener: Opener, path: str) -> xr.Dataset | Exception:
    """One file opened, or the exception that prevented it (so that ``errors=`` can act on it).

    A remote file's blocks, read to identify and scan it, serve its loaded variables too.
    """
    with sharing():
        scanned = _attempt(path, partial(opener.scan, path))
        if isinstance(scanned, Exception):
            return scanned
        return _attempt(path, partial(opener.dataset, path, scanned))


def _open_in_phases(opener: Opener, paths: list[str]) -> list[xr.Dataset | Exception]:
    """The files opened one after another, local ones all scanned before any becomes a dataset.

    Each phase runs the same code file after file (h5py's, then xarray's),
    which stays in the processor's caches: about 15% faster than opening the
    files one by one. Remote files are opened one by one, each scan's blocks
    serving its loaded variables (and held no longer).
    """
    if not all(is_local(path) for path in paths):
        return [_open(opener, path) for path in paths]
    scanned = [_attempt(path, partial(opener.scan, path)) for path in paths]
    return [
        found
        if isinstance(found, Exception)
        else _attempt(path, partial(opener.dataset, path, found))
        for path, found in zip(paths, scanned, strict=True)
    ]


def _attempt(path: str, step: Callable[[], Any]) -> Any:
    """``step()``, or the exception that prevented it, noted with the file it was opening."""
    try:
        return step()
    except Exception as e:
        e.add_note(f"while opening {path}")
        return e


REMOTE_SCANS_AT_ONCE = 32
"""Remote files opened at once by default: each mostly waits for its few requests."""


def _map(opener: Opener, paths: list[str], parallel: Parallel) -> list[Any]:
    """``opener`` over ``paths``: on the executor ``parallel`` names, or by default local
    files serially (in phases) and remote ones concurrently in threads."""
    distributed = hasattr(parallel, "get_executor") and hasattr(parallel, "gather")
    if not (
        parallel in (None, False, True, "threads", "processes", "dask")
        or isinstance(parallel, concurrent.futures.Executor)
        or distributed
    ):
        raise ValueError(
            "parallel must be None, 'threads', 'processes', 'dask', a concurrent.futures.Executor "
            f"or a dask.distributed.Client, got {parallel!r}"
        )
    if len(paths) == 1 or parallel is False:
        return _open_in_phases(opener, paths)
    if parallel is None:
        if all(is_local(path) for path in paths):
            return _open_in_phases(opener, paths)
        workers = min(REMOTE_SCANS_AT_ONCE, len(paths))
        with concurrent.futures.ThreadPoolExecutor(workers) as pool:
            return list(pool.map(partial(_open, opener), paths))
    if parallel == "dask":
        if dask is None:
            raise ImportError("parallel='dask' needs dask: pip install 'zarr-manifest-store[dask]'")
        return list(dask.compute(*[dask.delayed(_open)(opener, path) for path in paths]))
    if parallel == "processes":
        pool = _process_pool(len(paths))
        try:
            return _map_in_shares(pool, opener, paths)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
    if isinstance(parallel, concurrent.futures.ProcessPoolExecutor):
        return _map_in_shares(parallel, opener, paths)
    if isinstance(parallel, concurrent.futures.Executor):
        return list(parallel.map(partial(_open, opener), paths))
    if distributed:
        return list(parallel.get_executor().map(partial(_open, opener), paths))
    with concurrent.futures.ThreadPoolExecutor() as pool:  # "threads", or True as in xarray
        return list(pool.map(partial(_open, opener), paths))


def _map_in_shares(
    pool: concurrent.futures.ProcessPoolExecutor, opener: Opener, paths: list[str]
) -> list[Any]:
    """The files opened by worker processes, each opening a share of them in phases."""
    size = max(1, len(paths) // (4 * _process_count()))
    shares = [paths[i : i + size] for i in range(0, len(paths), size)]
    return [ds for share in pool.map(partial(_open_in_phases, opener), shares) for ds in share]


def _process_pool(files: int) -> concurrent.futures.ProcessPoolExecutor:
    """Worker processes for one call of ``parallel="processes"``, no more than there are files.

    They are started by a fork server (not ``fork``), since zarr and fsspec
    run event-loop threads that ``fork`` would copy half-alive.
    """
    context = multiprocessing.get_context("forkserver")
    workers = min(_process_count(), files)
    return concurrent.futures.ProcessPoolExecutor(workers, mp_context=context)


def _process_count() -> int:
    return os.cpu_count() or 1


# ---------------------------------------------------------------------- paths


def _expand_paths(paths: Any, storage_options: Mapping[str, Any] | None) -> Any:
    """A glob expanded (sorted), a path normalised, or a (nested) list of paths normalised."""
    if isinstance(paths, str | os.PathLike):
        path = os.fspath(paths)
        if not glob.has_magic(path):
            return [_normalise_path(path)]
        if is_local(path):
            return sorted(os.path.abspath(p) for p in glob.glob(os.path.expanduser(path)))
        listed = glob_objects(path, storage_options)
        if listed is not None:
            return listed
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


def _in_place(nested: Any, results: list[xr.Dataset | None], datasets: list[xr.Dataset]) -> Any:
    """The nested list of paths with the ``datasets`` of the files that opened (``results`` not
    None) in their places."""
    done = iter(datasets)
    return _rebuild(nested, iter([None if ds is None else next(done) for ds in results]))


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
