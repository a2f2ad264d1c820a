"""A selection of one remote chunk is sent at once: no turn of the event loop waited for reads
to gather it with (unless other reads of that loop are under way, as dask's are), and its
small body is taken as soon as its headers arrived, without a second await."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from read_fixtures import CHUNK_ROWS, SlowHTTPServer, manifest_for, store_over, write_source
from servers import RangeHTTPServer

import zarr_manifest_store.io.clients as clients
from zarr_manifest_store.io.gather import Gatherer
from zarr_manifest_store.io.loop_get import LoopGet
from zarr_manifest_store.io.readahead import ReadAhead
from zarr_manifest_store.io.sources import READ_ALONE, Sources

FAR = (2, 20)
"""Two chunks of one file too far apart for the second to count as reading on."""


def _rows(chunk: int) -> slice:
    return slice(chunk * CHUNK_ROWS, (chunk + 1) * CHUNK_ROWS)


@pytest.fixture
def source(http_server, tmp_path: Path) -> tuple[str, Path, np.ndarray]:
    """The test source on the range server, its fingerprint recorded: (url, path, values)."""
    path = tmp_path / "src.h5"
    data = write_source(path)
    shutil.copy(path, http_server.root / "src.h5")
    return f"{http_server.url}/src.h5", path, data


@pytest.fixture
def turns(monkeypatch) -> list[str]:
    """The paths of the reads that waited a turn of the loop (read-ahead's, the gatherer's)."""
    waited: list[str] = []
    alone, gathered = ReadAhead._alone, Gatherer.read

    async def read_ahead_turn(self: ReadAhead, path: str) -> bool:
        waited.append(path)
        return await alone(self, path)

    async def gatherer_turn(self: Gatherer, path: str, start: int, stop: int) -> Any:
        waited.append(path)
        return await gathered(self, path, start, stop)

    monkeypatch.setattr(ReadAhead, "_alone", read_ahead_turn)
    monkeypatch.setattr(Gatherer, "read", gatherer_turn)
    return waited


@pytest.fixture
def bodies(monkeypatch) -> list[str]:
    """How each obstore body was taken: ``"at once"`` (``bytes()``) or ``"awaited"``; the
    event loop's own GET of a lone chunk is off, so obstore sends every request."""
    taken: list[str] = []
    obstore = clients.obstore

    async def left_to_obstore(*args: Any, **kwargs: Any) -> None:
        return None

    monkeypatch.setattr(LoopGet, "get", left_to_obstore)

    class Result:
        def __init__(self, result: Any) -> None:
            self.result, self.meta = result, result.meta

        def bytes(self) -> Any:
            taken.append("at once")
            return self.result.bytes()

        async def bytes_async(self) -> Any:
            taken.append("awaited")
            return await self.result.bytes_async()

    class Obstore:
        def __getattr__(self, name: str) -> Any:
            return getattr(obstore, name)

        async def get_async(self, *args: Any, **kwargs: Any) -> Result:
            return Result(await obstore.get_async(*args, **kwargs))

    monkeypatch.setattr(clients, "obstore", Obstore())
    return taken


@pytest.mark.parametrize("read_ahead_bytes", [64 << 20, 0])
def test_a_random_chunk_waits_no_turn_of_the_loop(source, http_server, turns, read_ahead_bytes):
    """A selection of one chunk is alone: its request is sent from the reading coroutine
    without a turn of the loop, with read-ahead on or off (off, it was always gathered); a
    slice's chunks still wait their turn and are coalesced into one request."""
    url, path, data = source
    store = store_over(
        manifest_for(path, url, Sources().fingerprint(url)), read_ahead_bytes=read_ahead_bytes
    )
    arr = zarr.open_group(store, mode="r")["v"]
    gets = http_server.requests.count("GET", path="/src.h5")
    for chunk in FAR:
        np.testing.assert_array_equal(arr[_rows(chunk)], data[_rows(chunk)])
    assert turns == []
    assert http_server.requests.count("GET", path="/src.h5") == gets + 2

    np.testing.assert_array_equal(arr[_rows(8).start : _rows(12).stop], data[16:26])
    assert http_server.requests.count("GET", path="/src.h5") == gets + 3
    assert len(turns) >= 4  # each chunk of the slice waited to be gathered


def test_lone_reads_arriving_while_another_is_under_way_are_still_gathered(tmp_path):
    """Reads that say they come alone but arrive together while another read of the same loop
    is under way (dask's tasks, one chunk each) still wait their turn: the two arriving
    together are coalesced into one request."""
    root = tmp_path / "served"
    root.mkdir()
    server = SlowHTTPServer(root, delay=0.2).start()  # the first read is still under way
    try:
        path = root / "src.h5"
        write_source(path)
        url = f"{server.url}/src.h5"
        sources = Sources(fingerprints={url: [Sources().fingerprint(url)]})
        manifest = manifest_for(path, url)
        refs = [(int(manifest.offsets.flat[i]), int(manifest.lengths.flat[i])) for i in (2, 10, 11)]

        async def reads() -> list[Any]:
            READ_ALONE.set(True)  # each read says it is a selection of one chunk
            first = asyncio.ensure_future(sources.read(url, *refs[0]))
            await asyncio.sleep(0)  # sent: under way while the next two arrive
            together = asyncio.gather(*(sources.read(url, *ref) for ref in refs[1:]))
            return [*await asyncio.gather(first, together)]

        got = asyncio.run(reads())
        raw = path.read_bytes()
        assert [bytes(got[0]), *map(bytes, got[1])] == [raw[o : o + n] for o, n in refs]
        assert server.requests.count("GET", path="/src.h5") == 2
        assert sources._reading == {}  # nothing is left counted as under way
    finally:
        server.stop()


def test_a_lone_small_body_is_taken_with_its_headers(source, bodies, monkeypatch):
    """A lone chunk's small body is taken as soon as its headers arrived (one await, not
    two); a lone body above AT_ONCE_BODY_BYTES, and a gathered read's, are awaited."""
    url, path, data = source
    store = store_over(manifest_for(path, url, Sources().fingerprint(url)))
    arr = zarr.open_group(store, mode="r")["v"]
    np.testing.assert_array_equal(arr[_rows(FAR[0])], data[_rows(FAR[0])])
    assert bodies == ["at once"]

    np.testing.assert_array_equal(arr[_rows(8).start : _rows(12).stop], data[16:26])
    assert bodies == ["at once", "awaited"]

    monkeypatch.setattr(clients, "AT_ONCE_BODY_BYTES", 16)
    np.testing.assert_array_equal(arr[_rows(FAR[1])], data[_rows(FAR[1])])
    assert bodies == ["at once", "awaited", "awaited"]


class BodyStallingServer(RangeHTTPServer):
    """The range server; the next ``stalls`` answers send their headers and half their body,
    then hold the rest ``stall_seconds``."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        self.stalls = 0
        outer, base = self, self._server.RequestHandlerClass

        class Handler(base):
            def _reply(self, status: int, payload: bytes, headers: Any, length: Any = None) -> None:
                if not outer.stalls or status != 206:
                    super()._reply(status, payload, headers, length)
                    return
                outer.stalls -= 1
                half = len(payload) // 2
                super()._reply(status, payload[:half], headers, len(payload))
                self.wfile.flush()
                time.sleep(outer.stall_seconds)
                with contextlib.suppress(OSError):  # the client gave up
                    self.wfile.write(payload[half:])

        self._server.RequestHandlerClass = Handler


def test_a_lone_body_that_stalls_ends_at_the_timeout_and_is_retried(tmp_path, bodies):
    """A lone chunk whose body stalls after its headers (taken at once, blocking the loop)
    is given up at the client's ``timeout``, not when the server resumes, and retried."""
    root = tmp_path / "served"
    root.mkdir()
    server = BodyStallingServer(root).start()
    server.stall_seconds = 2.0
    try:
        path = root / "src.h5"
        data = write_source(path)
        url = f"{server.url}/src.h5"
        store = store_over(manifest_for(path, url, Sources().fingerprint(url)), timeout=0.5)
        arr = zarr.open_group(store, mode="r")["v"]
        server.stalls = 1
        started = time.monotonic()
        np.testing.assert_array_equal(arr[_rows(FAR[0])], data[_rows(FAR[0])])
        assert time.monotonic() - started < 1.5  # the server resumes after 2 s
        assert server.requests.count("GET", path="/src.h5") == 2
        assert bodies == ["at once", "at once"]
    finally:
        server.stop()


def test_a_body_is_awaited_while_other_reads_of_the_loop_are_under_way(tmp_path, bodies):
    """A read alone in its turn of the loop, but with another read of that loop under way (a
    dask task's beside another's), is sent at once but its body awaited: the loop is not
    held while other reads wait on it."""
    root = tmp_path / "served"
    root.mkdir()
    server = SlowHTTPServer(root, delay=0.2).start()
    try:
        path = root / "src.h5"
        write_source(path)
        url = f"{server.url}/src.h5"
        sources = Sources(fingerprints={url: [Sources().fingerprint(url)]})
        manifest = manifest_for(path, url)
        refs = [(int(manifest.offsets.flat[i]), int(manifest.lengths.flat[i])) for i in FAR]

        async def reads() -> list[Any]:
            READ_ALONE.set(True)  # each read says it is a selection of one chunk
            first = asyncio.ensure_future(sources.read(url, *refs[0]))
            await asyncio.sleep(0)  # sent: under way while the next arrives
            return list(await asyncio.gather(first, sources.read(url, *refs[1])))

        got = asyncio.run(reads())
        raw = path.read_bytes()
        assert [bytes(g) for g in got] == [raw[o : o + n] for o, n in refs]
        assert server.requests.count("GET", path="/src.h5") == 2
        assert sorted(bodies) == ["at once", "awaited"]
    finally:
        server.stop()


def test_an_awaited_body_that_stalls_ends_at_the_timeout_and_is_retried(tmp_path, bodies):
    """A gathered read's body (awaited) that stalls after its headers is given up at the
    client's ``timeout`` (obstore's own: no timer of ours bounds the attempt), not when the
    server resumes, and retried."""
    root = tmp_path / "served"
    root.mkdir()
    server = BodyStallingServer(root).start()
    server.stall_seconds = 2.0
    try:
        path = root / "src.h5"
        data = write_source(path)
        url = f"{server.url}/src.h5"
        store = store_over(
            manifest_for(path, url, Sources().fingerprint(url)), timeout=0.5, read_ahead_bytes=0
        )
        arr = zarr.open_group(store, mode="r")["v"]
        server.stalls = 1
        started = time.monotonic()
        np.testing.assert_array_equal(arr[_rows(8).start : _rows(12).stop], data[16:26])
        assert time.monotonic() - started < 1.5  # the server resumes after 2 s
        assert server.requests.count("GET", path="/src.h5") == 2
        assert bodies == ["awaited", "awaited"]
    finally:
        server.stop()


def test_a_client_that_times_out_by_itself_is_given_no_timer(source, monkeypatch):
    """An attempt through a client that abandons a request by itself (obstore's, made with
    the store's ``timeout``) is not also bounded by a timer of ours; one through a client
    without a timeout of its own (fsspec's, for a URL with a query) is."""
    url, path, data = source
    bounded: list[float] = []
    wait_for = asyncio.wait_for

    async def counting(awaitable: Any, timeout: float) -> Any:
        bounded.append(timeout)
        return await wait_for(awaitable, timeout)

    monkeypatch.setattr(asyncio, "wait_for", counting)
    fingerprint = Sources().fingerprint(url)
    own = store_over(manifest_for(path, url, fingerprint), timeout=7)
    np.testing.assert_array_equal(zarr.open_group(own, mode="r")["v"][_rows(3)], data[_rows(3)])
    assert bounded == []

    queried = f"{url}?v=1"
    fsspec_read = store_over(manifest_for(path, queried, fingerprint), timeout=6)
    arr = zarr.open_group(fsspec_read, mode="r")["v"]
    np.testing.assert_array_equal(arr[_rows(4)], data[_rows(4)])
    assert set(bounded) == {6}  # each attempt bounded by the store timeout
