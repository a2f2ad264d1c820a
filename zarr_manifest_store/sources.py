"""Byte-range reading of the original source files.

Local files are read with ``os.pread`` on cached descriptors (thread-safe, no
seek state); every other URL goes through an fsspec file system, created once
per protocol and options and reused. Errors name the source file: a missing
file is ``FileNotFoundError``, a file shorter than the range asked for is
``OSError`` — never zero bytes that would decode as fill values. With an
allow-list, every path is checked against it before its first read
(``PermissionError``).
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any
from urllib.parse import unquote, urlsplit

import fsspec

from zarr_manifest_store.manifest import Fingerprint

__all__ = ["Sources", "is_local", "local_path", "protocol_of"]

MAX_OPEN_FILES = 128
"""Descriptors kept open at once; the least recently used idle one is closed beyond this."""


def protocol_of(path: str) -> str:
    """The URL scheme of ``path`` (``"file"`` for plain local paths)."""
    scheme = urlsplit(path).scheme
    return scheme if len(scheme) > 1 else "file"  # a one-letter scheme is a Windows drive


def is_local(path: str) -> bool:
    return protocol_of(path) in ("file", "local")


def local_path(path: str) -> str:
    """The file-system path of a local ``path`` or ``file://`` URL."""
    if "://" not in path:
        return path
    return unquote(urlsplit(path).path)


class _Descriptor:
    """An open file descriptor shared by readers; closed once evicted and idle."""

    __slots__ = ("evicted", "fd", "users")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.users = 0
        self.evicted = False


class Sources:
    """Reads byte ranges of source files, local or remote.

    ``storage_options`` are passed to fsspec when a remote file system is
    created: either one dict for every protocol, or a mapping from URL prefix
    (``"s3://bucket-a/"``) to options, the longest matching prefix winning.
    ``allow`` lists the prefixes (directories or URL prefixes) that may be
    read; ``None`` allows everything.
    """

    def __init__(
        self,
        storage_options: Mapping[str, Any] | None = None,
        *,
        allow: Sequence[str] | None = None,
    ) -> None:
        self._storage_options = dict(storage_options or {})
        self._allow = None if allow is None else tuple(str(a) for a in allow)
        self._allowed: set[str] = set()
        self._lock = threading.Lock()
        self._descriptors: OrderedDict[str, _Descriptor] = OrderedDict()
        self._filesystems: dict[tuple[str, str], fsspec.AbstractFileSystem] = {}

    @property
    def storage_options(self) -> dict[str, Any]:
        return self._storage_options

    @property
    def allow(self) -> tuple[str, ...] | None:
        return self._allow

    def check_allowed(self, path: str) -> None:
        """Raise ``PermissionError`` unless ``path`` lies under an allowed prefix."""
        if self._allow is None or path in self._allowed:
            return
        if not any(_under(path, prefix) for prefix in self._allow):
            raise PermissionError(
                f"source {path!r} is outside the allowed prefixes {list(self._allow)}; "
                f"to read it, add its folder or bucket prefix to allow=[...]"
            )
        self._allowed.add(path)

    def fingerprint(self, path: str) -> Fingerprint:
        """What ``path`` looks like now: size and mtime (local) or size and ETag (remote)."""
        self.check_allowed(path)
        if is_local(path):
            try:
                st = os.stat(local_path(path))
            except FileNotFoundError as e:
                raise FileNotFoundError(e.errno, f"source file {path!r} not found") from None
            return Fingerprint(size=st.st_size, mtime_ns=st.st_mtime_ns)
        try:
            info = self._filesystem(path).info(path)
        except FileNotFoundError as e:
            raise FileNotFoundError(e.errno, f"source file {path!r} not found") from None
        etag = info.get("ETag") or info.get("etag")
        modified = next(
            (info[k] for k in ("LastModified", "last_modified", "mtime", "created") if info.get(k)),
            None,
        )
        return Fingerprint(
            size=info.get("size"),
            mtime_ns=None if etag else _as_ns(modified),
            etag=str(etag).strip('"') if etag else None,
        )

    def filesystem(self, path: str) -> fsspec.AbstractFileSystem:
        """The fsspec file system that reads the remote ``path``, created once and reused."""
        self.check_allowed(path)
        return self._filesystem(path)

    async def read(self, path: str, offset: int, length: int) -> bytes:
        """``length`` bytes of ``path`` from ``offset``, off the event loop."""
        return await asyncio.to_thread(self.read_sync, path, offset, length)

    def read_sync(self, path: str, offset: int, length: int) -> bytes:
        """``length`` bytes of ``path`` from ``offset``; raises if the file is missing or short."""
        self.check_allowed(path)
        if length == 0:
            return b""
        if is_local(path):
            data = self._pread(local_path(path), offset, length)
        else:
            data = self._fsspec_read(path, offset, length)
        if len(data) != length:
            raise OSError(
                f"source file {path!r} is too short: bytes {offset}..{offset + length} were "
                f"expected, {len(data)} could be read"
            )
        return data

    def close(self) -> None:
        """Close every cached descriptor that is not in use (in-use ones close when released)."""
        with self._lock:
            for desc in self._descriptors.values():
                desc.evicted = True
                if desc.users == 0:
                    os.close(desc.fd)
            self._descriptors.clear()

    # ------------------------------------------------------------------ local files

    def _pread(self, path: str, offset: int, length: int) -> bytes:
        desc = self._acquire(path)
        try:
            chunks = []
            while length:
                data = os.pread(desc.fd, length, offset)
                if not data:
                    break
                chunks.append(data)
                offset += len(data)
                length -= len(data)
            return b"".join(chunks)
        finally:
            self._release(desc)

    def _acquire(self, path: str) -> _Descriptor:
        with self._lock:
            desc = self._descriptors.get(path)
            if desc is not None:
                self._descriptors.move_to_end(path)
                desc.users += 1
                return desc
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except FileNotFoundError as e:
            raise FileNotFoundError(e.errno, f"source file {path!r} not found") from None
        except IsADirectoryError as e:
            raise IsADirectoryError(
                e.errno, f"source {path!r} is a directory, not a file"
            ) from None
        with self._lock:
            desc = self._descriptors.get(path)
            if desc is None:
                desc = self._descriptors[path] = _Descriptor(fd)
            else:
                os.close(fd)  # another thread opened it meanwhile
            desc.users += 1
            self._evict()
            return desc

    def _release(self, desc: _Descriptor) -> None:
        with self._lock:
            desc.users -= 1
            if desc.evicted and desc.users == 0:
                os.close(desc.fd)

    def _evict(self) -> None:
        """Close the least recently used idle descriptors beyond ``MAX_OPEN_FILES`` (lock held)."""
        excess = len(self._descriptors) - MAX_OPEN_FILES
        for path in list(self._descriptors):
            if excess <= 0:
                break
            desc = self._descriptors[path]
            if desc.users == 0:
                del self._descriptors[path]
                os.close(desc.fd)
                excess -= 1

    # ------------------------------------------------------------------ fsspec

    def _fsspec_read(self, path: str, offset: int, length: int) -> bytes:
        fs = self._filesystem(path)
        try:
            return fs.cat_file(path, start=offset, end=offset + length)
        except FileNotFoundError as e:
            raise FileNotFoundError(e.errno, f"source file {path!r} not found") from None

    def _filesystem(self, path: str) -> fsspec.AbstractFileSystem:
        protocol = protocol_of(path)
        options = self._options_for(path)
        key = (protocol, json.dumps(options, sort_keys=True, default=repr))
        with self._lock:
            fs = self._filesystems.get(key)
            if fs is None:
                fs = self._filesystems[key] = fsspec.filesystem(protocol, **options)
            return fs

    def _options_for(self, path: str) -> dict[str, Any]:
        opts = self._storage_options
        prefixed = {k: v for k, v in opts.items() if "://" in k}
        if not prefixed:
            return opts
        best = max((k for k in prefixed if path.startswith(k)), key=len, default=None)
        return dict(prefixed[best]) if best else {}

    def __getstate__(self) -> dict[str, Any]:
        return {"storage_options": self._storage_options, "allow": self._allow}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__init__(state["storage_options"], allow=state["allow"])  # type: ignore[misc]


def _under(path: str, prefix: str) -> bool:
    """Whether ``path`` lies at or below ``prefix``, after resolving what could disguise it.

    Local paths are compared after ``realpath`` (so ``..`` and symlinks cannot
    escape); URLs after percent-decoding, with any ``..`` segment refused.
    """
    if is_local(path) != is_local(prefix):
        return False
    if is_local(path):
        real = os.path.realpath(local_path(path))
        base = os.path.realpath(local_path(prefix))
        return real == base or real.startswith(base.rstrip(os.sep) + os.sep)
    decoded = unquote(path)
    if ".." in decoded.split("/"):
        return False
    base = unquote(prefix)
    return decoded == base.rstrip("/") or decoded.startswith(base.rstrip("/") + "/")


def _as_ns(value: Any) -> int | None:
    """Nanoseconds since the epoch from a datetime, a number of seconds, or None."""
    if isinstance(value, datetime):
        return int(value.timestamp() * 1e9)
    if isinstance(value, int | float):
        return int(value * 1e9)
    return None
