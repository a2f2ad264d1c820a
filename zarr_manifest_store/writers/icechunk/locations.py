"""What Icechunk needs of a manifest's sources: URLs, virtual chunk containers and checksums.

Icechunk names a virtual chunk's source by URL (``file:///data/a.nc``,
``s3://bucket/a.nc``), reads it only through a virtual chunk container whose
URL prefix the repository declares, and refuses a source that changed when the
reference carries a checksum: the object's ETag, or a time it must not have
been modified after.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from urllib.parse import quote, urlsplit

from zarr_manifest_store.group import ManifestGroup
from zarr_manifest_store.io.paths import local_path, protocol_of
from zarr_manifest_store.manifest import Fingerprint

__all__ = [
    "Checksum",
    "check_containers",
    "checksum_of",
    "container_of",
    "containers_for",
    "declared_containers",
    "location_of",
    "relative_locations",
]

Checksum = str | datetime | None
"""An Icechunk checksum: an ETag, a last-modified time, or none."""

_URL_SAFE = "/:@!$&'()*+,;=-._~"
"""Characters kept as they are in a location; ``?``, ``#``, ``%`` and spaces are percent-encoded."""

_KEPT = re.compile(r"[A-Za-z0-9/:@!$&'()*+,;=\-._~]*")
"""A path of characters :data:`_URL_SAFE` keeps only (and letters and digits): nothing to encode."""

_PASSED_AS_IS = ("http", "https")
"""Schemes whose paths are URLs already (percent-encoded by whoever wrote them)."""


def location_of(path: str) -> str:
    """The Icechunk location of a manifest's source path: a URL, its key percent-encoded.

    >>> location_of("/data/a b.nc"), location_of("s3://bucket/x?.nc")
    ('file:///data/a%20b.nc', 's3://bucket/x%3F.nc')
    """
    if path.startswith("/") and "://" not in path and _KEPT.fullmatch(path):
        return "file://" + path  # the common absolute local path, as quote would give it
    scheme = protocol_of(path)
    if scheme in ("file", "local"):
        local = local_path(path)
        if not os.path.isabs(local):
            raise ValueError(
                f"source path {path!r} is relative: Icechunk locates sources by absolute URL; "
                "scan the files by absolute path, or rename the paths with "
                "ds.virtualize.rename_paths(os.path.abspath)"
            )
        return "file://" + quote(local, safe=_URL_SAFE)
    if scheme in _PASSED_AS_IS:
        return path
    bucket, _, key = path.partition("://")[2].partition("/")
    return f"{scheme}://{bucket}/{quote(key, safe=_URL_SAFE)}"


def container_of(location: str) -> str:
    """The container prefix a location needs: ``scheme://bucket/`` or, for files, its folder."""
    if location.startswith("file://"):
        return posixpath.dirname(location) + "/"
    parts = urlsplit(location)
    return f"{parts.scheme}://{parts.netloc}/"


def containers_for(locations: Iterable[str]) -> list[str]:
    """The fewest container prefixes covering ``locations``.

    One per bucket or host; local files get their common folder, unless that
    is the root, when each folder that holds files (and is not under another) gets one.
    """
    prefixes = {container_of(loc) for loc in locations}
    local = sorted(p for p in prefixes if p.startswith("file://"))
    remote = sorted(p for p in prefixes if not p.startswith("file://"))
    if len(local) > 1:
        common = posixpath.commonpath([p.removeprefix("file://") for p in local])
        if common != "/":
            local = ["file://" + common.rstrip("/") + "/"]
        else:
            local = [p for p in local if not any(p != q and p.startswith(q) for q in local)]
    return local + remote


def declared_containers(config: object) -> list[str]:
    """The container prefixes a repository config declares (Icechunk answers None for none)."""
    containers = getattr(config, "virtual_chunk_containers", None) or {}
    return sorted(c.url_prefix for c in containers.values())


def relative_locations(locations: Mapping[str, str], config: object) -> dict[str, str]:
    """``locations`` written ``vcc://name/rest`` where a named container covers them.

    Icechunk stores such a location as the container's name and the rest, and
    takes it about three times as fast as a whole URL (which it parses, for
    every chunk); it expands it back to the URL when reading.
    """
    containers = getattr(config, "virtual_chunk_containers", None) or {}
    named = sorted(
        ((c.url_prefix, c.name) for c in containers.values() if c.name),
        key=lambda item: -len(item[0]),
    )
    if not named:
        return dict(locations)
    out = {}
    for path, url in locations.items():
        match = next((item for item in named if url.startswith(item[0])), None)
        out[path] = url if match is None else f"vcc://{match[1]}/{url[len(match[0]) :]}"
    return out


def check_containers(locations: Iterable[str], declared: list[str], where: str) -> None:
    """Raise ``ValueError`` unless every location falls under a declared container prefix.

    The message lists the prefixes the repository lacks and how to declare them.
    """
    locations = list(locations)
    uncovered = [loc for loc in locations if not loc.startswith(tuple(declared))]
    if not uncovered:
        return
    needed = containers_for(uncovered)
    declare = "; ".join(
        f"config.set_virtual_chunk_container(icechunk.VirtualChunkContainer({p!r}, "
        f"{_store_hint(p)}))"
        for p in needed
    )
    raise ValueError(
        f"{where}: the repository declares no virtual chunk container for {len(uncovered)} "
        f"source(s), e.g. {uncovered[0]!r} (declared: {declared or 'none'}); it needs "
        f"{needed}. Nothing was written. Declare them in the repository config "
        f"({declare}) and save it (repo.save_config()), or open the repository with that "
        f"config; zms.icechunk_containers(group) lists what a hierarchy needs"
    )


def _store_hint(prefix: str) -> str:
    scheme = prefix.partition("://")[0]
    if scheme == "file":
        return f"icechunk.local_filesystem_store({prefix.removeprefix('file://')!r})"
    if scheme == "s3":
        return "icechunk.s3_store(region=...)"
    if scheme in ("gs", "gcs"):
        return "icechunk.gcs_store()"
    if scheme in ("http", "https"):
        return "icechunk.http_store()"
    return "icechunk.<scheme>_store(...)"


def checksum_of(fingerprint: Fingerprint | None) -> Checksum:
    """The Icechunk checksum of a scan-time fingerprint: its ETag, else its modification time.

    Icechunk keeps whole seconds and refuses an object modified *after* the
    time, so the time is rounded up: a change within the same second as the
    file's recorded modification goes unnoticed.
    """
    if fingerprint is None:
        return None
    if fingerprint.etag:
        return fingerprint.etag
    if fingerprint.mtime_ns is not None:
        return datetime.fromtimestamp(-(-fingerprint.mtime_ns // 10**9), UTC)  # exact ceiling
    return None


def group_locations(group: ManifestGroup) -> Mapping[str, str]:
    """Every source path of a hierarchy's manifests and its location."""
    found: dict[str, str] = {}
    for _, node in group.walk():
        manifest = getattr(node, "manifest", None)
        if manifest is not None:
            for path in manifest.paths:
                if path not in found:
                    found[path] = location_of(path)
    return found
