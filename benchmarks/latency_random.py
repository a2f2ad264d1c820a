"""Random remote chunks against a bare ranged GET of the same bytes (``remote_latency.py``).

Each read of a chunk through a contender is paired with a bare GET of it on one kept-alive
``http.client`` connection (S3 requests presigned beforehand), the floor of a random read.
"""

from __future__ import annotations

import http.client
import json
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
from latency_link import Counter
from remote_read import BUCKET, N_FILES, STEPS

RANDOM_READS = 300
RANDOM_WARMUP = 10
"""Random reads (each with its bare GET) before those counted: connections, first uses."""
ASYNC_READS = 100


def random_reads(
    read: Any,
    job: dict[str, Any],
    checks: list[list[float]],
    counter: Counter,
    prefix: str = "",
    count: int = RANDOM_READS,
) -> dict[str, float]:
    """Random chunks through ``read(t)``, each paired with a bare GET of the same chunk (first
    one, then the other, in turn): the median of each, and the median of the pairs' ratios
    (both reads of a pair meet the same load). A pair whose read sent no request is left
    out (counted): it measured a cache, not a remote read. The figures' names start with
    ``prefix``."""
    bare = bare_getter(job)
    bare(0)  # the connection
    ours, floor = f"{prefix}random ms", f"{prefix}bare ms"
    times: dict[str, list[float]] = {ours: [], floor: []}
    unrequested = requested = 0
    seed = 1 if not prefix else 3  # other chunks for another pass
    reads = np.random.default_rng(seed).integers(0, N_FILES * STEPS, RANDOM_WARMUP + count)
    for t in reads[:RANDOM_WARMUP].tolist():
        read(t), bare(t)
    for i, t in enumerate(reads[RANDOM_WARMUP:].tolist()):
        pair: dict[str, float] = {}
        for figure in list(times)[:: 1 - 2 * (i % 2)]:
            if figure == ours:
                counter.ask("reset")  # outside the timed read, as the count below
            start = time.perf_counter()
            value = read(t) if figure == ours else bare(t)
            pair[figure] = time.perf_counter() - start
            if figure == ours:
                requested = counter.ask("stats")["requests"]
                checks.append([t, float(np.asarray(value, dtype="f8").sum())])
        if requested:
            for figure, elapsed in pair.items():
                times[figure].append(elapsed)
        else:
            unrequested += 1
    out = {figure: statistics.median(values) * 1e3 for figure, values in times.items()}
    ratio = statistics.median(a / b for a, b in zip(times[ours], times[floor], strict=True))
    return out | {f"{prefix}random / bare": ratio, f"{prefix}served unrequested": unrequested}


def async_reader(store: Any) -> Any:
    """``read(t)``: chunk ``t`` through zarr's asynchronous API on an event loop of this
    thread, as a caller in asynchronous code reads (no hand-off to zarr's loop thread)."""
    import asyncio

    import zarr.api.asynchronous as zarr_async

    loop = asyncio.new_event_loop()

    async def open_array() -> Any:
        group = await zarr_async.open_group(store=store, mode="r")
        return await group.getitem("t2m")

    arr = loop.run_until_complete(open_array())
    return lambda t: loop.run_until_complete(arr.getitem(t))


def bare_getter(job: dict[str, Any]) -> Any:
    """``get(i)``: a ranged GET of chunk ``i`` on one kept-alive connection, the floor of a
    random read (S3 requests presigned beforehand, so that signing costs nothing then)."""
    refs = json.loads(Path(job["refs"]).read_text())
    host, port = job["endpoint"].removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port))
    targets = {url: request_path(job, url) for url in set(refs["paths"])}

    def get(i: int) -> bytes:
        start, length = refs["offsets"][i], refs["lengths"][i]
        headers = {"Range": f"bytes={start}-{start + length - 1}"}
        connection.request("GET", targets[refs["paths"][i]], headers=headers)
        response = connection.getresponse()
        data = response.read()
        assert response.status == 206, response.status
        assert len(data) == length, (len(data), length)
        return data

    return get


def request_path(job: dict[str, Any], url: str) -> str:
    """The path (and query) of a GET of ``url`` through the proxy."""
    key = url.removeprefix(job["prefix"])
    if job["backend"] != "s3":
        return "/" + key
    import botocore.session

    client = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=job["endpoint"],
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        region_name="us-east-1",
    )
    signed = client.generate_presigned_url("get_object", Params={"Bucket": BUCKET, "Key": key})
    return signed.removeprefix(job["endpoint"])
