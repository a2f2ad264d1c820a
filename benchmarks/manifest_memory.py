"""Memory per chunk reference of ChunkManifest: 1,000,000 references over 100 files.

Target (issue 2): <= 20 bytes per reference, the path table counted.
Measured two ways: the manifest's own `nbytes`, and the allocations that stay
alive once it is built (tracemalloc), so that neither can flatter the other.

    .venv/bin/python benchmarks/manifest_memory.py
"""

from __future__ import annotations

import gc
import tracemalloc

import numpy as np

from zarr_manifest_store import ChunkManifest

N_REFS = 1_000_000
N_FILES = 100
GRID = (N_FILES, N_REFS // N_FILES)


def build(rng: np.random.Generator) -> ChunkManifest:
    paths = [
        f"s3://archive-bucket/era5/2m_temperature/{i:04d}/t2m_{i:04d}.nc" for i in range(N_FILES)
    ]
    index = np.repeat(np.arange(N_FILES, dtype=np.uint32), N_REFS // N_FILES).reshape(GRID)
    lengths = rng.integers(20_000, 40_000, size=GRID, dtype=np.uint64)
    offsets = np.cumsum(lengths, axis=1, dtype=np.uint64) - lengths + 4096
    return ChunkManifest(paths=paths, path_index=index, offsets=offsets, lengths=lengths)


def main() -> None:
    rng = np.random.default_rng(0)
    gc.collect()
    tracemalloc.start()
    manifest = build(rng)
    gc.collect()
    retained, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"references:            {manifest.nchunks:,} over {len(manifest.paths)} files")
    print(
        f"nbytes:                {manifest.nbytes:,} B = {manifest.nbytes / N_REFS:.2f} B/reference"
    )
    print(
        f"retained allocations:  {retained:,} B = {retained / N_REFS:.2f} B/reference (peak {peak / N_REFS:.1f})"
    )
    ok = max(manifest.nbytes, retained) / N_REFS <= 20
    print(f"target <= 20 B/reference: {'met' if ok else 'MISSED'}")


if __name__ == "__main__":
    main()
