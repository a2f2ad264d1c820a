"""Chunk-manifest documents as scan inputs: ``zms.scan("doc.zarr")`` returns the stored hierarchy.

A document is recognised by its root ``zarr.json``: a Zarr v3 node that
declares the chunk-manifest extension (on itself, or on a member of its
consolidated metadata). Its references are read under the rules of
``ManifestStore.open``: the document's folder and the prefixes in ``allow``,
every source path checked when the document is scanned (real paths for local
files), so the hierarchy it returns reads nothing the user did not allow.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.document import read_document, wire
from zarr_manifest_store.errors import ManifestError
from zarr_manifest_store.group import ManifestGroup
from zarr_manifest_store.io.allow import AllowList
from zarr_manifest_store.io.paths import is_local, local_path
from zarr_manifest_store.scan.registry import Folder, Format

__all__ = ["FORMAT", "scan_document"]


def scan_document(
    url: str | os.PathLike[str],
    *,
    group: str | None = None,
    drop_variables: Iterable[str] = (),
    allow: Sequence[str] = (),
    storage_options: Mapping[str, Any] | None = None,
) -> ManifestGroup:
    """The hierarchy a chunk-manifest document stores (its group ``group``), arrays in
    ``drop_variables`` left out.

    Sources outside the document's folder must lie under a prefix in ``allow``
    (``PermissionError`` otherwise, naming the folder to allow), as for
    ``ManifestStore.open``.

    >>> import zarr_manifest_store as zms
    >>> zms.write_manifest(zms.scan("data/era_2026-01-01.nc"), "scanned.zarr", mode="w")
    >>> sorted(zms.scan("scanned.zarr", allow=["data/"]).arrays)
    ['lat', 'lon', 't2m', 'time', 'tp']
    """
    document = read_document(url, storage_options=storage_options)
    root = document.root
    where = os.fspath(url)
    if isinstance(root, ManifestArray):
        raise ManifestError(
            f"{where}: the document's root is an array, not a group of arrays; open it with "
            "ManifestStore.open"
        )
    node = root
    for name in (group or "").strip("/").split("/") if group else ():
        if name not in node.groups:
            raise ValueError(f"{where}: the document has no group {group!r}")
        node = node.groups[name]
    dropped = set(drop_variables)
    node = ManifestGroup(
        arrays={k: a for k, a in node.arrays.items() if k not in dropped},
        groups=dict(node.groups),
        attributes=dict(node.attributes),
    )
    _check_sources(node, AllowList([*document.allow, *allow]))
    return node


def _check_sources(root: ManifestGroup, allow: AllowList) -> None:
    """Every source of the hierarchy is under an allowed prefix, also after resolving links."""
    for _, node in root.walk():
        if not isinstance(node, ManifestArray):
            continue
        for path in node.manifest.paths:
            allow.check(path)
            if is_local(path):
                allow.check(os.path.realpath(local_path(path)))


def _is_document(folder: Folder) -> bool:
    """Whether the folder's root ``zarr.json`` declares the chunk-manifest extension."""
    data = folder.read("zarr.json")
    if data is None or wire.GUARD.encode() not in data:
        return False
    try:
        meta = wire.loads(data, folder.path)
    except ManifestError:
        return False
    if not isinstance(meta, dict) or meta.get("zarr_format") != 3:
        return False
    members = (meta.get("consolidated_metadata") or {}).get("metadata") or {}
    nodes = [meta, *members.values()] if isinstance(members, dict) else [meta]
    return any(isinstance(n, dict) and wire.GUARD in n for n in nodes)


FORMAT = Format(
    name="chunk-manifest",
    scan=scan_document,
    description="chunk-manifest documents (a folder)",
    sniff_folder=_is_document,
    folder_description="a chunk-manifest document (a root zarr.json declaring the extension)",
)
"""Chunk-manifest documents in the format registry (tried before plain Zarr stores)."""
