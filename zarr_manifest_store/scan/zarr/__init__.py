"""scan_zarr: a Zarr v2 or v3 store (a local folder or a remote prefix) as a ManifestGroup.

Each chunk object of the store becomes a reference to the whole object: its
length is the size the store's listing gives, so no chunk is read. Zarr v3
arrays keep their metadata unchanged; a sharded array keeps its sharding codec
and each shard object is one chunk, which zarr reads through byte ranges (the
shard's index, then the inner chunks it wants), so a scan reads no shard
index. Zarr v2 metadata is translated to v3. The modules: ``listing`` (the
store's objects, sizes and fingerprints), ``hierarchy`` (groups and arrays,
consolidated metadata), ``metadata`` (an array's metadata as v3), ``chunks``
(chunk keys into a manifest).
"""

from __future__ import annotations

import json
import os
from collections.abc import Collection, Mapping
from typing import Any, Literal

from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.document.wire import EXTENSION, GUARD, PRIOR_ART
from zarr_manifest_store.errors import UnsupportedDatasetError
from zarr_manifest_store.group import ManifestGroup
from zarr_manifest_store.io.paths import source_path
from zarr_manifest_store.scan.common import Refusals
from zarr_manifest_store.scan.registry import Folder, Format
from zarr_manifest_store.scan.zarr.hierarchy import Hierarchy, Node, read_hierarchy
from zarr_manifest_store.scan.zarr.listing import MAX_METADATA_BYTES, Listing, list_store
from zarr_manifest_store.scan.zarr.metadata import scan_array

__all__ = ["FORMAT", "MAX_METADATA_BYTES", "scan_zarr"]


def scan_zarr(
    url: str | os.PathLike[str],
    *,
    group: str | None = None,
    drop_variables: Collection[str] | str | None = None,
    on_unsupported: Literal["raise", "skip"] = "raise",
    storage_options: Mapping[str, Any] | None = None,
    max_metadata_bytes: int = MAX_METADATA_BYTES,
) -> ManifestGroup:
    """Scan a Zarr v2 or v3 store into a :class:`ManifestGroup` of references to its chunk objects.

    ``url`` is a local folder or a remote prefix (``s3://``, ``gs://``,
    ``az://``, ... listed through fsspec with ``storage_options``). ``group``
    scans one group (``"forecast/surface"``); ``drop_variables`` names arrays
    or groups to leave out, as paths relative to it. An array that cannot be
    read exactly raises :class:`~zarr_manifest_store.UnsupportedDatasetError`
    (``on_unsupported="raise"``) or is left out with a warning (``"skip"``).
    A metadata object (``zarr.json``, ``.zmetadata``, ...) larger than
    ``max_metadata_bytes`` is refused, not read.

    >>> import zarr, numpy as np, zarr_manifest_store as zms
    >>> root = zarr.open_group("/tmp/scan_zarr_doc.zarr", mode="w", zarr_format=2)
    >>> root.create_array("t", data=np.arange(6.0), chunks=(4,))[:] = np.arange(6.0)
    >>> g = zms.scan_zarr("/tmp/scan_zarr_doc.zarr")
    >>> g["t"].manifest.nchunks
    2
    >>> zarr.open_group(zms.ManifestStore(g), mode="r")["t"][:].tolist()
    [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
    """
    root = source_path(url)
    refusals = Refusals(root, on_unsupported)
    listing = list_store(root, storage_options, max_metadata_bytes)
    hierarchy = read_hierarchy(listing, repr(root))
    start = (group or "").strip("/")
    node = hierarchy.nodes.get(start)
    if node is None or (start and node.kind != "group"):
        raise ValueError(f"{root!r} has no group {group!r}")
    dropped = {drop_variables} if isinstance(drop_variables, str) else set(drop_variables or ())
    base = f"{start}/" if start else ""
    for path in hierarchy.stale:
        if path.startswith(base) and not _dropped(path[len(base) :], dropped):
            refusals.add(
                path,
                "is listed by the consolidated metadata, but the store holds no metadata "
                "object for it (the consolidated metadata is out of date: consolidate it again)",
            )
    if node.kind == "array":
        name = os.path.basename(root.rstrip("/")).removesuffix(".zarr") or "data"
        array = _array(listing, node, refusals)
        result = ManifestGroup(arrays={name: array} if array is not None else {})
    else:
        result = _group(listing, hierarchy, start, base, dropped, refusals)
    refusals.finish()
    return result


def _group(
    listing: Listing,
    hierarchy: Hierarchy,
    path: str,
    base: str,
    dropped: set[str],
    refusals: Refusals,
) -> ManifestGroup:
    """The group at ``path``, its arrays and subgroups (``dropped`` ones left out)."""
    arrays, groups = {}, {}
    for child in hierarchy.children(path):
        name = child.path.rpartition("/")[2]
        if _dropped(child.path[len(base) :], dropped):
            continue
        if child.kind == "group":
            groups[name] = _group(listing, hierarchy, child.path, base, dropped, refusals)
        elif (array := _array(listing, child, refusals)) is not None:
            arrays[name] = array
    node = hierarchy.nodes[path]
    attributes = node.attributes if hierarchy.zarr_format == 2 else node.metadata.get("attributes")
    return ManifestGroup(arrays=arrays, groups=groups, attributes=dict(attributes or {}))


def _array(listing: Listing, node: Node, refusals: Refusals) -> ManifestArray | None:
    """The array ``node``, or None if it is refused (and recorded in ``refusals``)."""
    try:
        return scan_array(listing, node)
    except UnsupportedDatasetError as e:
        refusals.add(node.path, str(e).removeprefix(f"array {node.path!r}: "))
        return None


def _dropped(relative: str, dropped: set[str]) -> bool:
    """Whether ``relative`` (a path below the scanned group) is, or lies in, a dropped node."""
    parts = relative.split("/")
    return any("/".join(parts[: i + 1]) in dropped for i in range(len(parts)))


# ---------------------------------------------------------------------- recognising stores


def _is_zarr_store(folder: Folder) -> bool:
    """A Zarr store: a root ``zarr.json`` (not a chunk-manifest document's), ``.zgroup`` or
    ``.zarray``."""
    raw = folder.read("zarr.json")
    if raw is None:
        return folder.exists(".zgroup") or folder.exists(".zarray")
    try:
        root = json.loads(raw)
    except (ValueError, RecursionError):
        return False
    return isinstance(root, dict) and root.get("zarr_format") == 3 and not _is_document(root)


def _is_document(root: Mapping[str, Any]) -> bool:
    """Whether a root ``zarr.json`` is a chunk-manifest document's: it, or a node its
    consolidated metadata holds, declares the chunk-manifest extension."""
    block = root.get("consolidated_metadata")
    nodes = block.get("metadata") if isinstance(block, dict) else None
    documents = [root, *(nodes.values() if isinstance(nodes, dict) else ())]
    return any(_declares_manifest(doc) for doc in documents)


def _declares_manifest(doc: Any) -> bool:
    if not isinstance(doc, dict):
        return False
    transformers = doc.get("storage_transformers")
    named = [t.get("name") for t in transformers or () if isinstance(t, dict)]
    return GUARD in doc or EXTENSION in named or PRIOR_ART in named


FORMAT = Format(
    name="zarr",
    scan=scan_zarr,
    description="Zarr v2 and v3 stores (folders or prefixes)",
    sniff_folder=_is_zarr_store,
    folder_description="a Zarr v2 or v3 store (a zarr.json, .zgroup or .zarray at its root)",
)
"""Zarr stores in the format registry: recognised by the metadata objects at their root."""
