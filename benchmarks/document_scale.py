"""Chunk-manifest documents at scale: 10,000,000 references over 100 files.

Targets (issue 4): write <= 2 s; open + first chunk <= 50 ms; full manifest
load <= 1 s; on disk <= 3 bytes/reference for a regular layout and <= 10 for
random offsets (kerchunk JSON is ~70-90 bytes/reference, its parquet ~7).

Two layouts of one array (grid 100,000 x 100 chunks, 100 files of 100,000
chunks each): "regular" (equal chunks one after another, as in uncompressed
files) and "random" (random lengths at random offsets). Source files are sparse,
so the first chunk really is read from disk. Times are the best of a few runs,
imports excluded; the machine is shared, so compare ratios, not absolute times.

    .venv/bin/python benchmarks/document_scale.py [--references 10000000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import zarr

import zarr_manifest_store as zms
from zarr_manifest_store.manifest import Fingerprint

N_FILES = 100
CHUNK = (4, 8)  # float32: 128 bytes per chunk


def build(layout: str, n_refs: int, folder: Path) -> zms.ManifestGroup:
    """One array whose 100 files each hold a contiguous run of time chunks."""
    per_file = n_refs // N_FILES
    grid = (n_refs // 100, 100)
    rng = np.random.default_rng(0)
    paths = [str(folder / f"source_{i:03d}.bin") for i in range(N_FILES)]
    index = np.repeat(np.arange(N_FILES, dtype=np.uint32), per_file).reshape(grid)
    if layout == "regular":
        lengths = np.full(grid, 128, dtype=np.uint64)
        within = np.tile(np.arange(per_file, dtype=np.uint64), N_FILES).reshape(grid)
        offsets = 4096 + within * 128
    else:
        lengths = rng.integers(100, 65_536, size=grid, dtype=np.uint64)
        offsets = rng.integers(0, 2**34, size=grid, dtype=np.uint64)
        lengths[0, 0] = 128  # the chunk the benchmark reads decodes as raw float32
    ends = np.zeros(N_FILES, dtype=np.uint64)
    np.maximum.at(ends, index.ravel(), (offsets + lengths).ravel())
    fingerprints = {}
    for path, end in zip(paths, ends, strict=True):
        with open(path, "wb") as f:
            f.truncate(int(end))  # sparse: zeros, which decode as 0.0
        st = os.stat(path)
        fingerprints[path] = Fingerprint(size=st.st_size, mtime_ns=st.st_mtime_ns)
    manifest = zms.ChunkManifest(
        paths=paths, path_index=index, offsets=offsets, lengths=lengths, fingerprints=fingerprints
    )
    metadata = {
        "shape": [grid[0] * CHUNK[0], grid[1] * CHUNK[1]],
        "data_type": "float32",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(CHUNK)}},
        "chunk_key_encoding": {"name": "default"},
        "fill_value": 0.0,
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
        "dimension_names": ["time", "x"],
    }
    array = zms.ManifestArray(metadata=metadata, manifest=manifest)
    return zms.ManifestGroup(arrays={"t2m": array})


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def disk_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def run(layout: str, n_refs: int, repeat: int, tmp: Path) -> dict[str, float]:
    sources = tmp / f"{layout}-sources"
    sources.mkdir()
    group = build(layout, n_refs, sources)
    out = tmp / f"{layout}.zarr"

    write = best(lambda: zms.write_manifest(group, out, mode="w"), repeat)
    size = disk_bytes(out)

    def first_chunk() -> None:
        store = zms.ManifestStore.open(out, allow=[str(sources)])
        values = zarr.open_group(store, mode="r")["t2m"][: CHUNK[0], : CHUNK[1]]
        assert values.shape == CHUNK

    first = best(first_chunk, repeat * 3)

    def full_load() -> None:
        store = zms.ManifestStore.open(out, allow=[str(sources)])
        manifest = store.root["t2m"].manifest.load()
        assert manifest.nchunks == n_refs

    load = best(full_load, repeat)
    reopened = zms.ManifestStore.open(out, allow=[str(sources)]).root["t2m"].manifest.load()
    assert reopened.equals(group["t2m"].manifest), "the document does not round-trip"
    return {"write": write, "bytes": size / n_refs, "first": first, "load": load}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--references", type=int, default=10_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    targets = {"regular": 3, "random": 10}
    with tempfile.TemporaryDirectory() as tmp:
        for layout in ("regular", "random"):
            r = run(layout, args.references, args.repeat, Path(tmp))
            print(
                f"{layout:8s} {args.references:,} refs: write {r['write']:.2f} s (<= 2), "
                f"on disk {r['bytes']:.2f} B/ref (<= {targets[layout]}), "
                f"open + first chunk {r['first'] * 1e3:.1f} ms (<= 50), "
                f"full load {r['load']:.2f} s (<= 1)"
            )
            ok = (
                r["write"] <= 2
                and r["bytes"] <= targets[layout]
                and r["first"] <= 0.05
                and r["load"] <= 1
            )
            print(f"{'':8s} targets {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
