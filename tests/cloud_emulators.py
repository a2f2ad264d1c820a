"""Cloud object store emulators for the tests, on 127.0.0.1 only, each counting what it serves.

- :class:`GCSServer`: gcp-storage-emulator, counting requests, for ``gs://``
  sources: scanned through gcsfs (GCS's JSON API), read through obstore (the
  XML API's HEAD and ranged GET, which the server adds where the emulator lacks them).
- :class:`AzureServer`: Azurite (Microsoft's Azure Storage emulator, Node.js)
  behind a request-counting proxy, for ``az://`` sources through adlfs.

The plain HTTP range server and S3 (moto) are in ``servers.py``, with the request log
and the base class these share.
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
import time
from datetime import datetime
from functools import partial
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit
from xml.sax.saxutils import escape

from servers import ObjectStoreServer, Request, RequestLog


class GCSServer(ObjectStoreServer):
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


class AzureServer(ObjectStoreServer):
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
