"""Scanning many local files serially, in threads and in processes (what ``scan --jobs`` picks from).

    python benchmarks/scan_parallel.py [--files 100] [--repeats 3]

Writes ``--files`` daily netCDF-4 files as ``zarr-manifest demo`` does (73 x 144 grid,
24 hourly steps, two compressed variables) into a temporary folder, then times
``zms.open_virtual_mfdataset`` over them with ``parallel=None``, ``"threads"`` (a pool
of os.cpu_count() threads), a 2-thread pool, and ``"processes"``; each the best of
``--repeats`` runs, the modes interleaved so that a busy machine slows them alike,
and the first call with processes (which starts the pool) on its own.
The files sit in the page cache (just written): this measures the scanning and
combining, not the disk.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import tempfile
import time
from pathlib import Path

import zarr_manifest_store as zms
from zarr_manifest_store.cli.demo import write_archive


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths = [str(p) for p in write_archive(Path(tmp), files=args.files)]
        two = concurrent.futures.ThreadPoolExecutor(2)
        modes = {"serial": None, "threads": "threads", "2 threads": two, "processes": "processes"}
        best = dict.fromkeys(modes, float("inf"))
        started = time.perf_counter()
        zms.open_virtual_mfdataset(paths, parallel="processes")  # starts the kept process pool
        first = time.perf_counter() - started
        for _ in range(args.repeats):
            for name, parallel in modes.items():
                started = time.perf_counter()
                zms.open_virtual_mfdataset(paths, parallel=parallel)
                best[name] = min(best[name], time.perf_counter() - started)
        two.shutdown()
    print(f"{args.files} files, best of {args.repeats}:")
    for name, seconds in [*best.items(), ("processes, first call", first)]:
        print(f"  {name:<22} {seconds:6.2f} s  ({seconds / args.files * 1e3:.1f} ms per file)")


if __name__ == "__main__":
    main()
