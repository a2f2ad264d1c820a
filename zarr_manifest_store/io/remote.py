"""Reading remote objects: checked against their fingerprints, bounded, timed out, retried.

:class:`RemoteReader` runs on one I/O event loop in its own thread (fsspec's,
:func:`io_loop`), whatever loop the caller's reads come from; the reads of an
obstore client (whose requests run on its own runtime, for any loop) run on the
caller's loop instead once their object's check is settled, with no thread hop
(:meth:`RemoteReader.on_any_loop`). Requests in flight to one host are bounded
wherever they run (:class:`~zarr_manifest_store.io.slots.Slots`). Each remote
object is checked once (``verify="first-use"``) or before every read
(``"always"``); every range is then fetched with the ETag it was checked
with (:mod:`~zarr_manifest_store.io.clients`), so a replaced object is
refused, never decoded.

Retries are this module's alone (the obstore clients' own are off): a
request that times out, fails with a 5xx, a reset connection or a short
body is tried again up to ``retries`` times with exponential backoff and
jitter, as long as the request has not spent ``deadline`` seconds in all (so a
stalling server costs at most that); a missing object, a refusal or a
changed object is not retried.
"""

from __future__ import annotations

import asyncio
import errno
import functools
import json
import random
import re
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, NamedTuple
from urllib.parse import urlsplit

import fsspec.asyn

from zarr_manifest_store.errors import SourceChangedError
from zarr_manifest_store.io.clients import (
    Client,
    ObjectReplaced,
    ObstoreClient,
    fsspec_client,
    obstore_client,
    store_key,
)
from zarr_manifest_store.io.fingerprints import FingerprintRegistry, Verify
from zarr_manifest_store.io.gather import ByteData
from zarr_manifest_store.io.local import too_short
from zarr_manifest_store.io.paths import options_for, protocol_of
from zarr_manifest_store.io.report import SourceStatus
from zarr_manifest_store.io.slots import Slots
from zarr_manifest_store.io.urls import request_url
from zarr_manifest_store.manifest import Fingerprint

__all__ = ["RETRY_BACKOFF", "RETRY_BACKOFF_MAX", "RemoteReader", "io_loop"]

RETRY_BACKOFF = 0.1
"""Seconds before the first retry of a remote read; doubled for each further attempt."""
RETRY_BACKOFF_MAX = 5.0

_TRANSIENT_ERRNOS = {
    errno.EAGAIN,
    errno.EBUSY,
    errno.ECONNABORTED,
    errno.ECONNREFUSED,
    errno.ECONNRESET,
    errno.EIO,
    errno.EPIPE,
    errno.ETIMEDOUT,
    getattr(errno, "EREMOTEIO", errno.EIO),
}


def io_loop() -> asyncio.AbstractEventLoop:
    """The event loop (fsspec's, in its own thread) where every remote request runs."""
    return fsspec.asyn.get_loop()


class _Route(NamedTuple):
    """How one source is reached: its client, the URL requested, and its host's slots."""

    client: Client
    url: str
    slots: Slots


class RemoteReader:
    """Fetches ranges of remote objects for one ``Sources``; its coroutines run on
    :func:`io_loop`, or on any loop where :meth:`on_any_loop` says so.

    ``storage_options`` are fsspec-style: one dict, or a mapping from URL
    prefix to options. ``registry`` holds the fingerprints each object is
    checked against.
    """

    def __init__(
        self,
        storage_options: Mapping[str, Any],
        registry: FingerprintRegistry,
        *,
        verify: Verify,
        max_concurrency: int,
        retries: int,
        timeout: float,
        deadline: float,
    ) -> None:
        self._storage_options = storage_options
        self._registry = registry
        self._verify = verify
        self._max_concurrency = max_concurrency
        self._retries = retries
        self._timeout = timeout
        self._deadline = deadline
        self.after_fork()

    def after_fork(self) -> None:
        """Clients and loop state made anew: a forked child has none of its parent's
        threads (fsspec's I/O loop among them) or connections."""
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, ...], Client] = {}
        self._filesystems: dict[tuple[str, str], fsspec.AbstractFileSystem] = {}
        self._routes: dict[str, _Route] = {}
        self._any_loop: set[str] = set()  # paths read on any loop (on_any_loop said so)
        self._slots: dict[str, Slots] = {}  # requests in flight, per host
        # State used only on the I/O loop's thread (reads that may check run there):
        self._checks: dict[str, asyncio.Future[None]] = {}

    def client(self, path: str) -> Client:
        """The client that reads ``path``, made once per store and options, then reused."""
        options = options_for(path, self._storage_options)
        kind, origin = store_key(path)
        key = (protocol_of(path), kind, origin, json.dumps(options, sort_keys=True, default=repr))
        with self._lock:
            client = self._clients.get(key)
        if client is None:
            client = obstore_client(path, options, timeout=self._timeout)
            client = client or fsspec_client(path, self.filesystem(path))
            with self._lock:
                client = self._clients.setdefault(key, client)
        return client

    def on_any_loop(self, path: str) -> bool:
        """Whether reads of ``path`` may run on the caller's event loop rather than the I/O
        loop: an obstore client's (its requests run on its own runtime) once no check of the
        object is left to wait for (each data request carries it: :meth:`_check`)."""
        if path in self._any_loop:
            return True
        try:
            route = self._route(path)
        except Exception:  # the I/O loop's read reports it
            return False
        if not isinstance(route.client, ObstoreClient) or not self._settled(route.client, path):
            return False
        self._any_loop.add(path)  # for good: verify is fixed, and a known path stays known
        return True

    def _settled(self, client: Client, path: str) -> bool:
        """Whether a read of ``path`` has no check to make or wait for before its request
        (which carries the check: :meth:`_check`)."""
        if self._verify == "never":
            return True
        return self._verify != "always" and not client.checks_batches and self._registry.knows(path)

    def _route(self, path: str) -> _Route:
        """How ``path`` is reached, worked out once (every read of a random chunk asks)."""
        route = self._routes.get(path)
        if route is None:
            url = request_url(path)
            host = urlsplit(path).netloc
            with self._lock:
                slots = self._slots.setdefault(host, Slots(self._max_concurrency))
            route = self._routes[path] = _Route(self.client(url), url, slots)
        return route

    def filesystem(self, path: str) -> fsspec.AbstractFileSystem:
        """The fsspec file system that lists and scans ``path`` (with its storage options),
        made once per protocol and options, then reused."""
        protocol = protocol_of(path)
        options = options_for(path, self._storage_options)
        if protocol in ("http", "https"):
            # Honour HTTP(S)_PROXY / NO_PROXY and ~/.netrc, as curl and requests do.
            client = {"trust_env": True, **options.get("client_kwargs", {})}
            options = {**options, "client_kwargs": client}
        key = (protocol, json.dumps(options, sort_keys=True, default=repr))
        with self._lock:
            fs = self._filesystems.get(key)
            if fs is None:
                fs = self._filesystems[key] = fsspec.filesystem(protocol, **options)
            return fs

    # ------------------------------------------------------ on the I/O loop (or see on_any_loop)

    async def read(self, path: str, start: int, stop: int, *, at_once: bool = False) -> ByteData:
        """Bytes ``[start, stop)`` of one object: one request (retried), its check included.
        ``at_once``: no other read of ours is under way on this event loop (a random chunk),
        so a small body may be taken as soon as its headers arrived, blocking the loop."""
        route = self._route(path)
        if not self._settled(route.client, path):
            await self._check(route.client, path)
        return await self._fetch(route, path, start, stop, at_once)

    async def read_head(self, path: str, length: int) -> tuple[ByteData, Fingerprint]:
        """The first ``length`` bytes of ``path`` (fewer if it is shorter) and what it looks
        like now, in one request where the client reports the fingerprint of a range."""
        client, url, _ = route = self._route(path)
        data, served = await self._retrying(
            route, path, f"the first {length} bytes", lambda: client.get(url, 0, length, None)
        )
        if served is None:
            served = await self.fingerprint(path)
        if self._verify != "never":
            self._registry.check(path, served)
        return data, served

    async def fingerprint(self, path: str) -> Fingerprint:
        """What ``path`` looks like now (size and ETag, or modification time)."""
        client, url, _ = route = self._route(path)
        return await self._retrying(route, path, "the size and ETag", lambda: client.head(url))

    async def statuses(self, extents: Mapping[str, int]) -> list[SourceStatus]:
        """Each object of ``extents`` (path -> end of its last referenced byte), checked."""

        async def one(path: str) -> SourceStatus:
            try:
                current: Fingerprint | BaseException = await self.fingerprint(path)
            except Exception as e:
                current = e
            return self._registry.status(path, extents[path], current)

        return list(await asyncio.gather(*(one(p) for p in extents)))

    async def _check(self, client: Client, path: str) -> None:
        """Check an object's fingerprint: once per source, or before every read (always, and
        for clients that cannot tell which object served a range that should be verified).

        A source with a recorded fingerprint (or one seen at its first check) costs no
        request of its own: each data request carries the check (``If-Match``, and the
        fingerprint the range was served with, :meth:`_fetch`), so a random chunk costs
        one request.
        """
        if self._verify == "never":
            return
        if self._verify == "always" or client.checks_batches:
            self._registry.check(path, await self.fingerprint(path))
            return
        if self._registry.knows(path):
            return
        check = self._checks.get(path)
        if check is None:
            check = self._checks[path] = asyncio.ensure_future(self._first_check(path))
        await asyncio.shield(check)

    async def _first_check(self, path: str) -> None:
        try:
            self._registry.check(path, await self.fingerprint(path))
        except SourceChangedError:
            raise  # stays failed: every read of this source refuses
        except BaseException:
            del self._checks[path]  # undecided: the next read checks again
            raise

    async def _fetch(
        self, route: _Route, path: str, start: int, stop: int, at_once: bool = False
    ) -> ByteData:
        """One range; a body shorter than asked for is retried, then reported.

        Unless ``verify="never"``, the range is asked for with the ETag the
        object was checked with, and the fingerprint it was served with must match.
        """
        etag = None if self._verify == "never" else self._registry.expected_etag(path)
        client, url, _ = route

        async def attempt() -> ByteData:
            try:
                data, served = await client.get(url, start, stop, etag, at_once=at_once)
            except ObjectReplaced:
                self._registry.check(path, await client.head(url))  # says what changed
                raise
            if served and self._verify != "never":  # before the length: a new object may differ
                self._registry.check(path, served)
            return data

        def complete(data: ByteData) -> bool:
            if len(data) > stop - start:
                raise OSError(
                    errno.EIO,
                    f"source {path!r} answered {len(data)} bytes for the {stop - start}-byte "
                    f"range {start}..{stop}: the server does not honour byte ranges",
                )
            return len(data) == stop - start

        data = await self._retrying(route, path, f"bytes {start}..{stop}", attempt, complete)
        if len(data) != stop - start:
            raise too_short(path, start, stop, len(data))
        return data

    async def _retrying(
        self,
        route: _Route,
        path: str,
        what: str,
        attempt: Callable[[], Awaitable[Any]],
        complete: Callable[[Any], bool] = lambda result: True,
    ) -> Any:
        """Run ``attempt`` under its host's concurrency bound and the timeout (the client's
        own where it is no longer than ours), retrying transient failures.

        An incomplete result (``complete`` is False) is retried too, and
        returned as it is if every attempt comes back incomplete.
        """
        slots = route.slots
        own = route.client.timeout  # the client abandons an attempt by itself after this
        loop = asyncio.get_running_loop()
        error: Exception | None = None
        result: Any = None
        spent = 0.0  # seconds of attempts and backoff; waiting for a request slot is not counted
        attempts = 0
        while attempts <= self._retries:
            if attempts:
                delay = min(RETRY_BACKOFF_MAX, RETRY_BACKOFF * 2 ** (attempts - 1))
                delay *= 0.5 + random.random() / 2
                if spent + delay >= self._deadline:
                    break
                await asyncio.sleep(delay)
                spent += delay
            attempts += 1
            try:
                async with slots:
                    started = loop.time()
                    try:
                        limit = min(self._timeout, self._deadline - spent)
                        if own is not None and own <= limit:  # no timer of ours needed
                            result = await attempt()
                        else:
                            result = await asyncio.wait_for(attempt(), limit)
                    finally:
                        spent += loop.time() - started
            except Exception as e:
                if not _transient(e):
                    raise _named(e, path) from e
                error = e
                continue
            if complete(result):
                return result
            error = None
        if error is None:
            return result
        raise OSError(
            errno.EIO,
            f"reading {what} of source {path!r} failed after {attempts} attempt(s) in "
            f"{spent:.1f} s (timeout={self._timeout:g} s per attempt, deadline="
            f"{self._deadline:g} s in all; pass larger ones to the store for a slow server): "
            f"{_describe(error)}",
        ) from error


def _transient(error: BaseException) -> bool:
    """Whether a remote failure may go away on retry: timeouts, resets, 5xx, broken bodies."""
    if isinstance(
        error, FileNotFoundError | PermissionError | IsADirectoryError | SourceChangedError
    ):
        return False
    status = _http_status(error)
    if status is not None:
        return status >= 500 or status in (408, 429)
    if _from_obstore(error):  # its errors without a status: connections, bodies, timeouts
        return type(error).__name__ == "GenericError"
    if isinstance(error, (TimeoutError, ConnectionError, *_connection_errors())):
        return True
    return isinstance(error, OSError) and error.errno in _TRANSIENT_ERRNOS


_OBSTORE_STATUS = re.compile(r"status code: (\d{3})\b")


def _http_status(error: BaseException) -> int | None:
    """The HTTP status of a failed request, as aiohttp, gcsfs, azure-core or obstore report it."""
    for attribute in ("status", "code", "status_code"):
        status = getattr(error, attribute, None)
        if isinstance(status, int) and 100 <= status < 600:
            return status
    if _from_obstore(error) and (found := _OBSTORE_STATUS.search(str(error))):
        return int(found.group(1))
    return None


def _from_obstore(error: BaseException) -> bool:
    return type(error).__module__.startswith("obstore")


@functools.cache
def _connection_errors() -> tuple[type[BaseException], ...]:
    """The HTTP clients' own errors for broken connections and bodies (when installed)."""
    found: list[type[BaseException]] = []
    try:
        import aiohttp

        found.append(aiohttp.ClientError)  # disconnects, payload errors (short bodies), resets
    except ImportError:
        pass
    try:
        from botocore.exceptions import HTTPClientError

        found.append(HTTPClientError)  # connection and read timeouts, closed connections
    except ImportError:
        pass
    try:
        from azure.core.exceptions import ServiceRequestError, ServiceResponseError

        found += [ServiceRequestError, ServiceResponseError]  # could not connect | no answer
    except ImportError:
        pass
    return tuple(found)


def _named(error: Exception, path: str) -> OSError:
    """``error`` as an ``OSError`` of the kind a caller catches, naming the source."""
    if path in str(error) and isinstance(error, OSError) and not _from_obstore(error):
        return error
    status = _http_status(error)
    if isinstance(error, FileNotFoundError) or status == 404:
        return FileNotFoundError(errno.ENOENT, f"source file {path!r} not found")
    if (
        isinstance(error, PermissionError)
        or status in (401, 403)
        or type(error).__name__ in ("PermissionDeniedError", "UnauthenticatedError")
    ):
        return PermissionError(errno.EACCES, f"source {path!r} may not be read: {_describe(error)}")
    if status == 416:
        return SourceChangedError(
            errno.EIO,
            f"source file {path!r} is too short for the byte range asked (HTTP 416); it "
            f"changed since it was scanned: scan it again",
        )
    return OSError(
        getattr(error, "errno", None) or errno.EIO,
        f"reading source {path!r} failed: {_describe(error)}",
    )


def _describe(error: BaseException | None) -> str:
    if error is None:
        return "unknown error"
    text = str(error).split("\n\nDebug source:", 1)[0].strip()  # obstore appends its internals
    return f"{type(error).__name__}: {text}" if text else type(error).__name__
