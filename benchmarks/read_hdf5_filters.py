"""Reading HDF5's LZF, LZ4 and bitshuffle datasets: ManifestStore against h5py.

One file, written with h5py and hdf5plugin: 16 frames of 2048 x 2048 Poisson counts
(uint32, a detector's images), one chunk a frame, once with each filter. Each round reads
every dataset whole with h5py (hdf5plugin's filters) and through a ManifestStore of the
scanned file (the package's codecs, imagecodecs decoding), interleaved; the figures are
medians of ``--rounds`` rounds, and the values are checked equal.

    .venv/bin/python benchmarks/read_hdf5_filters.py [--rounds 5]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import zarr

import zarr_manifest_store as zms

FILTERS = {
    "lzf": {"compression": "lzf"},
    "lz4": dict(hdf5plugin.LZ4()),
    "bitshuffle+lz4": dict(hdf5plugin.Bitshuffle(cname="lz4")),
    "bitshuffle+zstd": dict(hdf5plugin.Bitshuffle(cname="zstd")),
}
SHAPE = (16, 2048, 2048)


def timed(array) -> tuple[float, np.ndarray]:
    """Seconds to read all of ``array`` (an h5py dataset or a zarr array), and its values."""
    start = time.perf_counter()
    values = array[...]
    return time.perf_counter() - start, values


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    data = np.random.default_rng(0).poisson(3, size=SHAPE).astype("u4")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "frames.h5"
        with h5py.File(path, "w") as f:
            for name, options in FILTERS.items():
                f.create_dataset(name, data=data, chunks=(1, *SHAPE[1:]), **options)
        group = zarr.open_group(zms.ManifestStore(zms.scan(path)), mode="r")
        print(f"{len(FILTERS)} datasets of {data.nbytes / 2**20:.0f} MiB, {SHAPE[0]} chunks each")
        with h5py.File(path, "r") as f:
            for name in FILTERS:
                theirs, ours = [], []
                for _ in range(args.rounds):
                    seconds, expected = timed(f[name])
                    theirs.append(seconds)
                    seconds, values = timed(group[name])
                    ours.append(seconds)
                    assert np.array_equal(values, expected), name
                a, b = statistics.median(ours), statistics.median(theirs)
                print(f"  {name:16} ManifestStore {a:6.3f} s   h5py {b:6.3f} s   ({b / a:.1f}x)")


if __name__ == "__main__":
    main()
