"""Fingerprints: what a source looked like when it was scanned, and how to tell it changed.

One comparison (:func:`differences`) decides everywhere whether two
fingerprints of a file can both hold: a size that differs, an ETag that
differs, or (for sources without an ETag) a modification time that differs.
"""

from __future__ import annotations

import email.utils
import errno
import os
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any

from zarr_manifest_store.errors import SourceChangedError
from zarr_manifest_store.manifest import ChunkManifest, Fingerprint

__all__ = [
    "check_unchanged",
    "differences",
    "fingerprint_from_info",
    "local_fingerprint",
    "merge_fingerprints",
    "normalised_etag",
]


def check_unchanged(path: str, recorded: Fingerprint, current: Fingerprint) -> None:
    """Raise ``SourceChangedError`` if ``path`` no longer looks as it did when scanned."""
    if diff := differences(recorded, current):
        raise SourceChangedError(
            errno.ESTALE, f"source {path!r} changed since it was scanned ({diff}); scan it again"
        )


def merge_fingerprints(manifests: Iterable[ChunkManifest]) -> dict[str, Fingerprint]:
    """The fingerprints of several manifests in one table; a file recorded with two
    fingerprints that cannot both hold raises ``SourceChangedError``."""
    merged: dict[str, Fingerprint] = {}
    for m in manifests:
        for path, fp in m.fingerprints.items():
            known = merged.setdefault(path, fp)
            if diff := differences(known, fp):
                raise SourceChangedError(
                    errno.ESTALE,
                    f"source {path!r} was scanned twice with different fingerprints ({diff}): "
                    "it changed between the scans; scan it again",
                )
    return merged


def differences(recorded: Fingerprint, current: Fingerprint) -> str:
    """What differs between a recorded fingerprint and the current one ('' if nothing)."""
    diffs = []
    if None not in (recorded.size, current.size) and recorded.size != current.size:
        diffs.append(f"size {recorded.size} -> {current.size} bytes")
    if recorded.etag and current.etag:
        if normalised_etag(recorded.etag) != normalised_etag(current.etag):
            diffs.append(f"ETag {recorded.etag} -> {current.etag}")
    elif (
        None not in (recorded.mtime_ns, current.mtime_ns) and recorded.mtime_ns != current.mtime_ns
    ):
        diffs.append(f"modified {_when(recorded.mtime_ns)} -> {_when(current.mtime_ns)}")
    return ", ".join(diffs)


def normalised_etag(tag: str) -> str:
    """An ETag without its weak marker and quotes, as servers differ in how they quote it."""
    return tag.removeprefix("W/").strip('"')


def _when(ns: int | None) -> str:
    return datetime.fromtimestamp((ns or 0) / 1e9).isoformat(sep=" ")


def local_fingerprint(st: os.stat_result) -> Fingerprint:
    return Fingerprint(size=st.st_size, mtime_ns=st.st_mtime_ns)


def fingerprint_from_info(info: Mapping[str, Any]) -> Fingerprint:
    etag = info.get("ETag") or info.get("etag")
    modified = next(
        (
            info[k]
            for k in ("LastModified", "Last-Modified", "last_modified", "mtime", "created")
            if info.get(k)
        ),
        None,
    )
    return Fingerprint(
        size=info.get("size"),
        mtime_ns=None if etag else _as_ns(modified),
        etag=normalised_etag(str(etag)) if etag else None,
    )


def _as_ns(value: Any) -> int | None:
    """Nanoseconds since the epoch from a datetime, an HTTP date, a number of seconds, or None."""
    if isinstance(value, str):
        try:
            value = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            try:
                value = datetime.fromisoformat(value)
            except ValueError:
                return None
    if isinstance(value, datetime):
        return int(value.timestamp() * 1e9)
    if isinstance(value, int | float):
        return int(value * 1e9)
    return None
