"""open_virtual_mfdataset over many netCDF-4 files, side by side with VirtualiZarr's.

Target (issue 5): over 48 files of (24, 180, 360) float32, at least 3x faster
than VirtualiZarr's ``open_virtual_mfdataset`` (both serial, both loading the
dimension coordinates, both combining by coordinates), measured in the same
run; plus a table of 10 / 100 / 1000 files, serial vs worker processes: kept
between calls (a ``ProcessPoolExecutor`` passed as ``parallel``) and started
for the call (``parallel="processes"``).

The files are hourly days of ``t2m`` chunked (1, 90, 180), zlib-compressed,
with time / lat / lon coordinates, written by xarray with h5netcdf. Their
values do not matter to virtualisation, so they are smooth and compress to
little, which keeps 1000 files small on disk. Each implementation runs in its
own process (VirtualiZarr in the peers' venv), and every timed run opens files
that process has not opened before (so no memo of an earlier run helps); runs
alternate between the two, and figures are the best and median of several,
since the machine is shared.

    .venv/bin/python benchmarks/open_virtual_mfdataset.py [--data DIR] [--counts 10,100,1000]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

SHAPE = (24, 180, 360)
CHUNKS = (1, 90, 180)
PEER_PYTHON = Path("/work/peers/.venv/bin/python")

OURS = """
import concurrent.futures, json, multiprocessing, os, sys, time
import zarr_manifest_store as zms
files, repeats, n, parallel = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4] or None
if parallel == "pool":  # worker processes kept between calls: the caller's executor
    context = multiprocessing.get_context("forkserver")
    parallel = concurrent.futures.ProcessPoolExecutor(os.cpu_count(), mp_context=context)
zms.open_virtual_mfdataset(files[-3:], parallel=parallel)  # imports and worker start-up
times, cpu = [], []
for i in range(repeats):
    batch = files[i * n : (i + 1) * n]  # files not opened before in this process
    start, start_cpu = time.perf_counter(), time.process_time()
    ds = zms.open_virtual_mfdataset(batch, combine="by_coords", parallel=parallel)
    times.append(time.perf_counter() - start)
    cpu.append(time.process_time() - start_cpu)
print(json.dumps({"times": times, "cpu": cpu, "shape": list(ds["t2m"].shape)}))
"""

PEER = """
import json, sys, time
from obstore.store import LocalStore
from obspec_utils.registry import ObjectStoreRegistry
from virtualizarr import open_virtual_mfdataset
from virtualizarr.parsers import HDFParser
files, repeats, n = json.loads(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
urls = ["file://" + f for f in files]
registry = ObjectStoreRegistry({"file://": LocalStore()})
open_virtual_mfdataset(urls[-3:], registry=registry, parser=HDFParser())
times, cpu = [], []
for i in range(repeats):
    batch = urls[i * n : (i + 1) * n]  # files not opened before in this process
    start, start_cpu = time.perf_counter(), time.process_time()
    ds = open_virtual_mfdataset(batch, registry=registry, parser=HDFParser(), combine="by_coords")
    times.append(time.perf_counter() - start)
    cpu.append(time.process_time() - start_cpu)
print(json.dumps({"times": times, "cpu": cpu, "shape": list(ds["t2m"].shape)}))
"""


def make_files(folder: Path, count: int) -> list[str]:
    """``count`` daily files in ``folder`` (kept between runs; only missing ones are written)."""
    import pandas as pd
    import xarray as xr

    folder.mkdir(parents=True, exist_ok=True)
    lat = np.linspace(-89.5, 89.5, SHAPE[1])
    lon = np.arange(SHAPE[2], dtype="f8")
    field = (250 + 30 * np.cos(np.deg2rad(lat))[:, None] + 0 * lon).astype("f4")
    paths = []
    for i in range(count):
        path = folder / f"t2m_{i:04d}.nc"
        paths.append(str(path))
        if path.exists():
            continue
        time_ = pd.date_range("2000-01-01", periods=SHAPE[0], freq="h") + pd.Timedelta(days=i)
        data = np.broadcast_to(field, SHAPE) + np.arange(SHAPE[0], dtype="f4")[:, None, None]
        ds = xr.Dataset(
            {"t2m": (("time", "lat", "lon"), data, {"units": "K"})},
            coords={"time": time_, "lat": ("lat", lat), "lon": ("lon", lon)},
        )
        encoding = {
            "t2m": {"chunksizes": CHUNKS, "zlib": True, "complevel": 1},
            "time": {"units": "hours since 2000-01-01", "dtype": "int64"},
        }
        ds.to_netcdf(path, engine="h5netcdf", encoding=encoding)
    return paths


def run(python: str, script: str, files: list[str], repeats: int, n: int, *extra: str) -> dict:
    """``repeats`` timings in a fresh process, each opening ``n`` files it has not opened before."""
    assert len(files) >= repeats * n + 3, "not enough files for distinct batches"
    done = subprocess.run(
        [python, "-c", script, json.dumps(files), str(repeats), str(n), *extra],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode:
        raise RuntimeError(f"{python} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout)


def side_by_side(files: list[str], n: int, repeats: int, blocks: int) -> None:
    runs: dict[str, dict[str, list[float]]] = {}
    shapes = set()
    for _ in range(blocks):  # alternate often: this machine's speed drifts by tens of percent
        for name, python, script, extra in (
            ("zarr-manifest-store", sys.executable, OURS, ("",)),
            ("VirtualiZarr", str(PEER_PYTHON), PEER, ()),
        ):
            if name == "VirtualiZarr" and not PEER_PYTHON.exists():
                continue
            result = run(python, script, files, repeats, n, *extra)
            shapes.add(tuple(result["shape"]))
            mine = runs.setdefault(name, {"times": [], "cpu": []})
            mine["times"] += result["times"]
            mine["cpu"] += result["cpu"]
    assert len(shapes) == 1, f"the two results differ in shape: {shapes}"
    count = len(runs["zarr-manifest-store"]["times"])
    print(f"{n} files of {SHAPE} float32, chunks {CHUNKS}; serial, {count} runs each")
    print(f"{'':22}{'wall best':>10}{'wall median':>12}{'CPU best':>10}")
    for name, r in runs.items():
        print(
            f"  {name:<20}{min(r['times']):>9.3f}s{statistics.median(r['times']):>11.3f}s"
            f"{min(r['cpu']):>9.3f}s"
        )
    if len(runs) == 2:
        ours, peer = runs["zarr-manifest-store"], runs["VirtualiZarr"]
        print(
            f"  {'speed-up':<20}{min(peer['times']) / min(ours['times']):>9.2f}x"
            f"{statistics.median(peer['times']) / statistics.median(ours['times']):>11.2f}x"
            f"{min(peer['cpu']) / min(ours['cpu']):>9.2f}x"
        )
    else:
        print(f"  VirtualiZarr: not measured ({PEER_PYTHON} not found)")


def table(files: list[str], counts: tuple[int, ...]) -> None:
    """Serial vs worker processes; each figure the best of 3 fresh processes opening the files once.

    ``pool`` passes a ProcessPoolExecutor whose workers an earlier call
    started; ``"processes"`` starts and stops workers within the call.
    """
    print("\nopen_virtual_mfdataset, serial vs worker processes (best of 3, s)")
    print(f"{'files':>6} {'serial':>9} {'pool':>9} {'ratio':>7} {'processes':>10}")
    for n in counts:
        batch = files[:n] + files[-3:]  # the last three warm up (imports, worker start-up)
        best = {
            parallel: min(
                run(sys.executable, OURS, batch, 1, n, parallel)["times"][0] for _ in range(3)
            )
            for parallel in ("", "pool", "processes")
        }
        serial, pool = best[""], best["pool"]
        print(
            f"{n:>6} {serial:>9.3f} {pool:>9.3f} {serial / pool:>6.2f}x {best['processes']:>10.3f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=Path("/tmp/zms-bench-mfdataset"))
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per process")
    parser.add_argument("--blocks", type=int, default=6, help="processes per implementation")
    parser.add_argument("--counts", default="10,100,1000")
    args = parser.parse_args()
    counts = tuple(int(c) for c in args.counts.split(","))
    start = time.perf_counter()
    files = make_files(args.data, max(48 * args.repeats + 3, *counts) + 3)
    for path in files:  # into the page cache, so that no run pays for the first read
        Path(path).read_bytes()
    print(f"files ready in {args.data} ({time.perf_counter() - start:.0f} s)\n")
    side_by_side(files, 48, args.repeats, args.blocks)
    table(files, counts)


if __name__ == "__main__":
    main()
