"""``zarr-manifest``: scan archival files into a chunk-manifest document, inspect, verify, export.

::

    zarr-manifest scan 'data/*.nc' -o era5.zarr     # many files -> one document
    zarr-manifest info era5.zarr                    # what it holds (never reads the sources)
    zarr-manifest verify era5.zarr --allow /data/   # are the sources still as scanned?
    zarr-manifest to-kerchunk era5.zarr refs.json   # kerchunk references, for fsspec
    zarr-manifest demo                              # what `make demo` runs

Exit status: 0 on success; 1 when ``verify`` finds a source changed, missing
or unreadable; 2 for an error, reported as one line on stderr (``--debug``
shows the traceback), and for a command line argparse rejects.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import glob
import json
import os
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TextIO

import fsspec
import numpy as np

from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.document.location import Location
from zarr_manifest_store.group import ManifestGroup
from zarr_manifest_store.io.paths import in_scheme_of, is_plain_path, options_for
from zarr_manifest_store.store import ManifestStore
from zarr_manifest_store.summary import (
    ArraySummary,
    DocumentSummary,
    arrays_of,
    groups_of,
    summarize,
)

__all__ = ["main", "make_parser"]

PROG = "zarr-manifest"
EXIT_OK, EXIT_PROBLEMS, EXIT_ERROR = 0, 1, 2


# ---------------------------------------------------------------------- entry point


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``zarr-manifest`` command line with ``argv`` (default: ``sys.argv[1:]``).

    Returns the exit status; errors are printed as one line on stderr.

    >>> import zarr_manifest_store as zms
    >>> zms.write_manifest(zms.scan("data/era_2026-01-01.nc"), "cli-day1.zarr", mode="w")
    >>> main(["to-kerchunk", "cli-day1.zarr", "cli-day1.json"])
    wrote cli-day1.zarr as kerchunk references (json): cli-day1.json, 5 arrays, 11 references
    0
    """
    parser = make_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return EXIT_ERROR
    try:
        return args.run(args)
    except BrokenPipeError:  # the reader went away (``| head``): stop quietly, as shell tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        if args.debug:
            traceback.print_exc()
        print(f"{PROG}: error: {error_line(e)}", file=sys.stderr)
        return EXIT_ERROR


_OPTIONS_FOR_ARGUMENTS = (
    ("allow=[", "--allow PREFIX"),
    ("mode='w'", "--overwrite"),
    ("edge_chunks='inline'", "--edge-chunks inline"),
    ("on_unsupported='skip'", "--on-unsupported skip"),
    ("drop_variables=", "--drop VAR"),
)
"""Python arguments that error messages suggest, and the options that set them here."""


def error_line(error: BaseException) -> str:
    """An exception as one readable line: its message, its notes, and a hint for unexpected types.

    >>> error_line(FileNotFoundError(2, "source file '/data/f1.nc' not found"))
    "source file '/data/f1.nc' not found"
    >>> error_line(ValueError("2 chunks are ragged; pass edge_chunks='inline' to store them inline"))
    "2 chunks are ragged; pass edge_chunks='inline' to store them inline (on the command line: --edge-chunks inline)"
    >>> error_line(KeyError("t2m"))
    "KeyError: 't2m' (run with --debug for the traceback)"
    """
    if isinstance(error, OSError) and error.strerror:
        text = error.strerror + (f": {error.filename}" if error.filename else "")
    else:
        text = str(error)
    lines = [
        line.strip()
        for part in (text, *getattr(error, "__notes__", ()))
        for line in str(part).splitlines()
    ]
    joined = ""
    for line in filter(None, lines):
        joined += line if not joined else (" " if joined.endswith(":") else "; ") + line
    if hints := [option for argument, option in _OPTIONS_FOR_ARGUMENTS if argument in joined]:
        joined += f" (on the command line: {', '.join(hints)})"
    if not isinstance(error, OSError | ValueError | TypeError):
        joined = f"{type(error).__name__}: {joined} (run with --debug for the traceback)"
    return joined or type(error).__name__


# ---------------------------------------------------------------------- commands


def _scan(args: argparse.Namespace) -> int:
    """``scan``: many files, combined as xr.open_mfdataset would, written as one document."""
    from zarr_manifest_store.document import write_manifest
    from zarr_manifest_store.xarray import open_virtual_mfdataset

    started = time.perf_counter()
    storage_options = _storage_options(args)
    if not args.overwrite and Location(args.output, storage_options).exists("zarr.json"):
        raise FileExistsError(
            f"a chunk-manifest document already exists at {args.output}; pass --overwrite to replace it"
        )
    paths = _expand(args.paths, storage_options)
    progress = Progress(len(paths), "scanning", sys.stderr)
    executor, close = _executor(args.jobs, args.dask_scheduler, progress.advance)
    try:
        ds = open_virtual_mfdataset(
            paths,
            combine=args.combine,
            concat_dim=args.concat_dim,
            parallel=executor,
            drop_variables=args.drop or None,
            group=args.group,
            edge_chunks=args.edge_chunks,
            storage_options=storage_options,
            scan_options={"on_unsupported": args.on_unsupported},
        )
    finally:
        close()
        progress.close()
    group = ds.virtualize.to_group()
    write_manifest(
        group,
        args.output,
        encoding=args.encoding,
        mode="w" if args.overwrite else "w-",
        storage_options=storage_options,
    )
    s = summarize(group)
    print(
        f"scanned {_count(len(paths), 'file')} into {args.output}: {_count(s.arrays, 'array')}, "
        f"{_count(s.references, 'reference')}, {format_bytes(s.bytes_referenced)} referenced, "
        f"in {time.perf_counter() - started:.2f} s"
    )
    return EXIT_OK


def _info(args: argparse.Namespace) -> int:
    """``info``: the hierarchy, array by array; reads the metadata and manifests, never the sources."""
    root = _open(args).root
    if args.json:
        json.dump(_describe(args.document, root), sys.stdout, indent=2)
        print()
    else:
        sys.stdout.write(_render(args.document, root))
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
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
    verdict = "all as scanned" if not problems else _count(len(problems), "problem")
    print(f"{_count(len(report.sources), 'source')} checked ({detail or 'none'}): {verdict}")
    return EXIT_OK if not problems else EXIT_PROBLEMS


def _to_kerchunk(args: argparse.Namespace) -> int:
    """``to-kerchunk``: the document as kerchunk references, JSON or parquet."""
    from zarr_manifest_store.kerchunk import to_kerchunk

    storage_options = _storage_options(args)
    fs, path = fsspec.core.url_to_fs(args.output, **options_for(args.output, storage_options))
    if not args.overwrite and fs.exists(path):
        raise FileExistsError(f"{args.output} already exists; pass --overwrite to replace it")
    store = _open(args)
    fmt = args.format or (
        "parquet" if args.output.rstrip("/").endswith((".parq", ".parquet")) else "json"
    )
    to_kerchunk(store, args.output, format=fmt, storage_options=storage_options)
    s = summarize(store.root)
    print(
        f"wrote {args.document} as kerchunk references ({fmt}): {args.output}, "
        f"{_count(s.arrays, 'array')}, {_count(s.references, 'reference')}"
    )
    return EXIT_OK


def _demo(args: argparse.Namespace) -> int:
    """``demo``: a sample archive scanned, stored, reopened and timed (see ``zarr_manifest_store.demo``)."""
    from zarr_manifest_store.demo import run

    run(files=args.files, keep=args.keep)
    return EXIT_OK


# ---------------------------------------------------------------------- the parser


def make_parser() -> argparse.ArgumentParser:
    """The ``zarr-manifest`` argument parser (``main`` runs it; the docs print its help)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the traceback of an error",
    )
    remote = argparse.ArgumentParser(add_help=False)
    group = remote.add_argument_group("remote files")
    group.add_argument(
        "-S",
        "--storage-option",
        metavar="KEY=VALUE",
        action="append",
        default=[],
        type=_key_value,
        help="an fsspec option for remote URLs (repeatable); dotted keys nest "
        "(client_kwargs.endpoint_url=...), VALUE is read as JSON when it parses (true, 3)",
    )
    group.add_argument(
        "--storage-options",
        metavar="JSON",
        type=_json_object,
        help="all fsspec options as a JSON object, or @FILE holding one; a mapping from URL "
        "prefix to options gives each bucket its own (-S options are added to it)",
    )
    document = argparse.ArgumentParser(add_help=False, parents=[remote])
    document.add_argument(
        "document", metavar="DOC", help="a chunk-manifest document (folder or URL)"
    )
    document.add_argument(
        "--allow",
        metavar="PREFIX",
        action="append",
        default=[],
        help="a folder or URL prefix the document's absolute source paths may point into "
        "(repeatable); its own folder is always allowed",
    )

    parser = argparse.ArgumentParser(
        prog=PROG,
        description="Read archival HDF5 / netCDF files as Zarr v3 through chunk manifests, "
        "without copying a byte.",
        epilog="Exit status: 0 success, 1 verify found a problem, 2 error. "
        "'zarr-manifest COMMAND --help' describes a command.",
        parents=[common],
    )
    parser.set_defaults(debug=False)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    scan = commands.add_parser(
        "scan",
        parents=[common, remote],
        help="scan files (globs allowed) into one chunk-manifest document",
        description="Scan HDF5 / netCDF4, netCDF3 files or kerchunk references, combine them as "
        "xr.open_mfdataset would, and write one chunk-manifest document. Nothing is copied: "
        "the document records where every chunk's bytes lie in the original files.",
    )
    scan.add_argument(
        "paths",
        nargs="+",
        metavar="PATH_OR_GLOB",
        help="files, local or fsspec URLs; quote globs for remote URLs",
    )
    scan.add_argument(
        "-o", "--output", required=True, metavar="OUT", help="the document to write (folder or URL)"
    )
    scan.add_argument(
        "--combine",
        choices=["by_coords", "nested"],
        default="by_coords",
        help="how to combine the files, as in xr.open_mfdataset (default: by_coords)",
    )
    scan.add_argument(
        "--concat-dim",
        metavar="DIM",
        help="with --combine nested: the dimension to concatenate along (new or existing)",
    )
    scan.add_argument(
        "-j",
        "--jobs",
        type=_positive,
        default=1,
        metavar="N",
        help="scan N files at a time, in threads: for remote files, whose scans wait on requests (default: 1)",
    )
    scan.add_argument(
        "--dask-scheduler",
        metavar="ADDRESS",
        help="scan on a dask.distributed cluster (e.g. tcp://scheduler:8786) instead",
    )
    scan.add_argument(
        "--drop", nargs="+", action="extend", metavar="VAR", help="variables to leave out"
    )
    scan.add_argument(
        "--group", metavar="PATH", help="scan this group of each file instead of the root"
    )
    scan.add_argument(
        "--encoding",
        choices=["auto", "json", "columnar"],
        default="auto",
        help="how manifests are stored: json (readable), columnar (compact, for millions of chunks) or auto, by size (default)",
    )
    scan.add_argument(
        "--edge-chunks",
        choices=["refuse", "inline"],
        default="refuse",
        help="files whose length is not a multiple of the chunk size: refuse, or read and store those edge chunks inline",
    )
    scan.add_argument(
        "--on-unsupported",
        choices=["raise", "skip"],
        default="raise",
        help="a variable that cannot be described exactly: fail (default), or leave it out with a warning",
    )
    scan.add_argument(
        "--overwrite", action="store_true", help="replace an existing document at OUT"
    )
    scan.set_defaults(run=_scan)

    info = commands.add_parser(
        "info",
        parents=[common, document],
        help="show the groups and arrays of a document",
        description="Show the hierarchy of a document: each array's shape, dtype, chunks, codecs, "
        "chunk references, sources, referenced bytes and missing chunks. Reads the document's "
        "metadata and manifests, never the source files.",
    )
    info.add_argument("--json", action="store_true", help="print the description as JSON")
    info.set_defaults(run=_info)

    verify = commands.add_parser(
        "verify",
        parents=[common, document],
        help="check every source file against its recorded fingerprint",
        description="Check that every source file of a document exists, may be read, and matches "
        "the size and modification time (or ETag) recorded when it was scanned. Prints one line "
        "per changed, missing or unreadable source and exits with status 1 if there is any.",
    )
    verify.set_defaults(run=_verify)

    kerchunk = commands.add_parser(
        "to-kerchunk",
        parents=[common, document],
        help="export a document as kerchunk references",
        description="Export a document as kerchunk references (spec version 1, Zarr v2 metadata), "
        "readable by fsspec's ReferenceFileSystem.",
    )
    kerchunk.add_argument(
        "output", metavar="OUT", help="the references to write: a .json file, or a .parq folder"
    )
    kerchunk.add_argument(
        "--format",
        choices=["json", "parquet"],
        help="default: parquet for OUT ending in .parq / .parquet, else json",
    )
    kerchunk.add_argument(
        "--overwrite", action="store_true", help="replace OUT if it exists (a file or a folder)"
    )
    kerchunk.set_defaults(run=_to_kerchunk)

    demo = commands.add_parser(
        "demo",
        parents=[common],
        help="scan a generated sample archive and time opening it (what `make demo` runs)",
        description="Write a sample archive of daily compressed netCDF4 files into a temporary "
        "folder, scan and combine it into a chunk-manifest document, reopen that with xarray, and "
        "compare the time xr.open_mfdataset takes to open the files with the time opening the "
        "document takes.",
    )
    demo.add_argument(
        "--files",
        type=_positive,
        default=30,
        metavar="N",
        help="daily files to write (default: 30)",
    )
    demo.add_argument(
        "--keep",
        metavar="DIR",
        help="write the archive and the document into DIR (kept) instead of a temporary folder",
    )
    demo.set_defaults(run=_demo)
    return parser


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("zarr-manifest-store")
    except PackageNotFoundError:
        return "unknown"


def _positive(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _key_value(text: str) -> tuple[list[str], Any]:
    key, sep, value = text.partition("=")
    if not sep or not key or "" in key.split("."):
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value
    return key.split("."), parsed


def _json_object(text: str) -> dict[str, Any]:
    source = text
    if text.startswith("@"):
        try:
            with open(text[1:], encoding="utf-8") as f:
                source = f.read()
        except OSError as e:
            raise argparse.ArgumentTypeError(f"cannot read {text[1:]!r}: {e.strerror}") from None
    try:
        value = json.loads(source)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"not valid JSON ({e})") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"expected a JSON object, got {type(value).__name__}")
    return value


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
        else:
            fs, _ = fsspec.core.url_to_fs(pattern, **options_for(pattern, storage_options))
            found = sorted(in_scheme_of(pattern, fs.unstrip_protocol(p)) for p in fs.glob(pattern))
        if not found:
            raise FileNotFoundError(f"no files match {pattern!r}")
        paths.extend(found)
    return paths


def _executor(
    jobs: int, scheduler: str | None, on_done: Callable[[], None]
) -> tuple[concurrent.futures.Executor, Callable[[], None]]:
    """The executor files are scanned on, reporting each finished file; and how to shut it down."""
    if scheduler:
        from distributed import Client

        client = Client(scheduler)
        return _Reporting(client.get_executor(), on_done), client.close
    # Threads, not processes: a command starts afresh, and worker processes take seconds to
    # start (each imports xarray and the scanners); threads overlap remote files' requests.
    threads = concurrent.futures.ThreadPoolExecutor(jobs)
    return _Reporting(threads, on_done), threads.shutdown


class _Reporting(concurrent.futures.Executor):
    """Submits to another executor and calls ``on_done`` as each task finishes."""

    def __init__(self, inner: Any, on_done: Callable[[], None]) -> None:
        self._inner = inner
        self._on_done = on_done

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        future = self._inner.submit(fn, *args, **kwargs)
        future.add_done_callback(lambda _: self._on_done())
        return future


class Progress:
    """A one-line progress bar over ``total`` items on ``stream``, drawn only on a terminal.

    >>> import io
    >>> p = Progress(3, "scanning", io.StringIO())  # not a terminal: draws nothing
    >>> p.advance(); p.close(); p.done
    1
    """

    WIDTH = 30

    def __init__(self, total: int, label: str, stream: TextIO) -> None:
        self.total = total
        self.label = label
        self.stream = stream
        self.done = 0
        self.enabled = total > 1 and stream.isatty()
        self._started = time.perf_counter()
        self._drawn = 0.0
        self._lock = threading.Lock()
        self._draw(force=True)

    def advance(self) -> None:
        with self._lock:
            self.done += 1
            self._draw(force=self.done == self.total)

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()

    def _draw(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not self.enabled or (not force and now - self._drawn < 0.1):
            return
        self._drawn = now
        filled = self.WIDTH * self.done // max(self.total, 1)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        self.stream.write(
            f"\r{self.label} [{bar}] {self.done}/{self.total} files {now - self._started:.1f} s"
        )
        self.stream.flush()


# ---------------------------------------------------------------------- describing a hierarchy


def _describe(name: str, root: ManifestGroup | ManifestArray) -> dict[str, Any]:
    """``info --json``: the document's groups and arrays, and totals."""
    summaries = {p: ArraySummary.of(a) for p, a in arrays_of(root)}
    arrays = []
    for path, array in arrays_of(root):
        s = summaries[path]
        names = array.dimension_names
        arrays.append(
            {
                "path": path,
                "shape": list(array.shape),
                "dtype": str(array.dtype),
                "dimension_names": None if names is None else list(names),
                "chunk_grid": array.metadata.chunk_grid.to_dict(),
                "codecs": [c.to_dict() for c in array.metadata.codecs],
                "chunks": s.chunks,
                "references": s.references,
                "inline": s.inline,
                "missing": s.missing,
                "sources": len(s.sources),
                "bytes_referenced": s.bytes_referenced,
                "bytes_inline": s.bytes_inline,
            }
        )
    groups = [{"path": p, "attributes": len(g.attributes)} for p, g in groups_of(root)]
    totals = vars(DocumentSummary.of(root, summaries))
    return {"document": name, "groups": groups, "arrays": arrays, "totals": totals}


def _render(name: str, root: ManifestGroup | ManifestArray) -> str:
    """``info``: the hierarchy as a tree, two detail lines under each array, totals last."""
    summaries = {p: ArraySummary.of(a) for p, a in arrays_of(root)}
    lines = [f"{name}: chunk-manifest document"]
    if isinstance(root, ManifestArray):
        lines += _array_lines("/ (root array)", root, summaries[""], "    ")
    else:
        lines.append(f"/ ({_count(len(root.attributes), 'attribute')})")
        lines += _tree(root, "", "", summaries)
    t = DocumentSummary.of(root, summaries)
    where = f" in {_count(t.groups + 1, 'group')}" if t.groups else ""
    missing = (
        f"{t.missing:,} missing ({_percent(t.missing, t.chunks)})" if t.missing else "none missing"
    )
    lines.append(
        f"total: {_count(t.arrays, 'array')}{where}, {_count(t.chunks, 'chunk')}: "
        f"{_count(t.references, 'reference')} to {_count(t.sources, 'source file')} "
        f"({format_bytes(t.bytes_referenced)}), {t.inline:,} inline; {missing}"
    )
    return "\n".join(lines) + "\n"


def _tree(
    group: ManifestGroup, prefix: str, indent: str, summaries: Mapping[str, ArraySummary]
) -> Iterator[str]:
    names = list(group)
    for i, name in enumerate(names):
        branch, below = ("└── ", "    ") if i == len(names) - 1 else ("├── ", "│   ")
        node = group[name]
        if isinstance(node, ManifestGroup):
            yield f"{indent}{branch}{name}/ ({_count(len(node.attributes), 'attribute')})"
            yield from _tree(node, f"{prefix}{name}/", indent + below, summaries)
        else:
            summary = summaries[f"{prefix}{name}"]
            yield from _array_lines(
                f"{indent}{branch}{name}", node, summary, indent + below + "    "
            )


def _array_lines(head: str, array: ManifestArray, s: ArraySummary, indent: str) -> list[str]:
    """An array's line (``head``, dtype, dimensions) and two detail lines: chunks and codecs, then where they are."""
    codecs = ", ".join(_codec_text(c.to_dict()) for c in array.metadata.codecs)
    held = []
    if s.references:
        held.append(
            f"{_count(s.references, 'reference')} to {_count(len(s.sources), 'source')} "
            f"({format_bytes(s.bytes_referenced)})"
        )
    if s.inline:
        held.append(f"{s.inline:,} inline ({format_bytes(s.bytes_inline)})")
    missing = "none missing"
    if s.missing:
        fill = _scalar(array.fill_value)
        missing = (
            f"{s.missing:,} missing ({_percent(s.missing, s.chunks)}, read as fill value {fill!r})"
        )
    return [
        f"{head}  {array.dtype} {_dims(array)}",
        f"{indent}chunks {_chunk_text(array)}; codecs {codecs}",
        f"{indent}{_count(s.chunks, 'chunk')}: {', '.join(held) or 'none stored'}; {missing}",
    ]


def _dims(array: ManifestArray) -> str:
    names = array.dimension_names
    if names is None:
        return str(array.shape)
    return "(" + ", ".join(f"{d}: {n}" for d, n in zip(names, array.shape, strict=True)) + ")"


def _chunk_text(array: ManifestArray) -> str:
    grid = array.metadata.chunk_grid.to_dict()
    config = grid["configuration"]  # type: ignore[index]
    if grid["name"] == "regular":  # type: ignore[index]
        shape = tuple(config["chunk_shape"])  # type: ignore[index]
    else:
        shape = tuple(
            sizes[0] if len(set(sizes)) == 1 else f"{min(sizes)}..{max(sizes)}"
            for sizes in (s or (0,) for s in array.chunk_sizes)
        )
        return f"{_tuple(shape)} (rectilinear), grid {_tuple(array.manifest.shape)}"
    return f"{_tuple(shape)}, grid {_tuple(array.manifest.shape)}"


def _tuple(items: Sequence[Any]) -> str:
    return "(" + ", ".join(map(str, items)) + ("," if len(items) == 1 else "") + ")"


def _codec_text(codec: Mapping[str, Any]) -> str:
    """A codec as ``name(key=value, ...)``, nested codec lists by name."""
    name = str(codec.get("name", "?")).removeprefix("numcodecs.")
    config = codec.get("configuration") or {}
    parts = []
    for key, value in config.items():
        if isinstance(value, list) and all(isinstance(v, Mapping) for v in value):
            value = "[" + ", ".join(_codec_text(v) for v in value) + "]"
        parts.append(f"{key}={value}")
    return f"{name}({', '.join(parts)})" if parts else name


def _scalar(value: Any) -> Any:
    """A NumPy scalar as the Python value it holds (so that it prints as ``-1.0``, not ``np.float32(-1.0)``)."""
    return value.item() if isinstance(value, np.generic) else value


def _percent(part: int, whole: int) -> str:
    return f"{100 * part / whole:.1f}%" if whole else "0%"


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _prefix(paths: Sequence[str]) -> str:
    """The folder (or URL prefix) that holds every one of ``paths``."""
    if all(is_plain_path(p) for p in paths):
        return os.path.commonpath([os.path.dirname(p) for p in paths]) + os.sep
    folders = [p[: p.rfind("/") + 1] for p in paths]
    common = folders[0]
    while not all(f.startswith(common) for f in folders):
        common = common[: common.rstrip("/").rfind("/") + 1]
    return common


def format_bytes(n: int) -> str:
    """A byte count in binary units.

    >>> format_bytes(512), format_bytes(3 * 2**20 + 2**19)
    ('512 B', '3.5 MiB')
    """
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if value < 1024 or unit == "TiB":
            return f"{int(value)} B" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


if __name__ == "__main__":
    sys.exit(main())
