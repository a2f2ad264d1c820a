"""A lone remote chunk is sent by the event loop itself (``io/loop_get.py``), not by obstore's
runtime: one request, on a connection kept alive, its answer checked as obstore's is; an
answer it does not take is left to obstore, and failures are retried as obstore's are."""

from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from read_fixtures import CHUNK_ROWS, manifest_for, store_on_s3, store_over, write_source
from servers import RangeHTTPServer, Request

import zarr_manifest_store as zms
import zarr_manifest_store.io.clients as clients
import zarr_manifest_store.io.loop_get as loop_get
from zarr_manifest_store.io.sources import Sources

FAR = (2, 20, 6)
"""Chunks of one file too far apart for a read to count as reading on from another."""


def _rows(chunk: int) -> slice:
    return slice(chunk * CHUNK_ROWS, (chunk + 1) * CHUNK_ROWS)


@pytest.fixture
def obstore_gets(monkeypatch) -> list[str]:
    """The keys obstore was asked for."""
    asked: list[str] = []
    get_async = clients.obstore.get_async

    async def spy(store: Any, key: str, **kwargs: Any) -> Any:
        asked.append(key)
        return await get_async(store, key, **kwargs)

    monkeypatch.setattr(clients.obstore, "get_async", spy)
    return asked


@pytest.fixture
def connects(monkeypatch) -> list[str]:
    """The hosts the event loop opened a connection to."""
    opened: list[str] = []
    open_connection = loop_get._open

    async def spy(host: str, port: int, tls: Any) -> Any:
        opened.append(f"{host}:{port}")
        return await open_connection(host, port, tls)

    monkeypatch.setattr(loop_get, "_open", spy)
    return opened


def _served(server: RangeHTTPServer, tmp_path: Path, **options: Any) -> tuple[Any, np.ndarray]:
    """A zarr array over the test source on ``server``, its fingerprint recorded."""
    path = tmp_path / "src.h5"
    data = write_source(path)
    shutil.copy(path, server.root / "src.h5")
    url = f"{server.url}/src.h5"
    store = store_over(manifest_for(path, url, Sources().fingerprint(url)), **options)
    return zarr.open_group(store, mode="r")["v"], data


def test_lone_chunks_are_sent_by_the_event_loop_on_one_connection(
    http_server, tmp_path, obstore_gets, connects
):
    """Each random chunk costs one GET, sent by the loop on a connection kept alive between
    them; a slice's chunks, gathered, still go through obstore."""
    arr, data = _served(http_server, tmp_path)
    gets = http_server.requests.count("GET", path="/src.h5")
    for chunk in FAR:
        np.testing.assert_array_equal(arr[_rows(chunk)], data[_rows(chunk)])
    assert http_server.requests.count("GET", path="/src.h5") == gets + len(FAR)
    assert obstore_gets == []
    assert len(connects) == 1

    np.testing.assert_array_equal(arr[_rows(8).start : _rows(12).stop], data[16:26])
    assert obstore_gets == ["src.h5"]


def test_a_lone_s3_chunk_carries_the_checked_etag_and_a_replaced_object_is_refused(
    s3, tmp_path, obstore_gets
):
    """On S3 the loop sends the GET to a URL obstore presigned, with ``If-Match``: moto
    answers a replaced object 412, which ends the read as obstore's 412 does."""
    fs, bucket, server = s3
    store, data, fp = store_on_s3(s3, tmp_path, "archive/src.h5")
    arr = zarr.open_group(store, mode="r")["v"]
    server.requests.clear()
    np.testing.assert_array_equal(arr[_rows(FAR[0])], data[_rows(FAR[0])])
    assert server.data_requests(bucket, "archive/src.h5") == 1
    assert server.required_etags(bucket, "archive/src.h5") == [f'"{fp.etag}"']
    assert obstore_gets == []

    other = tmp_path / "other.h5"
    write_source(other, seed=5)
    fs.put(str(other), f"s3://{bucket}/archive/src.h5")
    with pytest.raises(zms.SourceChangedError, match=r"src\.h5' changed"):
        arr[_rows(FAR[1])]
    assert obstore_gets == []


def test_no_proxy_alone_keeps_lone_chunks_on_the_event_loop(
    http_server, tmp_path, obstore_gets, monkeypatch
):
    """``NO_PROXY`` names hosts reached directly: without a proxy variable beside it, the loop
    still sends the lone chunk (with one, obstore does: ``test_remote``'s proxy test)."""
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    arr, data = _served(http_server, tmp_path)
    np.testing.assert_array_equal(arr[_rows(FAR[0])], data[_rows(FAR[0])])
    assert obstore_gets == []


def test_an_http_path_obstore_would_encode_is_left_to_obstore(http_server, tmp_path, obstore_gets):
    """A URL path with characters other than letters, digits and ``/._-`` is requested by
    obstore, which decodes and encodes it its own way: the loop does not guess how."""
    path = tmp_path / "src.h5"
    data = write_source(path)
    shutil.copy(path, http_server.root / "a b.h5")
    url = f"{http_server.url}/a%20b.h5"
    store = store_over(manifest_for(path, url, Sources().fingerprint(url)))
    arr = zarr.open_group(store, mode="r")["v"]
    np.testing.assert_array_equal(arr[_rows(FAR[0])], data[_rows(FAR[0])])
    assert obstore_gets == ["a b.h5"]


@pytest.mark.parametrize(("fault", "by_obstore"), [("500", 0), ("short", 0), ("reset", 1)])
def test_a_failed_lone_request_is_retried(http_server, tmp_path, obstore_gets, fault, by_obstore):
    """A 500 or a body broken off is retried (by the loop again); a connection kept alive
    that the server closes without answering is left to obstore, which asks again."""
    arr, data = _served(http_server, tmp_path)
    np.testing.assert_array_equal(arr[_rows(FAR[0])], data[_rows(FAR[0])])  # kept alive
    gets = http_server.requests.count("GET", path="/src.h5")
    http_server.inject("src.h5", [fault])
    np.testing.assert_array_equal(arr[_rows(FAR[1])], data[_rows(FAR[1])])
    assert http_server.requests.count("GET", path="/src.h5") == gets + 2
    assert len(obstore_gets) == by_obstore


def test_a_lone_request_that_stalls_ends_at_the_timeout_and_is_retried(http_server, tmp_path):
    """A server that does not answer the loop's request is given up at ``timeout``, not when
    it answers, and asked again."""
    arr, data = _served(http_server, tmp_path, timeout=0.5)
    http_server.stall_seconds = 2.0
    http_server.inject("src.h5", ["stall"])
    gets = http_server.requests.count("GET", path="/src.h5")
    started = time.monotonic()
    np.testing.assert_array_equal(arr[_rows(FAR[0])], data[_rows(FAR[0])])
    assert time.monotonic() - started < 1.5
    assert http_server.requests.count("GET", path="/src.h5") == gets + 2


class RefusingServer(RangeHTTPServer):
    """The range server, refusing (403) the requests that name no ``User-Agent``, as obstore's do."""

    def __init__(self, root: Path) -> None:
        super().__init__(root)
        outer, base = self, self._server.RequestHandlerClass

        class Handler(base):
            def do_GET(self) -> None:
                if self.headers.get("User-Agent"):
                    super().do_GET()
                    return
                outer.requests.add(Request("GET", self.path, self.headers.get("Range")))
                self._reply(403, b"forbidden", {})

        self._server.RequestHandlerClass = Handler


def test_a_refused_lone_request_leaves_the_store_to_obstore(tmp_path, obstore_gets):
    """A refusal (403) of the loop's request is not the read's answer: obstore asks again,
    and sends every later request of that store."""
    root = tmp_path / "served"
    root.mkdir()
    server = RefusingServer(root).start()
    try:
        arr, data = _served(server, tmp_path)
        gets = server.requests.count("GET", path="/src.h5")
        np.testing.assert_array_equal(arr[_rows(FAR[0])], data[_rows(FAR[0])])
        assert server.requests.count("GET", path="/src.h5") == gets + 2
        np.testing.assert_array_equal(arr[_rows(FAR[1])], data[_rows(FAR[1])])
        assert server.requests.count("GET", path="/src.h5") == gets + 3
        assert obstore_gets == ["src.h5", "src.h5"]
    finally:
        server.stop()
