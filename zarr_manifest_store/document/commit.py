"""Keep the writers of one document apart: its lock file, and the commit of its root metadata.

Appending and pruning hold the document's lock file while they work. It is
created only if absent, atomically: ``O_EXCL`` on a local file system, a
create-only PUT on object storage (``If-None-Match: *`` on S3 and Azure,
``ifGenerationMatch=0`` on GCS, through fsspec's ``mode="create"``), so of two
writers one gets it and the other fails at once, before writing anything.

The root ``zarr.json`` (whose consolidated metadata every reader opens) is
replaced last, in one rename or one PUT, so a reader sees the old state or the
new one. Before the PUT the root is checked unchanged since it was read: a
writer that ignored the lock (one removed by hand while its holder still ran,
or ``write_manifest(mode="w")`` at the same time) makes the commit fail instead
of losing the other's state.
"""

from __future__ import annotations

import contextlib
import datetime
import os
import secrets
import socket
from collections.abc import Iterator

from zarr_manifest_store.document.location import Location
from zarr_manifest_store.io.fingerprints import differences, fingerprint_from_info
from zarr_manifest_store.manifest import Fingerprint

__all__ = ["LOCK_FILE", "ChangedDocumentError", "commit_root", "locked", "root_version"]

LOCK_FILE = "append.lock"
"""The file an append (or a prune) holds in the document folder while it writes."""
ROOT = "zarr.json"


class ChangedDocumentError(FileExistsError):
    """Another writer replaced the document's root metadata while this one held the lock."""


@contextlib.contextmanager
def locked(location: Location, doing: str = "append to") -> Iterator[None]:
    """Hold the document's lock file while the block runs; refuse if another writer holds it."""
    if not location.exists(ROOT):
        raise FileNotFoundError(f"no chunk-manifest document at {location.url} to {doing}")
    stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    token = secrets.token_hex(8)
    text = f"pid {os.getpid()} on {socket.gethostname()} since {stamp} ({token})\n".encode()
    try:
        _create(location, text)
    except FileExistsError:
        raise FileExistsError(
            f"cannot {doing} {location.url}: another append to it is in progress (or a prune of "
            f"its parts: {_holder(location)}); retry once it has finished. If none is running "
            f"(one was killed; the document is intact: readers open its root metadata, which is "
            f"replaced last), remove {location.where(LOCK_FILE)}"
        ) from None
    try:
        yield
    finally:
        _release(location, text)


def _create(location: Location, data: bytes) -> None:
    """Write the lock file if it does not exist; raise ``FileExistsError`` if it does."""
    if location.local:
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        fd = os.open(os.path.join(location.url, LOCK_FILE), flags, 0o644)
        with open(fd, "wb") as f:
            f.write(data)
    else:
        location.fs.pipe_file(f"{location.root}/{LOCK_FILE}", data, mode="create")


def _release(location: Location, data: bytes) -> None:
    """Remove the lock file if it is still this writer's (one removed by hand and taken by
    another writer stays that writer's)."""
    with contextlib.suppress(FileNotFoundError):
        if location.read(LOCK_FILE, FileNotFoundError) == data:
            location.remove([LOCK_FILE])


def _holder(location: Location) -> str:
    try:
        held = location.read(LOCK_FILE, FileNotFoundError)[:200]
    except (OSError, ValueError):
        return "holder unknown"
    return held.decode("utf-8", "replace").strip() or "holder unknown"


def root_version(location: Location) -> Fingerprint | None:
    """What the root ``zarr.json`` looks like now (size, ETag or modification time); None for
    a local document, whose lock file alone keeps writers apart."""
    if location.local:
        return None
    path = f"{location.root}/{ROOT}"
    location.fs.invalidate_cache(path)
    return fingerprint_from_info(location.fs.info(path))


def commit_root(location: Location, data: bytes, read_at: Fingerprint | None) -> None:
    """Replace the root ``zarr.json`` by ``data``, if it still is as it was when read
    (``read_at``, from :func:`root_version`)."""
    if read_at is not None and (changed := differences(read_at, root_version(location))):
        raise ChangedDocumentError(
            f"cannot commit to {location.url}: its root metadata {location.where(ROOT)} changed "
            f"while this writer held the lock ({changed}): another writer ignored the lock, and "
            "its state is kept. Nothing this writer wrote is listed by the document; check "
            "what it holds now and retry"
        )
    location.write({ROOT: data})
