"""Real network peers for the tests, on 127.0.0.1 only, each counting what it serves.

- :class:`RangeHTTPServer`: a static file server with HTTP range requests,
  ETag / Last-Modified headers and fault injection (500s, connection resets,
  short bodies, stalls), for ``https://``-style sources through fsspec's HTTP file system.
- :class:`S3Server`: moto's S3 in server mode behind a request-counting
  middleware, for ``s3://`` sources through s3fs.
- :class:`GCSServer`: gcp-storage-emulator, counting requests, for ``gs://``
  sources: scanned through gcsfs (GCS's JSON API), read through obstore (the
  XML API's HEAD and ranged GET, which the server adds where the emulator lacks them).
- :class:`AzureServer`: Azurite (Microsoft's Azure Storage emulator, Node.js)
  behind a request-counting proxy, for ``az://`` sources through adlfs.

Fixtures in ``conftest.py`` start them; tests read ``server.requests`` to count
what a read cost from the server's side.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import http.client
import re
import shutil
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from functools import partial
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

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


class _ObjectStoreServer(_Background):
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


class S3Server(_ObjectStoreServer):
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


class GCSServer(_ObjectStoreServer):
    """gcp-storage-emulator on 127.0.0.1, every request recorded in ``requests``.

    The emulator serves GCS's JSON API (what gcsfs speaks) and only part of
    its XML API (what obstore speaks: ``GET``/``HEAD /bucket/key``). Like
    GCS, and unlike the bare emulator, this server decodes the object path
    of an XML request before routing it (obstore encodes ``-`` and ``.``),
    answers ``HEAD`` with the object's size, ETag and Last-Modified, sends
    the ETag and Last-Modified with every download, and refuses a download
    whose ``If-Match`` names another ETag (412).
    """

    scheme = "gs"
    endpoint_variable = "STORAGE_EMULATOR_HOST"
    data_request = ("GET", "/{bucket}/{key}")
    metadata_request = ("HEAD", "/{bucket}/{key}")

    def __init__(self) -> None:
        from gcp_storage_emulator.server import RequestHandler
        from gcp_storage_emulator.storage import Storage

        _serve_etags_with_downloads()
        _honour_create_only_uploads()
        self.requests = log = RequestLog()
        self.storage = Storage(use_memory_fs=True)

        storage = self.storage

        class Handler(RequestHandler):  # type: ignore[misc]
            def parse_request(self) -> bool:
                ok: bool = super().parse_request()
                if ok:
                    parts = urlsplit(self.path)
                    path = unquote(parts.path)
                    range_, if_match = self.headers.get("Range"), self.headers.get("If-Match")
                    log.add(Request(self.command, path, range_, if_match))
                    if not path.startswith(_GCS_JSON_API):  # an XML API object path
                        self.path = path + (f"?{parts.query}" if parts.query else "")
                return ok

            def do_HEAD(self) -> None:
                bucket, _, key = self.path.split("?", 1)[0].lstrip("/").partition("/")
                try:
                    obj = storage.get_file_obj(bucket, key)
                except Exception:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("Content-Length", str(obj["size"]))
                for name, value in _xml_headers(obj).items():
                    self.send_header(name, value)
                self.end_headers()

            def do_GET(self) -> None:
                parts = urlsplit(self.path)
                query = parse_qs(parts.query)
                bucket = parts.path.strip("/")
                if query.get("list-type") == ["2"] and bucket and "/" not in bucket:
                    self._list_objects(bucket, query.get("prefix", [""])[0])
                else:
                    super().do_GET()

            def _list_objects(self, bucket: str, prefix: str) -> None:
                """The XML API's listing (ListObjectsV2, one page), which obstore lists with."""
                try:
                    objects, _ = storage.get_file_list(bucket, prefix=prefix or None)
                except Exception:
                    objects = None
                if objects is None:
                    self.send_response(404)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = _xml_listing(bucket, prefix, objects)
                self.send_response(200)
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def handle(self) -> None:
                # The client may give up on an answer (gcsfs races two lookups).
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    super().handle()

        server = ThreadingHTTPServer(("127.0.0.1", 0), partial(Handler, self.storage))
        server.daemon_threads = True
        self._run(server)

    @property
    def storage_options(self) -> dict[str, Any]:
        """gcsfs options that reach this server, anonymously."""
        return {"endpoint_url": self.endpoint_url, "token": "anon", "skip_instance_cache": True}

    def create_bucket(self, name: str) -> None:
        from gcp_storage_emulator.handlers import buckets

        buckets.create_bucket(name, self.storage)


_GCS_JSON_API = ("/storage/", "/download/", "/upload/", "/b/", "/batch/")
"""Path prefixes of the emulator's JSON API routes (every other path is an XML API one)."""


def _xml_headers(obj: dict[str, Any]) -> dict[str, str]:
    """The ETag and Last-Modified headers GCS's XML API sends for an object: its ETag is the
    hex MD5 of the bytes (the JSON API's ``etag`` is another string)."""
    updated = datetime.fromisoformat(obj["updated"].replace("Z", "+00:00"))
    return {
        "ETag": f'"{_xml_etag(obj)}"',
        "Last-Modified": email.utils.format_datetime(updated, usegmt=True),
    }


def _xml_listing(bucket: str, prefix: str, objects: list[dict[str, Any]]) -> bytes:
    """A ListBucketResult of ``objects``, as GCS's XML API answers ``?list-type=2``."""
    entries = "".join(
        f"<Contents><Key>{escape(obj['name'])}</Key><Size>{obj['size']}</Size>"
        f"<LastModified>{obj['updated']}</LastModified>"
        f"<ETag>&quot;{_xml_etag(obj)}&quot;</ETag></Contents>"
        for obj in objects
    )
    return (
        '<?xml version="1.0" encoding="UTF-8"?><ListBucketResult>'
        f"<Name>{escape(bucket)}</Name><Prefix>{escape(prefix)}</Prefix>"
        f"<KeyCount>{len(objects)}</KeyCount><IsTruncated>false</IsTruncated>{entries}"
        "</ListBucketResult>"
    ).encode()


def _xml_etag(obj: dict[str, Any]) -> str:
    return base64.b64decode(obj["md5Hash"]).hex()


def _serve_etags_with_downloads() -> None:
    """Make the emulator's downloads carry the object's ETag and Last-Modified and honour
    ``If-Match``, as GCS's do (once per process)."""
    from gcp_storage_emulator import server
    from gcp_storage_emulator.handlers import objects

    def download(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> None:
        bucket, key = request.params["bucket_name"], request.params["object_id"]
        wanted = request.get_header("if-match", None)
        if wanted is not None:
            try:
                obj = storage.get_file_obj(bucket, key)
            except Exception:
                obj = None
            if obj is not None and wanted.strip('"') != _xml_etag(obj):
                response.status = HTTPStatus.PRECONDITION_FAILED
                return
        objects.download(request, response, storage, *args, **kwargs)
        if response.status < 300:
            obj = storage.get_file_obj(bucket, key)
            for name, value in _xml_headers(obj).items():
                response[name] = value

    for _, methods in server.HANDLERS:
        if methods.get(server.GET) is objects.download:
            methods[server.GET] = download


def _honour_create_only_uploads() -> None:
    """Make the emulator refuse an upload with ``ifGenerationMatch=0`` (create only: what
    fsspec's ``mode="create"`` sends) of an object that exists, with 412, as GCS does (once
    per process; the emulator ignores the condition)."""
    from gcp_storage_emulator import server
    from gcp_storage_emulator.handlers import objects

    def insert(request: Any, response: Any, storage: Any, *args: Any, **kwargs: Any) -> None:
        if request.query.get("ifGenerationMatch") == ["0"]:
            name = request.query.get("name", [None])[0]
            if name is None and isinstance(request.data, dict):
                name = (request.data.get("meta") or request.data).get("name")
            with contextlib.suppress(Exception):
                storage.get_file_obj(request.params["bucket_name"], name)
                response.status = HTTPStatus.PRECONDITION_FAILED
                return
        objects.insert(request, response, storage, *args, **kwargs)

    for _, methods in server.HANDLERS:
        if methods.get(server.POST) is objects.insert:
            methods[server.POST] = insert


AZURITE = Path(__file__).parents[1] / ".venv" / "azurite" / "node_modules" / ".bin" / "azurite-blob"
"""Where ``make test`` installs Azurite (from npm); else ``azurite-blob`` on the PATH."""


class AzureServer(_ObjectStoreServer):
    """Azurite's Blob service on 127.0.0.1, behind a proxy that records every request.

    Azurite is Microsoft's Azure Storage emulator, a Node.js program that
    ``make test`` installs from npm. It runs with its data in memory and
    telemetry off, on a port of its own that only the proxy talks to.
    """

    scheme = "az"
    account = "devstoreaccount1"
    account_key = (  # Azurite's well-known development key
        "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw=="
    )
    endpoint_variable = "AZURE_STORAGE_CONNECTION_STRING"
    data_request = ("GET", "/devstoreaccount1/{bucket}/{key}")
    metadata_request = ("HEAD", "/devstoreaccount1/{bucket}/{key}")

    def __init__(self) -> None:
        program = AZURITE if AZURITE.exists() else shutil.which("azurite-blob")
        if program is None:
            raise RuntimeError(f"Azurite is not installed: `make test` installs it at {AZURITE}")
        self._workspace = tempfile.TemporaryDirectory(prefix="azurite-")
        log = Path(self._workspace.name) / "azurite.log"
        with log.open("wb") as output:
            self._azurite = subprocess.Popen(
                [
                    str(program),
                    *("--blobHost", "127.0.0.1", "--blobPort", "0"),  # it picks a free port
                    "--inMemoryPersistence",
                    "--disableTelemetry",
                    "--skipApiVersionCheck",
                    "--silent",
                ],
                cwd=self._workspace.name,  # for anything it writes regardless
                stdout=output,
                stderr=subprocess.STDOUT,
            )
        port = _listening_port(self._azurite, log)
        self.requests = RequestLog()
        server = ThreadingHTTPServer(("127.0.0.1", 0), _proxy_handler(port, self.requests))
        server.daemon_threads = True
        self._run(server)

    def stop(self) -> None:
        super().stop()
        self._azurite.terminate()
        self._azurite.wait(timeout=30)
        self._workspace.cleanup()

    @property
    def connection_string(self) -> str:
        return (
            f"DefaultEndpointsProtocol=http;AccountName={self.account};"
            f"AccountKey={self.account_key};BlobEndpoint={self.endpoint_url}/{self.account};"
        )

    @property
    def storage_options(self) -> dict[str, Any]:
        """adlfs options that reach this server, with Azurite's account key."""
        return {"connection_string": self.connection_string, "skip_instance_cache": True}

    @property
    def environment(self) -> dict[str, str]:
        return {self.endpoint_variable: self.connection_string}

    def create_bucket(self, name: str) -> None:
        self.filesystem().mkdir(name)


def _listening_port(process: subprocess.Popen[bytes], log: Path, timeout: float = 60) -> int:
    """The port Azurite says, in ``log``, that it listens on; raise if it exits or stays silent."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if found := re.search(
            r"successfully listens on http://127\.0\.0\.1:(\d+)", log.read_text()
        ):
            return int(found.group(1))
        if process.poll() is not None:
            raise RuntimeError(
                f"Azurite exited with status {process.returncode}: {log.read_text()}"
            )
        time.sleep(0.05)
    process.kill()
    raise RuntimeError(f"Azurite did not start within {timeout} s: {log.read_text()}")


_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "host", "content-length"}


def _proxy_handler(port: int, log: RequestLog) -> type[BaseHTTPRequestHandler]:
    """A handler that records each request in ``log`` and forwards it to 127.0.0.1:``port``."""

    class Proxy(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:
            pass

        def _forward(self) -> None:
            path = unquote(urlsplit(self.path).path)
            range_ = self.headers.get("x-ms-range") or self.headers.get("Range")
            log.add(Request(self.command, path, range_, self.headers.get("If-Match")))
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            headers = {k: v for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP}
            if body or self.command in ("PUT", "POST"):
                headers["Content-Length"] = str(len(body))
            upstream = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
            try:
                upstream.request(self.command, self.path, body=body, headers=headers)
                response = upstream.getresponse()
                payload = response.read()
                self.send_response(response.status, response.reason)
                for name, value in response.getheaders():
                    if name.lower() not in _HOP_BY_HOP:
                        self.send_header(name, value)
                # A HEAD answer declares the object's length, without a body.
                length = response.getheader("Content-Length") if self.command == "HEAD" else None
                self.send_header("Content-Length", length or str(len(payload)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)
            finally:
                upstream.close()

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = _forward

    return Proxy
