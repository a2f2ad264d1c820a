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

The package: :mod:`~zarr_manifest_store.cli.parser` (the options),
:mod:`~zarr_manifest_store.cli.commands` (what each command does),
:mod:`~zarr_manifest_store.cli.render` (what ``info`` prints),
:mod:`~zarr_manifest_store.cli.progress` and :mod:`~zarr_manifest_store.cli.demo`.
``python -m zarr_manifest_store.cli`` runs :func:`main` too.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence

from zarr_manifest_store.cli.commands import COMMANDS
from zarr_manifest_store.cli.parser import EXIT_ERROR, PROG, make_parser

__all__ = ["error_line", "main", "make_parser"]


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
        return COMMANDS[args.command](args)
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
