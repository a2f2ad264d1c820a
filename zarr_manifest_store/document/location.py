"""Where a document lives, and how the source paths inside it are written and resolved.

A :class:`Location` is the document's folder, local or any fsspec URL: it reads
and writes the document's files by their key (``"t2m/zarr.json"``). Source
paths in a document are either absolute (``/data/f1.nc``, ``s3://bucket/f1.nc``)
or relative to the document folder (``data/f1.nc``); :meth:`Location.resolve`
turns one into what :class:`~zarr_manifest_store.io.sources.Sources` reads, and
refuses relative paths that could leave the folder.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import posixpath
import re
import secrets
import stat
from collections.abc import Iterable, Iterator, Mapping
from typing import Any, NamedTuple
from urllib.parse import unquote

import fsspec

from zarr_manifest_store.errors import ManifestError
from zarr_manifest_store.io.paths import in_scheme_of, is_local, local_path, options_for

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]*://")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0)

MAX_METADATA_BYTES = 2**28
"""The default limit on one file of a document (``zarr.json``, ``manifest.json``): a larger
file is refused by its size, before it is read (``max_metadata_bytes=`` raises it)."""


class Limit(NamedTuple):
    """The most bytes one document file may hold, and the rule that says so (for its error)."""

    size: int
    rule: str


def is_absolute(path: str) -> bool:
    """Whether a document path is absolute: a URL with a scheme, or a path from ``/``."""
    return path.startswith("/") or bool(_SCHEME.match(path))


class Location:
    """The folder of a document: its files by key, and the resolution of relative paths.

    >>> loc = Location("/tmp/out.zarr")
    >>> loc.url, loc.resolve("data/f1.nc", "t2m/manifest.json")
    ('/tmp/out.zarr', '/tmp/out.zarr/data/f1.nc')
    """

    def __init__(
        self,
        url: str | os.PathLike[str],
        storage_options: Mapping[str, Any] | None = None,
        max_bytes: int = MAX_METADATA_BYTES,
    ):
        url = os.fspath(url)
        self.local = is_local(url)
        self.max_bytes = max_bytes
        if self.local:
            self.url = os.path.abspath(local_path(url)).rstrip(os.sep) or os.sep
            self.fs = fsspec.filesystem("file")
            self.root = self.url
        else:
            self.fs, root = fsspec.core.url_to_fs(url, **options_for(url, storage_options))
            self.root = root.rstrip("/")
            self.url = in_scheme_of(url, self.fs.unstrip_protocol(self.root))

    # ------------------------------------------------------------------ files

    def where(self, key: str) -> str:
        """The full path or URL of the document file ``key`` (for messages)."""
        return f"{self.url}/{key}" if key else self.url

    def _path(self, key: str) -> str:
        """The path of the document file ``key``, which must stay inside the folder."""
        if key:
            check_relative(key, f"{self.url}: document file")
        return f"{self.root}/{key}" if key else self.root

    def read(
        self, key: str, missing: type[Exception] = ManifestError, limit: Limit | None = None
    ) -> bytes:
        """The bytes of the document file ``key``; a missing file raises ``missing``.

        Only a regular file inside the document folder (also after following
        symlinks) is read, and only up to ``limit`` (by default ``max_bytes``,
        the ``max_metadata_bytes`` rule): a larger one is refused by its size,
        before it is read.
        """
        limit = limit or self._limit
        if self.local:
            return self._read_local(key, missing, limit)
        try:
            data = self.fs.cat_file(self._path(key), start=0, end=limit.size + 1)
        except FileNotFoundError:
            raise missing(f"{self.where(key)}: file not found") from None
        except IsADirectoryError:
            raise ManifestError(f"{self.where(key)}: is a folder, not a file") from None
        return self._bounded(key, data, limit)

    def read_many(self, keys: list[str], limit: Limit | None = None) -> dict[str, bytes]:
        """Several files at once (concurrently on remote file systems); missing ones raise."""
        if len(keys) <= 1 or self.local:
            return {k: self.read(k, limit=limit) for k in keys}
        limit = limit or self._limit
        paths = [self._path(k) for k in keys]
        found = self.fs.cat_ranges(
            paths, [0] * len(paths), [limit.size + 1] * len(paths), on_error="return"
        )
        out: dict[str, bytes] = {}
        for key, value in zip(keys, found, strict=True):
            if isinstance(value, FileNotFoundError):
                raise ManifestError(f"{self.where(key)}: file not found")
            if isinstance(value, BaseException):
                raise value
            out[key] = self._bounded(key, value, limit)
        return out

    def _read_local(self, key: str, missing: type[Exception], limit: Limit) -> bytes:
        """Open without blocking (a FIFO would), then check what was opened before reading it."""
        path, where = self._path(key), self.where(key)
        try:
            fd = os.open(path, _OPEN_FLAGS)
        except (FileNotFoundError, NotADirectoryError):
            raise missing(f"{where}: file not found") from None
        except OSError as e:  # a socket, say: a document's files are regular files
            raise ManifestError(
                f"{where}: cannot be opened as a regular file ({e.strerror or e})"
            ) from None
        try:
            info = os.fstat(fd)
            if stat.S_ISDIR(info.st_mode):
                raise ManifestError(f"{where}: is a folder, not a file")
            if not stat.S_ISREG(info.st_mode):
                raise ManifestError(
                    f"{where}: not a regular file (a FIFO, socket or device); a document's "
                    f"files are read only when they are regular files"
                )
            self._check_inside(path, info, where)
            if info.st_size > limit.size:
                raise self._too_large(key, f"{info.st_size} bytes", limit)
            with open(fd, "rb", closefd=False) as file:  # the size it has, and one byte
                return self._bounded(key, file.read(info.st_size + 1), limit)  # it may grow
        finally:
            os.close(fd)

    def _check_inside(self, path: str, opened: os.stat_result, where: str) -> None:
        """The file opened as ``path`` must be the one its real path names inside the folder."""
        real, base = os.path.realpath(path), os.path.realpath(self.root)
        try:
            same = os.path.samestat(opened, os.stat(real)) and real.startswith(
                base.rstrip(os.sep) + os.sep
            )
        except OSError:
            same = False
        if not same:
            raise PermissionError(
                f"{where}: resolves to {real}, outside the document folder {base} (through a "
                f"symlink); a document's files must lie inside its folder"
            )

    @property
    def _limit(self) -> Limit:
        return Limit(
            self.max_bytes,
            f"the limit on one document file (max_metadata_bytes={self.max_bytes}); pass a "
            f"larger max_metadata_bytes to ManifestStore.open / read_document to read it",
        )

    def _bounded(self, key: str, data: bytes, limit: Limit) -> bytes:
        if len(data) > limit.size:
            raise self._too_large(key, f"more than {limit.size} bytes", limit)
        return data

    def _too_large(self, key: str, size: str, limit: Limit) -> ManifestError:
        return ManifestError(f"{self.where(key)}: the file holds {size}, past {limit.rule}")

    def exists(self, key: str) -> bool:
        return bool(self.fs.exists(self._path(key)))

    def subfolders(self, key: str) -> list[str]:
        """Names of the folders directly inside ``key`` (for documents without consolidated metadata)."""
        try:
            entries = self.fs.ls(self._path(key), detail=True)
        except FileNotFoundError:
            return []
        except (NotImplementedError, OSError) as e:
            raise ManifestError(
                f"{self.where(key)}: the document has no consolidated metadata and its folder "
                f"cannot be listed ({e})"
            ) from None
        names = (
            posixpath.basename(e["name"].rstrip("/"))
            for e in entries
            if e.get("type") == "directory" or (e.get("islink") and self.fs.isdir(e["name"]))
        )  # a linked folder is listed: reading its files checks where it leads
        return sorted(name for name in names if name not in (".", ".."))

    def write(self, files: Mapping[str, bytes]) -> None:
        """Write document files by key (in one batch: concurrently on remote file systems).

        Local files are all written beside their places first, then renamed into them in
        the order given, so a reader sees each file old or new, never part of one (an
        object store's PUT does so), and an interruption while writing changes nothing.
        """
        if not self.local:
            if files:
                self.fs.pipe({self._path(k): v for k, v in files.items()})
            return
        staged: list[tuple[str, str]] = []
        renamed = 0
        try:
            for key, data in files.items():
                path = self._path(key)
                folder, name = os.path.split(path)
                os.makedirs(folder, exist_ok=True)
                temporary = os.path.join(folder, f".{name}.{secrets.token_hex(6)}.partial")
                staged.append((temporary, path))
                with open(
                    os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666), "wb"
                ) as f:
                    f.write(data)
            for temporary, path in staged:
                os.replace(temporary, path)
                renamed += 1
        finally:
            for temporary, _ in staged[renamed:]:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)

    def find(self) -> Iterator[str]:
        """Keys of every file below the folder."""
        if self.fs.exists(self.root):
            for path in self.fs.find(self.root):
                yield path[len(self.root) + 1 :]

    def modified(self, prefix: str) -> dict[str, datetime.datetime]:
        """Keys of the files below the folder ``prefix``, with when each was last written."""
        path = self._path(prefix)
        self.fs.invalidate_cache(path)
        try:
            found = self.fs.find(path, detail=True)
        except FileNotFoundError:
            return {}
        return {
            name[len(self.root) + 1 :]: _modified(info, self.where(name[len(self.root) + 1 :]))
            for name, info in found.items()
        }

    def remove(self, keys: Iterable[str]) -> None:
        paths = [f"{self.root}/{k}" for k in keys]  # listed by find(): already inside
        if paths:
            self.fs.rm(paths)

    # ------------------------------------------------------------------ source paths

    def resolve(self, path: str, where: str) -> str:
        """What ``path``, found in the document file ``where``, names for the reader.

        Absolute paths are returned as they are (the allow-list decides whether
        they may be read). Relative paths are joined to the document folder
        after checking that they cannot leave it: a malformed one is a
        ManifestError, one that tries to climb out (``..``, also percent-encoded)
        a PermissionError.
        """
        if is_absolute(path):
            return _check_text(path, f"{self.where(where)}: absolute path")
        return self._join(check_relative(path, self.where(where)))

    def _join(self, relative: str) -> str:
        if self.local:
            return os.path.join(self.url, *relative.split("/"))
        return f"{self.url}/{relative}"

    def relative(self, path: str) -> str | None:
        """``path`` relative to this folder, or None when it lies outside (or cannot be written so).

        Local paths are compared after resolving symlinks, as the reader does.
        """
        if self.local:
            if not is_local(path):
                return None
            real = os.path.realpath(local_path(path))
            base = os.path.realpath(self.url)
            if not real.startswith(base.rstrip(os.sep) + os.sep):
                return None
            relative = os.path.relpath(real, base).replace(os.sep, "/")
        else:
            base = self.url.rstrip("/") + "/"
            if not path.startswith(base):
                return None
            relative = path[len(base) :]
        try:
            check_relative(relative, "")
        except (ManifestError, PermissionError):
            return None
        return relative


def _modified(info: Mapping[str, Any], where: str) -> datetime.datetime:
    """When a file was last written, from its fsspec details (each file system names it its
    own way: ``LastModified`` on S3, ``last_modified`` on Azure, ``mtime`` locally and on GCS)."""
    for name in ("LastModified", "last_modified", "mtime", "updated"):
        value = info.get(name)
        if isinstance(value, int | float):
            return datetime.datetime.fromtimestamp(value, datetime.UTC)
        if isinstance(value, str):
            value = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        if isinstance(value, datetime.datetime):
            return value if value.tzinfo else value.replace(tzinfo=datetime.UTC)
    raise OSError(f"{where}: its file system does not say when it was last written")


def check_relative(path: str, where: str) -> str:
    """``path`` if it is a well-formed relative path that stays inside the document folder.

    Segments are separated by ``/``; none may be empty, contain a backslash or a
    control character, or be ``.`` / ``..`` — also after percent-decoding, since
    a web server would decode them.
    """
    _check_text(path, f"{where}: relative path")
    if _CONTROL.search(path) or "\\" in path:
        raise ManifestError(
            f"{where}: relative path {path!r} contains a backslash or a control character"
        )
    for segment in path.split("/"):
        decoded = unquote(segment)
        if decoded in ("..", ".") or "/" in decoded or "\\" in decoded:
            raise PermissionError(
                f"{where}: relative path {path!r} tries to leave the document folder (segment "
                f"{segment!r}); relative paths stay inside it — write an absolute path and allow "
                f"its prefix instead"
            )
        if not segment:
            raise ManifestError(f"{where}: relative path {path!r} has an empty segment")
    return path


def _check_text(path: str, what: str) -> str:
    """``path`` if a file system or URL can name it: no NUL, no lone surrogate."""
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        raise ManifestError(f"{what} {path!r} is not valid Unicode (a lone surrogate)") from None
    if "\0" in path:
        raise ManifestError(f"{what} {path!r} contains a NUL character")
    return path
