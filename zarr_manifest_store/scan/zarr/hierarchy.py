"""The nodes of a Zarr store (groups and arrays) and their metadata, found from its listing.

A node is in the hierarchy if the store holds its metadata object
(``zarr.json``; ``.zarray`` or ``.zgroup`` for Zarr v2) and its parent is a
group of the hierarchy, as Zarr finds members. Consolidated metadata
(``.zmetadata``, or ``consolidated_metadata`` in the root ``zarr.json``) saves
reading each node's object, but is trusted only for nodes the store holds:
an array it lists whose metadata object is gone is reported (see
:attr:`Hierarchy.stale`), never read as fill values.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from zarr_manifest_store.errors import UnsupportedDatasetError
from zarr_manifest_store.scan.zarr.listing import Listing

__all__ = ["Hierarchy", "Node", "read_hierarchy"]

V2_FILES = {".zarray": "array", ".zgroup": "group"}


@dataclass(frozen=True)
class Node:
    """A group or array: its path from the store's root and its metadata documents.

    Zarr v3: ``metadata`` is the ``zarr.json`` document. Zarr v2: the ``.zarray``
    or ``.zgroup`` document, and ``attributes`` the ``.zattrs`` one.
    """

    path: str
    kind: Literal["array", "group"]
    metadata: dict[str, Any]
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Hierarchy:
    """Every node of a store, by path, in one Zarr format."""

    zarr_format: Literal[2, 3]
    nodes: dict[str, Node]
    stale: list[str]
    """Arrays the consolidated metadata lists but the store holds no metadata object for."""

    def children(self, path: str) -> list[Node]:
        """The members of group ``path``, sorted by name."""
        return self._members.get(path, [])

    @functools.cached_property
    def _members(self) -> dict[str, list[Node]]:
        """Each group's members, sorted by name: found in one pass over the nodes."""
        members: dict[str, list[Node]] = {}
        for path in sorted(self.nodes):
            if path:
                members.setdefault(path.rpartition("/")[0], []).append(self.nodes[path])
        return members


def read_hierarchy(listing: Listing, where: str) -> Hierarchy:
    """The nodes of the store ``listing`` lists (``where`` names it in errors)."""
    if listing.size_of("zarr.json") is not None:
        return _v3(listing, where)
    if listing.size_of(".zgroup") is not None or listing.size_of(".zarray") is not None:
        return _v2(listing, where)
    raise UnsupportedDatasetError(
        f"{where} is not a Zarr store: it has no zarr.json (Zarr v3), .zgroup or .zarray "
        f"(Zarr v2) at its root"
    )


def _v3(listing: Listing, where: str) -> Hierarchy:
    root = _document(listing.read(["zarr.json"])["zarr.json"], where, "zarr.json")
    consolidated = _v3_consolidated(root)
    paths = [
        key.removesuffix("zarr.json").rstrip("/")
        for key in listing.keys
        if key == "zarr.json" or key.endswith("/zarr.json")
    ]
    unread = [f"{p}/zarr.json" for p in paths if p and p not in consolidated]
    read = listing.read(unread)
    documents = {"": root}
    for path in paths:
        if path:
            key = f"{path}/zarr.json"
            known = consolidated.get(path)
            documents[path] = known if known is not None else _document(read[key], where, key)
    nodes = {}
    for path, doc in documents.items():
        kind = doc.get("node_type")
        if doc.get("zarr_format") != 3 or kind not in ("array", "group"):
            raise UnsupportedDatasetError(
                f"{where}: {path or '/'}/zarr.json is not Zarr v3 group or array metadata"
            )
        nodes[path] = Node(path, kind, doc)
    stale = [p for p, doc in consolidated.items() if p not in nodes and _is_array(doc)]
    return Hierarchy(3, _reachable(nodes), sorted(stale))


def _v3_consolidated(root: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The node documents of a root ``zarr.json``'s inline consolidated metadata."""
    block = root.get("consolidated_metadata")
    if not isinstance(block, dict) or not isinstance(block.get("metadata"), dict):
        return {}
    return {
        str(path).strip("/"): doc
        for path, doc in block["metadata"].items()
        if isinstance(doc, dict)
    }


def _v2(listing: Listing, where: str) -> Hierarchy:
    consolidated: dict[str, Any] = {}
    if listing.size_of(".zmetadata") is not None:
        index = _document(listing.read([".zmetadata"])[".zmetadata"], where, ".zmetadata")
        if isinstance(index.get("metadata"), dict):
            consolidated = index["metadata"]
    wanted = [key for key in listing.keys if key.rsplit("/", 1)[-1] in (*V2_FILES, ".zattrs")]
    read = listing.read(k for k in wanted if k not in consolidated)
    documents = {
        k: consolidated[k] if k in consolidated else _document(read[k], where, k) for k in wanted
    }
    nodes = {}
    for key, doc in documents.items():
        folder, _, name = key.rpartition("/")
        if name in V2_FILES:
            attributes = documents.get(f"{folder}/.zattrs" if folder else ".zattrs", {})
            nodes[folder] = Node(folder, V2_FILES[name], doc, dict(attributes))  # type: ignore[arg-type]
    stale = sorted(
        key.removesuffix("/.zarray")
        for key in consolidated
        if key.endswith(".zarray") and key not in documents
    )
    return Hierarchy(2, _reachable(nodes), stale)


def _reachable(nodes: dict[str, Node]) -> dict[str, Node]:
    """The nodes whose every ancestor is a group: those Zarr finds from the root."""

    def reachable(path: str) -> bool:
        while path:
            path = path.rpartition("/")[0]
            parent = nodes.get(path)
            if parent is None or parent.kind != "group":
                return False
        return True

    return {path: node for path, node in nodes.items() if reachable(path)}


def _is_array(doc: Any) -> bool:
    return isinstance(doc, dict) and doc.get("node_type") == "array"


def _document(raw: bytes, where: str, key: str) -> dict[str, Any]:
    """A metadata object's JSON document; refused naming the object if it is not one."""
    try:
        doc = json.loads(raw)
    except (ValueError, RecursionError) as e:
        raise UnsupportedDatasetError(f"{where}: {key} is not JSON: {e}") from e
    if not isinstance(doc, dict):
        raise UnsupportedDatasetError(f"{where}: {key} is not a JSON object")
    return doc
