"""Read speed of ManifestStore, side by side with VirtualiZarr, kerchunk and a bare loop.

The archive: 48 netCDF4/HDF5 files, each with ``t2m`` (24, 180, 360) float32 in
chunks of (1, 180, 360) and ``u10`` of the same shape in small (1, 30, 30) chunks,
zlib level 1 + shuffle. Manifests are built by hand from h5py's ``chunk_iter``.

Measured, each contender in a fresh process, contenders interleaved round by
round (the machine is shared: only ratios within one run mean anything):

- ``full``: all of ``t2m`` through ``xr.open_zarr(store, chunks=None)`` (one zarr
  read of the whole variable), ``full+dask`` through ``xr.open_zarr(store)``
  (dask, one task per chunk) and ``full+auto`` with ``chunks="auto"`` (dask's
  ~128 MiB chunks, whole multiples of the Zarr chunks); the bare single-threaded loop does
  pread + zlib + unshuffle per chunk (``bare``), or also writes each chunk into
  the output array (``bare+out``). MB/s of decoded data (wall clock), the CPU
  cores the process kept busy, and MB per CPU-second (less sensitive to a busy
  machine: it measures overhead, not parallelism).
- ``random``: one random ``u10`` chunk through a zarr array, latency in µs.
- ``zms`` reads as shipped: through ``ManifestCodecPipeline`` (zarr's fused
  pipeline: each chunk read and decoded in one call on a thread pool, zlib
  inflated by libdeflate when imagecodecs is installed, as it is here);
  ``zms+batched`` with zarr's default ``BatchedCodecPipeline`` instead;
  ``zms+stdlib`` as shipped but without imagecodecs (the standard library's zlib).
- ``virtualizarr+fused``: VirtualiZarr with zarr's opt-in
  ``FusedCodecPipeline`` (``zarr.config.set({"codec_pipeline.path":
  "zarr.core.codec_pipeline.FusedCodecPipeline"})``).
- ``get``: ``await store.get`` of a random chunk (ManifestStore, VirtualiZarr's
  ManifestStore, kerchunk's reference file system through zarr's FsspecStore),
  against a bare ``os.pread`` of the same bytes on an open descriptor, µs.

    .venv/bin/python benchmarks/read_speed.py [--rounds 3] [--data /tmp/zms-read-bench]
        [--peers /work/peers/.venv/bin/python] [--before /path/to/an/older/checkout ...]
        [--only zms,zms@checkout]

``--before PATH`` (repeatable) adds ``zms@NAME`` (NAME: the folder's name): the same
reads by the package found at that path (``PYTHONPATH``), interleaved with today's, for
now/before ratios.

Targets: full >= 2x VirtualiZarr (issue 6) and >= 1.6x the bare loop (issue 22, 2
cores); random <= 0.5x VirtualiZarr (issue 6). A ``get``'s cost against a bare pread is reported without a
target: the package is pure Python, and a read through zarr is what users pay.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import statistics
import subprocess
import sys
import time
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np

N_FILES, STEPS, NY, NX = 48, 24, 180, 360
VARIABLES = {"t2m": (1, NY, NX), "u10": (1, 30, 30)}
SHAPE = (N_FILES * STEPS, NY, NX)
FULL_BYTES = int(np.prod(SHAPE)) * 4


# ---------------------------------------------------------------------- the archive


def make_archive(folder: Path) -> Path:
    """Write the files (once) and the chunk references of both variables; returns refs.npz."""
    import h5py

    folder.mkdir(parents=True, exist_ok=True)
    refs_file = folder / "refs.npz"
    if refs_file.exists():
        return refs_file
    rng = np.random.default_rng(0)
    lat = np.linspace(-90, 90, NY)[:, None]
    lon = np.linspace(0, 360, NX, endpoint=False)[None, :]
    paths = []
    for f in range(N_FILES):
        t = (np.arange(STEPS) + STEPS * f)[:, None, None]
        smooth = (
            273 + 30 * np.cos(np.deg2rad(lat)) + 5 * np.sin(np.deg2rad(lon) + t / 24 * 2 * np.pi)
        )
        path = folder / f"t2m_{f:02d}.nc"
        with h5py.File(path, "w") as h:
            for name, chunks in VARIABLES.items():
                noise = rng.normal(0, 0.5 if name == "t2m" else 4, (STEPS, NY, NX))
                values = (smooth + noise if name == "t2m" else noise).astype("float32")
                h.create_dataset(
                    name,
                    data=values,
                    chunks=chunks,
                    compression="gzip",
                    compression_opts=1,
                    shuffle=True,
                )
        paths.append(str(path))
    columns: dict[str, Any] = {"paths": np.array(paths)}
    for name, chunks in VARIABLES.items():
        grid = tuple(s // c for s, c in zip(SHAPE, chunks, strict=True))
        index = np.zeros(grid, np.uint32)
        offsets = np.zeros(grid, np.uint64)
        lengths = np.zeros(grid, np.uint64)
        for f, path in enumerate(paths):
            for coords, offset, size in chunk_refs(path, name):
                c = (coords[0] + f * STEPS, *coords[1:])
                index[c], offsets[c], lengths[c] = f, offset, size
        columns |= {f"{name}_index": index, f"{name}_offsets": offsets, f"{name}_lengths": lengths}
    np.savez(refs_file, **columns)
    return refs_file


def chunk_refs(path: str, name: str) -> list[tuple[tuple[int, ...], int, int]]:
    """(chunk grid coordinates, byte offset, byte length) of every stored chunk, from h5py."""
    import h5py

    with h5py.File(path) as h:
        ds = h[name]
        out: list[tuple[tuple[int, ...], int, int]] = []
        ds.id.chunk_iter(
            lambda info: out.append(
                (
                    tuple(o // c for o, c in zip(info.chunk_offset, ds.chunks, strict=True)),
                    info.byte_offset,
                    info.size,
                )
            )
        )
    return out


class Refs:
    def __init__(self, refs_file: str) -> None:
        z = np.load(refs_file)
        self.paths = [str(p) for p in z["paths"]]
        self.columns = {k: z[k] for k in z.files}

    def grid(self, name: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        c = self.columns
        return c[f"{name}_index"], c[f"{name}_offsets"], c[f"{name}_lengths"]

    def path_grid(self, name: str, prefix: str = "") -> np.ndarray:
        index, _, _ = self.grid(name)
        return np.array([prefix + p for p in self.paths])[index]


def zarr_v3_metadata(name: str) -> dict[str, Any]:
    return {
        "zarr_format": 3,
        "node_type": "array",
        "shape": list(SHAPE),
        "data_type": "float32",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(VARIABLES[name])}},
        "chunk_key_encoding": {"name": "default"},
        "fill_value": "NaN",
        "codecs": [
            {"name": "bytes", "configuration": {"endian": "little"}},
            {"name": "numcodecs.shuffle", "configuration": {"elementsize": 4}},
            {"name": "numcodecs.zlib", "configuration": {"level": 1}},
        ],
        "dimension_names": ["time", "lat", "lon"],
        "attributes": {},
    }


# ---------------------------------------------------------------------- contenders


def open_contender(contender: str, refs: Refs) -> tuple[Any, dict[str, Any]]:
    """(store or None, keyword arguments for xr.open_zarr) of a contender."""
    if contender == "zms":
        import zarr_manifest_store as zms

        arrays = {}
        for name in VARIABLES:
            index, offsets, lengths = refs.grid(name)
            manifest = zms.ChunkManifest(
                paths=refs.paths, path_index=index, offsets=offsets, lengths=lengths
            )
            arrays[name] = zms.ManifestArray(metadata=zarr_v3_metadata(name), manifest=manifest)
        return zms.ManifestStore(zms.ManifestGroup(arrays=arrays)), {}
    if contender == "virtualizarr":
        from obspec_utils.registry import ObjectStoreRegistry
        from obstore.store import LocalStore
        from virtualizarr.manifests import (
            ChunkManifest,
            ManifestArray,
            ManifestGroup,
            ManifestStore,
        )
        from zarr.core.metadata.v3 import ArrayV3Metadata

        arrays = {}
        for name in VARIABLES:
            _, offsets, lengths = refs.grid(name)
            paths = refs.path_grid(name, "file://").astype(np.dtypes.StringDType())
            manifest = ChunkManifest.from_arrays(paths=paths, offsets=offsets, lengths=lengths)
            meta = ArrayV3Metadata.from_dict(zarr_v3_metadata(name))
            arrays[name] = ManifestArray(metadata=meta, chunkmanifest=manifest)
        registry = ObjectStoreRegistry({"file://": LocalStore()})
        return ManifestStore(ManifestGroup(arrays=arrays), registry=registry), {
            "consolidated": False
        }
    if contender == "kerchunk":
        import fsspec
        from zarr.storage import FsspecStore

        spec: dict[str, Any] = {".zgroup": json.dumps({"zarr_format": 2})}
        for name, chunks in VARIABLES.items():
            spec[f"{name}/.zarray"] = json.dumps(
                {
                    "shape": list(SHAPE),
                    "chunks": list(chunks),
                    "dtype": "<f4",
                    "compressor": {"id": "zlib", "level": 1},
                    "filters": [{"id": "shuffle", "elementsize": 4}],
                    "fill_value": None,
                    "order": "C",
                    "zarr_format": 2,
                }
            )
            spec[f"{name}/.zattrs"] = json.dumps({"_ARRAY_DIMENSIONS": ["time", "lat", "lon"]})
            index, offsets, lengths = refs.grid(name)
            for c in np.ndindex(index.shape):
                spec[f"{name}/{'.'.join(map(str, c))}"] = [
                    refs.paths[index[c]],
                    int(offsets[c]),
                    int(lengths[c]),
                ]
        fs = fsspec.filesystem(
            "reference", fo={"version": 1, "refs": spec}, remote_protocol="file", asynchronous=True
        )
        return FsspecStore(fs, read_only=True), {"consolidated": False}
    raise ValueError(contender)


def measure(contender: str, what: str, refs: Refs) -> dict[str, float]:
    warnings.simplefilter("ignore")
    if contender == "bare":
        return bare_loop(refs, into_output=what == "bare+out")
    import xarray as xr
    import zarr

    contender, _, pipeline = contender.partition("+")
    if pipeline == "stdlib":  # imagecodecs not installed: zlib inflates with the standard library
        sys.modules["imagecodecs"] = None  # type: ignore[assignment]
    elif pipeline:  # "fused" or "batched": one of zarr's own pipelines, chosen explicitly
        if contender == "zms":
            import zarr_manifest_store  # noqa: F401  (imported first: the user's choice wins)
        zarr.config.set({"codec_pipeline.path": PIPELINES[pipeline]})

    store, kwargs = open_contender(contender, refs)
    if what in FULL_READS:
        chunks = FULL_READS[what]
        read = lambda: xr.open_zarr(store, chunks=chunks, **kwargs)["t2m"].values  # noqa: E731
        read()  # warm: page cache, imports, metadata
        return best_rate(read)
    if what == "random":
        arr = zarr.open_group(store, mode="r")["u10"]
        cy, cx = VARIABLES["u10"][1:]
        rng = np.random.default_rng(1)
        coords = rng.integers(0, [SHAPE[0], NY // cy, NX // cx], (400, 3))
        for t, y, x in coords[:50]:
            arr[t, y * cy : (y + 1) * cy, x * cx : (x + 1) * cx]
        times = []
        for t, y, x in coords[50:]:
            start = time.perf_counter()
            arr[t, y * cy : (y + 1) * cy, x * cx : (x + 1) * cx]
            times.append(time.perf_counter() - start)
        return {"us": statistics.median(times) * 1e6}
    if what == "get":
        return get_latency(store, refs, separator="." if contender == "kerchunk" else "/")
    raise ValueError(what)


def best_rate(read: Any, repeats: int = 3) -> dict[str, float]:
    best: dict[str, float] = {}
    for _ in range(repeats):
        before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        read()
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_SELF)
        cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
        if not best or FULL_BYTES / wall / 1e6 > best["MB/s"]:
            rate = FULL_BYTES / 1e6
            best = {"MB/s": rate / wall, "cores": cpu / wall, "MB/cpu-s": rate / cpu}
    return best


def bare_loop(refs: Refs, into_output: bool) -> dict[str, float]:
    from numcodecs import Shuffle

    unshuffle = Shuffle(elementsize=4).decode
    index, offsets, lengths = refs.grid("t2m")
    work = [
        (int(index[c]), int(offsets[c]), int(lengths[c]), c[0]) for c in np.ndindex(index.shape)
    ]
    fds = [os.open(p, os.O_RDONLY) for p in refs.paths]

    def read() -> None:
        out = np.empty(SHAPE, np.float32) if into_output else None
        for i, offset, length, t in work:
            chunk = unshuffle(zlib.decompress(os.pread(fds[i], length, offset)))
            if out is not None:
                out[t] = chunk.view(np.float32).reshape(NY, NX)

    read()
    return best_rate(read)


def get_latency(store: Any, refs: Refs, separator: str) -> dict[str, float]:
    """Median µs of ``store.get`` of random chunks and of a bare pread of the same bytes;
    chunk keys are ``name/c/i/j/k`` (Zarr v3) or ``name/i.j.k`` (v2, ``separator="."``)."""
    from zarr.core.buffer import default_buffer_prototype

    proto = default_buffer_prototype()
    out: dict[str, float] = {}
    fds = [os.open(p, os.O_RDONLY) for p in refs.paths]
    rng = np.random.default_rng(2)
    for name in VARIABLES:
        index, offsets, lengths = refs.grid(name)
        picks = [tuple(int(rng.integers(n)) for n in index.shape) for _ in range(2000)]
        prefix = f"{name}/c/" if separator == "/" else f"{name}/"
        keys = [prefix + separator.join(map(str, c)) for c in picks]
        spots = [(fds[index[c]], int(lengths[c]), int(offsets[c])) for c in picks]

        async def gets(keys: list[str] = keys) -> list[float]:
            times = []
            for key in keys:
                start = time.perf_counter()
                await store.get(key, proto)
                times.append(time.perf_counter() - start)
            return times

        def preads(spots: list[tuple[int, int, int]] = spots) -> list[float]:
            times = []
            for fd, length, offset in spots:
                start = time.perf_counter()
                os.pread(fd, length, offset)
                times.append(time.perf_counter() - start)
            return times

        asyncio.run(gets())  # warm
        preads()
        out[f"{name} get us"] = statistics.median(asyncio.run(gets())) * 1e6
        out[f"{name} pread us"] = statistics.median(preads()) * 1e6
        out[f"{name} chunk bytes"] = float(np.median(lengths))
    return out


# ---------------------------------------------------------------------- the run


PEERS = ("virtualizarr", "kerchunk")
FULL_READS = {"full": None, "full+dask": {}, "full+auto": "auto"}  # xr.open_zarr's chunks
PIPELINES = {
    "fused": "zarr.core.codec_pipeline.FusedCodecPipeline",
    "batched": "zarr.core.codec_pipeline.BatchedCodecPipeline",
}
PLAN = [
    (
        "full",
        [
            "zms",
            "virtualizarr",
            "kerchunk",
            "bare",
            "bare+out",
            "zms+batched",
            "zms+stdlib",
            "virtualizarr+fused",
        ],
    ),
    ("full+dask", ["zms", "virtualizarr", "kerchunk", "zms+batched", "virtualizarr+fused"]),
    ("full+auto", ["zms", "virtualizarr"]),
    ("random", ["zms", "virtualizarr", "kerchunk", "zms+batched", "virtualizarr+fused"]),
    ("get", ["zms", "virtualizarr", "kerchunk"]),
]


def run_worker(
    python: str, contender: str, what: str, refs_file: Path, befores: dict[str, str]
) -> dict[str, float]:
    name, _, checkout = contender.partition("@")
    cmd = [python, __file__, "--worker", "bare" if name.startswith("bare") else name, what]
    cmd.append(str(refs_file))
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if checkout:
        env["PYTHONPATH"] = befores[contender]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise RuntimeError(f"{contender} {what} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--data", type=Path, default=Path("/tmp/zms-read-bench"))
    parser.add_argument("--peers", default="/work/peers/.venv/bin/python")
    parser.add_argument(
        "--before", action="append", default=[], help="an older checkout to compare with"
    )
    parser.add_argument("--only", help="comma-separated contenders to run (default: all)")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        contender, what, refs_file = args.worker
        print(json.dumps(measure(contender, what, Refs(refs_file))))
        return

    refs_file = make_archive(args.data)
    have_peers = Path(args.peers).exists()
    befores = {f"zms@{Path(path).resolve().name}": path for path in args.before}
    results: Results = {}
    for r in range(args.rounds):
        for what, contenders in PLAN:
            contenders = [*contenders, *befores]
            if args.only:
                contenders = [c for c in contenders if c in args.only.split(",")]
            for contender in contenders:
                peer = contender.split("+")[0] in PEERS
                if peer and not have_peers:
                    continue
                python = args.peers if peer else sys.executable
                job = "bare+out" if contender == "bare+out" else what
                results.setdefault((what, contender), []).append(
                    run_worker(python, contender, job, refs_file, befores)
                )
        print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    report(results)


Results = dict[tuple[str, str], list[dict[str, float]]]


def median(results: Results, what: str, contender: str, field: str) -> float:
    return statistics.median(x[field] for x in results[(what, contender)])


def report(results: Results) -> None:
    print(
        f"\nmedian over {len(next(iter(results.values())))} rounds (each: best of 3 in one process)"
    )
    for (what, contender), runs in results.items():
        fields = ", ".join(f"{k} {statistics.median(x[k] for x in runs):,.1f}" for k in runs[0])
        print(f"  {what:10} {contender:13} {fields}")
    befores = list(dict.fromkeys(c for _, c in results if c.startswith("zms@")))
    if befores:
        print(f"\nnow / {' | '.join(befores)} (same run; > 1 is faster for MB/s, slower for µs)")
        for what in dict.fromkeys(w for w, _ in results):
            if (what, "zms") not in results:
                continue
            for field in results[(what, "zms")][0]:
                if "bytes" not in field:
                    now = median(results, what, "zms", field)
                    ratios = " | ".join(
                        f"{now / median(results, what, c, field):.2f}"
                        for c in befores
                        if (what, c) in results
                    )
                    print(f"  {what:10} {field:14} {ratios}")
    if ("full", "bare") in results and ("full", "zms") in results:
        report_targets(results)


def report_targets(results: Results) -> None:
    def med(what: str, contender: str, field: str) -> float:
        return median(results, what, contender, field)

    print(
        "\ntargets (zms as shipped | forced to zarr's default BatchedCodecPipeline"
        " | without imagecodecs: the standard library's zlib)"
    )
    bare = med("full", "bare", "MB/s")
    for what in FULL_READS:
        shipped = ("zms", "zms+batched", "zms+stdlib")
        rates = [med(what, c, "MB/s") for c in shipped if (what, c) in results]
        against = {"bare loop": (bare, 1.6)}
        if (what, "virtualizarr") in results:
            against = {"VirtualiZarr": (med(what, "virtualizarr", "MB/s"), 2), **against}
        for peer, (base, target) in against.items():
            ratios = " | ".join(f"{rate / base:.2f}" for rate in rates)
            goal = f">= {target}" if what == "full" else "no target: the same read through dask"
            print(f"  {what:11} zms / {peer:12} = {ratios}  ({goal})")
    if ("random", "virtualizarr") in results:
        vz = med("random", "virtualizarr", "us")
        ratios = " | ".join(
            f"{med('random', c, 'us') / vz:.2f}"
            for c in ("zms", "zms+batched")
            if ("random", c) in results
        )
        print(f"  random     zms / VirtualiZarr = {ratios}  (<= 0.5)")
    for name in VARIABLES:
        ratios = {
            c: med("get", c, f"{name} get us") / med("get", c, f"{name} pread us")
            for c in ("zms", *PEERS)
            if ("get", c) in results
        }
        size = med("get", "zms", f"{name} chunk bytes")
        peers = ", ".join(f"{c} {r:.1f}" for c, r in ratios.items() if c != "zms")
        print(
            f"  get {name:6} ({size / 1e3:.0f} kB) zms get / bare pread = {ratios['zms']:.2f}"
            f"  (no target){f'; peers: {peers}' if peers else ''}"
        )


if __name__ == "__main__":
    main()
