"""The ``zarr-manifest`` commands: each reads its arguments, calls the package, prints a result.

:data:`COMMANDS` maps each command's name to the function that runs it; a
function returns the exit status (see :mod:`zarr_manifest_store.cli.parser`).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import fsspec
import xarray as xr

from zarr_manifest_store.cli.demo import run as run_demo
from zarr_manifest_store.cli.parser import EXIT_OK, EXIT_PROBLEMS
from zarr_manifest_store.cli.progress import Progress, scan_executor
from zarr_manifest_store.cli.render import describe, format_bytes, plural, render
from zarr_manifest_store.document import prune_parts, write_manifest
from zarr_manifest_store.document.location import Location
from zarr_manifest_store.io.listing import glob_objects
from zarr_manifest_store.io.paths import in_scheme_of, is_plain_path, options_for
from zarr_manifest_store.store import ManifestStore
from zarr_manifest_store.summary import summarize
from zarr_manifest_store.writers.kerchunk import to_kerchunk as write_kerchunk
from zarr_manifest_store.xarray import open_virtual_mfdataset

__all__ = ["COMMANDS"]


def scan(args: argparse.Namespace) -> int:
    """``scan``: many files, combined as xr.open_mfdataset would, written as one document."""
    started = time.perf_counter()
    storage_options = _storage_options(args)
    output = args.append_to or args.output
    if args.output and not args.overwrite and Location(output, storage_options).exists("zarr.json"):
        raise FileExistsError(
            f"a chunk-manifest document already exists at {args.output}; pass --overwrite to replace it"
        )
    paths = _expand(args.paths, storage_options)
    ds = _combined(args, paths, storage_options)
    group = ds.virtualize.to_group()
    if args.append_to:
        ds.virtualize.to_zarr(
            output,
            mode="a",
            append_dim=args.append_dim,
            on_overlap=args.on_overlap,
            allow=args.allow,
            storage_options=storage_options,
        )
    else:
        write_manifest(
            group,
            output,
            encoding=args.encoding,
            mode="w" if args.overwrite else "w-",
            storage_options=storage_options,
        )
    s = summarize(group)
    done = (
        f"appended {plural(len(paths), 'file')} to"
        if args.append_to
        else f"scanned {plural(len(paths), 'file')} into"
    )
    print(
        f"{done} {output}: {plural(s.arrays, 'array')}, "
        f"{plural(s.references, 'reference')}, {format_bytes(s.bytes_referenced)} referenced, "
        f"in {time.perf_counter() - started:.2f} s"
    )
    return EXIT_OK


def _combined(
    args: argparse.Namespace, paths: list[str], storage_options: dict[str, Any] | None
) -> xr.Dataset:
    """The files scanned (``--jobs`` at a time, or on ``--dask-scheduler``, their progress on
    stderr) and combined as the options say."""
    progress = Progress(len(paths), "scanning", sys.stderr)
    executor, close = scan_executor(args.jobs, args.dask_scheduler, progress.advance)
    try:
        return open_virtual_mfdataset(
            paths,
            combine=args.combine,
            concat_dim=args.concat_dim,
            parallel=executor,
            drop_variables=args.drop or None,
            group=args.group,
            edge_chunks=args.edge_chunks,
            storage_options=storage_options,
            scan_options={"on_unsupported": args.on_unsupported},
            # xarray's defaults so far, given explicitly: no FutureWarning about their change
            data_vars="all",
            coords="different",
            compat="no_conflicts",
            join="outer",
        )
    finally:
        close()
        progress.close()


def info(args: argparse.Namespace) -> int:
    """``info``: the hierarchy, array by array; reads the metadata and manifests, never the sources."""
    root = _open(args).root
    if args.json:
        json.dump(describe(args.document, root), sys.stdout, indent=2)
        print()
    else:
        sys.stdout.write(render(args.document, root))
    return EXIT_OK


def verify(args: argparse.Namespace) -> int:
    """``verify``: every source against its fingerprint; exit 1 naming each one that fails."""
    report = _open(args).verify()
    problems = report.problems
    for status in problems:
        # the allow-list's own message names the Python argument; the hint below names the option
        detail = "outside the allowed prefixes" if status.status == "forbidden" else status.detail
        print(f"{status.status}: {status.path}: {detail}")
    forbidden = [s.path for s in problems if s.status == "forbidden"]
    if forbidden:
        print(
            f"hint: to check sources outside the document folder, pass --allow {_prefix(forbidden)}"
        )
    counts: dict[str, int] = {}
    for status in report.sources:
        counts[status.status] = counts.get(status.status, 0) + 1
    detail = ", ".join(f"{n} {name}" for name, n in sorted(counts.items()))
    verdict = "all as scanned" if not problems else plural(len(problems), "problem")
    print(f"{plural(len(report.sources), 'source')} checked ({detail or 'none'}): {verdict}")
    return EXIT_OK if not problems else EXIT_PROBLEMS


def to_kerchunk(args: argparse.Namespace) -> int:
    """``to-kerchunk``: the document as kerchunk references, JSON or parquet."""
    storage_options = _storage_options(args)
    fs, path = fsspec.core.url_to_fs(args.output, **options_for(args.output, storage_options))
    if not args.overwrite and fs.exists(path):
        raise FileExistsError(f"{args.output} already exists; pass --overwrite to replace it")
    store = _open(args)
    fmt = args.format or (
        "parquet" if args.output.rstrip("/").endswith((".parq", ".parquet")) else "json"
    )
    write_kerchunk(store, args.output, format=fmt, storage_options=storage_options)
    s = summarize(store.root)
    print(
        f"wrote {args.document} as kerchunk references ({fmt}): {args.output}, "
        f"{plural(s.arrays, 'array')}, {plural(s.references, 'reference')}"
    )
    return EXIT_OK


def prune_parts_command(args: argparse.Namespace) -> int:
    """``prune-parts``: the parts a document no longer lists, removed (or listed)."""
    gone = prune_parts(
        args.document,
        older_than=args.older_than,
        storage_options=_storage_options(args),
        dry_run=args.dry_run,
    )
    for key in gone:
        print(key)
    done = "would remove" if args.dry_run else "removed"
    print(f"{done} {plural(len(gone), 'file')} of parts {args.document} no longer lists")
    return EXIT_OK


def demo(args: argparse.Namespace) -> int:
    """``demo``: a sample archive scanned, stored, reopened and timed (see :mod:`zarr_manifest_store.cli.demo`)."""
    run_demo(files=args.files, keep=args.keep)
    return EXIT_OK


COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "scan": scan,
    "info": info,
    "verify": verify,
    "to-kerchunk": to_kerchunk,
    "prune-parts": prune_parts_command,
    "demo": demo,
}
"""The function that runs each command, by the name the parser gives it."""


# ---------------------------------------------------------------------- shared steps


def _storage_options(args: argparse.Namespace) -> dict[str, Any] | None:
    """The fsspec options of ``--storage-options`` with each ``-S KEY=VALUE`` set in them."""
    options: dict[str, Any] = dict(args.storage_options or {})
    for keys, value in args.storage_option:
        target = options
        for key in keys[:-1]:
            target = target.setdefault(key, {})
            if not isinstance(target, dict):
                raise ValueError(f"-S {'.'.join(keys)}=...: {key!r} is already set to a value")
        target[keys[-1]] = value
    return options or None


def _open(args: argparse.Namespace) -> ManifestStore:
    """The document the command names, with the allowed prefixes and options it gives."""
    return ManifestStore.open(
        args.document, allow=args.allow or None, storage_options=_storage_options(args)
    )


def _expand(patterns: Sequence[str], storage_options: Mapping[str, Any] | None) -> list[str]:
    """Every file the arguments name, each glob expanded (sorted) in argument order."""
    paths: list[str] = []
    for pattern in patterns:
        if not glob.has_magic(pattern):
            paths.append(pattern)
            continue
        if is_plain_path(pattern):
            found = sorted(glob.glob(os.path.expanduser(pattern)))
        elif (found := glob_objects(pattern, storage_options)) is None:
            fs, _ = fsspec.core.url_to_fs(pattern, **options_for(pattern, storage_options))
            found = sorted(in_scheme_of(pattern, fs.unstrip_protocol(p)) for p in fs.glob(pattern))
        if not found:
            raise FileNotFoundError(f"no files match {pattern!r}")
        paths.extend(found)
    return paths


def _prefix(paths: Sequence[str]) -> str:
    """The folder (or URL prefix) that holds every one of ``paths``."""
    if all(is_plain_path(p) for p in paths):
        return os.path.commonpath([os.path.dirname(p) for p in paths]) + os.sep
    folders = [p[: p.rfind("/") + 1] for p in paths]
    common = folders[0]
    while not all(f.startswith(common) for f in folders):
        common = common[: common.rstrip("/").rfind("/") + 1]
    return common
