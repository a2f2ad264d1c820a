"""Writing 1,000,000 virtual references into an Icechunk repository, against VirtualiZarr 2.8.

    .venv/bin/python benchmarks/to_icechunk.py [--refs 1000000] [--files 1000] [--repeat 7]
        [--peers /work/peers/.venv/bin/python] [--cases file,file-named,s3]

The same dataset for both: one array whose chunk grid has a row of references per source
file (``--files`` files, offsets in file order as a scanner produces them). Each run is a
fresh process writing into a fresh repository on local storage; the write (the call) and
the commit are timed apart:

- ``zms.to_icechunk`` of a ManifestGroup whose files carry scan-time fingerprints (one
  modification time each: one Icechunk checksum per file), and of one without fingerprints;
- VirtualiZarr 2.8's ``vds.vz.to_icechunk`` (in the peers' venv), which gives every
  reference one checksum (the time of writing);
- Icechunk's floor: one bare ``set_virtual_refs_arr`` call with the columns ready (a list of
  the locations as written, one checksum), what any writer pays at least;
- the floor with a checksum per file: one bare call per file (its row of the grid, its own
  checksum, columns ready, one after another in one thread), what a writer keeping every
  file's checksum pays at least without overlapping Icechunk's insertion with its building.

Cases: local files under a container that is unnamed (``file``: locations are whole
``file://`` URLs, which Icechunk parses, every one, holding the GIL) or named
(``file-named``: ``to_icechunk`` writes ``vcc://name/...`` locations, which it takes as they
are), and objects on S3 under an unnamed container (``s3``: whole ``s3://`` URLs, which it
also takes as they are; nothing is read, so no server is needed). The write (the call, wall
and CPU time) and the commit are timed apart, the same way for every contender, each in a
fresh process writing into a fresh repository with the same configuration.

Rounds: each round runs every contender once, in turn (the order reversed every other
round, so that neither end of a round is always the same contender); a round's ratios
(VirtualiZarr's write time over each of ours, wall and CPU) are printed as it ends, and at
the end the median of the rounds' ratios, their lowest and highest, against the target
(``zms.to_icechunk`` with a checksum per file at least 2x as fast as VirtualiZarr's).

Memory: the peak resident size during the write and commit above the size before (Linux
``VmHWM``, reset before the write: mostly Icechunk's own session, in Rust), and in one more
run the peak of Python's and NumPy's allocations during the write (tracemalloc), against the
manifest's own size in memory.
"""

from __future__ import annotations

import argparse
import json
import os
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
TARGET = 2.0  # issue #19: to_icechunk of 1,000,000 references at least 2x VirtualiZarr 2.8
CHUNK = (24, 100)


BUCKET = "s3://archive-bucket/"


def columns(
    nrefs: int, nfiles: int, scheme: str = "file"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Grid-shaped paths, offsets and lengths: file ``i`` holds row ``i`` of the chunk grid;
    local paths, or with ``scheme="s3"`` URLs in one bucket."""
    per_file = nrefs // nfiles
    folder = "/data/" if scheme == "file" else BUCKET
    names = np.array([f"{folder}archive/file_{i:04d}.nc" for i in range(nfiles)])
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


def repository(folder: str, case: str) -> Any:  # icechunk.Repository, in either venv
    """A new repository in ``folder`` declaring the case's one virtual chunk container."""
    import icechunk as ic

    config = ic.RepositoryConfig.default()
    if case == "s3":
        container = ic.VirtualChunkContainer(BUCKET, ic.s3_store(region="us-east-1"))
    else:
        name = "archive" if case == "file-named" else None
        store = ic.local_filesystem_store("/data/")
        container = ic.VirtualChunkContainer("file:///data/", store, name=name)
    config.set_virtual_chunk_container(container)
    return ic.Repository.create(ic.local_filesystem_storage(folder), config)


def scheme_of(case: str) -> str:
    return "s3" if case == "s3" else "file"


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
    t0, c0 = time.perf_counter(), time.process_time()
    write()
    t1, c1 = time.perf_counter(), time.process_time()
    traced = tracemalloc.get_traced_memory()[1] if trace else 0
    tracemalloc.stop()
    commit()
    t2 = time.perf_counter()
    return {"write": t1 - t0, "cpu": c1 - c0, "commit": t2 - t1, "peak": peak_since_reset() - before,
            "python": traced}  # fmt: skip


def ours(nrefs: int, nfiles: int, fingerprints: bool, folder: str, case: str, trace: bool) -> dict:
    import zarr_manifest_store as zms

    paths, offsets, lengths = columns(nrefs, nfiles, scheme_of(case))
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
    session = repository(folder, case).writable_session("main")
    result = timed(
        lambda: zms.to_icechunk(group, session.store), lambda: session.commit("write"), trace
    )
    return {**result, "manifest": manifest.nbytes}


def floor(nrefs: int, nfiles: int, folder: str, case: str, trace: bool, per_file: bool) -> dict:
    """Icechunk alone: the array's metadata written, then one call with ready columns, or
    with ``per_file`` one call per file (a row of the grid) with that file's checksum."""
    from datetime import UTC, datetime

    import zarr

    paths, offsets, lengths = columns(nrefs, nfiles, scheme_of(case))
    prefix = {"file": "file://", "file-named": "vcc://archive", "s3": ""}[case]
    strip = "/data" if case == "file-named" else ""
    locations = [prefix + p.removeprefix(strip) for p in paths.reshape(-1).tolist()]
    rows = [locations[i : i + paths.shape[1]] for i in range(0, len(locations), paths.shape[1])]
    times = [datetime.fromtimestamp(1_700_000_000 + i, UTC) for i in range(nfiles)]
    session = repository(folder, case).writable_session("main")
    meta = metadata(paths.shape)
    zarr.create_array(
        session.store, name="t2m", shape=meta["shape"], chunks=CHUNK, dtype="float32",
        compressors=None, dimension_names=meta["dimension_names"], fill_value=0.0,
    )  # fmt: skip
    del paths
    checksum = datetime(2026, 1, 1, tzinfo=UTC)

    def write() -> None:
        session.store.set_virtual_refs_arr(
            "t2m", (nfiles, nrefs // nfiles), locations, offsets.reshape(-1), lengths.reshape(-1),
            validate_containers=False, checksum=checksum,
        )  # fmt: skip

    def write_per_file() -> None:
        for i, row in enumerate(rows):
            session.store.set_virtual_refs_arr(
                "t2m", (1, len(row)), row, offsets[i], lengths[i],
                validate_containers=False, arr_offset=(i, 0), checksum=times[i],
            )  # fmt: skip

    result = timed(write_per_file if per_file else write, lambda: session.commit("write"), trace)
    return {**result, "manifest": offsets.nbytes + lengths.nbytes + 8 * len(locations)}


def peer(nrefs: int, nfiles: int, folder: str, case: str, trace: bool) -> dict:
    import xarray as xr
    from virtualizarr.manifests import ChunkManifest, ManifestArray
    from zarr.core.metadata.v3 import ArrayV3Metadata

    paths, offsets, lengths = columns(nrefs, nfiles, scheme_of(case))
    prefix = "" if case == "s3" else "file://"
    manifest = ChunkManifest.from_arrays(
        paths=np.char.add(prefix, paths).astype(np.dtypes.StringDType()),
        offsets=offsets,
        lengths=lengths,
    )
    del paths
    meta = ArrayV3Metadata.from_dict(metadata(manifest.shape_chunk_grid))
    array = ManifestArray(metadata=meta, chunkmanifest=manifest)
    vds = xr.Dataset({"t2m": (("time", "x"), array)})
    session = repository(folder, case).writable_session("main")
    result = timed(
        lambda: vds.vz.to_icechunk(session.store), lambda: session.commit("write"), trace
    )
    return {**result, "manifest": int(manifest.nbytes)}


def run(python: str, role: str, args: argparse.Namespace, case: str, trace: bool = False) -> dict:
    with tempfile.TemporaryDirectory() as folder:
        command = [python, __file__, "--role", role, "--refs", str(args.refs)]
        command += ["--files", str(args.files), "--folder", folder, "--case", case]
        command += ["--trace"] if trace else []
        out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--refs", type=int, default=1_000_000)
    parser.add_argument("--files", type=int, default=1000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--peers", default=PEER_PYTHON)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--role", choices=["ours", "ours-bare", "peer", "floor", "floor-calls"])
    parser.add_argument("--folder")
    parser.add_argument("--case", choices=list(CASES), default="file")
    parser.add_argument("--trace", action="store_true")
    args = parser.parse_args()
    if args.role:
        print(json.dumps(play(args)))
        return
    contenders = [
        ("zms.to_icechunk, a checksum per file", sys.executable, "ours"),
        ("zms.to_icechunk, no fingerprints", sys.executable, "ours-bare"),
        ("Icechunk's floor: one bare call", sys.executable, "floor"),
        ("floor, a bare call per file+checksum", sys.executable, "floor-calls"),
    ]
    if Path(args.peers).exists():
        contenders.append(("VirtualiZarr 2.8 vz.to_icechunk", args.peers, "peer"))
    print(
        f"{args.refs:,} references over {args.files:,} files; median of {args.repeat} runs "
        f"(load average {os.getloadavg()[0]:.1f} at the start). Checksums written: ours, the "
        "modification time of each file (one per file); ours without fingerprints and the "
        "floor, one for all; the floor per file, one per file; VirtualiZarr, one for all (the "
        "time of writing, as its to_icechunk does by default)"
    )
    for case in args.cases.split(","):
        print(f"repository with {CASES[case]}:")
        compare(contenders, args, case)


CASES = {
    "file": "an unnamed container for local files (whole file:// URLs)",
    "file-named": "a named container for local files (vcc:// locations)",
    "s3": "an unnamed container for S3 objects (whole s3:// URLs)",
}


def play(args: argparse.Namespace) -> dict:
    """One contender's run, in this process."""
    if args.role == "peer":
        return peer(args.refs, args.files, args.folder, args.case, args.trace)
    if args.role in ("floor", "floor-calls"):
        per_file = args.role == "floor-calls"
        return floor(args.refs, args.files, args.folder, args.case, args.trace, per_file)
    fingerprints = args.role == "ours"
    return ours(args.refs, args.files, fingerprints, args.folder, args.case, args.trace)


def compare(contenders: list[tuple[str, str, str]], args: argparse.Namespace, case: str) -> None:
    """Each round runs every contender once, in turn (the order reversed every other round),
    so that load on the machine hits all alike; each round's ratios are printed as it ends."""
    runs: dict[str, list[dict]] = {role: [] for _, _, role in contenders}
    for round_ in range(args.repeat):
        order = contenders if round_ % 2 == 0 else contenders[::-1]
        for _, python, role in order:
            runs[role].append(run(python, role, args, case))
        if "peer" in runs:
            print(f"  round {round_ + 1}: " + round_ratios(runs, round_), flush=True)
    writes = {}
    contenders_python = {role: python for _, python, role in contenders}
    for name, _, role in contenders:
        write = statistics.median(r["write"] for r in runs[role])
        cpu = statistics.median(r["cpu"] for r in runs[role])
        commit = statistics.median(r["commit"] for r in runs[role])
        peak = max(r["peak"] for r in runs[role]) / 2**20
        manifest = runs[role][0]["manifest"] / 2**20
        python = run(contenders_python[role], role, args, case, trace=True)["python"] / 2**20
        writes[role] = write
        print(
            f"  {name:36s} write {write:5.2f} s (CPU {cpu:5.2f} s)  commit {commit:5.2f} s  "
            f"peak RSS +{peak:4.0f} MiB, Python +{python:5.1f} MiB (manifest {manifest:4.1f} MiB)"
        )
    if "peer" in writes:
        for role in ("ours", "ours-bare", "floor", "floor-calls"):
            ratios = [
                p["write"] / r["write"] for p, r in zip(runs["peer"], runs[role], strict=True)
            ]
            cpu = [p["cpu"] / r["cpu"] for p, r in zip(runs["peer"], runs[role], strict=True)]
            print(
                f"  {role}: write {statistics.median(ratios):.2f}x as fast as VirtualiZarr's "
                f"(median of the rounds' ratios; lowest {min(ratios):.2f}x, highest "
                f"{max(ratios):.2f}x; CPU time {statistics.median(cpu):.2f}x)"
            )
            if role == "ours":
                met = "met" if statistics.median(ratios) >= TARGET else "NOT met"
                print(f"  target (ours >= {TARGET:g}x VirtualiZarr's write, median): {met}")


def round_ratios(runs: dict[str, list[dict]], round_: int) -> str:
    """VirtualiZarr's write time over each of ours in one round (wall, then CPU)."""
    peer = runs["peer"][round_]
    return ", ".join(
        f"{role} {peer['write'] / runs[role][round_]['write']:.2f}x "
        f"(CPU {peer['cpu'] / runs[role][round_]['cpu']:.2f}x)"
        for role in runs
        if role != "peer"
    )


if __name__ == "__main__":
    main()
