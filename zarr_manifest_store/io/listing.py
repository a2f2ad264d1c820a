"""Globs over object storage (``s3://bucket/era/*.nc``) expanded with one listing through obstore.

fsspec's glob would make an s3fs, gcsfs or adlfs file system first (about 2.4 s of botocore
set-up for S3, once per process); the shared obstore client of the bucket lists the keys
under the pattern's folder instead, and they are matched as fsspec matches them (its own
``glob_translate``: ``*``, ``?``, ``[...]`` within a path segment, ``**`` across segments),
folders included (a Zarr store matches ``*.zarr``). Other protocols, buckets with a wildcard,
and options obstore does not take are listed by fsspec, as before.
"""

from __future__ import annotations

import glob
import itertools
import re
from collections.abc import Iterable, Mapping
from typing import Any

from fsspec.utils import glob_translate

from zarr_manifest_store.io.clients import ObstoreClient, obstore_client
from zarr_manifest_store.io.obstore_options import OBSTORE_KINDS
from zarr_manifest_store.io.paths import options_for, protocol_of

__all__ = ["LISTED_KINDS", "glob_objects"]

LISTED_KINDS = ("s3", "gcs", "azure")
"""Kinds of obstore store whose keys are listed here (an HTTP server has no listing)."""


def glob_objects(
    pattern: str, storage_options: Mapping[str, Any] | None, *, timeout: float = 15.0
) -> list[str] | None:
    """The URLs of the objects (and folders) matching ``pattern``, sorted, as fsspec's glob
    finds them; None where obstore does not list ``pattern`` here (the caller asks fsspec).

    Raises ``FileNotFoundError`` naming the pattern and the folder listed when nothing matches.
    """
    scheme, _, stripped = pattern.partition("://")  # fsspec's form: bucket/key (a ? is a
    bucket, _, key_pattern = stripped.partition("/")  # wildcard here, not a URL's query)
    client = _client(pattern, bucket, storage_options, timeout)
    if client is None:
        return None
    folder = _folder(key_pattern)
    matches = re.compile(glob_translate(stripped)).match
    dirs_slashed = pattern.endswith(("/", "/**"))
    found = set()
    keys = client.keys(folder)
    entries = (entry for key in keys for entry in _entries(key, folder))
    root = [(folder.rstrip("/"), True)] if keys else []  # fsspec's listing holds its folder
    for name, is_dir in itertools.chain(root, entries):
        candidate = f"{bucket}/{name}" if name else bucket
        if matches(candidate + "/" if is_dir and dirs_slashed else candidate):
            found.add(f"{scheme}://{candidate}")
    if not found:
        raise FileNotFoundError(f"no files match {pattern!r} (listed {scheme}://{bucket}/{folder})")
    return sorted(found)


def _client(
    pattern: str, bucket: str, storage_options: Mapping[str, Any] | None, timeout: float
) -> ObstoreClient | None:
    """The shared obstore client listing ``bucket``, or None (fsspec lists it)."""
    if OBSTORE_KINDS.get(protocol_of(pattern)) not in LISTED_KINDS:
        return None
    if not bucket or glob.has_magic(bucket) or "@" in bucket:  # buckets listed, account URLs
        return None
    url = f"{protocol_of(pattern)}://{bucket}/"
    try:
        client = obstore_client(url, options_for(pattern, storage_options), timeout=timeout)
    except ValueError:  # an option obstore does not take: fsspec's file system takes it
        return None
    return client if isinstance(client, ObstoreClient) else None


def _folder(key_pattern: str) -> str:
    """The folder of the pattern's first wildcard (``era/2026/`` of ``era/2026/*.nc``)."""
    first = min((i for i, c in enumerate(key_pattern) if c in "*?["), default=len(key_pattern))
    return key_pattern[: key_pattern.rfind("/", 0, first) + 1]


def _entries(key: str, folder: str) -> Iterable[tuple[str, bool]]:
    """The object ``key`` and the folders between ``folder`` and it (a listing has no
    folders of its own: fsspec's finds them the same way), each with whether it is one."""
    yield key, False
    end = key.rfind("/")
    while end > len(folder):
        yield key[:end], True
        end = key.rfind("/", 0, end)
