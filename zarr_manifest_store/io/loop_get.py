"""A lone chunk's ranged GET, written and read by the caller's event loop itself.

obstore sends each request from its runtime's threads and hands the answer back to the
event loop: at 20 ms round trip on 2 cores these hand-offs cost a random chunk about 2% of
its GET (``benchmarks/remote_hops.py``). A read that nothing else waits beside (``at_once``:
a random chunk) is sent instead by the event loop, on a connection of its own kept alive:
the request obstore would send (the range, ``If-Match``), to the object's URL, or for S3 to
a URL obstore presigns (so credentials, region and addressing stay obstore's).

Only the answer expected is taken: a 206 of exactly the range asked, of known length,
neither compressed nor chunked, with an ETag or a modification time. 404 and 412 end the
read as obstore's answers do (raised as obstore raises them); 5xx, 408 and 429, timeouts
and broken connections are failures the reader retries. Anything else (a redirect, a
refusal, a server ignoring the range, an answer this module does not parse) is left to
obstore, which asks again; after a refusal (401, 403) obstore sends every request of that
store. A connection kept alive that the server closed meanwhile is left to obstore too.
"""

from __future__ import annotations

import asyncio
import errno
import os
import re
import ssl
import threading
import time
import weakref
from datetime import timedelta
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import SplitResult, urlsplit

try:
    import obstore
    from obstore.exceptions import PreconditionError
except ImportError:  # without the `remote` extra there is no obstore store to send for
    obstore = None

from zarr_manifest_store.io.fingerprints import normalised_etag
from zarr_manifest_store.manifest import Fingerprint

__all__ = ["HTTPStatusError", "LoopGet", "loop_get"]

_PLAIN = re.compile(r"/[A-Za-z0-9/._-]*")
"""An HTTP URL's path sent as it is: obstore encodes none of these characters (a path with
others is left to obstore; S3's presigned paths are obstore's own, encoded already)."""
SIGNED_FOR = 3600.0
"""Seconds a presigned URL is asked to be valid for; it is signed again after half."""
_PROXIES = ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY")
"""The environment variables that send obstore's requests through a proxy (any case)."""
MAX_SIGNED = 4096
"""Presigned URLs kept per store (one per object read), the oldest dropped beyond."""

_Connection = tuple[asyncio.StreamReader, asyncio.StreamWriter]


class HTTPStatusError(OSError):
    """A server's failure answer (5xx, 408, 429): retried by the reader, as obstore's are."""

    def __init__(self, status: int, url: str) -> None:
        super().__init__(errno.EIO, f"{url!r} answered HTTP {status}")
        self.status = status


class _Unanswered(Exception):
    """The connection closed before any answer came."""


class _LeftToObstore(Exception):
    """An answer this module does not take (its HTTP status, if any): obstore asks again."""


def loop_get(kind: str, store: Any, arguments: dict[str, Any]) -> LoopGet | None:
    """The event loop's own GET for the obstore ``store`` of ``kind`` made with
    ``arguments``; None where it would not send obstore's request: other kinds than HTTP and
    S3, headers of the user's, requester-pays buckets, or a proxy in the environment."""
    client = arguments.get("client_options", {})
    if kind not in ("http", "s3") or client.get("default_headers"):
        return None
    proxies = (value for name, value in os.environ.items() if name.upper() in _PROXIES)
    if arguments.get("request_payer") or any(proxies):
        return None
    return LoopGet(kind, store)


class LoopGet:
    """Ranged GETs of one obstore store, sent by the caller's event loop."""

    def __init__(self, kind: str, store: Any) -> None:
        self._kind, self._store = kind, store
        self._signed: dict[str, tuple[float, str]] = {}  # key -> (sign again after, URL)
        self._idle: weakref.WeakKeyDictionary[Any, dict[str, _Connection]]
        self._idle = weakref.WeakKeyDictionary()  # event loop -> origin -> kept alive
        self._lock = threading.Lock()
        self._tls: ssl.SSLContext | None = None
        self.usable = True
        """False once the store refused a request of this module: obstore sends them all."""

    async def get(
        self, url: str, key: str, start: int, stop: int, etag: str | None, timeout: float | None
    ) -> tuple[bytes, Fingerprint] | None:
        """Bytes ``[start, stop)`` of ``url`` (``key`` in the store) and the fingerprint they
        were served with, the range asked for with ``If-Match: etag`` when given; None where
        obstore is to read them."""
        try:
            target = urlsplit(await self._target(url, key))
        except Exception:  # obstore cannot sign for this store: it sends every request
            self.usable = False
            return None
        if target.username or (self._kind == "http" and not _PLAIN.fullmatch(target.path)):
            return None  # credentials, or a path obstore may encode otherwise: obstore's
        origin = f"{target.scheme}://{target.netloc}"
        with self._lock:
            idle = self._idle.setdefault(asyncio.get_running_loop(), {})
            connection = idle.pop(origin, None)
        reused = connection is not None
        try:
            async with asyncio.timeout(timeout):
                connection = connection or await self._connect(target)
                data, fingerprint, keep = await _exchange(
                    connection, _request(target, start, stop, etag), url, start, stop
                )
        except _LeftToObstore as e:
            _close(connection)
            if e.args and e.args[0] in (401, 403):
                self.usable = False
            return None
        except _Unanswered:
            _close(connection)
            if reused:  # kept alive, and closed by the server meanwhile
                return None
            raise ConnectionResetError(
                errno.ECONNRESET, f"{url!r} closed the connection without answering"
            ) from None
        except BaseException:
            _close(connection)
            raise
        with self._lock:
            if keep and origin not in idle:
                idle[origin], connection = connection, None
        _close(connection)
        return data, fingerprint

    async def _connect(self, target: SplitResult) -> _Connection:
        secure = target.scheme == "https"
        if secure and self._tls is None:
            self._tls = ssl.create_default_context()  # reading the certificates takes ms
        return await _open(target.hostname, target.port or (443 if secure else 80), self._tls)

    async def _target(self, url: str, key: str) -> str:
        """Where a GET of ``key`` goes: the object's URL (HTTP), or one obstore signed (S3)."""
        if self._kind == "http":
            return url
        now = time.monotonic()
        renew, signed = self._signed.get(key, (0.0, ""))
        if now >= renew:
            valid = timedelta(seconds=SIGNED_FOR)
            signed = await obstore.sign_async(self._store, "GET", key, valid)
            with self._lock:  # stores are shared by threads
                self._signed.pop(key, None)
                while len(self._signed) >= MAX_SIGNED:
                    self._signed.pop(next(iter(self._signed)))  # the one signed longest ago
                self._signed[key] = (now + SIGNED_FOR / 2, signed)
        return signed


def _request(target: SplitResult, start: int, stop: int, etag: str | None) -> bytes:
    query = f"?{target.query}" if target.query else ""
    condition = f'If-Match: "{etag}"\r\n' if etag else ""
    return (
        f"GET {target.path}{query} HTTP/1.1\r\nHost: {target.netloc}\r\n"
        f"Range: bytes={start}-{stop - 1}\r\n{condition}Accept-Encoding: identity\r\n\r\n"
    ).encode("latin-1")


async def _open(host: str | None, port: int, tls: ssl.SSLContext | None) -> _Connection:
    return await asyncio.open_connection(host, port, ssl=tls)


async def _exchange(
    connection: _Connection, request: bytes, url: str, start: int, stop: int
) -> tuple[bytes, Fingerprint, bool]:
    """``request`` sent: the body, its fingerprint, and whether the connection stays open."""
    reader, writer = connection
    try:
        writer.write(request)
        head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
    except asyncio.LimitOverrunError:
        raise _LeftToObstore() from None
    except (asyncio.IncompleteReadError, ConnectionError) as e:
        if getattr(e, "partial", b""):
            raise _broken_off(url) from e
        raise _Unanswered() from None
    version, _, rest = head[0].partition(" ")
    code = rest[:3]
    if not version.startswith("HTTP/1.") or not code.isdigit():
        raise _LeftToObstore()
    status = int(code)
    if status == 404:
        raise FileNotFoundError(errno.ENOENT, f"{url!r} not found")
    if status == 412:
        raise PreconditionError(f"{url!r}: HTTP 412, the ETag asked for no longer matches")
    if status >= 500 or status in (408, 429):
        raise HTTPStatusError(status, url)
    if status != 206:
        raise _LeftToObstore(status)
    headers = {}
    for line in head[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    size = _size(headers.get("content-range", ""), start, stop)
    if (
        size is None
        or headers.get("content-length") != str(stop - start)
        or "transfer-encoding" in headers
        or headers.get("content-encoding", "identity") != "identity"
    ):
        raise _LeftToObstore()
    fingerprint = _fingerprint(headers, size)
    try:
        data = await reader.readexactly(stop - start)
    except (asyncio.IncompleteReadError, ConnectionError) as e:
        raise _broken_off(url) from e
    keep = version == "HTTP/1.1" and "close" not in headers.get("connection", "").lower()
    return data, fingerprint, keep


def _broken_off(url: str) -> ConnectionResetError:
    return ConnectionResetError(errno.ECONNRESET, f"{url!r} broke off its answer")


def _size(content_range: str, start: int, stop: int) -> int | None:
    """The object's size from a ``Content-Range`` of exactly ``[start, stop)``; else None."""
    unit, _, rest = content_range.partition(" ")
    span, _, size = rest.partition("/")
    if unit != "bytes" or span != f"{start}-{stop - 1}" or not size.isdigit():
        return None
    return int(size)


def _fingerprint(headers: dict[str, str], size: int) -> Fingerprint:
    """The fingerprint obstore reports for these headers (``clients._fingerprint``)."""
    if etag := headers.get("etag"):
        return Fingerprint(size=size, mtime_ns=None, etag=normalised_etag(etag))
    try:
        modified = parsedate_to_datetime(headers["last-modified"])
    except (KeyError, TypeError, ValueError):
        raise _LeftToObstore() from None
    return Fingerprint(size=size, mtime_ns=int(modified.timestamp() * 1e9), etag=None)


def _close(connection: _Connection | None) -> None:
    if connection is not None:
        connection[1].close()
