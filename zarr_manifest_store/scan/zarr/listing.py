"""Every object of a Zarr store, listed once: its key, its size and its fingerprint.

A chunk's length is the size its listing gives (the chunk is never read to
learn it), and its fingerprint is what the listing says too: size and
modification time for local files (one ``stat`` each, which listing a folder
costs anyway), size and ETag for objects in S3, GCS or Azure (the listing
carries both). So fingerprinting a store of 10,000 chunk objects costs no
request beyond the listing.
"""

from __future__ import annotations

import base64
import bisect
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import fsspec

from zarr_manifest_store.errors import UnsupportedDatasetError
from zarr_manifest_store.io.fingerprints import fingerprint_from_info
from zarr_manifest_store.io.paths import is_local, local_path, options_for, protocol_of
from zarr_manifest_store.manifest import Fingerprint

__all__ = ["MAX_METADATA_BYTES", "Listing", "list_store"]

MAX_METADATA_BYTES = 256 << 20
"""The default largest metadata object (``zarr.json``, ``.zarray``, ``.zmetadata``...) a scan
reads (``scan_zarr(..., max_metadata_bytes=)`` raises it)."""


@dataclass(frozen=True)
class Listing:
    """The objects under a store's root, sorted by key (relative to the root, ``/``-separated)."""

    root: str
    """The root as manifests name it: an absolute local path, or a URL."""
    keys: list[str]
    sizes: list[int]
    fingerprints: list[Fingerprint]
    fs: fsspec.AbstractFileSystem | None
    """The file system remote objects are read through (None for a local folder)."""
    fs_root: str
    max_metadata_bytes: int = MAX_METADATA_BYTES

    def under(self, prefix: str) -> range:
        """The positions of the keys that start with ``prefix``."""
        start = bisect.bisect_left(self.keys, prefix)
        stop = bisect.bisect_left(self.keys, prefix + "\U0010ffff", lo=start)
        return range(start, stop)

    def size_of(self, key: str) -> int | None:
        """The size of object ``key``, None if the store does not hold it."""
        i = bisect.bisect_left(self.keys, key)
        return self.sizes[i] if i < len(self.keys) and self.keys[i] == key else None

    def paths(self, positions: Iterable[int]) -> list[str]:
        """How a manifest names the objects at ``positions`` of the listing."""
        base = f"{self.root.rstrip('/')}/"
        if protocol_of(self.root) in ("http", "https"):
            return [base + quote(self.keys[i], safe="/") for i in positions]
        return [base + self.keys[i] for i in positions]

    def read(self, keys: Iterable[str]) -> dict[str, bytes]:
        """The bytes of metadata objects ``keys`` (held by the store), each at most
        ``max_metadata_bytes``."""
        wanted, limit = list(keys), self.max_metadata_bytes
        for key in wanted:
            size = self.size_of(key)
            if size is not None and size > limit:
                raise UnsupportedDatasetError(
                    f"{self.root.rstrip('/')}/{key} is a metadata object of {size} bytes, over "
                    f"the limit max_metadata_bytes={limit}; pass a larger max_metadata_bytes "
                    f"to scan_zarr to read it"
                )
        if self.fs is None:
            return {key: _read_local(os.path.join(self.root, key), limit) for key in wanted}
        remote = {f"{self.fs_root}/{key}": key for key in wanted}
        found = self.fs.cat(list(remote), on_error="return") if remote else {}
        read = {}
        for path, data in found.items():
            if isinstance(data, BaseException):
                raise data
            read[remote[path]] = data
        return read


def list_store(
    url: str,
    storage_options: Mapping[str, Any] | None,
    max_metadata_bytes: int = MAX_METADATA_BYTES,
) -> Listing:
    """List every object under the store at ``url`` (a local folder or a remote prefix)."""
    if is_local(url):
        root = os.path.abspath(local_path(url))
        if not os.path.isdir(root):
            raise FileNotFoundError(f"no Zarr store (folder) at {url!r}")
        keys, sizes, fingerprints = _walk_local(root)
        return Listing(root, keys, sizes, fingerprints, None, root, max_metadata_bytes)
    fs, fs_root = fsspec.core.url_to_fs(url, **options_for(url, storage_options))
    fs_root = fs_root.rstrip("/")
    try:
        found = fs.find(fs_root, detail=True, withdirs=False)
    except (FileNotFoundError, NotImplementedError) as e:
        found = {} if isinstance(e, FileNotFoundError) else None
    if not found:
        raise UnsupportedDatasetError(
            f"cannot list the Zarr store at {url!r}: its server lists no objects under it "
            f"(a Zarr store is scanned from the listing of its objects, which gives each "
            f"chunk's length without reading it; HTTP servers do not list prefixes)"
        )
    gcs = protocol_of(url) in ("gs", "gcs")
    rows = sorted(
        (path[len(fs_root) + 1 :], info)
        for path, info in found.items()
        if path.startswith(f"{fs_root}/") and info.get("type", "file") == "file"
    )
    return Listing(
        url.rstrip("/"),
        [key for key, _ in rows],
        [int(info.get("size") or 0) for _, info in rows],
        [fingerprint_from_info(_as_xml_api(info) if gcs else info) for _, info in rows],
        fs,
        fs_root,
        max_metadata_bytes,
    )


def _walk_local(root: str) -> tuple[list[str], list[int], list[Fingerprint]]:
    """Keys, sizes and fingerprints of every file below ``root``, sorted by key.

    Folders reached through symbolic links are followed once each (a link
    back up the tree is not followed again).
    """
    rows: list[tuple[str, int, Fingerprint]] = []
    seen: set[tuple[int, int]] = set()
    stack = [("", root)]
    while stack:
        prefix, folder = stack.pop()
        with os.scandir(folder) as entries:
            for entry in entries:
                try:
                    st = entry.stat()
                except FileNotFoundError:  # a dangling link, or removed while listed
                    continue
                if stat.S_ISDIR(st.st_mode):
                    if (st.st_dev, st.st_ino) not in seen:
                        seen.add((st.st_dev, st.st_ino))
                        stack.append((f"{prefix}{entry.name}/", entry.path))
                    continue
                fp = Fingerprint(size=st.st_size, mtime_ns=st.st_mtime_ns)
                rows.append((prefix + entry.name, st.st_size, fp))
    rows.sort(key=lambda row: row[0])
    return [r[0] for r in rows], [r[1] for r in rows], [r[2] for r in rows]


def _read_local(path: str, limit: int) -> bytes:
    with open(path, "rb") as f:
        return f.read(limit + 1)  # a file grown since it was listed is not read whole


def _as_xml_api(info: Mapping[str, Any]) -> dict[str, Any]:
    """gcsfs's listing with the ETag GCS's XML API gives (which the reader checks): the hex
    MD5 of the bytes; without an MD5, no ETag (the modification time stands in)."""
    md5 = info.get("md5Hash")
    return {**info, "etag": base64.b64decode(md5).hex() if md5 else None}
