"""The ``zarr-manifest`` argument parser: its commands, options and help (the docs print it)."""

from __future__ import annotations

import argparse
import datetime
import json
import re
from collections.abc import Callable
from importlib.metadata import PackageNotFoundError, version
from typing import Any

__all__ = ["EXIT_ERROR", "EXIT_OK", "EXIT_PROBLEMS", "PROG", "make_parser"]

PROG = "zarr-manifest"
EXIT_OK, EXIT_PROBLEMS, EXIT_ERROR = 0, 1, 2


def make_parser() -> argparse.ArgumentParser:
    """The ``zarr-manifest`` argument parser; ``args.command`` names the command to run.

    >>> make_parser().parse_args(["info", "era.zarr"]).command
    'info'
    """
    common = _common_options()
    remote = _remote_options()
    document = _document_arguments(remote)
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
    _add_scan(commands.add_parser, common, remote)
    _add_document_commands(commands.add_parser, common, document)
    _add_prune(commands.add_parser, common, remote)
    _add_demo(commands.add_parser, common)
    return parser


type _AddCommand = Callable[..., argparse.ArgumentParser]
"""``add_parser`` of the parser's subcommands: adds a command, returns its parser."""


def _common_options() -> argparse.ArgumentParser:
    """The options every command takes."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--debug",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show the traceback of an error",
    )
    return common


def _remote_options() -> argparse.ArgumentParser:
    """The fsspec options of the commands that read remote files."""
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
    return remote


def _document_arguments(remote: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The document argument (and what reading it needs) of info, verify and to-kerchunk."""
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
    return document


def _add_scan(
    add_command: _AddCommand, common: argparse.ArgumentParser, remote: argparse.ArgumentParser
) -> None:
    """scan: files in, one document out."""
    scan = add_command(
        "scan",
        parents=[common, remote],
        help="scan files (globs allowed) into one chunk-manifest document",
        description="Scan files of any format zms.scan reads (HDF5 / netCDF4, netCDF3, GRIB2, "
        "TIFF / COG, FITS, DMR++ sidecars, Zarr stores, kerchunk references, chunk-manifest "
        "documents), combine them as xr.open_mfdataset would, and write one chunk-manifest "
        "document (or append them to one with --append-to). Nothing is copied: "
        "the document records where every chunk's bytes lie in the original files.",
    )
    scan.add_argument(
        "paths",
        nargs="+",
        metavar="PATH_OR_GLOB",
        help="files, local or fsspec URLs; quote globs for remote URLs",
    )
    target = scan.add_mutually_exclusive_group(required=True)
    target.add_argument(
        "-o", "--output", metavar="OUT", help="the document to write (folder or URL)"
    )
    target.add_argument(
        "--append-to",
        metavar="DOC",
        help="add the files to this existing document along --append-dim instead (a local "
        "folder; checked as a combine checks, nothing written unless they fit)",
    )
    scan.add_argument(
        "--append-dim",
        default="time",
        metavar="DIM",
        help="with --append-to: the dimension the files continue (default: time)",
    )
    scan.add_argument(
        "--on-overlap",
        choices=["raise", "replace"],
        default="raise",
        help="with --append-to: what to do with files whose labels along --append-dim repeat "
        "the document's last ones: refuse them (default), or replace those chunks (the "
        "repeated labels must match the document's exactly)",
    )
    scan.add_argument(
        "--allow",
        action="append",
        default=[],
        metavar="PREFIX",
        help="with --append-to: a folder or URL prefix of the document's sources that checking "
        "the append may read (repeatable); the new files' folders are always allowed",
    )
    _add_combining(scan)
    _add_writing(scan)


def _add_combining(scan: argparse.ArgumentParser) -> None:
    """scan's options of which files and variables are read, and how they are combined."""
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


def _add_writing(scan: argparse.ArgumentParser) -> None:
    """scan's options of what the document holds and whether it replaces one."""
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


def _add_document_commands(
    add_command: _AddCommand, common: argparse.ArgumentParser, document: argparse.ArgumentParser
) -> None:
    """info, verify and to-kerchunk: the commands that read a document."""
    info = add_command(
        "info",
        parents=[common, document],
        help="show the groups and arrays of a document",
        description="Show the hierarchy of a document: each array's shape, dtype, chunks, codecs, "
        "chunk references, sources, referenced bytes and missing chunks. Reads the document's "
        "metadata and manifests, never the source files.",
    )
    info.add_argument("--json", action="store_true", help="print the description as JSON")

    add_command(
        "verify",
        parents=[common, document],
        help="check every source file against its recorded fingerprint",
        description="Check that every source file of a document exists, may be read, and matches "
        "the size and modification time (or ETag) recorded when it was scanned. Prints one line "
        "per changed, missing or unreadable source and exits with status 1 if there is any.",
    )

    kerchunk = add_command(
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


def _add_prune(
    add_command: _AddCommand, common: argparse.ArgumentParser, remote: argparse.ArgumentParser
) -> None:
    """prune-parts: remove the manifest parts a grown document no longer lists."""
    prune = add_command(
        "prune-parts",
        parents=[common, remote],
        help="remove the manifest parts a grown document no longer lists",
        description="Remove the files under each array's parts/ folder that the document's "
        "root metadata does not list (parts replaced by --on-overlap replace, parts of killed "
        "appends), once unlisted for --older-than. Readers that opened the document earlier "
        "than that may lose parts they list. Holds the document's append lock.",
    )
    prune.add_argument("document", metavar="DOC", help="a chunk-manifest document (folder or URL)")
    prune.add_argument(
        "--older-than",
        required=True,
        type=_duration,
        metavar="AGE",
        help="how long a part must have been unlisted: a number and a unit, s, m, h or d "
        "(e.g. 7d); 0s removes every unlisted part",
    )
    prune.add_argument(
        "--dry-run", action="store_true", help="list what would be removed, remove nothing"
    )


def _add_demo(add_command: _AddCommand, common: argparse.ArgumentParser) -> None:
    """demo: what ``make demo`` runs."""
    demo = add_command(
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


def _version() -> str:
    """The installed package's version (``--version``)."""
    try:
        return version("zarr-manifest-store")
    except PackageNotFoundError:
        return "unknown"


def _positive(text: str) -> int:
    """An option's value as a positive integer."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def _duration(text: str) -> datetime.timedelta:
    """``--older-than``: a number and a unit (s, m, h, d) as a duration."""
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text.strip())
    if match is None:
        raise argparse.ArgumentTypeError(
            f"expected a number and a unit, s, m, h or d (e.g. 7d or 12h), got {text!r}"
        )
    unit = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}[match.group(2)]
    return datetime.timedelta(**{unit: float(match.group(1))})


def _key_value(text: str) -> tuple[list[str], Any]:
    """``-S a.b=3``: the dotted key's parts and the value (JSON if it parses, else text)."""
    key, sep, value = text.partition("=")
    if not sep or not key or "" in key.split("."):
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    try:
        parsed = json.loads(value)
    except ValueError:
        parsed = value
    return key.split("."), parsed


def _json_object(text: str) -> dict[str, Any]:
    """``--storage-options``: a JSON object given inline or as ``@FILE``."""
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
