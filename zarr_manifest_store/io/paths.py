"""Source paths and URLs: local or remote, how they are spelled, which options read them.

Every module that asks "is this a local file?" or "which fsspec options apply
to this URL?" asks here, so that one rule answers it everywhere.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = [
    "in_scheme_of",
    "is_local",
    "is_plain_path",
    "local_path",
    "options_for",
    "protocol_of",
    "source_path",
]


def protocol_of(path: str) -> str:
    """The URL scheme of ``path`` (``"file"`` for plain local paths).

    >>> protocol_of("s3://bucket/a.nc"), protocol_of("/data/a.nc"), protocol_of("C:/a.nc")
    ('s3', 'file', 'file')
    """
    scheme = urlsplit(path).scheme
    return scheme if len(scheme) > 1 else "file"  # a one-letter scheme is a Windows drive


def is_local(path: str) -> bool:
    """Whether ``path`` names a local file: a plain path or a ``file://`` URL."""
    return protocol_of(path) in ("file", "local")


def is_plain_path(path: str) -> bool:
    """Whether ``path`` is a local path written without a scheme (``data/a.nc``)."""
    return is_local(path) and "://" not in path


def local_path(path: str) -> str:
    """The file-system path of a local ``path`` or ``file://`` URL."""
    if "://" not in path:
        return path
    return unquote(urlsplit(path).path)


def source_path(url: str | os.PathLike[str]) -> str:
    """How a manifest names a source: plain local paths made absolute, URLs as they are."""
    url = os.fspath(url)
    return os.path.abspath(url) if is_plain_path(url) else url


def in_scheme_of(like: str, url: str) -> str:
    """``url`` written with the scheme of ``like``: a file system may answer in another of
    its names (adlfs turns ``az://`` URLs into ``abfs://`` ones)."""
    return f"{protocol_of(like)}://{url.partition('://')[2]}"


def options_for(url: str, storage_options: Mapping[str, Any] | None) -> dict[str, Any]:
    """The fsspec options for ``url``: one dict for every URL, or a mapping from URL prefix
    (``"s3://bucket-a/"``) to options, the longest matching prefix winning.

    >>> options_for("s3://a/x.nc", {"s3://a/": {"anon": True}, "s3://": {"anon": False}})
    {'anon': True}
    """
    options = dict(storage_options or {})
    prefixed = {k: v for k, v in options.items() if "://" in k}
    if not prefixed:
        return options
    best = max((k for k in prefixed if url.startswith(k)), key=len, default=None)
    return dict(prefixed[best]) if best else {}
