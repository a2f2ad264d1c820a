"""scan_zarr: a Zarr store's listing and metadata into references to its chunk objects (see the package)."""

from __future__ import annotations

import os
from collections.abc import Collection, Mapping
from typing import Any, Literal

from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.errors import UnsupportedDatasetError
from zarr_manifest_store.group import ManifestGroup
from zarr_manifest_store.io.paths import source_path
from zarr_manifest_store.scan.common import Refusals, dropped_names
from zarr_manifest_store.scan.zarr.hierarchy import Hierarchy, Node, read_hierarchy
from zarr_manifest_store.scan.zarr.listing import MAX_METADATA_BYTES, Listing, list_store
from zarr_manifest_store.scan.zarr.metadata import scan_array

__all__ = ["MAX_METADATA_BYTES", "scan_zarr"]


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
    dropped = dropped_names(drop_variables)
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
