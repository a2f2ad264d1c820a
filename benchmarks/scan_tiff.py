"""Scanning a tiled GeoTIFF of 10,000+ tiles: time against the peers that read TIFF.

Target (issue 21): at least 2x faster than VirtualiZarr's TIFF parser (the ``virtual-tiff``
package) and kerchunk's ``tiff_to_zarr``, both run in /work/peers/.venv, in the same run,
interleaved; medians of the rounds. Values read through ManifestStore are checked against
tifffile's before timing.

Two files: a single image of 1600 x 1600 pixels in 16 x 16 tiles (10,000 tiles; Deflate with
horizontal differencing), and a COG-like pyramid of 2048 x 2048 pixels in 16 x 16 tiles with
two overview levels (16,384 + 4,096 + 1,024 tiles). VirtualiZarr's parser is given the IFD of
the full image (``ifd=0``), kerchunk the first series, as their users would.

    .venv/bin/python benchmarks/scan_tiff.py [--peers /work/peers/.venv/bin/python] [--rounds 5]
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
import tifffile
import zarr

import zarr_manifest_store as zms

ROUNDS = 5
PEER_SCRIPT = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
path, which, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3])
if which == "virtual-tiff":
    from obstore.store import LocalStore
    from obspec_utils.registry import ObjectStoreRegistry
    from virtual_tiff import VirtualTIFF
    registry = ObjectStoreRegistry({"file://": LocalStore()})
    def scan():
        VirtualTIFF(ifd=0)(url="file://" + path, registry=registry)
else:
    from kerchunk.tiff import tiff_to_zarr
    def scan():
        tiff_to_zarr(path)
scan()  # imports and first-call costs are not the scan's
times = []
for _ in range(repeats):
    t = time.perf_counter()
    scan()
    times.append(time.perf_counter() - t)
print(json.dumps(times))
"""
GEOTAGS = [
    (34735, "H", 16, [1, 1, 0, 3, 1024, 0, 1, 1, 1025, 0, 1, 1, 3072, 0, 1, 32633], True),
    (33550, "d", 3, (10.0, 10.0, 0.0), True),
    (33922, "d", 6, (0, 0, 0, 500000.0, 4100000.0, 0), True),
]


def make_files(folder: Path) -> list[Path]:
    """The single image and the pyramid (no ImageDescription: kerchunk trips over tifffile's)."""
    options = {"tile": (16, 16), "compression": "zlib", "predictor": 2, "metadata": None}
    single = folder / "tiles.tif"
    data = (np.add.outer(np.arange(1600), np.arange(1600)) % 65521).astype("u2")
    tifffile.imwrite(single, data, extratags=GEOTAGS, **options)
    pyramid = folder / "pyramid.tif"
    base = (np.add.outer(np.arange(2048), np.arange(2048)) % 251).astype("u1")
    with tifffile.TiffWriter(pyramid) as tif:
        tif.write(base, extratags=GEOTAGS, **options)
        tif.write(base[::2, ::2], subfiletype=1, **options)
        tif.write(base[::4, ::4], subfiletype=1, **options)
    return [single, pyramid]


def check(path: Path) -> int:
    """Every level read through ManifestStore equals tifffile's; the number of tiles."""
    g = zms.scan(path)
    root = zarr.open_group(zms.ManifestStore(g), mode="r")
    tiles = 0
    with tifffile.TiffFile(path) as tif:
        for j, level in enumerate(tif.series[0].levels):
            key = f"{j}/image" if j else "image"
            assert np.array_equal(root[key][...], level.asarray()), (path, key)
            tiles += g[key].manifest.nchunks
    return tiles


def ours(path: Path, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        zms.scan(path)
        times.append(time.perf_counter() - t)
    return times


def peer(python: str, which: str, path: Path, repeats: int) -> list[float] | str:
    """A peer's times on ``path``, run by ``python``; or why it was not measured."""
    try:
        done = subprocess.run(
            [python, "-c", PEER_SCRIPT, str(path), which, str(repeats)],
            capture_output=True,
            text=True,
            check=True,
            timeout=600,
        )
    except (OSError, subprocess.SubprocessError) as e:
        detail = getattr(e, "stderr", "") or ""
        return f"not measured: {type(e).__name__} {detail.strip().splitlines()[-1:] or ''}"
    return json.loads(done.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--peers", default="/work/peers/.venv/bin/python")
    parser.add_argument("--rounds", type=int, default=ROUNDS)
    parser.add_argument("--repeats", type=int, default=3, help="scans per round and tool")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        for path in make_files(Path(tmp)):
            tiles = check(path)
            ours(path, 1)  # warm up
            times: dict[str, list[float]] = {"zms": [], "virtual-tiff": [], "kerchunk": []}
            failed: dict[str, str] = {}
            for _ in range(args.rounds):  # interleaved: the machine is shared
                times["zms"] += ours(path, args.repeats)
                for which in ("virtual-tiff", "kerchunk"):
                    if which in failed:
                        continue
                    result = peer(args.peers, which, path, args.repeats)
                    if isinstance(result, str):
                        failed[which] = result
                    else:
                        times[which] += result
            mine = statistics.median(times["zms"])
            print(f"{path.name}: {tiles} tiles (values equal tifffile's)")
            print(f"  zarr-manifest-store  median {mine * 1e3:8.1f} ms")
            for which in ("virtual-tiff", "kerchunk"):
                if which in failed:
                    print(f"  {which:<19}  {failed[which]}")
                    continue
                theirs = statistics.median(times[which])
                print(f"  {which:<19}  median {theirs * 1e3:8.1f} ms  ({theirs / mine:.1f}x ours)")


if __name__ == "__main__":
    main()
