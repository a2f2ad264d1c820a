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

This module declares the format (how a store is recognised); ``scan_zarr`` lives in
:mod:`.scanner`, which the registry imports, with the format's libraries, when a
store is first scanned (``zms.scan_zarr`` does too).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from zarr_manifest_store.document.wire import EXTENSION, GUARD, PRIOR_ART
from zarr_manifest_store.scan.registry import Deferred, Folder, Format

__all__ = ["FORMAT"]


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
    scan=Deferred("zarr_manifest_store.scan.zarr.scanner:scan_zarr"),
    description="Zarr v2 and v3 stores (folders or prefixes)",
    sniff_folder=_is_zarr_store,
    folder_description="a Zarr v2 or v3 store (a zarr.json, .zgroup or .zarray at its root)",
)
"""Zarr stores in the format registry: recognised by the metadata objects at their root; the
scanner is imported when one is scanned."""
