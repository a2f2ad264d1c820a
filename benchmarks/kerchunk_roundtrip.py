"""Kerchunk export and import at scale: time and bytes per reference, JSON and parquet.

    .venv/bin/python benchmarks/kerchunk_roundtrip.py [--refs 1000000] [--files 100]

Builds one array of ``--refs`` chunk references spread over ``--files``
source paths (offsets in file order, as a scanner produces them), then times
``to_kerchunk`` (JSON, parquet) and ``scan_kerchunk`` reading each back, and
checks that the round trip gives the same manifest.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

import zarr_manifest_store as zms


def build(nrefs: int, nfiles: int) -> zms.ManifestGroup:
    per_file = nrefs // nfiles
    grid = (nfiles * per_file,)
    paths = np.repeat([f"/data/archive/file_{i:04d}.nc" for i in range(nfiles)], per_file)
    rng = np.random.default_rng(0)
    lengths = rng.integers(20_000, 40_000, grid).astype(np.uint64)
    offsets = np.zeros(grid, dtype=np.uint64)
    for f in range(nfiles):
        block = slice(f * per_file, (f + 1) * per_file)
        offsets[block] = 4096 + np.concatenate([[0], np.cumsum(lengths[block])[:-1]])
    manifest = zms.ChunkManifest.from_arrays(paths=paths, offsets=offsets, lengths=lengths)
    meta = {
        "shape": [grid[0] * 100], "data_type": "float32", "fill_value": 0.0,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [100]}},
        "chunk_key_encoding": {"name": "default"}, "dimension_names": ["time"],
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}},
                   {"name": "numcodecs.zlib", "configuration": {"level": 1}}],
    }  # fmt: skip
    return zms.ManifestGroup(arrays={"t2m": zms.ManifestArray(metadata=meta, manifest=manifest)})


def size_of(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*")) if path.is_dir() else path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refs", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=100)
    args = parser.parse_args()
    group = build(args.refs, args.files)
    n = group["t2m"].manifest.nchunks
    print(f"{n:,} references over {args.files} files")
    with tempfile.TemporaryDirectory() as tmp:
        for fmt, name in (("json", "refs.json"), ("parquet", "refs.parq")):
            url = Path(tmp) / name
            t0 = time.perf_counter()
            zms.to_kerchunk(group, url, format=fmt)
            write = time.perf_counter() - t0
            t0 = time.perf_counter()
            back = zms.scan_kerchunk(url)
            read = time.perf_counter() - t0
            assert back["t2m"].manifest.equals(group["t2m"].manifest)
            print(
                f"{fmt:8s} write {write:6.2f} s  read {read:6.2f} s  "
                f"{size_of(url) / n:6.1f} bytes/reference"
            )


if __name__ == "__main__":
    main()
