"""What the thread hand-offs of one random remote chunk cost, against a bare GET.

The archive, servers and delayed link of ``remote_latency.py`` (S3 on moto, kept-alive
connections, ``--rtt`` 20 ms). A worker process fetches the stored bytes of random chunks
(no decoding, no package code) in three ways, each paired with a bare ranged GET of the
same chunk (``http.client``, presigned, in the calling thread), in turn first and second:

- ``zarr's hand-off``: a no-op coroutine through zarr's ``sync`` (the calling thread hands
  it to zarr's event loop thread and waits for it back), then the bare GET: zarr's share;
- ``obstore``: ``obstore.get_async`` (range, ``If-Match``) and ``bytes()`` on zarr's loop
  through ``sync``, as this package reads a lone chunk on GCS and Azure: the request goes to
  obstore's runtime threads and the answer comes back to the loop;
- ``socket on the loop``: the presigned GET (range, ``If-Match``) written and read by
  zarr's loop itself on a kept-alive asyncio connection, through ``sync``: as this package
  reads a lone chunk on S3 and HTTP (``io/loop_get.py``).

It prints, per round, the median over the pairs of each way's time over the bare GET's: the
difference between ``obstore`` and ``socket on the loop`` is what obstore's runtime hand-offs
cost a random read.

    .venv/bin/python benchmarks/remote_hops.py [--reads 300] [--rounds 2] [--rtt 0.02]
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
from latency_contenders import s3_store
from latency_random import bare_getter, request_path
from latency_s3 import s3_behind_link, worker_result
from remote_read import BUCKET, N_FILES, STEPS

WARMUP = 10


def fetchers(job: dict[str, Any]) -> dict[str, Any]:
    """``name -> fetch(i)``: chunk ``i``'s stored bytes, each way but the bare GET."""
    import obstore
    from zarr.core.sync import sync

    refs = json.loads(Path(job["refs"]).read_text())
    store = s3_store(job)
    targets = {url: request_path(job, url) for url in set(refs["paths"])}
    host = job["endpoint"].removeprefix("http://")
    etags: dict[str, str] = {}  # as the server named them, quotes included
    connection: list[Any] = []  # the loop's kept-alive (reader, writer)

    def where(i: int) -> tuple[str, int, int]:
        start = refs["offsets"][i]
        return refs["paths"][i], start, start + refs["lengths"][i]

    async def through_obstore(i: int) -> bytes:
        url, start, stop = where(i)
        key = url.removeprefix(f"s3://{BUCKET}/")
        options: dict[str, Any] = {"range": (start, stop)}
        if url in etags:
            options["if_match"] = etags[url]
        result = await obstore.get_async(store, key, options=options)
        data = result.bytes()
        etags[url] = result.meta["e_tag"]
        return bytes(data)

    async def on_the_loop(i: int) -> bytes:
        url, start, stop = where(i)
        if not connection:
            connection.extend(await asyncio.open_connection(*host.split(":")))
        reader, writer = connection
        condition = f"If-Match: {etags[url]}\r\n" if url in etags else ""
        writer.write(
            f"GET {targets[url]} HTTP/1.1\r\nHost: {host}\r\n"
            f"Range: bytes={start}-{stop - 1}\r\n{condition}\r\n".encode()
        )
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        assert head[0].split()[1] == "206", head[0]
        fields = dict(line.lower().split(": ", 1) for line in head[1:] if line)
        etags[url] = fields["etag"]
        return await reader.readexactly(int(fields["content-length"]))

    async def nothing() -> None:
        return None

    bare = bare_getter(job)
    return {
        "zarr's hand-off": lambda i: (sync(nothing()), bare(i))[1],
        "obstore": lambda i: sync(through_obstore(i)),
        "socket on the loop": lambda i: sync(on_the_loop(i)),
    }


def timed_pairs(job: dict[str, Any], reads: int) -> dict[str, float]:
    """The median, over ``reads`` random chunks, of each way's time over the bare GET's."""
    bare = bare_getter(job)
    ways = fetchers(job)
    chunks = np.random.default_rng(1).integers(0, N_FILES * STEPS, WARMUP + reads).tolist()
    for i in chunks[:WARMUP]:
        expected = bare(i)
        for fetch in ways.values():
            assert bytes(fetch(i)) == expected
    ratios: dict[str, list[float]] = {name: [] for name in ways}
    for n, i in enumerate(chunks[WARMUP:]):
        for name, fetch in ways.items():
            pair = {}
            for who, read in [("way", fetch), ("bare", bare)][:: 1 - 2 * (n % 2)]:
                start = time.perf_counter()
                read(i)
                pair[who] = time.perf_counter() - start
            ratios[name].append(pair["way"] / pair["bare"])
    return {name: statistics.median(values) for name, values in ratios.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reads", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--rtt", type=float, default=0.02, help="round trip added, seconds")
    parser.add_argument("--data", type=Path, default=Path("/tmp/zms-latency-bench"))
    parser.add_argument("--worker", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if args.worker:
        print(json.dumps(timed_pairs(json.loads(args.worker[0]), int(args.worker[1]))))
        return
    with s3_behind_link(args.data, args.rtt) as (job, _):
        for round_ in range(1, args.rounds + 1):
            ratios = worker_result(__file__, job, args.reads)
            shares = ", ".join(f"{name} {ratio:.3f}x" for name, ratio in ratios.items())
            runtime = ratios["obstore"] - ratios["socket on the loop"]
            print(f"round {round_}: over a bare GET: {shares}; obstore's hand-offs {runtime:.1%}")


if __name__ == "__main__":
    main()
