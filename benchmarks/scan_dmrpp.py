"""Scanning a DMR++ of 40,000 chunks: time against VirtualiZarr 2.8's DMR++ parser, values
checked against h5py reading the data file.

Target (issue 21): at least 2x faster than VirtualiZarr's ``DMRPPParser`` (run in
/work/peers/.venv, in a subprocess that times the parse alone), same run, interleaved rounds,
medians of the rounds. The DMR++ is written for a generated HDF5 file by the tests' writer
(``tests/dmrpp_writer.py``, OPeNDAP's schema as ``get_dmrpp`` writes it).

    .venv/bin/python benchmarks/scan_dmrpp.py [--peers /work/peers/.venv/bin/python] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import zarr

import zarr_manifest_store as zms

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from dmrpp_writer import write_dmrpp

SHAPE = (200, 200, 16)
CHUNKS = (1, 1, 16)  # 200 x 200 = 40,000 chunks
ROUNDS = 5

PEER_SCRIPT = """
import sys, time
from obstore.store import LocalStore
from obspec_utils.registry import ObjectStoreRegistry
from virtualizarr.parsers import DMRPPParser
registry = ObjectStoreRegistry({"file://": LocalStore()})
t = time.perf_counter()
store = DMRPPParser()(url="file://" + sys.argv[1], registry=registry)
print(time.perf_counter() - t)
"""


def make_file(path: Path) -> np.ndarray:
    """An HDF5 file of 40,000 deflated, shuffled chunks; its values."""
    values = np.arange(np.prod(SHAPE), dtype="f4").reshape(SHAPE)
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "t", data=values, chunks=CHUNKS, compression="gzip", shuffle=True, fillvalue=-1.0
        )
    return values


def ours(dmrpp: str) -> float:
    start = time.perf_counter()
    zms.scan_dmrpp(dmrpp)
    return time.perf_counter() - start


def peer(python: str, dmrpp: str) -> float | str:
    """VirtualiZarr's time on ``dmrpp``, run by ``python``; or why it was not measured."""
    try:
        run = subprocess.run(
            [python, "-c", PEER_SCRIPT, dmrpp], capture_output=True, text=True, check=False
        )
    except FileNotFoundError:
        return f"no {python}"
    if run.returncode != 0:
        return str(run.stderr.strip().splitlines()[-1:])
    return float(run.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--peers", default="/work/peers/.venv/bin/python")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "chunks40k.h5"
        values = make_file(path)
        dmrpp = write_dmrpp(path)
        group = zms.scan_dmrpp(dmrpp)
        nchunks = group["t"].manifest.nchunks
        read = zarr.open_group(zms.ManifestStore(group), mode="r")["t"][...]
        assert np.array_equal(read, values), "values differ from h5py's"
        print(
            f"DMR++: {Path(dmrpp).stat().st_size:,} bytes, {nchunks:,} chunks; values equal h5py's"
        )
        mine: list[float] = []
        theirs: list[float] = []
        for _ in range(args.rounds):
            mine.append(ours(dmrpp))
            result = peer(args.peers, dmrpp)
            if isinstance(result, str):
                print(f"VirtualiZarr DMRPPParser: not measured ({result})")
                break
            theirs.append(result)
        m = statistics.median(mine)
        print(f"zms.scan_dmrpp:           {m * 1e3:8.1f} ms  ({m / nchunks * 1e6:.2f} us/chunk)")
        if theirs:
            t = statistics.median(theirs)
            print(
                f"VirtualiZarr DMRPPParser: {t * 1e3:8.1f} ms  ({t / nchunks * 1e6:.2f} us/chunk)"
            )
            print(f"  speed-up: {t / m:.1f}x (target >= 2x: {'met' if t / m >= 2 else 'MISSED'})")
        print(
            f"rounds: ours {[round(x * 1e3, 1) for x in mine]} ms, peer {[round(x * 1e3, 1) for x in theirs]} ms"
        )
        print(
            json.dumps(
                {"ours_ms": m * 1e3, "peer_ms": statistics.median(theirs) * 1e3 if theirs else None}
            )
        )


if __name__ == "__main__":
    main()
