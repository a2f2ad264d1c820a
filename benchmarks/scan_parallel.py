"""Scanning many local files serially, in threads and in processes (what ``scan --jobs`` picks from).

    python benchmarks/scan_parallel.py [--files 100] [--repeats 3]

Writes ``--files`` daily netCDF-4 files as ``zarr-manifest demo`` does (73 x 144 grid,
24 hourly steps, two compressed variables) into a temporary folder, then times
``zms.open_virtual_mfdataset`` over them with ``parallel=None``, ``"threads"`` (a pool
of os.cpu_count() threads), a 2-thread pool, and a pool of os.cpu_count() processes
kept between calls; each the best of ``--repeats`` runs, the modes interleaved so
that a busy machine slows them alike, and ``parallel="processes"`` (which starts
its workers in the call) on its own.
The files sit in the page cache (just written): this measures the scanning and
combining, not the disk.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import multiprocessing
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
        context = multiprocessing.get_context("forkserver")
        processes = concurrent.futures.ProcessPoolExecutor(mp_context=context)
        modes = {"serial": None, "threads": "threads", "2 threads": two, "processes": processes}
        best = dict.fromkeys(modes, float("inf"))
        started = time.perf_counter()
        zms.open_virtual_mfdataset(paths, parallel="processes")  # starts and stops its workers
        first = time.perf_counter() - started
        zms.open_virtual_mfdataset(paths, parallel=processes)  # starts the kept workers
        for _ in range(args.repeats):
            for name, parallel in modes.items():
                started = time.perf_counter()
                zms.open_virtual_mfdataset(paths, parallel=parallel)
                best[name] = min(best[name], time.perf_counter() - started)
        two.shutdown()
        processes.shutdown()
    print(f"{args.files} files, best of {args.repeats}:")
    for name, seconds in [*best.items(), ('parallel="processes"', first)]:
        print(f"  {name:<22} {seconds:6.2f} s  ({seconds / args.files * 1e3:.1f} ms per file)")


if __name__ == "__main__":
    main()
