"""Reads and scans at real network latency: zarr-manifest-store, VirtualiZarr and kerchunk.

The archive: 24 netCDF-4 files of ``benchmarks/remote_read.py`` (``t2m``
(24, 64, 128) float32 in chunks of (1, 64, 128), zlib level 1 + shuffle: 576
chunks), served twice on 127.0.0.1:

- ``s3``: by moto's S3 (it answers one request at a time, ~5 ms each, which caps
  every contender alike), on connections kept alive as S3 keeps them (moto's own
  server closes each one; ``latency_link.KeepAliveFront``);
- ``http``: by a plain threaded HTTP server with byte ranges (tests/servers.py).

Every request passes a local asyncio TCP proxy that holds each segment for
half the round trip in each direction (``--rtt``, default 20 ms) and counts
the HTTP requests it forwards and how many were in flight at once.

Contenders, each in a fresh process, interleaved round by round (only ratios
within one run mean anything), reading the same chunks:

- ``zms``: a stored chunk-manifest document through ``ManifestStore`` (this
  checkout, or ``zms@before`` from ``--before PATH``);
- ``virtualizarr``: VirtualiZarr 2.8's ManifestStore reading through obstore
  (``--peers`` python);
- ``kerchunk``: kerchunk references through fsspec's reference file system
  and zarr's FsspecStore (s3fs / fsspec's HTTP file system).

Figures (values checked against the files, medians over ``--rounds``):

- ``full MB/s``: all of ``t2m`` through ``xr.open_zarr(store, chunks=None)``
  (best of 3, or fewer past 6 s, after one read that checks the sources), with
  the requests and the most in flight for one read;
- ``dask MB/s``: ``xr.open_zarr(store)["t2m"].values`` (dask's default: one task
  per chunk), same;
- ``random ms``: one random chunk through a zarr array (median of 300, after 10
  more not counted: connections, first uses), and
  the requests the first chunk of a freshly opened store costs (``first reqs``);
  each read is paired with a bare ranged GET of the same chunk on a kept-alive
  connection (``http.client``, the floor of a random read), in the same process,
  alternately before and after it: ``bare ms`` is their median, ``random / bare``
  the median of the pairs' ratios (a busy machine slows both reads of a pair alike); the
  report gives the median over the rounds and, in brackets, each round's.
  A read that sent no request (its chunk was read ahead by an earlier read of its
  file) is not a random remote read: its pair is left out of the three figures
  and counted in ``served unrequested``. ``async random ms`` (not a target; not
  kerchunk's, whose fsspec store is tied to fsspec's loop): 100 more pairs, the chunk
  read through zarr's asynchronous API on an event loop of the worker's own thread,
  as a caller in asynchronous code reads, without zarr's hand-off to its loop thread;
- ``scan s``: scan + combine of the 24 remote files with default arguments
  (``zms.open_virtual_mfdataset``, VirtualiZarr's ``open_virtual_mfdataset``
  with its HDF parser, kerchunk's ``SingleHdf5ToZarr`` + ``MultiZarrToZarr``).

    .venv/bin/python benchmarks/remote_latency.py [--rounds 3] [--rtt 0.02]
        [--backends s3,http] [--only zms,virtualizarr,kerchunk]
        [--figures full,dask,random,scan] [--peers /work/peers/.venv/bin/python]
        [--before /work/base2] [--data /tmp/zms-latency-bench]

Targets (issue 22, 20 ms RTT): full >= 2x VirtualiZarr and >= 2x kerchunk;
dask >= 1.5x VirtualiZarr; random <= 1.05x bare; scan >= 3x VirtualiZarr.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import json
import logging
import os
import statistics
import subprocess
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency_contenders import SCANS, open_store  # this folder's siblings
from latency_link import Counter, CountingProxy, KeepAliveFront
from latency_random import ASYNC_READS, async_reader, random_reads
from remote_read import BUCKET, FULL_BYTES, N_FILES, NX, NY, STEPS, TESTS, storage_options

PEERS = "/work/peers/.venv/bin/python"
CONTENDERS = ("zms", "virtualizarr", "kerchunk")
FIGURES = ("full", "dask", "random", "scan")


# ---------------------------------------------------------------------- the archive


def write_files(folder: Path) -> list[Path]:
    """The 24 files (written once, kept between runs)."""
    import xarray as xr

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for f in range(N_FILES):
        path = folder / f"t2m_{f:02d}.nc"
        paths.append(path)
        values = 273 + rng.normal(0, 3, (STEPS, NY, NX)).astype("float32")
        if path.exists():
            continue
        ds = xr.Dataset(
            {"t2m": (("time", "lat", "lon"), values)},
            coords={"time": np.arange(STEPS) + f * STEPS},
        )
        encoding = {"zlib": True, "complevel": 1, "shuffle": True, "chunksizes": (1, NY, NX)}
        ds.to_netcdf(path, engine="h5netcdf", encoding={"t2m": encoding})
    return paths


def expected_values(paths: list[Path]) -> np.ndarray:
    import h5py

    return np.concatenate([h5py.File(p, "r")["t2m"][:] for p in paths])


class Backend:
    """One way the files are served: the URLs, the proxy, and how each contender reaches it."""

    def __init__(self, name: str, proxy: CountingProxy, files: list[Path]) -> None:
        self.name, self.proxy = name, proxy
        if name == "s3":
            self.prefix = f"s3://{BUCKET}/"
            self.http_prefix = f"{proxy.url}/{BUCKET}/"  # path-style, for the bare GET
        else:
            self.prefix = self.http_prefix = f"{proxy.url}/"
        self.urls = [self.prefix + f"files/{p.name}" for p in files]
        self.warm_urls = [self.prefix + f"warm/{p.name}" for p in files[:2]]

    def describe(self, document: str, refs: str) -> dict[str, Any]:
        """What a worker needs to know to read this backend."""
        return {
            "backend": self.name,
            "prefix": self.prefix,
            "http_prefix": self.http_prefix,
            "endpoint": self.proxy.url,
            "control": self.proxy.control_port,
            "urls": self.urls,
            "warm_urls": self.warm_urls,
            "document": document,
            "refs": refs,
        }


def publish(folder: Path, server: Any, files: list[Path]) -> None:
    """Upload the files to the bucket (straight to moto, not through the proxy), and lay
    them out for the HTTP server: ``files/`` read and scanned, ``warm/`` scanned first."""
    server.create_bucket(BUCKET)
    fs = server.filesystem()
    root = folder / "served"
    for sub in ("files", "warm"):
        (root / sub).mkdir(parents=True, exist_ok=True)
        for path in files:
            fs.put(str(path), f"s3://{BUCKET}/{sub}/{path.name}")
            link = root / sub / path.name
            if not link.exists():
                os.link(path, link)


def write_document(folder: Path, backend: Backend) -> tuple[str, str]:
    """Scan the files through ``backend`` into a document, and write the chunk references
    of ``t2m`` for the peers (the same chunks, read by each contender)."""
    import zarr_manifest_store as zms

    options = storage_options(backend.proxy.url) if backend.name == "s3" else None
    ds = zms.open_virtual_mfdataset(
        backend.urls,
        combine="nested",
        concat_dim="time",
        loadable_variables=["time"],
        storage_options=options,
        parallel="threads",
    )
    document = folder / f"{backend.name}.zarr"
    ds.virtualize.to_zarr(str(document), mode="w")
    manifest = ds["t2m"].data.manifest
    paths = np.asarray(manifest.paths, dtype=object)[manifest.path_index]
    refs = {
        "paths": paths.ravel().tolist(),
        "offsets": manifest.offsets.ravel().tolist(),
        "lengths": manifest.lengths.ravel().tolist(),
        "shape": [N_FILES * STEPS, NY, NX],
        "chunks": [1, NY, NX],
    }
    refs_file = folder / f"{backend.name}-refs.json"
    refs_file.write_text(json.dumps(refs))
    return str(document), str(refs_file)


# ---------------------------------------------------------------------- one worker


def measure(contender: str, job: dict[str, Any], figures: list[str]) -> dict[str, Any]:
    """The figures of one contender on one backend, in this process."""
    warnings.simplefilter("ignore")
    logging.disable(logging.WARNING)
    counter = Counter(job["control"])
    out: dict[str, Any] = {}
    if "full" in figures or "random" in figures:
        out |= full_and_random(contender, job, counter, figures)
    if "dask" in figures:
        out |= dask_read(contender, job, counter)
    if "scan" in figures:
        out |= scan(contender, job, counter)
    return out


def digest(values: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(values, dtype="float32").tobytes()).hexdigest()


def full_and_random(
    contender: str, job: dict[str, Any], counter: Counter, figures: list[str]
) -> dict[str, Any]:
    import xarray as xr
    import zarr

    out: dict[str, Any] = {}
    store, kwargs = open_store(contender, job)
    if "random" in figures:
        t = int(np.random.default_rng(2).integers(0, N_FILES * STEPS))
        arr = zarr.open_group(store, mode="r")["t2m"]
        value, stats = counter.counted(lambda: arr[t])
        out["first reqs"] = stats["requests"]
        out["checks"] = [[t, float(np.asarray(value, dtype="f8").sum())]]

    def read() -> np.ndarray:
        return xr.open_zarr(store, chunks=None, **kwargs)["t2m"].values

    if "full" in figures:
        values = read()  # every source checked once
        out["full digest"] = digest(values)
        _, stats = counter.counted(read)
        out["full reqs"], out["full in flight"] = stats["requests"], stats["in flight"]
        out["full MB/s"] = best_rate(read)
    if "random" in figures:
        out |= random_reads(arr.__getitem__, job, out["checks"], counter)
        if contender != "kerchunk":  # fsspec's store is tied to fsspec's own loop
            read = async_reader(store)
            out |= random_reads(read, job, out["checks"], counter, "async ", ASYNC_READS)
    return out


def dask_read(contender: str, job: dict[str, Any], counter: Counter) -> dict[str, Any]:
    import xarray as xr

    store, kwargs = open_store(contender, job)

    def read() -> np.ndarray:
        return xr.open_zarr(store, **kwargs)["t2m"].values

    values = read()  # every source checked once
    _, stats = counter.counted(read)
    return {
        "dask digest": digest(values),
        "dask reqs": stats["requests"],
        "dask in flight": stats["in flight"],
        "dask MB/s": best_rate(read),
    }


def best_rate(read: Any, repeats: int = 3, within: float = 6.0) -> float:
    """The best of ``repeats`` reads, MB/s of decoded data (fewer if they take ``within`` s)."""
    best, spent = 0.0, 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        read()
        elapsed = time.perf_counter() - start
        best, spent = max(best, FULL_BYTES / elapsed / 1e6), spent + elapsed
        if spent > within:
            break
    return best


def scan(contender: str, job: dict[str, Any], counter: Counter) -> dict[str, Any]:
    """Scan + combine of the 24 files with default arguments (after 2 others, for imports
    and connections); the combined shape is checked."""
    SCANS[contender](job, job["warm_urls"])
    counter.ask("reset")
    start = time.perf_counter()
    shape = SCANS[contender](job, job["urls"])
    elapsed = time.perf_counter() - start
    stats = counter.ask("stats")
    assert tuple(shape) == (N_FILES * STEPS, NY, NX), shape
    return {"scan s": elapsed, "scan reqs": stats["requests"], "scan in flight": stats["in flight"]}


# ---------------------------------------------------------------------- the run


def run_worker(
    python: str, contender: str, job: dict[str, Any], figures: list[str], pythonpath: str | None
) -> dict[str, Any]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    cmd = [python, __file__, "--worker", contender, json.dumps(job), ",".join(figures)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise RuntimeError(f"{contender} on {job['backend']} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def check(result: dict[str, Any], expected: np.ndarray, who: str) -> None:
    """Refuse a contender's figures if it read any value wrong."""
    want = digest(expected)
    for key in ("full digest", "dask digest"):
        if key in result and result.pop(key) != want:
            raise AssertionError(f"{who}: {key.split()[0]} read gave wrong values")
    for t, total in result.pop("checks", []):
        if not np.isclose(total, expected[t].astype("f8").sum(), rtol=1e-9):
            raise AssertionError(f"{who}: chunk {t} read wrong")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rtt", type=float, default=0.02, help="round trip added, seconds")
    parser.add_argument("--data", type=Path, default=Path("/tmp/zms-latency-bench"))
    parser.add_argument("--backends", default="s3,http")
    parser.add_argument("--only", default=",".join(CONTENDERS))
    parser.add_argument("--figures", default=",".join(FIGURES))
    parser.add_argument("--peers", default=PEERS, help="python with virtualizarr and kerchunk")
    parser.add_argument("--before", help="an older checkout to compare with (zms@before)")
    parser.add_argument("--worker", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        contender, job, figures = args.worker
        print(json.dumps(measure(contender, json.loads(job), figures.split(","))))
        return

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        os.environ.setdefault(name, value)
    sys.path.insert(0, str(TESTS))
    from servers import RangeHTTPServer, S3Server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    figures = args.figures.split(",")
    files = write_files(args.data / "files")
    expected = expected_values(files)
    s3 = S3Server().start()
    publish(args.data, s3, files)
    web = RangeHTTPServer(args.data / "served")
    # Headers and body go out as two writes: without TCP_NODELAY the body waits for the
    # client's delayed ACK (40 ms), which a real server does not make anyone pay.
    web._server.RequestHandlerClass.disable_nagle_algorithm = True
    web.start()
    front = KeepAliveFront()  # moto's S3 again, on connections kept alive
    upstreams = {"s3": front.url, "http": web.url}
    proxies = {
        b: CountingProxy(("127.0.0.1", int(upstreams[b].rsplit(":", 1)[1])), args.rtt)
        for b in args.backends.split(",")
    }
    contenders = [
        (c, args.peers if c in ("virtualizarr", "kerchunk") else sys.executable, None)
        for c in args.only.split(",")
    ]
    if args.before:
        contenders.insert(1, ("zms@before", sys.executable, args.before))
    try:
        jobs = {}
        for name, proxy in proxies.items():
            backend = Backend(name, proxy, files)
            jobs[name] = backend.describe(*write_document(args.data, backend))
        results: dict[tuple[str, str], list[dict[str, Any]]] = collections.defaultdict(list)
        for r in range(args.rounds):
            for name, job in jobs.items():
                for contender, python, pythonpath in contenders:
                    kind = contender.split("@")[0]
                    result = run_worker(python, kind, job, figures, pythonpath)
                    check(result, expected, f"{contender} on {name}")
                    results[(name, contender)].append(result)
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        for proxy in proxies.values():
            proxy.stop()
        front.stop()
        web.stop()
        s3.stop()
    report(results, args.rtt)


def report(results: dict[tuple[str, str], list[dict[str, Any]]], rtt: float) -> None:
    rounds = len(next(iter(results.values())))
    print(f"\n{rtt * 1e3:.0f} ms round trip; medians over {rounds} rounds")
    medians: dict[tuple[str, str], dict[str, float]] = {}
    for (backend, contender), runs in results.items():
        medians[(backend, contender)] = fields = {
            k: statistics.median(run[k] for run in runs) for k in runs[0]
        }
        print(
            f"  {backend:4} {contender:12} " + ", ".join(f"{k} {v:,.1f}" for k, v in fields.items())
        )
    print("targets (zms against each; > 1 is zms faster):")
    comparisons = [
        ("virtualizarr", "full MB/s", True),
        ("kerchunk", "full MB/s", True),
        ("virtualizarr", "dask MB/s", True),
        ("kerchunk", "dask MB/s", True),
        ("virtualizarr", "scan s", False),
        ("kerchunk", "scan s", False),
        ("zms@before", "full MB/s", True),
        ("zms@before", "dask MB/s", True),
        ("zms@before", "random ms", False),
        ("zms@before", "scan s", False),
    ]
    for backend in dict.fromkeys(b for b, _ in medians):
        ours = medians.get((backend, "zms"), {})
        for contender, key, larger in comparisons:
            theirs = medians.get((backend, contender), {}).get(key)
            if theirs and ours.get(key):
                value = ours[key] / theirs if larger else theirs / ours[key]
                print(f"  {backend:4} {key:10} vs {contender:12} {value:5.2f}x")
        for contender in dict.fromkeys(c for b, c in medians if b == backend):
            ratio = medians[(backend, contender)].get("async random / bare")
            if ratio:
                print(f"  {backend:4} async API random / bare GET {contender:12} {ratio:5.3f}x")
            ratio = medians[(backend, contender)].get("random / bare")
            if ratio:
                target = " (target <= 1.05)" if contender == "zms" else ""
                rounds = ", ".join(
                    f"{r['random / bare']:.3f}" for r in results[(backend, contender)]
                )
                print(
                    f"  {backend:4} random / bare GET {contender:12} {ratio:5.3f}x{target} "
                    f"(rounds: {rounds})"
                )


if __name__ == "__main__":
    main()
