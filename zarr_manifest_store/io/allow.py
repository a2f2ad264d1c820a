"""The allow-list: which local folders and URL prefixes may be read.

One :class:`AllowList` answers "may I read this source?" for every reader:
``Sources`` asks it before each new source, and documents and the command
line build it from the same ``allow=`` / ``--allow`` prefixes.

A local path is compared after ``realpath`` (``..`` and symlinks resolved),
and every file is checked again once it is open (:meth:`AllowList.check_opened`):
the descriptor must be the very file its resolved name leads to inside an
allowed folder, so a symlink swapped in later cannot lead a read outside. A
URL is compared in the one form that is also requested
(:func:`~zarr_manifest_store.io.urls.request_url`), and refused if it
disguises where it leads.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from urllib.parse import urlsplit

from zarr_manifest_store.io.paths import is_local, local_path
from zarr_manifest_store.io.urls import request_url

__all__ = ["AllowList"]


class AllowList:
    """The prefixes (folders or URL prefixes) that may be read; ``None`` allows everything.

    >>> allow = AllowList(["s3://bucket/archive/"])
    >>> allow.permits("s3://bucket/archive/2020/f.nc"), allow.permits("s3://bucket/other/f.nc")
    (True, False)
    """

    __slots__ = ("_resolved", "prefixes")

    def __init__(self, prefixes: Iterable[str | os.PathLike[str]] | str | os.PathLike[str] | None):
        if isinstance(prefixes, str | os.PathLike):
            prefixes = [prefixes]  # one prefix, not its characters
        self.prefixes: tuple[str, ...] | None = (
            None if prefixes is None else tuple(os.fspath(p) for p in prefixes)
        )
        self._resolved = None if self.prefixes is None else tuple(map(_prefix, self.prefixes))

    @classmethod
    def of(cls, allow: AllowList | Iterable[str] | str | os.PathLike[str] | None) -> AllowList:
        """``allow`` as an ``AllowList`` (itself if it is one already)."""
        return allow if isinstance(allow, AllowList) else cls(allow)

    def with_prefixes(self, *prefixes: str | os.PathLike[str]) -> AllowList:
        """This list and ``prefixes`` (a document adds its own folder); a list that allows
        everything still does.

        >>> AllowList(["/data/"]).with_prefixes("/docs/day1.zarr").prefixes
        ('/data/', '/docs/day1.zarr')
        """
        if self.prefixes is None:
            return self
        return AllowList([*self.prefixes, *prefixes])

    @property
    def everything(self) -> bool:
        """Whether every source may be read (no prefixes were given)."""
        return self.prefixes is None

    def permits(self, path: str) -> bool:
        """Whether ``path`` lies at or below one of the prefixes."""
        try:
            self.check(path)
        except PermissionError:
            return False
        return True

    def check(self, path: str) -> None:
        """Raise ``PermissionError`` unless ``path`` may be read; the message names the
        folder to allow. A URL that disguises where it leads is refused even when
        everything is allowed."""
        resolved = _resolved(path)
        if not self._covers(resolved, is_local(path)):
            raise self._outside(f"source {path!r} is", resolved)

    def check_opened(self, path: str, opened: os.stat_result) -> None:
        """Raise ``PermissionError`` unless ``opened`` (the ``fstat`` of a descriptor just
        opened for the local ``path``) is a file inside the allowed folders.

        The name is resolved again and must lead, inside an allowed folder,
        to the very file that was opened (same device and inode): a symlink
        planted or swapped after an earlier check cannot lead a read outside.
        """
        if self._resolved is None:
            return
        real = os.path.realpath(local_path(path))
        if not self._covers(real, local=True):
            raise self._outside(f"source {path!r} leads to {real!r},", real)
        try:
            st = os.stat(real)
        except OSError:
            st = None
        if st is None or (st.st_dev, st.st_ino) != (opened.st_dev, opened.st_ino):
            raise PermissionError(
                f"source {path!r} was swapped while it was being opened: the file opened is "
                f"not the one its name now leads to inside the allowed prefixes; refused",
            )

    def _covers(self, resolved: str, local: bool) -> bool:
        """Whether the resolved path or URL lies at or below one of the prefixes."""
        return self._resolved is None or any(
            local == p_local and _under(resolved, p, local) for p_local, p in self._resolved
        )

    def _outside(self, what: str, resolved: str) -> PermissionError:
        folder = resolved.rsplit("/", 1)[0] + "/"
        return PermissionError(
            f"{what} outside the allowed prefixes {list(self.prefixes or ())}; "
            f"to read it, allow its folder: allow=[..., {folder!r}]"
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, AllowList) and other.prefixes == self.prefixes

    def __hash__(self) -> int:
        return hash(self.prefixes)

    def __repr__(self) -> str:
        return f"AllowList({None if self.prefixes is None else list(self.prefixes)!r})"


def _resolved(path: str) -> str:
    """``path`` as the allow-list compares it: local paths real (``..`` and symlinks
    resolved), URLs as they are requested (``PermissionError`` if one disguises that)."""
    if "\0" in path:
        raise PermissionError(f"source {path!r} is refused: it contains a NUL character")
    if is_local(path):
        if "://" in path and urlsplit(path).netloc not in ("", "localhost"):
            raise PermissionError(
                f"source {path!r} is refused: a file:// URL names a local file only with an "
                f"empty host or 'localhost' (file:///path)"
            )
        return os.path.realpath(local_path(path))
    return request_url(path)


def _prefix(prefix: str) -> tuple[bool, str]:
    """A prefix as compared: whether it is local, and its resolved form."""
    try:
        return is_local(prefix), _resolved(prefix).rstrip("/" if not is_local(prefix) else os.sep)
    except PermissionError as e:
        raise ValueError(f"allowed prefix {prefix!r} cannot be used: {e}") from None


def _under(resolved: str, prefix: str, local: bool) -> bool:
    """Whether the resolved ``path`` lies at or below the resolved ``prefix``."""
    sep = os.sep if local else "/"
    return resolved == prefix or resolved.startswith(prefix + sep)
