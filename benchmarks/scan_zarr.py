"""Scanning Zarr stores of 10,000+ chunk objects: scan_zarr against VirtualiZarr's ZarrParser.

Writes three local stores of one array of 100 x 100 = 10,000 chunks (and its coordinates),
each chunk a separate object: Zarr v2, Zarr v3, and Zarr v3 sharded into 100 shards of 100
chunks. Both scanners run in subprocesses of their own virtual environments (this one, and
/work/peers/.venv for VirtualiZarr 2.8), interleaved, ``--rounds`` times; each subprocess
scans the store ``--repeats`` times and reports its best time, and the figure is the median
of the rounds. The values of the scan are checked against zarr reading the store.

Target (issue 21): at least 2x faster than VirtualiZarr's parser, same run.

    .venv/bin/python benchmarks/scan_zarr.py [--peers /work/peers/.venv/bin/python] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import numpy as np
import zarr

import zarr_manifest_store as zms

SHAPE = (1000, 1000)
CHUNKS = (10, 10)  # 100 x 100 = 10,000 chunks

OURS = """
import sys, time, json, warnings
warnings.simplefilter("ignore")
import zarr_manifest_store as zms
times = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    zms.scan_zarr(sys.argv[1])
    times.append(time.perf_counter() - t)
print(json.dumps(min(times)))
"""

PEER = """
import sys, time, json, warnings
warnings.simplefilter("ignore")
from obstore.store import LocalStore
from obspec_utils.registry import ObjectStoreRegistry
from virtualizarr.parsers import ZarrParser
registry = ObjectStoreRegistry({"file://": LocalStore()})
times = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    ZarrParser()(url="file://" + sys.argv[1], registry=registry)
    times.append(time.perf_counter() - t)
print(json.dumps(min(times)))
"""


def make_store(path: Path, zarr_format: int, shards: tuple[int, int] | None) -> zarr.Array:
    root = zarr.open_group(path, mode="w", zarr_format=zarr_format)
    options = {"dimension_names": ["y", "x"]} if zarr_format == 3 else {}
    a = root.create_array("v", shape=SHAPE, chunks=CHUNKS, shards=shards, dtype="f4", **options)
    a[:] = np.arange(np.prod(SHAPE), dtype="f4").reshape(SHAPE)
    if zarr_format == 2:
        a.attrs["_ARRAY_DIMENSIONS"] = ["y", "x"]
    for name, n in zip(("y", "x"), SHAPE, strict=True):
        c = root.create_array(
            name,
            shape=(n,),
            dtype="i4",
            **({"dimension_names": [name]} if zarr_format == 3 else {}),
        )
        c[:] = np.arange(n)
        if zarr_format == 2:
            c.attrs["_ARRAY_DIMENSIONS"] = [name]
    return a


def check(path: Path, original: zarr.Array) -> None:
    """The scan reads as zarr reads the store."""
    group = zms.scan_zarr(path)
    served = zarr.open_group(zms.ManifestStore(group), mode="r")["v"]
    np.testing.assert_array_equal(served[:], original[:])


def run(python: str, script: str, path: Path, repeats: int) -> float:
    done = subprocess.run(
        [python, "-c", script, str(path), str(repeats)], capture_output=True, text=True
    )
    if done.returncode:
        raise RuntimeError(done.stderr[-2000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", default="/work/peers/.venv/bin/python")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    cases = {"v2": (2, None), "v3": (3, None), "v3 sharded": (3, (100, 100))}
    with tempfile.TemporaryDirectory() as tmp:
        for label, (zarr_format, shards) in cases.items():
            path = Path(tmp) / f"{label.replace(' ', '-')}.zarr"
            check(path, make_store(path, zarr_format, shards))
            ours, peer = [], []
            for _ in range(args.rounds):
                ours.append(run(sys.executable, OURS, path, args.repeats))
                peer.append(run(args.peers, PEER, path, args.repeats))
            a, b = statistics.median(ours), statistics.median(peer)
            objects = 10_000 if shards is None else 100
            print(
                f"{label:11} ({objects} chunk objects): scan_zarr {a * 1e3:7.1f} ms, "
                f"VirtualiZarr ZarrParser {b * 1e3:7.1f} ms: {b / a:.1f}x faster"
            )


if __name__ == "__main__":
    main()
