"""Scanning FITS files of 10,000+ chunks: zms.scan_fits against VirtualiZarr 2.8's FITSParser.

Two files, written with astropy:

- ``hdus``: 10,000 small image extensions (the layout of cutout and multi-exposure files):
  one chunk per HDU for both scanners, so both describe it, and the values can be checked;
- ``tiles``: one RICE_1 tile-compressed image of 10,000 tiles. FITSParser takes the
  compressed table for an image and returns one chunk of wrong bytes (it is timed, not
  checked); zms.scan_fits returns one chunk per tile.

Each round times both scanners, interleaved (the peer in /work/peers/.venv, in a subprocess
that stays up), on the same file; the figures are medians of ``--rounds`` rounds. Our
values are checked against astropy's (``hdul[i].data``) through ``xr.open_zarr``.

    .venv/bin/python benchmarks/scan_fits.py [--peers /work/peers/.venv/bin/python] [--rounds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import xarray as xr
from astropy.io import fits

import zarr_manifest_store as zms

HDUS = 10_000
TILES = (100, 100)  # of 10 x 10 pixels: 10,000 tiles

PEER_SCRIPT = """
import sys, time, json
from obstore.store import LocalStore
from obspec_utils.registry import ObjectStoreRegistry
from virtualizarr.parsers import FITSParser
registry = ObjectStoreRegistry({"file://": LocalStore()})
for line in sys.stdin:
    t = time.perf_counter()
    store = FITSParser()(url="file://" + line.strip(), registry=registry)
    elapsed = time.perf_counter() - t
    print(json.dumps(elapsed), flush=True)
"""


def make_hdus(path: Path) -> None:
    rng = np.random.default_rng(0)
    hdus = [fits.PrimaryHDU()]
    for i in range(HDUS):
        hdu = fits.ImageHDU(rng.normal(size=(10, 10)).astype(">f4"), name="CUTOUT", ver=i + 1)
        hdu.header["OBJECT"] = f"source {i}"
        hdus.append(hdu)
    fits.HDUList(hdus).writeto(path, overwrite=True)


def make_tiles(path: Path) -> None:
    shape = (TILES[0] * 10, TILES[1] * 10)
    data = np.random.default_rng(1).integers(0, 5000, size=shape).astype(">i4")
    image = fits.CompImageHDU(data, name="SCI", compression_type="RICE_1", tile_shape=(10, 10))
    fits.HDUList([fits.PrimaryHDU(), image]).writeto(path, overwrite=True)


def check(path: Path, group: zms.ManifestGroup) -> int:
    """The chunks of ``group``, after checking its values against astropy's."""
    ds = xr.open_zarr(zms.ManifestStore(group), consolidated=False, chunks=None)
    with fits.open(path) as hdul:
        for i, hdu in enumerate(hdul[1:], start=1):
            name = hdu.name if len(hdul) == 2 else f"{hdu.name}_{hdu.ver}"
            if len(hdul) > 2 and i % 97:
                continue  # every 97th cutout
            np.testing.assert_array_equal(ds[name].values, hdu.data)
    return sum(a.manifest.nchunks for a in group.arrays.values())


class Peer:
    """VirtualiZarr's FITSParser in a subprocess of the peers' environment."""

    def __init__(self, python: str) -> None:
        self.process = subprocess.Popen(
            [python, "-c", PEER_SCRIPT],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )

    def time(self, path: Path) -> float:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(f"{path}\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError("the peer's process ended (see its error above)")
        return float(json.loads(line))

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(timeout=60)


def ours(path: Path) -> float:
    start = time.perf_counter()
    zms.scan_fits(path)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--peers", default="/work/peers/.venv/bin/python")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = {"hdus": Path(tmp) / "hdus.fits", "tiles": Path(tmp) / "tiles.fits"}
        make_hdus(files["hdus"])
        make_tiles(files["tiles"])
        peer = Peer(args.peers)
        try:
            for label, path in files.items():
                chunks = check(path, zms.scan_fits(path))
                mine, theirs = [], []
                for _ in range(args.rounds):
                    mine.append(ours(path))
                    theirs.append(peer.time(path))
                a, b = statistics.median(mine), statistics.median(theirs)
                print(
                    f"{label}: {path.stat().st_size:,} bytes, {chunks:,} chunks (values = astropy's)"
                )
                print(
                    f"  zms.scan_fits:          {a * 1e3:8.1f} ms ({a / chunks * 1e6:.1f} us/chunk)"
                )
                print(f"  VirtualiZarr FITSParser: {b * 1e3:8.1f} ms")
                print(
                    f"  speed-up: {b / a:.1f}x (target >= 2x: {'met' if b / a >= 2 else 'MISSED'})"
                )
        finally:
            peer.close()


if __name__ == "__main__":
    main()
