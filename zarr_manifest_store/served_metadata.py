"""How a ManifestStore serves the hierarchy's ``zarr.json`` documents.

Each node's metadata is built when first asked for and kept; a group's document
carries its descendants' consolidated (up to :data:`MAX_CONSOLIDATED_MEMBERS`),
so that opening costs one read, and a subgroup's is built when asked for, costing
what its subtree does: serving never costs more than the hierarchy's size per
request (kept for every group, it would repeat each node once per ancestor).

A node's typed attribute records (``cf.TYPED_ATTRIBUTES``) are not served: they are
the ``zarr_manifest`` engine's, which reads them from the node itself, and other
readers would show them as an attribute the source file does not have.
"""

from __future__ import annotations

import copy
import functools
import itertools
import json
from collections.abc import Mapping
from typing import Any

from zarr_manifest_store._zarr import ArrayV3Metadata, GroupMetadata
from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.cf import TYPED_ATTRIBUTES
from zarr_manifest_store.group import ManifestGroup, Node
from zarr_manifest_store.served import ServedArray

__all__ = ["MAX_CONSOLIDATED_MEMBERS", "METADATA_KEY", "ServedMetadata"]

METADATA_KEY = "zarr.json"
MAX_CONSOLIDATED_MEMBERS = 2_000
"""Most descendants a group's ``zarr.json`` consolidates. zarr parses every consolidated
member when it opens a group (about half a millisecond each); a larger hierarchy is served
without, so that opening reads only what is asked for (a file of 15,000 MATLAB cells opens
in milliseconds) and xarray, told so by ``supports_consolidated_metadata``, lists it."""


class ServedMetadata:
    """The ``zarr.json`` documents of a hierarchy's ``nodes`` (by path), its arrays as
    ``served`` presents them (the chunk grid a store serves may differ from the stored one)."""

    def __init__(self, nodes: Mapping[str, Node], served: Mapping[str, ServedArray]) -> None:
        self._nodes = nodes
        self._served = served
        self._built: dict[str, dict[str, Any]] = {}
        self._array_documents: dict[str, bytes] = {}

    @property
    def consolidated(self) -> bool:
        """Whether the root's document consolidates the whole hierarchy."""
        return len(self._nodes) - 1 <= MAX_CONSOLIDATED_MEMBERS

    def document(self, key: str) -> bytes | None:
        """The ``zarr.json`` served at ``key``, or None when ``key`` names no node's."""
        if not key.endswith(METADATA_KEY):  # a chunk key: the common case, answered first
            return None
        if key == METADATA_KEY:
            return self._root
        path, slash, name = key.rpartition("/")
        if not slash or name != METADATA_KEY or path not in self._nodes:
            return None
        return self._build(path)

    def parsed(self, path: str) -> ArrayV3Metadata | None:
        """Array ``path``'s metadata as zarr parses it from the document served, taken from the
        node without encoding and parsing it (zarr's parse costs about 0.17 ms an array). None
        where that would not be exact (parse the document): JSON does not give the attributes
        back as they are (typed attribute records are left out, as in the document). The chunk
        grid and byte order are those served (:meth:`ServedArray.served_parsed`). The copy has
        attributes of its own: zarr updates an array's attributes in place before it tries to
        write them."""
        metadata = self._nodes[path].metadata  # type: ignore[union-attr]
        attributes = {k: v for k, v in metadata.attributes.items() if k != TYPED_ATTRIBUTES}
        try:
            loaded = json.loads(json.dumps(attributes, allow_nan=False))
        except (TypeError, ValueError):
            return None
        if loaded != attributes:
            return None
        parsed = copy.copy(self._served[path].served_parsed(metadata))
        object.__setattr__(parsed, "attributes", loaded)  # frozen: zarr sets its fields so too
        return parsed

    @functools.cached_property
    def _root(self) -> bytes:
        """The root ``zarr.json``, the one every open reads: built once and kept."""
        return self._build("")

    def _build(self, path: str) -> bytes:
        node = self._nodes[path]
        if not isinstance(node, ManifestGroup):
            return self._array_document(path)
        walk = list(itertools.islice(node.walk(), MAX_CONSOLIDATED_MEMBERS + 1))
        if len(walk) > MAX_CONSOLIDATED_MEMBERS:
            return _json_document(self._metadata(path))
        below = f"{path}/" if path else ""
        members = {rel: self._metadata(below + rel) for rel, _ in walk}
        consolidated = {"kind": "inline", "must_understand": False, "metadata": members}
        return _json_document({**self._metadata(path), "consolidated_metadata": consolidated})

    def _array_document(self, path: str) -> bytes:
        """An array's ``zarr.json``, encoded once and kept: walking a hierarchy (xarray lists
        a group's members more than once) asks for each array's again."""
        document = self._array_documents.get(path)
        if document is None:
            document = self._array_documents[path] = _json_document(self._metadata(path))
        return document

    def _metadata(self, path: str) -> dict[str, Any]:
        """A node's own metadata as zarr writes it, built when first asked for and kept."""
        metadata = self._built.get(path)
        if metadata is None:
            metadata = _node_metadata(self._nodes[path]).to_dict()
            if TYPED_ATTRIBUTES in metadata.get("attributes", ()):
                attributes = dict(metadata["attributes"])
                del attributes[TYPED_ATTRIBUTES]
                metadata["attributes"] = attributes
            if path in self._served:
                metadata = self._served[path].served_metadata(metadata)
            self._built[path] = metadata
        return metadata


def _json_document(metadata: dict[str, Any]) -> bytes:
    """A ``zarr.json`` as zarr's ``to_buffer_dict`` writes one, but compact (Python's fast
    encoder; indenting takes its slow one) and without zarr's check of the
    ``array.rectilinear_chunks`` flag: whether to read a rectilinear grid is zarr's to decide."""
    return json.dumps(metadata, allow_nan=True, separators=(",", ":")).encode()


def _node_metadata(node: Node) -> Any:
    if isinstance(node, ManifestArray):
        return node.metadata
    return GroupMetadata(attributes=dict(node.attributes))
