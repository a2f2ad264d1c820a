"""Remote read speed: ManifestStore over S3 (moto's server) behind a link with a round-trip delay.

The archive: 24 small netCDF-4 files (``t2m`` (24, 64, 128) float32 in chunks
of (1, 64, 128), zlib level 1 + shuffle), uploaded to a bucket of moto's S3
server on 127.0.0.1, scanned once (``zms.open_virtual_mfdataset``) into a
stored document. Every request then passes a local TCP proxy that holds each
segment for half the round trip in each direction (``--rtt``, default 20 ms),
as a nearby cloud region would.

Measured, each contender in a fresh process, contenders interleaved round by
round (only ratios within one run mean anything):

- ``first``: the whole of ``t2m`` through ``xr.open_zarr(store, chunks=None)``
  on a freshly opened store (each source checked once, then read), seconds;
- ``full``: the same read again on that store (best of 3), MB/s of decoded data;
- ``random``: one random chunk through a zarr array (median of 40), ms;
- ``dask``: ``xr.open_zarr(store)["t2m"].values`` (one dask task per chunk), MB/s.

``--before PATH`` adds the package found at PATH (an older checkout, put on
``PYTHONPATH``) as a second contender, read with the same document and server:

    .venv/bin/python benchmarks/remote_read.py [--rounds 3] [--rtt 0.02]
        [--data /tmp/zms-remote-bench] [--before /work/before]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import statistics
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

N_FILES, STEPS, NY, NX = 24, 24, 64, 128
FULL_BYTES = N_FILES * STEPS * NY * NX * 4
BUCKET = "zms-remote-bench"
TESTS = Path(__file__).resolve().parents[1] / "tests"  # the moto server the tests use


# ---------------------------------------------------------------------- the delayed link


class DelayProxy:
    """Forwards TCP connections from 127.0.0.1:<port> to ``upstream``, each segment held
    ``rtt / 2`` seconds in each direction (bandwidth is not limited)."""

    def __init__(self, upstream: tuple[str, int], rtt: float) -> None:
        self.upstream, self.delay = upstream, rtt / 2
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self._thread.start()
        started.wait()

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(
            asyncio.start_server(self._connection, "127.0.0.1", 0)
        )
        self.port = self.server.sockets[0].getsockname()[1]
        started.set()
        self.loop.run_forever()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    async def _pipe(
        self,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        on_read: Callable[[bytes], None] | None = None,
        on_write: Callable[[bytes], None] | None = None,
    ) -> None:
        """Relay ``reader`` to ``writer``, each segment held ``delay``; ``on_read`` and
        ``on_write`` see the data as it arrives and as it leaves (a subclass counts with them)."""
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def send() -> None:
            while True:
                due, data = await queue.get()
                if not data:
                    break
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                writer.write(data)
                await writer.drain()
                if on_write:
                    on_write(data)

        sender = asyncio.ensure_future(send())
        with contextlib.suppress(OSError):
            while data := await reader.read(1 << 16):
                if on_read:
                    on_read(data)
                queue.put_nowait((time.monotonic() + self.delay, data))
        queue.put_nowait((0.0, b""))
        with contextlib.suppress(OSError):
            await sender
        writer.close()

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


# ---------------------------------------------------------------------- the archive


def storage_options(endpoint: str) -> dict[str, Any]:
    return {
        "key": "testing",
        "secret": "testing",
        "client_kwargs": {"endpoint_url": endpoint, "region_name": "us-east-1"},
    }


def make_archive(folder: Path, server: Any, endpoint: str) -> Path:
    """Write the files (once), upload them and scan them into a document (every run)."""
    import xarray as xr

    import zarr_manifest_store as zms

    files = folder / "files"
    files.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for f in range(N_FILES):
        path = files / f"t2m_{f:02d}.nc"
        if path.exists():
            continue
        values = 273 + rng.normal(0, 3, (STEPS, NY, NX)).astype("float32")
        ds = xr.Dataset(
            {"t2m": (("time", "lat", "lon"), values)},
            coords={"time": np.arange(STEPS) + f * STEPS},
        )
        encoding = {"zlib": True, "complevel": 1, "shuffle": True, "chunksizes": (1, NY, NX)}
        ds.to_netcdf(path, engine="h5netcdf", encoding={"t2m": encoding})
    server.create_bucket(BUCKET)
    fs = server.filesystem()
    urls = []
    for path in sorted(files.iterdir()):
        url = f"s3://{BUCKET}/{path.name}"
        fs.put(str(path), url)
        urls.append(url)
    ds = zms.open_virtual_mfdataset(
        urls,
        combine="nested",
        concat_dim="time",
        loadable_variables=["time"],
        storage_options=storage_options(endpoint),
    )
    document = folder / "remote.zarr"
    ds.virtualize.to_zarr(str(document), mode="w")
    return document


# ---------------------------------------------------------------------- one contender


def measure(document: str, endpoint: str) -> dict[str, float]:
    """The reads of one contender, in this process."""
    warnings.simplefilter("ignore")
    import xarray as xr
    import zarr

    import zarr_manifest_store as zms

    def store() -> Any:
        return zms.ManifestStore.open(
            document, allow=[f"s3://{BUCKET}/"], storage_options=storage_options(endpoint)
        )

    out: dict[str, float] = {}
    fresh = store()
    start = time.perf_counter()
    values = xr.open_zarr(fresh, chunks=None)["t2m"].values
    out["first s"] = time.perf_counter() - start
    assert values.shape == (N_FILES * STEPS, NY, NX)
    out["full MB/s"] = best_rate(lambda: xr.open_zarr(fresh, chunks=None)["t2m"].values)

    arr = zarr.open_group(fresh, mode="r")["t2m"]
    rng = np.random.default_rng(1)
    times = []
    for t in rng.integers(0, N_FILES * STEPS, 40):
        start = time.perf_counter()
        arr[t]
        times.append(time.perf_counter() - start)
    out["random ms"] = statistics.median(times) * 1e3

    dasked = store()
    _ = xr.open_zarr(dasked)["t2m"].values  # checks each source once
    out["dask MB/s"] = best_rate(lambda: xr.open_zarr(dasked)["t2m"].values)
    return out


def best_rate(read: Any, repeats: int = 3) -> float:
    best = 0.0
    for _ in range(repeats):
        start = time.perf_counter()
        read()
        best = max(best, FULL_BYTES / (time.perf_counter() - start) / 1e6)
    return best


def run_worker(document: Path, endpoint: str, pythonpath: str | None) -> dict[str, float]:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    if pythonpath is not None:
        env["PYTHONPATH"] = pythonpath
    cmd = [sys.executable, __file__, "--worker", str(document), endpoint]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if done.returncode:
        raise RuntimeError(f"worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------- the run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--rtt", type=float, default=0.02, help="round trip added, seconds")
    parser.add_argument("--data", type=Path, default=Path("/tmp/zms-remote-bench"))
    parser.add_argument("--before", help="an older checkout to compare with")
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(measure(*args.worker)))
        return

    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        os.environ.setdefault(name, value)
    sys.path.insert(0, str(TESTS))
    from servers import S3Server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise

    server = S3Server().start()
    port = int(server.endpoint_url.rsplit(":", 1)[1])
    proxy = DelayProxy(("127.0.0.1", port), args.rtt)
    try:
        document = make_archive(args.data, server, proxy.url)
        contenders = {"now": None} | ({"before": args.before} if args.before else {})
        results: dict[str, list[dict[str, float]]] = {}
        for r in range(args.rounds):
            for name, pythonpath in contenders.items():
                results.setdefault(name, []).append(run_worker(document, proxy.url, pythonpath))
            print(f"round {r + 1}/{args.rounds} done", file=sys.stderr)
    finally:
        proxy.stop()
        server.stop()
    report(results, args.rtt)


def report(results: dict[str, list[dict[str, float]]], rtt: float) -> None:
    rounds = len(next(iter(results.values())))
    print(f"\nS3 (moto) + {rtt * 1e3:.0f} ms round trip; median over {rounds} rounds")
    medians = {
        name: {k: statistics.median(run[k] for run in runs) for k in runs[0]}
        for name, runs in results.items()
    }
    for name, fields in medians.items():
        print(f"  {name:7} " + ", ".join(f"{k} {v:,.2f}" for k, v in fields.items()))
    if "before" in medians:
        print("now / before (> 1 is faster for MB/s, slower for s and ms)")
        for k, v in medians["now"].items():
            print(f"  {k:10} {v / medians['before'][k]:.2f}")


if __name__ == "__main__":
    main()
