"""Fingerprints: what a source looked like when it was scanned, and how to tell it changed.

One comparison (:func:`differences`) decides everywhere whether two
fingerprints of a file can both hold: a size that differs, an ETag that
differs, or (for sources without an ETag) a modification time that differs.
:class:`FingerprintRegistry` holds a reader's fingerprints (recorded at scan
time, or seen at first use) and checks what a source looks like now against them.
"""

from __future__ import annotations

import email.utils
import errno
import os
import threading
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, Literal

from zarr_manifest_store.errors import SourceChangedError
from zarr_manifest_store.io.report import SourceStatus
from zarr_manifest_store.manifest import ChunkManifest, Fingerprint

__all__ = [
    "VERIFY_MODES",
    "FingerprintRegistry",
    "Verify",
    "check_unchanged",
    "differences",
    "fingerprint_from_info",
    "local_fingerprint",
    "merge_fingerprints",
    "normalised_etag",
]

Verify = Literal["first-use", "always", "never"]
"""When a source is checked against its fingerprint: when first opened, before every read, never."""
VERIFY_MODES: tuple[Verify, ...] = ("first-use", "always", "never")


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


class FingerprintRegistry:
    """The fingerprints a reader holds per source, and the checks against them.

    ``recorded`` fingerprints come from scanning (several per path if a file
    was recorded more than once; :meth:`record` adds more). A source without
    one is checked against what it looked like when it was first seen.
    """

    def __init__(self, recorded: Mapping[str, Iterable[Fingerprint]] | None = None) -> None:
        self._recorded = {p: tuple(dict.fromkeys(fps)) for p, fps in (recorded or {}).items()}
        self._seen: dict[str, Fingerprint] = {}  # what a source looked like at first use
        self._passed: dict[str, Fingerprint] = {}  # the last fingerprint that passed, per path
        self.after_fork()

    def after_fork(self) -> None:
        """A new lock: a forked child has none of its parent's threads to release the old one."""
        self._lock = threading.Lock()

    @property
    def recorded(self) -> dict[str, tuple[Fingerprint, ...]]:
        """The recorded fingerprints per path (what pickling carries)."""
        return dict(self._recorded)

    def record(self, fingerprints: Mapping[str, Fingerprint]) -> None:
        """Add what sources looked like when scanned; two fingerprints of one file that
        cannot both hold raise ``SourceChangedError``."""
        with self._lock:
            for path, fp in fingerprints.items():
                known = self._recorded.get(path, ())
                if fp in known:
                    continue
                for other in known:
                    if diff := differences(other, fp):
                        raise SourceChangedError(
                            errno.ESTALE,
                            f"source file {path!r} was recorded with two different fingerprints "
                            f"({diff}): it changed between scans; rescan it",
                        )
                self._recorded[path] = (*known, fp)
                self._passed.pop(path, None)  # checked again, against this one too

    def check(self, path: str, current: Fingerprint) -> None:
        """Raise ``SourceChangedError`` if ``current`` differs from what ``path`` should be:
        from its recorded fingerprints, or from what it looked like when first seen (which
        catches what a recorded fingerprint leaves out, such as a same-size rewrite of a
        file recorded by size alone). The fingerprint that passed last is not compared
        again: every range of an object is served with the same one."""
        if self._passed.get(path) == current:
            return
        for fp in self._recorded.get(path, ()):
            if diff := differences(fp, current):
                raise SourceChangedError(
                    errno.ESTALE,
                    f"source file {path!r} changed since it was scanned ({diff}); its "
                    f"chunks can no longer be read as recorded. Rescan it, or open the "
                    f"store with verify='never' if the change is known to be harmless",
                )
        with self._lock:
            seen = self._seen.setdefault(path, current)
        if diff := differences(seen, current):
            raise SourceChangedError(
                errno.ESTALE,
                f"source file {path!r} changed while it was being read ({diff}); "
                f"reopen the store to read its new content",
            )
        self._passed[path] = current

    def knows(self, path: str) -> bool:
        """Whether ``path`` has a fingerprint to be checked against: recorded at its scan, or
        seen when this reader first checked it (so a data request can carry the check)."""
        return bool(self._recorded.get(path)) or path in self._seen

    def expected_etag(self, path: str) -> str | None:
        """The ETag ``path`` must have: recorded at scan time, or seen at first use."""
        for fp in self._recorded.get(path, ()):
            if fp.etag:
                return fp.etag
        seen = self._seen.get(path)
        return seen.etag if seen else None

    def status(self, path: str, extent: int, current: Fingerprint | BaseException) -> SourceStatus:
        """How ``path`` fares against its fingerprints and the ``extent`` its chunks reach."""
        recorded = self._recorded.get(path, ())
        first = recorded[0] if recorded else None
        if isinstance(current, FileNotFoundError):
            return SourceStatus(path, "missing", "not found", first)
        if isinstance(current, BaseException):
            return SourceStatus(path, "unreadable", str(current) or repr(current), first)
        for fp in recorded:
            if diff := differences(fp, current):
                return SourceStatus(path, "changed", diff, fp, current)
        if current.size is not None and current.size < extent:
            return SourceStatus(
                path,
                "truncated",
                f"{current.size} bytes, but chunks are referenced up to byte {extent}",
                first,
                current,
            )
        detail = "matches its fingerprint" if recorded else "no fingerprint recorded; long enough"
        return SourceStatus(path, "ok", detail, first, current)
