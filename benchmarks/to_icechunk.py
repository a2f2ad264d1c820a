"""Writing 1,000,000 virtual references into an Icechunk repository, against VirtualiZarr 2.8.

    .venv/bin/python benchmarks/to_icechunk.py [--refs 1000000] [--files 1000] [--repeat 3]
        [--peers /work/peers/.venv/bin/python]

The same dataset for both: one array whose chunk grid has a row of references per source
file (``--files`` files, offsets in file order as a scanner produces them). Each run is a
fresh process writing into a fresh repository on local storage; the write (the call) and
the commit are timed apart:

- ``zms.to_icechunk`` of a ManifestGroup whose files carry scan-time fingerprints (one
  modification time each: one Icechunk checksum per file), and of one without fingerprints;
- VirtualiZarr 2.8's ``vds.vz.to_icechunk`` (in the peers' venv), which gives every
  reference one checksum (the time of writing).

Both with a repository whose container is unnamed (locations are whole URLs) and named
(``to_icechunk`` then writes ``vcc://name/...`` locations, which Icechunk takes faster).

Memory: the peak resident size during the write and commit above the size before (Linux
``VmHWM``, reset before the write: mostly Icechunk's own session, in Rust), and in one more
run the peak of Python's and NumPy's allocations during the write (tracemalloc), against the
manifest's own size in memory.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

PEER_PYTHON = "/work/peers/.venv/bin/python"
CHUNK = (24, 100)


def columns(nrefs: int, nfiles: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid-shaped paths, offsets and lengths: file ``i`` holds row ``i`` of the chunk grid."""
    per_file = nrefs // nfiles
    names = np.array([f"/data/archive/file_{i:04d}.nc" for i in range(nfiles)])
    paths = np.repeat(names[:, None], per_file, axis=1)
    rng = np.random.default_rng(0)
    lengths = rng.integers(20_000, 40_000, (nfiles, per_file)).astype(np.uint64)
    offsets = 4096 + np.cumsum(lengths, axis=1) - lengths
    return paths, offsets.astype(np.uint64), lengths


def metadata(grid: tuple[int, int]) -> dict:
    return {
        "zarr_format": 3, "node_type": "array",
        "shape": [grid[0] * CHUNK[0], grid[1] * CHUNK[1]], "data_type": "float32",
        "fill_value": 0.0, "dimension_names": ["time", "x"],
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(CHUNK)}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}},
                   {"name": "zstd", "configuration": {"level": 1, "checksum": False}}],
    }  # fmt: skip


def repository(folder: str, named: bool) -> Any:  # icechunk.Repository, in either venv
    import icechunk as ic

    config = ic.RepositoryConfig.default()
    store = ic.local_filesystem_store("/data/")
    name = "archive" if named else None
    config.set_virtual_chunk_container(ic.VirtualChunkContainer("file:///data/", store, name=name))
    return ic.Repository.create(ic.local_filesystem_storage(folder), config)


def peak_since_reset() -> int:
    """Peak resident bytes since :func:`reset_peak` (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status")


def resident() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def reset_peak() -> None:
    Path("/proc/self/clear_refs").write_text("5")


def timed(write: Callable[[], None], commit: Callable[[], None], trace: bool) -> dict:
    """Time ``write`` and ``commit``; their peak resident growth, or with ``trace`` the peak of
    Python's (and NumPy's) own allocations during ``write`` (tracemalloc: Rust's are not seen)."""
    before = resident()
    reset_peak()
    if trace:
        tracemalloc.start()
    t0 = time.perf_counter()
    write()
    t1 = time.perf_counter()
    traced = tracemalloc.get_traced_memory()[1] if trace else 0
    tracemalloc.stop()
    commit()
    t2 = time.perf_counter()
    return {"write": t1 - t0, "commit": t2 - t1, "peak": peak_since_reset() - before,
            "python": traced}  # fmt: skip


def ours(
    nrefs: int, nfiles: int, fingerprints: bool, folder: str, named: bool, trace: bool
) -> dict:
    import zarr_manifest_store as zms

    paths, offsets, lengths = columns(nrefs, nfiles)
    recorded = (
        {p: zms.manifest.Fingerprint(size=10**9, mtime_ns=(1_700_000_000 + i) * 10**9)
         for i, p in enumerate(paths[:, 0].tolist())}
        if fingerprints else None
    )  # fmt: skip
    manifest = zms.ChunkManifest.from_arrays(
        paths=paths, offsets=offsets, lengths=lengths, fingerprints=recorded
    )
    del paths
    array = zms.ManifestArray(metadata=metadata(manifest.shape), manifest=manifest)
    group = zms.ManifestGroup(arrays={"t2m": array})
    session = repository(folder, named).writable_session("main")
    result = timed(
        lambda: zms.to_icechunk(group, session.store), lambda: session.commit("write"), trace
    )
    return {**result, "manifest": manifest.nbytes}


def peer(nrefs: int, nfiles: int, folder: str, named: bool, trace: bool) -> dict:
    import xarray as xr
    from virtualizarr.manifests import ChunkManifest, ManifestArray
    from zarr.core.metadata.v3 import ArrayV3Metadata

    paths, offsets, lengths = columns(nrefs, nfiles)
    manifest = ChunkManifest.from_arrays(
        paths=np.char.add("file://", paths).astype(np.dtypes.StringDType()),
        offsets=offsets,
        lengths=lengths,
    )
    del paths
    meta = ArrayV3Metadata.from_dict(metadata(manifest.shape_chunk_grid))
    array = ManifestArray(metadata=meta, chunkmanifest=manifest)
    vds = xr.Dataset({"t2m": (("time", "x"), array)})
    session = repository(folder, named).writable_session("main")
    result = timed(
        lambda: vds.vz.to_icechunk(session.store), lambda: session.commit("write"), trace
    )
    return {**result, "manifest": int(manifest.nbytes)}


def run(python: str, role: str, args: argparse.Namespace, named: bool, trace: bool = False) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        command = [python, __file__, "--role", role, "--refs", str(args.refs)]
        command += ["--files", str(args.files), "--folder", folder]
        command += ["--named"] if named else []
        command += ["--trace"] if trace else []
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refs", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--peers", default=PEER_PYTHON)
    parser.add_argument("--role", choices=["ours", "ours-bare", "peer"])
    parser.add_argument("--folder")
    parser.add_argument("--named", action="store_true")
    parser.add_argument("--trace", action="store_true")
    args = parser.parse_args()
    if args.role:
        if args.role == "peer":
            result = peer(args.refs, args.files, args.folder, args.named, args.trace)
        else:
            fingerprints = args.role == "ours"
            result = ours(args.refs, args.files, fingerprints, args.folder, args.named, args.trace)
        print(json.dumps(result))
        return
    contenders = [
        ("zms.to_icechunk, a checksum per file", sys.executable, "ours"),
        ("zms.to_icechunk, no fingerprints", sys.executable, "ours-bare"),
    ]
    if Path(args.peers).exists():
        contenders.append(("VirtualiZarr 2.8 vz.to_icechunk", args.peers, "peer"))
    print(f"{args.refs:,} references over {args.files:,} files; median of {args.repeat} runs")
    for named in (False, True):
        label = "a named container (vcc://)" if named else "an unnamed container"
        print(f"repository with {label}:")
        compare(contenders, args, named)


def compare(contenders: list[tuple[str, str, str]], args: argparse.Namespace, named: bool) -> None:
    """Each round runs every contender once (in turn, so that load on the machine hits all)."""
    runs: dict[str, list[dict]] = {role: [] for _, _, role in contenders}
    for _ in range(args.repeat):
        for _, python, role in contenders:
            runs[role].append(run(python, role, args, named))
    writes = {}
    contenders_python = {role: python for _, python, role in contenders}
    for name, _, role in contenders:
        write = statistics.median(r["write"] for r in runs[role])
        commit = statistics.median(r["commit"] for r in runs[role])
        peak = max(r["peak"] for r in runs[role]) / 2**20
        manifest = runs[role][0]["manifest"] / 2**20
        python = run(contenders_python[role], role, args, named, trace=True)["python"] / 2**20
        writes[role] = write
        print(
            f"  {name:36s} write {write:5.2f} s  commit {commit:5.2f} s  peak RSS +{peak:4.0f} "
            f"MiB, Python +{python:5.1f} MiB (manifest {manifest:4.1f} MiB)"
        )
    if "peer" in writes:
        for role in ("ours", "ours-bare"):
            print(f"  {role}: write {writes['peer'] / writes[role]:.1f}x as fast as VirtualiZarr's")


if __name__ == "__main__":
    main()
