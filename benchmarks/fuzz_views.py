"""A differential fuzzer: generated files (tests/fuzz_files.py) checked as the real-file corpus is.

For each seed and writer kind, the file is built, scanned with
``on_unsupported="skip"`` and checked by ``benchmarks.real_files.check.check_file``:
every dataset against h5py / scipy (``exact``, ``refused`` with a warning naming it,
``wrong``, ``missing``, ...) and every group's view against ``xr.open_dataset``
(``equal``, ``mismatch``, ``refused``, ``unreadable``). A view that differs from the
first engine but equals another's (netcdf4 for h5netcdf and scipy, and back), or one
corrected as a narrow rule says, is ``engines-differ``: the engines disagree with each
other, and that is not counted against the scan; nor is ``reference-misreads``, where
the reference is at fault (benchmarks/fuzz_verdicts.py has the rules), nor
``reference-crash``, a file netCDF-C crashes the process on while loading the
reference view (the check runs under faulthandler, which names the frame). A problem
is a ``wrong`` / ``missing`` / ``read-error`` / ``file-error`` dataset or a
``mismatch`` view.

    .venv/bin/python benchmarks/fuzz_views.py --seeds 0:2000 [--kinds netcdf4,h5py] [--jobs 2]
"""

from __future__ import annotations

import argparse
import collections
import concurrent.futures
import json
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
import fuzz_files  # noqa: E402
import fuzz_plan  # noqa: E402

from benchmarks.fuzz_verdicts import reclassified  # noqa: E402
from benchmarks.real_files.check import check_file  # noqa: E402

BAD_DATASETS = frozenset({"wrong", "missing", "read-error", "file-error"})


def check_seed(seed: int, kind: str, folder: str | Path) -> dict[str, Any]:
    """Build the file of ``seed`` with ``kind`` in ``folder`` and check it: its features, the
    count of each class, and the problems (each a line naming the object and the reason)."""
    path = Path(folder) / f"{kind}-{seed}.nc"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        features = fuzz_files.build(seed, path, kind)
    result = check_file(str(path))
    counts: collections.Counter[str] = collections.Counter()
    problems = []
    if result["error"]:
        problems.append(f"scan: {result['error']['message']}")
    for record in result["datasets"]:
        counts[f"dataset:{record['class']}"] += 1
        if record["class"] in BAD_DATASETS:
            problems.append(
                f"dataset {record['name']!r}: {record['class']}: {record.get('reason')}"
            )
    for record in reclassified(result, str(path)):
        counts[f"view:{record['class']}"] += 1
        if record["class"] == "mismatch":
            where = f"{record['group']}/{record['variable']}".strip("/")
            problems.append(f"view {where!r} ({record['engine']}): {record['reason']}")
    return {"seed": seed, "kind": kind, "path": str(path), "features": features,
            "counts": dict(counts), "problems": problems}  # fmt: skip


def run(seeds: range, kinds: list[str], out: Any, first_kind: str | None = None) -> None:
    """Check every (seed, kind) in this process, one JSON line each (the first seed from
    ``first_kind`` on)."""
    with tempfile.TemporaryDirectory() as folder:
        for seed in seeds:
            for kind in kinds:
                if (
                    seed == seeds.start
                    and first_kind
                    and kinds.index(kind) < kinds.index(first_kind)
                ):
                    continue
                start = time.perf_counter()
                try:
                    record = check_seed(seed, kind, folder)
                except Exception as e:  # the generator's own failure: reported, not counted
                    record = {"seed": seed, "kind": kind, "features": [], "counts": {},
                              "problems": [f"fuzzer: {type(e).__name__}: {e}"]}  # fmt: skip
                record["seconds"] = round(time.perf_counter() - start, 2)
                out.write(json.dumps(record, default=str) + "\n")
                out.flush()
                if "path" in record:
                    Path(record["path"]).unlink(missing_ok=True)


def summary(records: list[dict]) -> str:
    """Counts per class, files with problems, and each problem's seed and features."""
    counts: collections.Counter[str] = collections.Counter()
    for record in records:
        counts.update(record["counts"])
    bad = [r for r in records if r["problems"]]
    lines = [f"{len(records)} files, {len(bad)} with problems"]
    lines += [f"  {name}: {n}" for name, n in sorted(counts.items())]
    for record in bad:
        lines.append(f"seed {record['seed']} {record['kind']}: features {record['features']}")
        lines += [f"    {p}" for p in record["problems"][:5]]
    return "\n".join(lines)


REFERENCE_CRASH = "xarray/backends/netCDF4_.py"
"""Where the crashing thread's innermost frame is when netCDF-C, the reference, crashes."""


def _crash(seed: int, kind: str, returncode: int, stderr: str) -> dict[str, Any]:
    """The record of a (seed, kind) whose checking process died: not counted against the scan
    when netCDF-C crashed reading the file for the reference view (faulthandler's trace)."""
    current = stderr.partition("Current thread")[2]
    frames = current.split("\n  File ")[1:2]
    if frames and REFERENCE_CRASH in frames[0]:
        counts = {"view:reference-crash": 1}
        return {"seed": seed, "kind": kind, "features": [], "counts": counts, "problems": []}
    problem = f"crash: the checking process died ({returncode}): {current[:600]}"
    return {"seed": seed, "kind": kind, "features": [], "counts": {}, "problems": [problem]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", default="0:200", help="START:STOP")
    parser.add_argument("--kinds", default=",".join(fuzz_plan.KINDS))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--records", help="write the JSON lines here too")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--first-kind", help=argparse.SUPPRESS)
    args = parser.parse_args()
    start, stop = (int(s) for s in args.seeds.split(":"))
    kinds = args.kinds.split(",")
    if args.worker:
        run(range(start, stop), kinds, sys.stdout, args.first_kind)
        return
    lines = _parallel(range(start, stop), args.kinds, args.jobs)
    records = [json.loads(line) for line in lines]
    if args.records:
        Path(args.records).write_text("".join(lines))
    print(summary(records))


def _parallel(seeds: range, kinds: str, jobs: int) -> list[str]:
    """Run the seeds in ``jobs`` worker processes (contiguous slices), gathering their lines.

    A worker that dies (a library crashing the process) is restarted after the file it was
    checking, which is recorded as a ``crash`` problem."""
    step = -(-len(seeds) // jobs)
    slices = [seeds[i : i + step] for i in range(0, len(seeds), step)]
    with concurrent.futures.ThreadPoolExecutor(jobs) as pool:
        parts = pool.map(lambda part: _worker_lines(part, kinds.split(",")), slices)
        return [line for part in parts for line in part]


def _worker_lines(seeds: range, kinds: list[str]) -> list[str]:
    todo = [(seed, kind) for seed in seeds for kind in kinds]
    lines: list[str] = []
    while todo:
        seed, kind = todo[0]
        proc = subprocess.run(
            [sys.executable, "-X", "faulthandler", __file__, "--worker", "--seeds", f"{seed}:{seeds.stop}",
             "--kinds", ",".join(kinds), "--first-kind", kind],
            capture_output=True, text=True,
        )  # fmt: skip
        done = proc.stdout.splitlines(keepends=True)
        lines += done
        todo = todo[len(done) :]
        if proc.returncode and todo:
            seed, kind = todo.pop(0)
            lines.append(json.dumps(_crash(seed, kind, proc.returncode, proc.stderr)) + "\n")
    return lines


if __name__ == "__main__":
    main()
