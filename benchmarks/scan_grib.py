"""Scanning a GRIB2 file of 10,000 messages: time against kerchunk's ``scan_grib``.

Target (issue 21): scanning at least 2x faster than the peer that reads GRIB2 (kerchunk's
``kerchunk.grib2.scan_grib``, run in /work/peers/.venv; VirtualiZarr 2.8 has no GRIB parser),
values equal to cfgrib's.

The file holds 25 reference times x 10 steps x 10 pressure levels x 4 variables (t, u, v, z),
one 31 x 16 field per message. kerchunk spends tens of milliseconds per message (it decodes
each message through cfgrib), so a full scan of the file costs it many minutes: it scans the
file's first ``--peer-messages`` messages (a valid GRIB file of whole messages), and both
scanners are compared per message; its cost is linear in the messages (one independent pass
each), which the figures for two prefix lengths show. Rounds are interleaved; medians.

    .venv/bin/python benchmarks/scan_grib.py [--peers /work/peers/.venv/bin/python] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import eccodes
import numpy as np
import xarray as xr

import zarr_manifest_store as zms

DATES = 25
STEPS = range(0, 60, 6)
LEVELS = (1000, 925, 850, 700, 500, 400, 300, 250, 200, 100)
NAMES = ("t", "u", "v", "z")

PEER_SCRIPT = """
import sys, time, json, warnings
warnings.simplefilter("ignore")
from kerchunk.grib2 import scan_grib
t = time.perf_counter()
refs = scan_grib(sys.argv[1])
print(json.dumps({"seconds": time.perf_counter() - t, "messages": len(refs)}))
"""


def make_file(path: Path) -> int:
    """The benchmark file: one date's 400 messages written by ecCodes, repeated with their
    reference day patched (section 1, octet 16) for the other dates. Returns the messages."""
    template = eccodes.codes_grib_new_from_samples("GRIB2")
    day: list[bytes] = []
    rng = np.random.default_rng(0)
    for step in STEPS:
        for level in LEVELS:
            for name in NAMES:
                handle = eccodes.codes_clone(template)
                for key, value in (("shortName", name), ("typeOfLevel", "isobaricInhPa"),
                                   ("level", level), ("step", step), ("dataDate", 20240101)):  # fmt: skip
                    eccodes.codes_set(handle, key, value)
                eccodes.codes_set(handle, "bitsPerValue", 16)
                eccodes.codes_set_values(handle, rng.uniform(200, 300, 496))
                day.append(eccodes.codes_get_message(handle))
                eccodes.codes_release(handle)
    eccodes.codes_release(template)
    with open(path, "wb") as f:
        for date in range(1, DATES + 1):
            for message in day:
                raw = bytearray(message)
                raw[16 + 15] = date  # section 1 starts after section 0's 16 bytes
                f.write(raw)
    return DATES * len(day)


def prefix(path: Path, messages: int, out: Path) -> Path:
    """A file of the first ``messages`` messages of ``path``."""
    data = path.read_bytes()
    end = 0
    for _ in range(messages):
        end += int.from_bytes(data[end + 8 : end + 16], "big")
    out.write_bytes(data[:end])
    return out


def ours(path: Path) -> float:
    t = time.perf_counter()
    zms.scan_grib(path)
    return time.perf_counter() - t


def peer(python: str, path: Path) -> dict[str, float]:
    done = subprocess.run(
        [python, "-c", PEER_SCRIPT, str(path)], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.splitlines()[-1])


def check_values(path: Path, small: Path) -> None:
    """Values equal to cfgrib's (on the prefix file) and to ecCodes' (a sample of the full one)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = xr.open_zarr(zms.ManifestStore(zms.scan_grib(small)), consolidated=False).load()
        ref = xr.open_dataset(small, engine="cfgrib", backend_kwargs={"indexpath": ""}).load()
    ref.attrs.pop("history")
    xr.testing.assert_identical(ds, ref)
    g = zms.scan_grib(path)
    data = path.read_bytes()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        z = xr.open_zarr(zms.ManifestStore(g), consolidated=False)
        for i in (0, 4321, 9999):
            name = NAMES[i % 4]
            where = np.argwhere(g[name].manifest.offsets.ravel() == _offset(data, i))
            (flat,) = where[0]
            index = np.unravel_index(flat, g[name].manifest.shape)
            handle = eccodes.codes_new_from_message(data[_offset(data, i) :][: _length(data, i)])
            expected = eccodes.codes_get_values(handle).astype("f4").reshape(31, 16)
            eccodes.codes_release(handle)
            np.testing.assert_array_equal(z[name].values[index[:-2]], expected)


def _offset(data: bytes, i: int) -> int:
    pos = 0
    for _ in range(i):
        pos += int.from_bytes(data[pos + 8 : pos + 16], "big")
    return pos


def _length(data: bytes, i: int) -> int:
    pos = _offset(data, i)
    return int.from_bytes(data[pos + 8 : pos + 16], "big")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", default="/work/peers/.venv/bin/python")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--peer-messages", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "levels.grib2"
        n = make_file(path)
        small = prefix(path, args.peer_messages, Path(tmp) / "prefix.grib2")
        check_values(path, small)
        print(f"{path.name}: {n} messages, {path.stat().st_size / 2**20:.1f} MiB; values equal")
        mine, mine_small, theirs = [], [], []
        for _ in range(args.rounds):
            mine.append(ours(path))
            mine_small.append(ours(small))
            theirs.append(peer(args.peers, small)["seconds"])
        per_ours = statistics.median(mine) / n
        per_peer = statistics.median(theirs) / args.peer_messages
        print(f"zarr-manifest-store: {statistics.median(mine):.2f} s for {n} messages "
              f"({per_ours * 1e6:.0f} us each); {statistics.median(mine_small):.2f} s for the "
              f"first {args.peer_messages}")  # fmt: skip
        print(f"kerchunk scan_grib:  {statistics.median(theirs):.2f} s for the first "
              f"{args.peer_messages} messages ({per_peer * 1e3:.1f} ms each; "
              f"{per_peer * n:.0f} s for {n} at that rate)")  # fmt: skip
        print(f"per message: {per_peer / per_ours:.0f}x faster than kerchunk "
              f"(same {args.peer_messages} messages: "
              f"{statistics.median(theirs) / statistics.median(mine_small):.0f}x)")  # fmt: skip


if __name__ == "__main__":
    main()
