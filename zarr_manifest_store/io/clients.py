"""The clients that fetch remote bytes: obstore for S3, GCS, Azure and HTTP(S), fsspec otherwise.

A client answers two questions about one object: what it looks like now
(:meth:`head`, a fingerprint) and the bytes of a range (:meth:`get`). The
obstore client sends the ETag the source was checked with as ``If-Match``
(S3, GCS, Azure), so the server refuses a replaced object, and returns the
fingerprint (size, ETag or modification time) each range was served with, so a
server that ignores the condition is caught too, and a source can be checked on
its first data request, without a HEAD of its own. Its own retries are off: :mod:`~zarr_manifest_store.io.remote`
retries every protocol's requests, in one place. A lone read of an S3 or HTTP object
(``at_once``) is sent by the event loop itself (:mod:`~zarr_manifest_store.io.loop_get`),
without obstore's runtime threads, unless the answer is one it leaves to obstore.

obstore's runtime does not survive ``fork()``: in a child forked after the
parent used it, these protocols are read through fsspec's public API
instead, and checked before every batch of reads (:attr:`Client.checks_batches`).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import errno
import json
import os
import threading
from collections.abc import Mapping
from datetime import timedelta
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

import fsspec

try:
    import obstore
    import obstore.store
    from obstore.exceptions import PreconditionError
except ImportError:  # without the `remote` extra, fsspec reads every protocol
    obstore = None

from zarr_manifest_store.errors import SourceChangedError
from zarr_manifest_store.io.fingerprints import fingerprint_from_info, normalised_etag
from zarr_manifest_store.io.gather import ByteData
from zarr_manifest_store.io.loop_get import LoopGet, loop_get
from zarr_manifest_store.io.obstore_options import OBSTORE_KINDS, store_arguments
from zarr_manifest_store.io.paths import protocol_of
from zarr_manifest_store.manifest import Fingerprint

__all__ = [
    "AT_ONCE_BODY_BYTES",
    "Client",
    "FsspecClient",
    "ObjectReplaced",
    "ObstoreClient",
    "fsspec_client",
    "obstore_client",
    "obstore_usable",
    "store_key",
]


AT_ONCE_BODY_BYTES = 64 << 10
"""A read that nothing else waits beside (:meth:`ObstoreClient.get`, ``at_once``) takes a body
of at most this many bytes as soon as its headers arrived, without a second await: a body
this small has mostly arrived with them (taking it blocked the loop 0.04 ms for 32 KiB,
0.1 ms for 64 KiB at 20 ms round trip), where the await's hop back from obstore's runtime
costs 0.1-0.3 ms."""


class ObjectReplaced(SourceChangedError):
    """The server refused a range: the object no longer has the ETag it was checked with."""


class Client(Protocol):
    """Reads one kind of remote object."""

    checks_batches: bool
    """Whether the object must be checked before every batch of reads: its ranges should
    each be verified by ETag, but this client cannot tell which object served them."""
    timeout: float | None
    """Seconds after which the client itself abandons a request, body included (None: it
    may wait for ever, so its reader bounds each attempt)."""

    async def get(
        self, path: str, start: int, stop: int, etag: str | None, *, at_once: bool = False
    ) -> tuple[ByteData, Fingerprint | None]:
        """Bytes ``[start, stop)`` of ``path`` and the fingerprint of the object that served
        them (None if unknown); ``etag``, when given, is required of the object. ``at_once``:
        nothing else waits on the event loop meanwhile, so a small body may block it."""

    async def head(self, path: str) -> Fingerprint:
        """What ``path`` looks like now."""


class ObstoreClient:
    """One obstore store (a bucket, container or HTTP origin) and the keys of its objects."""

    checks_batches = False

    def __init__(
        self, kind: str, store: Any, timeout: float | None = None, direct: LoopGet | None = None
    ) -> None:
        self._store = store
        self.timeout = timeout
        self._direct = direct  # a lone read's GET sent by the event loop itself
        self._if_match = kind != "http"  # HTTP servers may send weak ETags, which never match
        self._kind = kind

    async def get(
        self, path: str, start: int, stop: int, etag: str | None, *, at_once: bool = False
    ) -> tuple[ByteData, Fingerprint | None]:
        options: dict[str, Any] = {"range": (start, stop)}
        if etag and self._if_match:
            options["if_match"] = f'"{etag}"'
        key = _key(self._kind, path)
        try:
            if at_once and self._direct is not None and self._direct.usable:
                condition = etag if self._if_match else None
                got = await self._direct.get(path, key, start, stop, condition, self.timeout)
                if got is not None:
                    return memoryview(got[0]), got[1]
            result = await obstore.get_async(self._store, key, options=options)
            if at_once and stop - start <= AT_ONCE_BODY_BYTES:
                data = result.bytes()  # a stalled body ends at the client's timeout
            else:
                data = await result.bytes_async()
        except PreconditionError:
            raise ObjectReplaced(
                errno.ESTALE,
                f"source file {path!r} changed: it no longer has the ETag {etag} it was "
                f"checked with",
            ) from None
        except FileNotFoundError:  # obstore's message names the key and appends its internals
            raise _not_found(path) from None
        return memoryview(data), _fingerprint(result.meta)

    async def head(self, path: str) -> Fingerprint:
        try:
            meta = await obstore.head_async(self._store, _key(self._kind, path))
        except FileNotFoundError:
            raise _not_found(path) from None
        return _fingerprint(meta)

    def keys(self, folder: str) -> list[str]:
        """The keys of every object under ``folder`` (``era/``, or ``""``: the whole store),
        at any depth, in one paginated listing."""
        listing = obstore.list(self._store, prefix=folder or None, chunk_size=1000)
        return [meta["path"] for batch in listing for meta in batch]


def _fingerprint(meta: Mapping[str, Any]) -> Fingerprint:
    """An obstore ``ObjectMeta`` as a fingerprint (a ranged GET's carries the object's size)."""
    etag = meta["e_tag"]
    return Fingerprint(
        size=meta["size"],
        mtime_ns=None if etag else int(meta["last_modified"].timestamp() * 1e9),
        etag=normalised_etag(etag) if etag else None,
    )


class FsspecClient:
    """An fsspec file system, through its public (synchronous or asynchronous) API: fsspec
    names the coroutine form of each method with a leading underscore (``_cat_file``,
    ``_info``; see its "Async" documentation), so these are public, not internals.

    ``stands_in`` says it reads a protocol whose ranges should be verified by
    ETag (obstore's, where obstore cannot read them), so objects are checked
    before every batch instead.
    """

    timeout = None

    def __init__(self, fs: fsspec.AbstractFileSystem, *, stands_in: bool) -> None:
        self.fs = fs
        self.checks_batches = stands_in

    async def get(
        self, path: str, start: int, stop: int, etag: str | None, *, at_once: bool = False
    ) -> tuple[ByteData, Fingerprint | None]:
        if self.fs.async_impl:
            return await self.fs._cat_file(path, start=start, end=stop), None
        return await asyncio.to_thread(self.fs.cat_file, path, start=start, end=stop), None

    async def head(self, path: str) -> Fingerprint:
        self.fs.invalidate_cache(path)
        if self.fs.async_impl:
            info = await self.fs._info(path)
        else:
            info = await asyncio.to_thread(self.fs.info, path)
        if protocol_of(path) in ("gs", "gcs"):
            info = _as_xml_api(info)
        return fingerprint_from_info(info)


def _as_xml_api(info: Mapping[str, Any]) -> dict[str, Any]:
    """gcsfs's object metadata with the ETag GCS's XML API (so obstore) gives: the hex MD5 of
    the bytes, where the JSON API's ``etag`` is another string. Without an MD5 (composite
    objects) the ETag is left out, and the modification time stands in."""
    md5 = info.get("md5Hash")
    return {**info, "etag": base64.b64decode(md5).hex() if md5 else None}


def obstore_client(path: str, options: Mapping[str, Any], *, timeout: float) -> Client | None:
    """The obstore client for ``path`` with fsspec-style ``options`` (requests abandoned
    after ``timeout`` seconds); None where obstore does not read ``path`` here.

    One client serves every reader in the process that reaches the same store with the
    same options in the same environment (:data:`MAX_SHARED_CLIENTS` are kept, the least
    recently used dropped): making one costs about 10 ms of CPU (its HTTP client and TLS
    set-up), which a scan of many files would otherwise pay per file, and it keeps its
    connections open for all of them.

    Raises ``ValueError`` for an option that cannot be passed on to obstore.
    """
    global _USED_IN
    kind = _obstore_kind(path)
    if kind is None or not obstore_usable():
        return None
    store_class, arguments = store_arguments(kind, path, options, timeout=timeout)
    environment = sorted(
        (name, value)
        for name, value in os.environ.items()
        if name.upper().startswith(_ENVIRONMENT_PREFIXES) or name.upper().endswith("_PROXY")
    )
    key = json.dumps([store_class, arguments, environment], sort_keys=True, default=_key_part)
    with _SHARED_LOCK:  # made under the lock: concurrent scans make one, not one each
        if key in _SHARED:
            _SHARED.move_to_end(key)
            return _SHARED[key][0]
        store = getattr(obstore.store, store_class)(**arguments)
        client = ObstoreClient(kind, store, timeout, loop_get(kind, store, arguments))
        _USED_IN = os.getpid()
        _SHARED[key] = (client, arguments)
        while len(_SHARED) > MAX_SHARED_CLIENTS:
            _SHARED.popitem(last=False)
    return client


def _key_part(value: Any) -> str:
    """An argument JSON cannot write, in a cached client's key: a duration by its length,
    anything else (a credential provider) by identity (the cache holds the arguments, so
    their ids are not reused while the key is in it)."""
    if isinstance(value, timedelta):
        return f"{value.total_seconds()} s"
    return f"{type(value).__qualname__}@{id(value)}"


def fsspec_client(path: str, fs: fsspec.AbstractFileSystem) -> FsspecClient:
    """A client reading ``path`` through ``fs``; one standing in for obstore checks every batch."""
    return FsspecClient(fs, stands_in=protocol_of(path) in OBSTORE_KINDS)


def store_key(path: str) -> tuple[str, str]:
    """Which obstore store serves ``path`` (its kind and bucket, container or origin); the
    key under which clients are cached. Empty for protocols obstore does not read."""
    kind = _obstore_kind(path)
    if kind is None:
        return ("", "")
    parts = urlsplit(path)
    return (kind, f"{parts.scheme}://{parts.netloc}")


def _not_found(path: str) -> FileNotFoundError:
    return FileNotFoundError(errno.ENOENT, f"source file {path!r} not found")


def _obstore_kind(path: str) -> str | None:
    """The kind of obstore store that reads ``path``; None for fsspec (other protocols, and
    HTTP URLs with a query or fragment, which an obstore key cannot carry)."""
    kind = OBSTORE_KINDS.get(protocol_of(path))
    if kind == "http" and (parts := urlsplit(path)) and (parts.query or parts.fragment):
        return None
    return kind


def _key(kind: str, path: str) -> str:
    """The object's key within its store: the URL's path (percent-decoded for HTTP, where
    URLs are encoded; as it is for object stores, whose keys are written plainly)."""
    key = path.partition("://")[2].partition("/")[2]
    return unquote(key) if kind == "http" else key


_USED_IN = 0
"""The process that made the first obstore client (0: none yet)."""
MAX_SHARED_CLIENTS = 32
"""obstore clients kept for reuse across readers (one per store, options and environment)."""
_SHARED: collections.OrderedDict[str, tuple[ObstoreClient, dict[str, Any]]] = (
    collections.OrderedDict()
)
_SHARED_LOCK = threading.Lock()
_ENVIRONMENT_PREFIXES = ("AWS_", "AZURE_", "GOOGLE_", "GCS_", "SSL_CERT_")
"""Environment variables obstore reads when it makes a store (credentials, endpoints,
certificates; and ``*_PROXY``): a shared client is reused only while they are unchanged."""


def obstore_usable() -> bool:
    """Whether this process may read through obstore: it is installed, and its runtime was
    not started by a parent this process was forked from (tokio does not survive ``fork``)."""
    return obstore is not None and _USED_IN in (0, os.getpid())
