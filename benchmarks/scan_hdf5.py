"""Scanning an HDF5 file of 100,000 chunks: time against a bare chunk_iter loop and
VirtualiZarr's HDF parser, peak memory against the finished manifest.

Targets (issue 3), measured in the same run:
- scan time <= 1.3x a bare ``chunk_iter`` loop over the same file (file opening included in both);
- at least 3x faster than VirtualiZarr's ``HDFParser`` (run in /work/peers/.venv);
- peak Python memory during the scan (tracemalloc) <= 3x the finished manifest's ``nbytes``.

Each timing is the best of several interleaved repetitions, since the machine is shared, in
wall time and in CPU time (what the process itself spent, which other processes disturb less).
Run it with ``PYTHONPATH=<a checkout>`` to time that checkout's code.

    .venv/bin/python benchmarks/scan_hdf5.py [--peers /work/peers/.venv/bin/python] [--repeats 9]
"""

from __future__ import annotations

import argparse
import gc
import json
import subprocess
import tempfile
import time
import tracemalloc
from pathlib import Path

import h5py
import numpy as np

import zarr_manifest_store as zms

SHAPE = (1000, 1000, 10)
CHUNKS = (1, 10, 10)  # 1000 x 100 x 1 = 100,000 chunks
REPEATS = 9

PEER_SCRIPT = """
import sys, time, json
from obstore.store import LocalStore
from obspec_utils.registry import ObjectStoreRegistry
from virtualizarr.parsers import HDFParser
path = sys.argv[1]
registry = ObjectStoreRegistry({"file://": LocalStore()})
times = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    HDFParser()(url="file://" + path, registry=registry)
    times.append(time.perf_counter() - t)
print(json.dumps(times))
"""


def make_file(path: Path) -> None:
    """A netCDF-like file (default HDF5 format, v1 B-tree index) with 100,000 deflated chunks."""
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("t", shape=SHAPE, chunks=CHUNKS, dtype="f4", compression="gzip")
        block = np.arange(np.prod(SHAPE[1:]), dtype="f4").reshape(SHAPE[1:])
        for i in range(SHAPE[0]):
            ds[i] = block + i


def bare_loop(path: Path) -> None:
    with h5py.File(path, "r") as f:
        f["t"].id.chunk_iter(lambda info: None)


def scan(path: Path) -> zms.ManifestGroup:
    return zms.scan_hdf5(path)


def timed(fn, path: Path) -> tuple[float, float]:
    """Wall and CPU seconds of ``fn(path)``."""
    wall, cpu = time.perf_counter(), time.process_time()
    fn(path)
    return time.perf_counter() - wall, time.process_time() - cpu


def peer_best(python: str, path: Path, repeats: int) -> float | str:
    """VirtualiZarr's best time on ``path``, run by ``python``; or why it was not measured."""
    try:
        peer = subprocess.run(
            [python, "-c", PEER_SCRIPT, str(path), str(repeats)],
            capture_output=True,
            text=True,
            check=False,
        )
    except FileNotFoundError:
        return f"no {python}"
    if peer.returncode != 0:
        return str(peer.stderr.strip().splitlines()[-1:])
    return min(json.loads(peer.stdout.strip().splitlines()[-1]))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--peers", default="/work/peers/.venv/bin/python")
    parser.add_argument("--repeats", type=int, default=REPEATS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chunks100k.h5"
        make_file(path)
        nchunks = scan(path)["t"].manifest.nchunks
        print(f"file: {path.stat().st_size:,} bytes, {nchunks:,} chunks")

        bare_times, scan_times = [], []
        for _ in range(args.repeats):
            bare_times.append(timed(bare_loop, path))
            scan_times.append(timed(scan, path))
        for clock, i in (("wall", 0), ("CPU", 1)):
            bare, ours = min(t[i] for t in bare_times), min(t[i] for t in scan_times)
            ratio = ours / bare
            print(f"[{clock} time]")
            print(
                f"bare chunk_iter loop:  {bare * 1e3:8.1f} ms  ({bare / nchunks * 1e6:.2f} us/chunk)"
            )
            print(
                f"zms.scan_hdf5:         {ours * 1e3:8.1f} ms  ({ours / nchunks * 1e6:.2f} us/chunk)"
            )
            print(
                f"  ratio to bare loop:  {ratio:.2f}x  "
                f"(target <= 1.3x: {'met' if ratio <= 1.3 else 'MISSED'})"
            )
        ours = min(t[0] for t in scan_times)

        theirs = peer_best(args.peers, path, args.repeats)
        if isinstance(theirs, str):
            print(f"VirtualiZarr HDFParser: not measured ({theirs})")
        else:
            speedup = theirs / ours
            print(
                f"VirtualiZarr HDFParser: {theirs * 1e3:7.1f} ms  ({theirs / nchunks * 1e6:.2f} us/chunk)"
            )
            print(
                f"  our speed-up:        {speedup:.1f}x  (target >= 3x: {'met' if speedup >= 3 else 'MISSED'})"
            )

        gc.collect()
        tracemalloc.start()
        group = scan(path)
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        size = group["t"].manifest.nbytes
        print(f"manifest nbytes:       {size:,} B ({size / nchunks:.1f} B/chunk)")
        print(
            f"peak traced memory:    {peak:,} B = {peak / size:.2f}x the manifest "
            f"(target <= 3x: {'met' if peak <= 3 * size else 'MISSED'})"
        )


if __name__ == "__main__":
    main()
