"""Real network peers for the tests, on 127.0.0.1 only, each counting what it serves.

- :class:`RangeHTTPServer`: a static file server with HTTP range requests,
  ETag / Last-Modified headers and fault injection (500s, connection resets,
  short bodies, stalls), for ``https://``-style sources through fsspec's HTTP file system.
- :class:`S3Server`: moto's S3 in server mode behind a request-counting
  middleware, for ``s3://`` sources through s3fs.
Fixtures in ``conftest.py`` start them; tests read ``server.requests`` to count
what a read cost from the server's side. The GCS and Azure emulators are in
``cloud_emulators.py``.
"""

from __future__ import annotations

import email.utils
import re
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import unquote

import fsspec

FAULTS = ("500", "reset", "short", "stall")


@dataclass
class Request:
    """One request as the server saw it."""

    method: str
    path: str
    range: str | None
    if_match: str | None = None  # the ETag the client required of the object


@dataclass
class RequestLog:
    """Thread-safe record of requests, with helpers for counting."""

    entries: list[Request] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, request: Request) -> None:
        with self.lock:
            self.entries.append(request)

    def count(
        self, method: str | None = None, path_contains: str = "", *, path: str | None = None
    ) -> int:
        """Requests by ``method`` whose path contains ``path_contains`` (or is ``path``)."""
        with self.lock:
            return sum(
                1
                for r in self.entries
                if (method is None or r.method == method)
                and path_contains in r.path
                and (path is None or r.path == path)
            )

    def clear(self) -> None:
        with self.lock:
            self.entries.clear()


class _Background:
    """A socket server on 127.0.0.1, run by a daemon thread between ``start`` and ``stop``."""

    def _run(self, server: Any) -> None:
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, daemon=True)

    @property
    def endpoint_url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}"

    def start(self) -> Self:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


class ObjectStoreServer(_Background):
    """An object store emulator: buckets, an fsspec file system, requests counted per object."""

    scheme: str  # of its URLs
    endpoint_variable: str  # the environment variable that points clients at it
    data_request: tuple[str, str]  # (method, path template) reading an object's bytes
    metadata_request: tuple[str, str]  # ... reading its size and ETag (a fingerprint check)
    requests: RequestLog

    def filesystem(self) -> Any:
        return fsspec.filesystem(self.scheme, **self.storage_options)

    @property
    def environment(self) -> dict[str, str]:
        """Environment variables that point clients at this server."""
        return {self.endpoint_variable: self.endpoint_url}

    def data_requests(self, bucket: str, key: str) -> int:
        """Requests for the bytes of object ``key``."""
        return self._count(self.data_request, bucket, key)

    def required_etags(self, bucket: str, key: str) -> list[str | None]:
        """The ``If-Match`` of each request for the bytes of object ``key`` (None: none)."""
        method, template = self.data_request
        path = template.format(bucket=bucket, key=key)
        with self.requests.lock:
            return [
                r.if_match for r in self.requests.entries if (r.method, r.path) == (method, path)
            ]

    def metadata_requests(self, bucket: str, key: str) -> int:
        """Requests for the size and ETag of object ``key`` (a fingerprint check)."""
        return self._count(self.metadata_request, bucket, key)

    def _count(self, request: tuple[str, str], bucket: str, key: str) -> int:
        method, template = request
        return self.requests.count(method, path=template.format(bucket=bucket, key=key))


class RangeHTTPServer(_Background):
    """Serves the files under ``root`` at ``http://127.0.0.1:<port>/<relative path>``.

    ``faults[path]`` is a list of faults (``"500"``, ``"reset"``, ``"short"``,
    ``"stall"``: answer only after ``stall_seconds``) applied, one per
    request, to the next requests for that path.
    """

    stall_seconds = 2.0

    def __init__(self, root: Path) -> None:
        self.root = root
        self.requests = RequestLog()
        self.faults: dict[str, list[str]] = {}
        self._faults_lock = threading.Lock()
        server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        server.daemon_threads = True
        self._run(server)

    @property
    def url(self) -> str:
        return self.endpoint_url

    def inject(self, path: str, faults: Iterable[str]) -> None:
        """Apply ``faults`` to the next requests for ``path`` (relative to the root)."""
        faults = list(faults)
        unknown = set(faults) - set(FAULTS)
        if unknown:
            raise ValueError(f"unknown faults {unknown}; use {FAULTS}")
        with self._faults_lock:
            self.faults.setdefault("/" + path.lstrip("/"), []).extend(faults)

    def next_fault(self, path: str) -> str | None:
        with self._faults_lock:
            pending = self.faults.get(path)
            return pending.pop(0) if pending else None


def _make_handler(server: RangeHTTPServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _serve(self, body: bool) -> None:
            path = self.path.split("?", 1)[0]
            server.requests.add(
                Request(self.command, path, self.headers.get("Range"), self.headers.get("If-Match"))
            )
            fault = server.next_fault(path)
            if fault == "stall":
                time.sleep(server.stall_seconds)
            if fault == "reset":
                self.connection.close()
                self.close_connection = True
                return
            if fault == "500":
                self._reply(500, b"injected failure", {})
                return
            file = (server.root / unquote(path).lstrip("/")).resolve()  # as servers decode it
            if not file.is_relative_to(server.root.resolve()) or not file.is_file():
                self._reply(404, b"not found", {})
                return
            data = file.read_bytes()
            st = file.stat()
            headers = {
                "ETag": f'"{st.st_size:x}-{st.st_mtime_ns:x}"',
                "Last-Modified": email.utils.formatdate(st.st_mtime, usegmt=True),
                "Accept-Ranges": "bytes",
            }
            status, payload = 200, data
            if (spec := self.headers.get("Range")) is not None:
                window = _parse_range(spec, len(data))
                if window is None:
                    self._reply(416, b"", {"Content-Range": f"bytes */{len(data)}"})
                    return
                start, stop = window
                status, payload = 206, data[start:stop]
                headers["Content-Range"] = f"bytes {start}-{stop - 1}/{len(data)}"
            declared = len(payload)
            if fault == "short":
                payload = payload[: len(payload) // 2]
            try:
                self._reply(status, payload if body else b"", headers, length=declared)
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True  # the client gave up (a stalled answer)
            if fault == "short":
                self.close_connection = True

        def _reply(
            self, status: int, payload: bytes, headers: dict[str, str], length: int | None = None
        ) -> None:
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(payload) if length is None else length))
            self.end_headers()
            if payload:
                self.wfile.write(payload)

    return Handler


def _parse_range(spec: str, size: int) -> tuple[int, int] | None:
    """``[start, stop)`` of a single ``bytes=a-b`` / ``bytes=a-`` / ``bytes=-n`` range."""
    m = re.fullmatch(r"bytes=(\d*)-(\d*)", spec.strip())
    if m is None or m.group(1) == m.group(2) == "":
        return None
    first, last = m.group(1), m.group(2)
    if first == "":
        start, stop = max(0, size - int(last)), size
    else:
        start = int(first)
        stop = min(size, int(last) + 1) if last else size
    return (start, stop) if start < size and start < stop else None


class S3Server(ObjectStoreServer):
    """moto's S3 on 127.0.0.1, every request recorded in ``requests``."""

    scheme = "s3"
    endpoint_variable = "AWS_ENDPOINT_URL_S3"
    data_request = ("GET", "/{bucket}/{key}")
    metadata_request = ("HEAD", "/{bucket}/{key}")

    def __init__(self) -> None:
        from moto.moto_server.werkzeug_app import MotoRequestHandler
        from moto.server import DomainDispatcherApplication, create_backend_app
        from werkzeug.serving import make_server

        self.requests = RequestLog()
        app = DomainDispatcherApplication(create_backend_app)
        self._run(
            make_server(
                "127.0.0.1",
                0,
                _counting(app, self.requests),
                threaded=True,
                request_handler=MotoRequestHandler,
            )
        )

    @property
    def storage_options(self) -> dict[str, Any]:
        """s3fs options that reach this server, credentials included."""
        return {
            "key": "testing",
            "secret": "testing",
            "client_kwargs": {"endpoint_url": self.endpoint_url, "region_name": "us-east-1"},
            "skip_instance_cache": True,
        }

    def client(self) -> Any:
        """A boto3 S3 client on this server (for setting up buckets)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)


def _counting(app: Callable[..., Any], log: RequestLog) -> Callable[..., Any]:
    def middleware(environ: dict[str, Any], start_response: Callable[..., Any]) -> Any:
        log.add(
            Request(
                environ["REQUEST_METHOD"],
                environ.get("PATH_INFO", ""),
                environ.get("HTTP_RANGE"),
                environ.get("HTTP_IF_MATCH"),
            )
        )
        return app(environ, start_response)

    return middleware
