"""Where the time of one random remote chunk goes: ours, part by part, against a bare GET.

The archive, servers and delayed link of ``remote_latency.py`` (S3 on moto, kept-alive
connections, ``--rtt`` 20 ms). A worker process reads ``--reads`` random chunks through a
zarr array over ``ManifestStore``, each paired with a bare ranged GET of the same chunk
(``http.client``, presigned), in turn first and second, and stamps each read
(``time.perf_counter_ns``, one clock for both processes):

- in the worker: zarr called (``arr[t]``), zarr's loop taking the read up, the layers of
  this package entered (the codec pipeline, ``ManifestStore.get``, ``Sources.read``, the
  read-ahead's answer, ``RemoteReader.read``, the obstore client), the request sent (the
  event loop's own, ``io.loop_get``, or obstore's ``get_async`` called), obstore's headers
  back, the body back, ``get`` returned, decoding started and ended, ``arr[t]`` returned;
- on the link: the request arriving from the client, leaving for the server, the answer
  arriving from the server, leaving for the client.

It prints the median of each step over the reads that sent a request. The worker wraps
internals of this package (``io.loop_get._exchange`` among them), of zarr
(``zarr.core.array._get_selection``) and of obstore (``io.clients.obstore``) to stamp them: a diagnostic of this version, not a figure (each
wrapper adds a few microseconds to its step).

    .venv/bin/python benchmarks/remote_random_breakdown.py [--reads 200] [--rtt 0.02]
        [--data /tmp/zms-latency-bench]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency_link import CountingProxy
from latency_random import bare_getter
from latency_s3 import s3_behind_link, worker_result
from remote_read import N_FILES, STEPS

now = time.perf_counter_ns


class StampingProxy(CountingProxy):
    """The delayed link, stamping every segment as it arrives and as it leaves.

    A segment leaves when the link hands it to its socket: the stamp is taken before the
    write, not after. On a loaded machine the client woken by the write may take the link's
    core from it mid-write (the link's thread is switched out involuntarily during the write
    in 98% of the answers to this package's reads, 11% of the bare GET's, at the same CPU
    time), so a stamp after the write counted the client's own time as the link's.
    """

    def __init__(self, upstream: tuple[str, int], rtt: float) -> None:
        self.stamps: list[tuple[int, str]] = []
        super().__init__(upstream, rtt)

    async def _connection(self, reader: Any, writer: Any) -> None:
        up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        self.writers |= {writer, up_writer}

        def stamp(what: str) -> Any:
            return lambda data: self.stamps.append((now(), what))

        await asyncio.gather(
            self._pipe(reader, _Stamped(up_writer, stamp("request out")), stamp("request in")),
            self._pipe(up_reader, _Stamped(writer, stamp("answer out")), stamp("answer in")),
        )


class _Stamped:
    """A stream writer stamping each write before it is made."""

    def __init__(self, writer: Any, stamp: Any) -> None:
        self.writer, self.stamp = writer, stamp

    def write(self, data: bytes) -> None:
        self.stamp(data)
        self.writer.write(data)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.writer, name)


# ---------------------------------------------------------------------- the worker


def stamped_reads(job: dict[str, Any], reads: int) -> list[dict[str, Any]]:
    """Random chunks read through zarr and bare, in turn, each with its stamps."""
    import zarr
    from latency_contenders import open_store

    import zarr_manifest_store.io.clients as clients
    import zarr_manifest_store.pipeline as pipeline
    from zarr_manifest_store.store import ManifestStore

    stamps: dict[str, int] = {}
    stamp_wrappers(stamps, clients, pipeline, ManifestStore)
    store, _ = open_store("zms", job)
    arr = zarr.open_group(store, mode="r")["t2m"]
    bare = bare_getter(job)
    bare(0)
    arr[0]
    rows = []
    chunks = np.random.default_rng(1).integers(0, N_FILES * STEPS, reads).tolist()
    for i, t in enumerate(chunks):
        for who in ("zms", "bare")[:: 1 - 2 * (i % 2)]:
            stamps.clear()
            stamps["called"] = now()
            if who == "zms":
                arr[t]
            else:
                bare(t)
            stamps["returned"] = now()
            rows.append({"who": who, **stamps})
    return rows


def stamp_wrappers(stamps: dict[str, int], clients: Any, pipeline: Any, store_class: Any) -> None:
    """Wrap obstore's get, the event loop's own GET, the store's get and the pipeline's
    decoding to stamp them."""
    import zarr_manifest_store.io.loop_get as loop_get

    obstore = clients.obstore

    class Result:
        def __init__(self, result: Any) -> None:
            self.result, self.meta = result, result.meta

        def bytes(self) -> Any:
            data = self.result.bytes()
            stamps["body back"] = now()
            return data

        async def bytes_async(self) -> Any:
            data = await self.result.bytes_async()
            stamps["body back"] = now()
            return data

    class Obstore:
        def __getattr__(self, name: str) -> Any:
            return getattr(obstore, name)

        async def get_async(self, *args: Any, **kwargs: Any) -> Result:
            stamps["request sent"] = now()
            result = await obstore.get_async(*args, **kwargs)
            stamps["headers back"] = now()
            return Result(result)

    clients.obstore = Obstore()
    exchange = loop_get._exchange

    async def stamped_exchange(*args: Any) -> Any:
        stamps["request sent"] = now()
        value = await exchange(*args)
        stamps["body back"] = now()
        return value

    loop_get._exchange = stamped_exchange
    get = store_class.get

    async def stamped_get(self: Any, key: str, *args: Any, **kwargs: Any) -> Any:
        stamps["store.get"] = now()
        value = await get(self, key, *args, **kwargs)
        stamps["store.get returned"] = now()
        return value

    store_class.get = stamped_get
    named_decoder = pipeline._named_decoder

    def stamped_decoder(transform: Any, byte_getter: Any) -> Any:
        decode = named_decoder(transform, byte_getter)

        def stamped(*args: Any) -> Any:
            stamps["decoding"] = now()
            value = decode(*args)
            stamps["decoded"] = now()
            return value

        return stamped

    pipeline._named_decoder = stamped_decoder
    stamp_entries(stamps, pipeline)


def stamp_entries(stamps: dict[str, int], pipeline: Any) -> None:
    """Stamp where zarr's loop takes the read up, and where each layer of ours is entered."""
    import zarr.core.array

    from zarr_manifest_store.io.clients import ObstoreClient
    from zarr_manifest_store.io.readahead import ReadAhead
    from zarr_manifest_store.io.remote import RemoteReader
    from zarr_manifest_store.io.sources import Sources

    def stamped(owner: Any, name: str, entered: str | None, left: str | None = None) -> None:
        original = getattr(owner, name)

        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            if entered:
                stamps[entered] = now()
            value = await original(*args, **kwargs)
            if left:
                stamps[left] = now()
            return value

        setattr(owner, name, wrapper)

    stamped(zarr.core.array, "_get_selection", "zarr's loop")
    stamped(pipeline.ManifestCodecPipeline, "read", "pipeline.read")
    stamped(Sources, "read", "sources.read")
    stamped(ReadAhead, "read", None, "read-ahead asked")
    stamped(RemoteReader, "read", "remote.read")
    stamped(ObstoreClient, "get", "client.get")


# ---------------------------------------------------------------------- the report


PARTS = {
    "zms": [
        ("zarr: arr[t] to its loop", "called", "zarr's loop"),
        ("zarr: its loop to pipeline.read", "zarr's loop", "pipeline.read"),
        ("ours: pipeline.read to store.get", "pipeline.read", "store.get"),
        ("ours: store.get to sources.read", "store.get", "sources.read"),
        ("ours: read-ahead asked (loop turn)", "sources.read", "read-ahead asked"),
        ("ours: to remote.read", "read-ahead asked", "remote.read"),
        ("ours: remote.read to client.get", "remote.read", "client.get"),
        ("ours: client.get to the request", "client.get", "request sent"),
        ("client: request to the link", "request sent", "request in"),
        ("link: request held", "request in", "request out"),
        ("server", "request out", "answer in"),
        ("link: answer held", "answer in", "answer out"),
        ("obstore: answer to headers back", "answer out", "headers back"),
        ("obstore: headers to body back", "headers back", "body back"),
        ("client: answer to body back", "answer out", "body back"),
        ("ours: body to store.get returned", "body back", "store.get returned"),
        ("zarr: to decoding", "store.get returned", "decoding"),
        ("decoding", "decoding", "decoded"),
        ("zarr: decoded to arr[t] returned", "decoded", "returned"),
    ],
    "bare": [
        ("http.client: request to the link", "called", "request in"),
        ("link: request held", "request in", "request out"),
        ("server", "request out", "answer in"),
        ("link: answer held", "answer in", "answer out"),
        ("http.client: answer to returned", "answer out", "returned"),
    ],
}


def report(rows: list[dict[str, Any]], link: list[tuple[int, str]]) -> None:
    steps: dict[tuple[str, str], list[float]] = {}
    totals: dict[str, list[float]] = {"zms": [], "bare": []}
    clients: dict[str, list[float]] = {"zms": [], "bare": []}  # outside the link and server
    links: dict[str, list[float]] = {"zms": [], "bare": []}  # on the link and the server
    unrequested = 0
    for row in rows:
        seen = [(t, what) for t, what in link if row["called"] <= t <= row["returned"]]
        firsts = {what: t for t, what in reversed(seen)}  # each kind's first stamp
        if "request in" not in firsts:
            unrequested += 1  # served from a block read ahead before
            continue
        if "answer out" not in firsts:
            continue  # a large block read ahead: stamped only once the client had it
        stamps = {**firsts, "answer out": max(t for t, w in seen if w == "answer out"), **row}
        totals[row["who"]].append(row["returned"] - row["called"])
        on_the_link = stamps["answer out"] - stamps["request in"]
        clients[row["who"]].append(row["returned"] - row["called"] - on_the_link)
        links[row["who"]].append(on_the_link)
        for name, start, end in PARTS[row["who"]]:
            if start in stamps and end in stamps:
                steps.setdefault((row["who"], name), []).append(stamps[end] - stamps[start])
    for who in ("zms", "bare"):
        print(f"{who}: {statistics.median(totals[who]) / 1e6:.3f} ms (median of the reads)")
        for (whose, name), values in steps.items():
            if whose == who:
                print(f"  {name:36} {statistics.median(values) / 1e6:7.3f} ms")
    print(f"reads served without a request (read ahead), left out: {unrequested}")
    ours, bare = (statistics.median(clients[who]) / 1e6 for who in ("zms", "bare"))
    floor = statistics.median(totals["bare"]) / 1e6
    print(
        f"time outside the link and server (median): zms {ours:.3f} ms, bare {bare:.3f} ms; "
        f"the difference is {(ours - bare) / floor:.1%} of a bare GET's {floor:.1f} ms"
    )
    # The rest of the difference of the totals: the link's timers (a segment is held to the
    # millisecond of the proxy's event loop) and the server, both shared with the bare GET.
    ours, bare = (statistics.median(links[who]) / 1e6 for who in ("zms", "bare"))
    print(
        f"time on the link and server (median): zms {ours:.3f} ms, bare {bare:.3f} ms; "
        f"the difference is {(ours - bare) / floor:.1%} of a bare GET"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reads", type=int, default=200)
    parser.add_argument("--rtt", type=float, default=0.02, help="round trip added, seconds")
    parser.add_argument("--data", type=Path, default=Path("/tmp/zms-latency-bench"))
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if args.worker:
        print(json.dumps(stamped_reads(json.loads(args.worker[0]), int(args.worker[1]))))
        return
    with s3_behind_link(args.data, args.rtt, StampingProxy) as (job, proxy):
        proxy.stamps.clear()
        rows = worker_result(__file__, job, args.reads)
    report(rows, list(proxy.stamps))


if __name__ == "__main__":
    main()
