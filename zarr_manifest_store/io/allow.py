"""The allow-list: which local folders and URL prefixes may be read.

One :class:`AllowList` answers "may I read this source?" for every reader:
``Sources`` asks it before each new source, and documents and the command
line build it from the same ``allow=`` / ``--allow`` prefixes.

A local path is compared after ``realpath`` (``..`` and symlinks resolved),
so a link inside an allowed folder that points outside it is refused; a URL
is compared after percent-decoding, and any ``..`` segment in it is refused.

Every decision goes through :meth:`AllowList.check`, so that hardening it
(comparing exactly the normalised URL a client then requests; checking the
file a descriptor actually opened rather than its name) changes one place.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from urllib.parse import unquote

from zarr_manifest_store.io.paths import is_local, local_path

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
        self._resolved = None if self.prefixes is None else tuple(map(_resolved, self.prefixes))

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
        return self._resolved is None or any(_under(path, p) for p in self._resolved)

    def check(self, path: str) -> None:
        """Raise ``PermissionError`` unless ``path`` may be read; the message names the
        folder to allow."""
        if not self.permits(path):
            folder = _resolved(path).rsplit("/", 1)[0] + "/"
            raise PermissionError(
                f"source {path!r} is outside the allowed prefixes {list(self.prefixes or ())}; "
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
    resolved), URLs percent-decoded."""
    if is_local(path):
        return os.path.realpath(local_path(path))
    return unquote(path)


def _under(path: str, prefix: str) -> bool:
    """Whether ``path`` lies at or below the resolved ``prefix`` (see ``_resolved``).

    Local paths are compared after ``realpath``, so ``..`` and symlinks cannot
    escape; URLs after percent-decoding, with any ``..`` segment refused.
    """
    if is_local(path) != is_local(prefix):
        return False
    resolved = _resolved(path)
    if not is_local(path) and ".." in resolved.split("/"):
        return False
    sep = os.sep if is_local(path) else "/"
    return resolved == prefix.rstrip(sep) or resolved.startswith(prefix.rstrip(sep) + sep)
