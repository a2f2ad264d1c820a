"""Time np.concatenate over many ManifestArrays, side by side with VirtualiZarr's.

Each input stands for one daily file of (24, 180, 360) float32, chunked
(1, 90, 180): 96 references per file, every file its own path. We time only
the concatenation (inputs are built beforehand), best of 3, for 48 to 10,000
files, and a ragged case (25 steps, chunks of 2: uncompressed edge chunks are
shortened) that VirtualiZarr refuses. VirtualiZarr runs in the peers' venv
when it exists, through this same script.

    .venv/bin/python benchmarks/concat_many.py
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

COUNTS = (48, 1000, 10_000)
SHAPE, CHUNKS = (24, 180, 360), (1, 90, 180)
RAGGED_SHAPE, RAGGED_CHUNKS = (25, 180, 360), (2, 90, 180)
PEER_PYTHON = Path("/work/peers/.venv/bin/python")


def grids(n_files: int, shape: tuple[int, ...], chunks: tuple[int, ...]):
    """Per file: (path, offsets, lengths) over its chunk grid, as a scanner would find them."""
    grid = tuple(-(-s // c) for s, c in zip(shape, chunks, strict=True))
    nbytes = int(np.prod(chunks)) * 4
    offsets = (4096 + np.arange(int(np.prod(grid)), dtype=np.uint64) * nbytes).reshape(grid)
    lengths = np.full(grid, nbytes, dtype=np.uint64)
    for i in range(n_files):
        yield f"s3://archive/era5/t2m/{i:05d}.nc", offsets, lengths


def zms_arrays(n_files: int, shape: tuple[int, ...], chunks: tuple[int, ...]) -> list[Any]:
    import zarr_manifest_store as zms

    meta = {
        "shape": list(shape),
        "data_type": "float32",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(chunks)}},
        "chunk_key_encoding": {"name": "default"},
        "fill_value": 0.0,
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
        "attributes": {"units": "K"},
    }
    out = []
    for path, offsets, lengths in grids(n_files, shape, chunks):
        index = np.zeros(offsets.shape, dtype=np.uint32)
        m = zms.ChunkManifest(paths=[path], path_index=index, offsets=offsets, lengths=lengths)
        out.append(zms.ManifestArray(metadata=meta, manifest=m))
    return out


def virtualizarr_arrays(n_files: int, shape: tuple[int, ...], chunks: tuple[int, ...]) -> list[Any]:
    from virtualizarr.manifests import ChunkManifest, ManifestArray
    from virtualizarr.manifests.utils import create_v3_array_metadata

    meta = create_v3_array_metadata(
        shape=shape,
        data_type=np.dtype("float32"),
        chunk_shape=chunks,
        fill_value=0.0,
        codecs=[{"name": "bytes", "configuration": {"endian": "little"}}],
        attributes={"units": "K"},
    )
    out = []
    for path, offsets, lengths in grids(n_files, shape, chunks):
        paths = np.full(offsets.shape, path, dtype=np.dtypes.StringDType())
        m = ChunkManifest.from_arrays(paths=paths, offsets=offsets, lengths=lengths)
        out.append(ManifestArray(metadata=meta, chunkmanifest=m))
    return out


def best_of_3(arrays: list[Any]) -> float | str:
    times = []
    for _ in range(3):
        start = time.perf_counter()
        try:
            np.concatenate(arrays, axis=0)
        except Exception as e:
            return f"refused ({type(e).__name__})"
        times.append(time.perf_counter() - start)
    return min(times)


def run(impl: str) -> dict[str, Any]:
    build = zms_arrays if impl == "zms" else virtualizarr_arrays
    results: dict[str, Any] = {}
    for n in COUNTS:
        results[f"{n} files"] = best_of_3(build(n, SHAPE, CHUNKS))
    results["1000 ragged files"] = best_of_3(build(1000, RAGGED_SHAPE, RAGGED_CHUNKS))
    return results


def main() -> None:
    if len(sys.argv) > 1:  # a worker: one implementation, JSON out
        print(json.dumps(run(sys.argv[1])))
        return
    ours = run("zms")
    peer: dict[str, Any] = {}
    if PEER_PYTHON.exists():
        done = subprocess.run(
            [str(PEER_PYTHON), __file__, "virtualizarr"],
            capture_output=True,
            text=True,
            check=False,
        )
        peer = json.loads(done.stdout) if done.returncode == 0 else {}
        if done.returncode:
            print(f"VirtualiZarr run failed: {done.stderr[-500:]}")

    def show(v: Any) -> str:
        return f"{v * 1000:9.1f} ms" if isinstance(v, float) else f"{v:>12}"

    print(f"np.concatenate of (24, 180, 360) float32 files, chunks {CHUNKS}; best of 3")
    print(f"{'case':<18} {'zarr-manifest-store':>20} {'VirtualiZarr':>22} {'ratio':>7}")
    for case, mine in ours.items():
        theirs = peer.get(case, "n/a")
        ratio = (
            f"{theirs / mine:6.1f}x"
            if isinstance(mine, float) and isinstance(theirs, float)
            else "      -"
        )
        print(f"{case:<18} {show(mine):>20} {show(theirs):>22} {ratio:>7}")


if __name__ == "__main__":
    main()
