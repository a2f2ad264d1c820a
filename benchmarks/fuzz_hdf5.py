"""A differential fuzzer of the HDF5 scan against h5py (issue #18): random files, every dataset
checked.

Each seed writes one file with ``tests/h5fuzz_files.build`` (random storage
layouts, chunk indexes, filters, fill and allocation settings, types, links,
file-level variants) and checks it as the real-file corpus does:

- scanned with ``on_unsupported="skip"``, served by ``ManifestStore`` and
  opened with zarr, every dataset reached by a hard or soft link must read
  exactly as h5py reads it (``exact``), or be left out with a warning naming
  it (``refused``). A warning that names only a group above it
  (``refused-group``), no array and no warning (``missing``), different values
  (``wrong``), an array that fails to read (``read-error``) are failures, as
  is a scan that fails as a whole (``file-error``);
- links the scan cannot follow (external, dangling) must be named by a warning;
- scanned with ``on_unsupported="raise"``, it must raise
  ``UnsupportedDatasetError`` naming every object the first scan refused,
  and nothing when it refused none (anything else: ``raise-mismatch``).

Datasets h5py itself cannot read are ``unreadable`` (not counted against the
scan). Runs seeds in worker processes (a crash or a timeout is recorded
against its seed) and prints a summary; ``--out`` keeps every file's record
as a JSON line, and ``--keep DIR`` the files of failing seeds.

    .venv/bin/python benchmarks/fuzz_hdf5.py --seeds 0:3000 [--workers 2] [--out f.jsonl]
"""

from __future__ import annotations

import argparse
import ast
import collections
import contextlib
import importlib
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import zarr

import zarr_manifest_store as zms

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
datasets = importlib.import_module("benchmarks.real_files.datasets")

FAILURES = frozenset(
    {
        "wrong",
        "missing",
        "read-error",
        "refused-group",
        "file-error",
        "raise-mismatch",
        "crash",
        "timeout",
        "link-unnamed",
        "checker-error",
    }
)
"""Classes that are bugs of the scan (or of the checker). A file h5py or HDF5 fails to write
(``build-error``, ``build-crash``: writer bugs of random combinations) is counted, no more;
so is a dataset h5py itself reads differently each time (``h5py-unstable``, a refusal that
comes and goes: ``refusal-unstable``), which no scan can match."""
LEFT_OUT = re.compile(r"left out dataset ('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\"): ", re.S)
"""The name a refusal warning gives, as Python writes it (``repr``: backslashes doubled)."""
SEED_TIMEOUT = 120


def links(path: Path) -> tuple[list[str], list[str]]:
    """(datasets, unfollowable links): the paths of every dataset reached by hard or soft links
    (each name, not each object once, as the scan names them), and of external and dangling links."""
    found: list[str] = []
    unfollowable: list[str] = []
    with h5py.File(path, "r") as f:
        _visit(f, "", found, unfollowable, [])
    return found, unfollowable


def _visit(group: h5py.Group, prefix: str, found: list, unfollowable: list, open_: list) -> None:
    open_.append(group.id)
    for name in group:
        path = f"{prefix}{name}"
        link = group.get(name, getlink=True)
        if isinstance(link, h5py.ExternalLink):
            unfollowable.append(path)
            continue
        try:
            obj = group.get(name)
        except (KeyError, RuntimeError):
            obj = None
        if obj is None:
            unfollowable.append(path)
        elif isinstance(obj, h5py.Dataset):
            found.append(path)
        elif isinstance(obj, h5py.Group) and not any(obj.id == g for g in open_):
            _visit(obj, f"{path}/", found, unfollowable, open_)
    open_.pop()


def check(path: Path) -> dict[str, Any]:
    """Every dataset and link of the file at ``path``, classified (see the module docstring)."""
    result: dict[str, Any] = {"records": [], "times": {}}
    start = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            group = zms.scan(str(path), on_unsupported="skip")
        except Exception as e:
            group = None
            result["records"].append({"name": "", "class": "file-error", "reason": _line(e)})
    result["times"]["scan"] = time.perf_counter() - start
    messages = [
        str(w.message)
        for w in caught
        if not w.category.__module__.startswith(("zarr", "numcodecs"))
    ]
    refused = {ast.literal_eval(m.group(1)) for text in messages if (m := LEFT_OUT.search(text))}
    result["refused"] = {n: _reason(n, messages) for n in sorted(refused)}
    if group is None:
        return result
    names, unfollowable = links(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        root = zarr.open_group(zms.ManifestStore(group), mode="r")
        datasets.register_filters()
        with h5py.File(path, "r") as f:
            for name in names:
                result["records"].append(_dataset(name, f[name], root, messages, refused))
    for name in unfollowable:
        named = name in refused
        result["records"].append(
            {"name": name, "class": "link-refused" if named else "link-unnamed"}
        )
    result["records"].append(_raise_check(path, refused))
    return result


def _dataset(name: str, ds: h5py.Dataset, root: zarr.Group, messages: list, refused: set) -> dict:
    if datasets._dimension_only(ds):
        return {"name": name, "class": "not-a-variable"}
    node = datasets._get(root, datasets.zarr_path(name))
    try:
        expected = datasets._read_h5py(ds)
    except Exception as e:
        described = "described" if node is not None else "refused" if name in refused else "absent"
        return {"name": name, "class": "unreadable", "reason": f"{_line(e)} (scan: {described})"}
    expected = datasets._netcdf_padded(ds, expected, node)
    record = {"name": name, **datasets.classify(name, expected, root, messages, "", node)}
    if record["class"] in ("refused", "missing") and name in refused:
        record = {"name": name, "class": "refused", "reason": _reason(name, messages)}
    elif record["class"] == "refused":
        record["class"] = "refused-group"
    elif record["class"] == "wrong" and _unstable(ds, expected):
        record["class"] = "h5py-unstable"
    return record


def _unstable(ds: h5py.Dataset, first: Any) -> bool:
    """Whether h5py reads ``ds`` differently from one read to the next, here or in a new
    process (a decoder that leaves memory it never wrote in its output, say): then no scan
    can match it."""
    for _ in range(3):
        if datasets.difference(first, ds[()]):
            return True
    with tempfile.TemporaryDirectory(prefix="h5fuzz-reread-") as tmp:
        out = Path(tmp) / "values.npy"
        code = (
            "import sys, h5py, hdf5plugin, numpy as np\n"
            "with h5py.File(sys.argv[1], 'r') as f: np.save(sys.argv[3], f[sys.argv[2]][()])"
        )
        args = [sys.executable, "-c", code, ds.file.filename, ds.name, str(out)]
        if subprocess.run(args, capture_output=True, timeout=120).returncode:
            return False
        return datasets.difference(first, np.load(out, allow_pickle=True)) is not None


def _raise_check(path: Path, refused: set[str]) -> dict:
    """``on_unsupported="raise"``: UnsupportedDatasetError naming every refused object."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            zms.scan(str(path), on_unsupported="raise")
    except zms.UnsupportedDatasetError as e:
        unnamed = [n for n in refused if repr(n) not in str(e)]
        if refused and not unnamed:
            return {"name": "", "class": "raise-ok"}
        return {"name": "", "class": "raise-mismatch", "reason": f"unnamed {unnamed}: {_line(e)}"}
    except Exception as e:
        return {"name": "", "class": "raise-mismatch", "reason": f"raw error {_line(e)}"}
    if refused:
        again = check_refusals(path)
        kind = "raise-mismatch" if again == refused else "refusal-unstable"
        return {"name": "", "class": kind, "reason": f"no error; skip refused {sorted(refused)}"}
    return {"name": "", "class": "raise-ok"}


def check_refusals(path: Path) -> set[str]:
    """The names a second scan with ``on_unsupported="skip"`` refuses."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        zms.scan(str(path), on_unsupported="skip")
    texts = [str(w.message) for w in caught]
    return {ast.literal_eval(m.group(1)) for text in texts if (m := LEFT_OUT.search(text))}


def _reason(name: str, messages: list[str]) -> str:
    for text in messages:
        if f"left out dataset {name!r}: " in text:
            return text.split(f"left out dataset {name!r}: ", 1)[1]
    return ""


def _line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:300]


def run_seed(seed: int, folder: Path, built: Callable[[], None] = lambda: None) -> dict[str, Any]:
    """Build and check the file of ``seed`` in ``folder``, the working directory meanwhile:
    HDF5 looks up relative external file names there, the scan beside the file. ``built``
    is called between the two."""
    with contextlib.chdir(folder):
        return _run_seed(seed, folder, built)


def _run_seed(seed: int, folder: Path, built: Callable[[], None]) -> dict[str, Any]:
    files = importlib.import_module("h5fuzz_files")
    path = folder / f"seed{seed}.h5"
    try:
        features = files.build(seed, path)
    except Exception as e:
        return {
            "seed": seed,
            "features": [],
            "records": [{"name": "", "class": "build-error", "reason": _line(e)}],
        }
    built()
    try:
        return {"seed": seed, "features": features, **check(path)}
    except Exception as e:  # the checker's own failure, kept apart from the scan's
        error = {"name": "", "class": "checker-error", "reason": _line(e)}
        return {"seed": seed, "features": features, "records": [error]}


def failures(result: dict[str, Any]) -> list[dict]:
    """The records of a seed that are failures."""
    return [r for r in result["records"] if r["class"] in FAILURES]


def _worker(first: int, stop: int, out: Path, keep: Path | None) -> None:
    """Runs seeds ``first:stop``, one JSON line each (a ``start`` line before each)."""
    with out.open("a") as stream:
        for seed in range(first, stop):
            stream.write(json.dumps({"start": seed}) + "\n")
            stream.flush()

            def built(seed: int = seed) -> None:
                stream.write(json.dumps({"built": seed}) + "\n")
                stream.flush()

            with tempfile.TemporaryDirectory(prefix=f"h5fuzz{seed}-") as tmp:
                result = run_seed(seed, Path(tmp), built)
                if keep is not None and failures(result):
                    shutil.copytree(tmp, keep / f"seed{seed}", dirs_exist_ok=True)
            stream.write(json.dumps(result, default=str) + "\n")
            stream.flush()


def _batches(seeds: range, size: int) -> list[tuple[int, int]]:
    return [(s, min(s + size, seeds.stop)) for s in range(seeds.start, seeds.stop, size)]


def run(seeds: range, workers: int, keep: Path | None, batch: int = 25) -> list[dict]:
    """Every seed's result, run by ``workers`` worker processes in batches."""
    pending = _batches(seeds, batch)
    results: list[dict] = []
    running: list[tuple[subprocess.Popen, Path, int, int, float]] = []
    with tempfile.TemporaryDirectory(prefix="h5fuzz-") as tmp:
        while pending or running:
            while pending and len(running) < workers:
                first, stop = pending.pop(0)
                out = Path(tmp) / f"{first}.jsonl"
                args = [sys.executable, __file__, "--worker", f"{first}:{stop}", "--out", str(out)]
                if keep is not None:
                    args += ["--keep", str(keep)]
                proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                running.append((proc, out, first, stop, time.monotonic()))
            time.sleep(0.2)
            for item in list(running):
                proc, out, first, stop, began = item
                late = time.monotonic() - began > SEED_TIMEOUT * (stop - first)
                if proc.poll() is None and not late:
                    continue
                if late:
                    proc.kill()
                proc.wait()
                running.remove(item)
                done, started, checking = _read(out)
                results.extend(done)
                if started is not None:  # died inside a seed: record it, go on after it
                    stderr = (
                        proc.stderr.read().decode(errors="replace")[-300:] if proc.stderr else ""
                    )
                    kind = "timeout" if late else "crash" if checking else "build-crash"
                    results.append(
                        {
                            "seed": started,
                            "features": [],
                            "records": [{"name": "", "class": kind, "reason": stderr}],
                        }
                    )
                    if started + 1 < stop:
                        pending.insert(0, (started + 1, stop))
                if proc.stderr:
                    proc.stderr.close()
    return sorted(results, key=lambda r: r["seed"])


def _read(out: Path) -> tuple[list[dict], int | None, bool]:
    """A worker's results, the seed it was in when it stopped (if any), and whether that
    seed's file was built (a crash of the writer is no failure of the scan)."""
    done, started, checking = [], None, False
    if not out.exists():
        return done, None, False
    for line in out.read_text().splitlines():
        try:
            item = json.loads(line)
        except json.JSONDecodeError:
            break
        if "start" in item:
            started, checking = item["start"], False
        elif "built" in item:
            checking = True
        else:
            done.append(item)
            started = None
    return done, started, checking


def summary(results: list[dict]) -> str:
    """Counts of each class over every record, then every failure with its seed."""
    counts = collections.Counter(r["class"] for res in results for r in res["records"])
    reasons = collections.Counter(
        re.sub(r"\d+", "N", reason)[:110]
        for res in results
        for reason in res.get("refused", {}).values()
    )
    lines = [
        f"seeds: {len(results)}",
        "records: " + ", ".join(f"{k}={v}" for k, v in sorted(counts.items())),
    ]
    lines.append("refusal reasons (digits as N):")
    lines += [f"  {n:6d}  {reason}" for reason, n in reasons.most_common(40)]
    bad = [(res, failures(res)) for res in results if failures(res)]
    lines.append(f"failing seeds: {len(bad)}")
    for res, records in bad[:200]:
        for r in records:
            lines.append(
                f"  seed {res['seed']}: {r['class']} {r['name']!r}: {r.get('reason', '')[:200]}"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", default="0:200", help="first:stop")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", type=Path, help="every seed's record as a JSON line")
    parser.add_argument("--keep", type=Path, help="copy the files of failing seeds here")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.keep is not None:
        args.keep.mkdir(parents=True, exist_ok=True)
    if args.worker:
        first, stop = (int(x) for x in args.worker.split(":"))
        _worker(first, stop, args.out, args.keep)
        return
    first, stop = (int(x) for x in args.seeds.split(":"))
    start = time.perf_counter()
    results = run(range(first, stop), args.workers, args.keep)
    if args.out is not None:
        args.out.write_text("".join(json.dumps(r, default=str) + "\n" for r in results))
    print(summary(results))
    print(f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
