"""A random remote chunk costs a bare GET: one request, sent and answered on the caller's
event loop (no hop to the I/O loop and back) once its object's check is settled, with the
fingerprint check still on it; faults end as before; requests in flight stay bounded per
host across event loops."""

from __future__ import annotations

import asyncio
import shutil
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from read_fixtures import CHUNK_ROWS, SlowHTTPServer, manifest_for, store_over, write_source
from servers import RangeHTTPServer

import zarr_manifest_store as zms
from zarr_manifest_store.io.clients import ObstoreClient
from zarr_manifest_store.io.gather import Gatherer
from zarr_manifest_store.io.remote import io_loop
from zarr_manifest_store.io.slots import Slots
from zarr_manifest_store.io.sources import Sources

FAR = (2, 20)
"""Two chunks of one file too far apart for the second to count as reading on."""


def _served(kind: str, request: Any, tmp_path: Path) -> tuple[str, Any, Path, np.ndarray, Any]:
    """The test source on S3 (moto) or the range server: (url, options, path, data, counter),
    ``counter(method)`` counting the requests for it."""
    path = tmp_path / "src.h5"
    data = write_source(path)
    if kind == "s3":
        fs, bucket, server = request.getfixturevalue("s3")
        url = f"s3://{bucket}/src.h5"
        fs.put(str(path), url)
        options = server.storage_options
        key = f"/{bucket}/src.h5"
    else:
        server = request.getfixturevalue("http_server")
        shutil.copy(path, server.root / "src.h5")
        url, options, key = f"{server.url}/src.h5", None, "/src.h5"
    return url, options, path, data, lambda method: server.requests.count(method, path=key)


def _rows(chunk: int) -> slice:
    return slice(chunk * CHUNK_ROWS, (chunk + 1) * CHUNK_ROWS)


@pytest.fixture
def request_loops(monkeypatch) -> list[asyncio.AbstractEventLoop]:
    """The event loop each obstore request of the test runs on."""
    loops: list[asyncio.AbstractEventLoop] = []
    original = ObstoreClient.get

    async def get(self: ObstoreClient, *args: Any, **kwargs: Any) -> Any:
        loops.append(asyncio.get_running_loop())
        return await original(self, *args, **kwargs)

    monkeypatch.setattr(ObstoreClient, "get", get)
    return loops


@pytest.mark.parametrize("kind", ["s3", "http"])
def test_random_chunks_are_one_request_each_on_the_callers_loop(
    kind, request, tmp_path, request_loops
):
    """Two random chunks of one file with a recorded fingerprint: a GET each, no HEAD, both
    sent from zarr's event loop (the I/O loop is not involved); values equal."""
    url, options, path, data, count = _served(kind, request, tmp_path)
    store = store_over(
        manifest_for(path, url, Sources(options).fingerprint(url)), storage_options=options
    )
    arr = zarr.open_group(store, mode="r")["v"]
    gets, heads = count("GET"), count("HEAD")
    for chunk in FAR:
        np.testing.assert_array_equal(arr[_rows(chunk)], data[_rows(chunk)])
        gets += 1
        assert count("GET") == gets
    assert count("HEAD") == heads
    assert len(request_loops) == 2
    assert io_loop() not in request_loops


def test_a_random_chunk_is_requested_without_waiting_to_be_gathered(request, tmp_path, monkeypatch):
    """A remote chunk read alone has nothing to be gathered with: its request is sent from
    the reading coroutine (no further turn of the loop, no task); a slice's chunks, which
    arrive together, are still gathered and coalesced into one request."""
    url, options, path, data, count = _served("http", request, tmp_path)
    store = store_over(manifest_for(path, url, Sources(options).fingerprint(url)))
    gathered: list[str] = []
    original = Gatherer.read

    async def read(self: Gatherer, path: str, start: int, stop: int) -> Any:
        gathered.append(path)
        return await original(self, path, start, stop)

    monkeypatch.setattr(Gatherer, "read", read)
    arr = zarr.open_group(store, mode="r")["v"]
    gets = count("GET")
    for chunk in FAR:
        np.testing.assert_array_equal(arr[_rows(chunk)], data[_rows(chunk)])
    assert (count("GET"), gathered) == (gets + 2, [])

    np.testing.assert_array_equal(arr[_rows(8).start : _rows(12).stop], data[16:26])
    assert (count("GET"), len(gathered)) == (gets + 3, 5)


def test_an_unrecorded_source_is_checked_once_then_read_on_the_callers_loop(
    request, tmp_path, request_loops
):
    """Without a recorded fingerprint the first read checks the object (a HEAD, on the I/O
    loop); later chunks are one GET each on the caller's loop, with the ETag then seen."""
    url, options, path, data, count = _served("s3", request, tmp_path)
    _, bucket, server = request.getfixturevalue("s3")
    store = store_over(manifest_for(path, url), storage_options=options)
    arr = zarr.open_group(store, mode="r")["v"]
    np.testing.assert_array_equal(arr[_rows(FAR[0])], data[_rows(FAR[0])])
    assert (count("HEAD"), count("GET")) == (1, 1)
    assert request_loops == [io_loop()]

    np.testing.assert_array_equal(arr[_rows(FAR[1])], data[_rows(FAR[1])])
    assert (count("HEAD"), count("GET")) == (1, 2)
    assert request_loops[1] is not io_loop()
    etag = Sources(options).fingerprint(url).etag
    assert [t and t.strip('"') for t in server.required_etags(bucket, "src.h5")] == [etag, etag]


def test_each_random_chunk_of_s3_carries_the_recorded_etag(request, tmp_path):
    """A source with a recorded fingerprint: every random chunk is one GET asking for the
    recorded ETag (``If-Match``), so the check rides on the data request; no HEAD."""
    url, options, path, data, count = _served("s3", request, tmp_path)
    _, bucket, server = request.getfixturevalue("s3")
    fingerprint = Sources(options).fingerprint(url)
    store = store_over(manifest_for(path, url, fingerprint), storage_options=options)
    arr = zarr.open_group(store, mode="r")["v"]
    heads = count("HEAD")
    for chunk in (*FAR, 9):
        np.testing.assert_array_equal(arr[_rows(chunk)], data[_rows(chunk)])
    assert (count("GET"), count("HEAD")) == (3, heads)
    required = [t and t.strip('"') for t in server.required_etags(bucket, "src.h5")]
    assert required == [fingerprint.etag] * 3


def test_random_chunks_reuse_one_kept_alive_connection(tmp_path):
    """Random chunks from a server that keeps connections alive (as object stores do) are
    sent on one connection: no reconnection, which costs a round trip or more, per chunk."""
    root = tmp_path / "served"
    root.mkdir()
    server = ConnectionCountingServer(root).start()
    try:
        path = tmp_path / "src.h5"
        data = write_source(path)
        shutil.copy(path, root / "src.h5")
        url = f"{server.url}/src.h5"
        store = store_over(manifest_for(path, url, Sources().fingerprint(url)))
        arr = zarr.open_group(store, mode="r")["v"]
        for chunk in (*FAR, 9, 16):
            np.testing.assert_array_equal(arr[_rows(chunk)], data[_rows(chunk)])
        assert server.requests.count("GET", path="/src.h5") == 4
        # the fingerprint's HEAD opened one; the client may open a second while the HEAD's
        # connection goes back to its pool (seen under load); 5 without reuse
        assert server.connections <= 2
    finally:
        server.stop()


class ConnectionCountingServer(RangeHTTPServer):
    """The range server (HTTP/1.1, connections kept alive), counting connections accepted."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.connections = 0
        outer, base = self, self._server.RequestHandlerClass

        class Handler(base):
            def setup(self) -> None:
                outer.connections += 1
                super().setup()

        self._server.RequestHandlerClass = Handler


@pytest.mark.parametrize("fault", ["500", "reset", "short", "stall"])
def test_faults_of_a_random_chunk_are_retried_on_the_callers_loop(
    fault, request, http_server, tmp_path, request_loops
):
    """500s, resets, short bodies and stalls of a random chunk's request are retried there."""
    url, _, path, data, count = _served("http", request, tmp_path)
    http_server.stall_seconds = 1.0
    store = store_over(manifest_for(path, url, Sources().fingerprint(url)), timeout=0.3)
    arr = zarr.open_group(store, mode="r")["v"]
    http_server.inject("src.h5", [fault, fault])
    np.testing.assert_array_equal(arr[_rows(7)], data[_rows(7)])
    assert count("GET") == 3  # two failures, then the answer
    assert io_loop() not in request_loops


@pytest.mark.parametrize("kind", ["s3", "http"])
def test_a_changed_object_is_refused_on_the_callers_loop(kind, request, tmp_path, request_loops):
    """An object replaced after its first chunk was read: the next random chunk is refused,
    naming the source and the chunk, not decoded from the new bytes."""
    url, options, path, data, _ = _served(kind, request, tmp_path)
    store = store_over(
        manifest_for(path, url, Sources(options).fingerprint(url)),
        storage_options=options,
        retries=0,
    )
    arr = zarr.open_group(store, mode="r")["v"]
    np.testing.assert_array_equal(arr[_rows(FAR[0])], data[_rows(FAR[0])])
    other = tmp_path / "other.h5"
    write_source(other, seed=3)  # the same size, other bytes
    if kind == "s3":
        request.getfixturevalue("s3")[0].put(str(other), url)
    else:
        shutil.copy(other, request.getfixturevalue("http_server").root / "src.h5")
    with pytest.raises(zms.SourceChangedError, match=r"src\.h5' changed.*chunk 'v/c/20/0'"):
        arr[_rows(FAR[1])]
    assert io_loop() not in request_loops


def test_requests_in_flight_stay_bounded_across_event_loops(tmp_path):
    """Two threads, each reading many ranges on its own event loop, share one host's
    ``max_concurrency``: never more requests in flight than that, values equal."""
    root = tmp_path / "served"
    root.mkdir()
    server = SlowHTTPServer(root, delay=0.05).start()
    try:
        path = tmp_path / "src.h5"
        write_source(path)
        shutil.copy(path, root / "src.h5")
        url = f"{server.url}/src.h5"
        sources = Sources(max_concurrency=3, max_coalesced_bytes=1, read_ahead_bytes=0)
        sources.record({url: Sources().fingerprint(url)})
        content = path.read_bytes()
        ranges = [(i * 1000, 500) for i in range(12)]

        async def read_all() -> list[bytes]:
            return [
                bytes(b) for b in await asyncio.gather(*(sources.read(url, *r) for r in ranges))
            ]

        results: list[list[bytes]] = []
        threads = [
            threading.Thread(target=lambda: results.append(asyncio.run(read_all())))
            for _ in range(2)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        expected = [content[start : start + length] for start, length in ranges]
        assert results == [expected, expected]
        assert server.most_in_flight == 3
    finally:
        server.stop()


# ---------------------------------------------------------------------- Slots


def test_slots_bound_holders_on_several_loops():
    slots = Slots(2)
    lock = threading.Lock()
    holding = most = 0

    async def hold() -> None:
        nonlocal holding, most
        async with slots:
            with lock:
                holding += 1
                most = max(most, holding)
            await asyncio.sleep(0.01)
            with lock:
                holding -= 1

    async def many() -> None:
        await asyncio.gather(*(hold() for _ in range(10)))

    threads = [threading.Thread(target=asyncio.run, args=(many(),)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert most == 2
    assert holding == 0


def test_a_cancelled_waiter_passes_its_slot_on():
    slots = Slots(1)

    async def run() -> bool:
        async with slots:
            waiter = asyncio.ensure_future(slots.__aenter__())
            await asyncio.sleep(0)
            waiter.cancel()
            await asyncio.sleep(0)
        async with slots:  # the slot came back, not lost to the cancelled waiter
            return True

    assert asyncio.run(asyncio.wait_for(run(), 2))


def test_a_waiter_on_a_closed_loop_is_skipped():
    """A slot released while the longest waiter's loop is closed goes to the next waiter."""
    slots = Slots(1)
    asyncio.new_event_loop().run_until_complete(slots.__aenter__())  # held
    gone = asyncio.new_event_loop()
    waiting = gone.create_task(slots.__aenter__())
    gone.run_until_complete(asyncio.sleep(0))  # its waiter queues first
    assert not waiting.done()
    gone.close()

    async def next_waiter() -> bool:
        waiter = asyncio.ensure_future(slots.__aenter__())
        await asyncio.sleep(0)
        slots.release()
        await asyncio.wait_for(waiter, 2)
        return True

    assert asyncio.run(next_waiter())
