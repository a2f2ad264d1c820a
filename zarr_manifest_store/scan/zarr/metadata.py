"""An array's metadata as Zarr v3, and how its chunk objects are named.

Zarr v3 arrays keep their metadata as it is (codecs, sharding included,
unchanged), but what a reader must understand and this package cannot pass
on is refused: a storage transformer (a chunk-manifest document is one: open
it with ``ManifestStore.open``) or an extension field marked
``must_understand``. Zarr v2 arrays are translated by
:func:`zarr_manifest_store.v2.v2_to_v3` (compressor and filters to codecs,
``order="F"`` to a transpose, ``_ARRAY_DIMENSIONS`` to ``dimension_names``, the
fill value to the CF ``_FillValue`` attribute xarray reads).
"""

from __future__ import annotations

from typing import Any

from zarr_manifest_store.array import ManifestArray, grid_shape, parse_array_metadata
from zarr_manifest_store.errors import UnsupportedDatasetError
from zarr_manifest_store.scan.zarr.chunks import KeyScheme, chunk_manifest
from zarr_manifest_store.scan.zarr.hierarchy import Node
from zarr_manifest_store.scan.zarr.listing import Listing
from zarr_manifest_store.v2 import v2_to_v3

__all__ = ["scan_array"]

V3_FIELDS = {
    "zarr_format",
    "node_type",
    "shape",
    "data_type",
    "chunk_grid",
    "chunk_key_encoding",
    "fill_value",
    "codecs",
    "attributes",
    "dimension_names",
    "storage_transformers",
}


def scan_array(listing: Listing, node: Node) -> ManifestArray:
    """The array ``node`` with a manifest of its chunk objects; ``UnsupportedDatasetError``
    naming the array where it cannot be read exactly."""
    name = node.path or "/"
    if node.metadata.get("zarr_format") == 3:
        metadata, scheme = _v3(name, node.metadata)
    else:
        metadata, scheme = _v2(name, node)
    try:
        parsed = parse_array_metadata(metadata)
    except ValueError as e:
        raise UnsupportedDatasetError(f"array {name!r}: {e}") from e
    manifest = chunk_manifest(listing, node.path, scheme, grid_shape(parsed))
    return ManifestArray(metadata=parsed, manifest=manifest)


def _v3(name: str, doc: dict[str, Any]) -> tuple[dict[str, Any], KeyScheme]:
    transformers = doc.get("storage_transformers") or []
    if transformers:
        names = [t.get("name") if isinstance(t, dict) else t for t in transformers]
        raise UnsupportedDatasetError(
            f"array {name!r} declares the storage transformer(s) {names}, which change where "
            f"its chunks are; a chunk-manifest document is read with "
            f"zms.ManifestStore.open, not scanned"
        )
    for key in sorted(set(doc) - V3_FIELDS):
        extension = doc[key]
        if not (isinstance(extension, dict) and extension.get("must_understand") is False):
            raise UnsupportedDatasetError(
                f"array {name!r} has the extension field {key!r}, which readers must "
                f"understand and this package does not"
            )
    metadata = {k: v for k, v in doc.items() if k in V3_FIELDS - {"storage_transformers"}}
    try:
        scheme = KeyScheme.of_v3(doc.get("chunk_key_encoding") or {})
    except ValueError as e:
        raise UnsupportedDatasetError(f"array {name!r}: {e}") from e
    return metadata, scheme


def _v2(name: str, node: Node) -> tuple[dict[str, Any], KeyScheme]:
    zarray = node.metadata
    separator = zarray.get("dimension_separator") or "."
    if separator not in (".", "/"):
        raise UnsupportedDatasetError(
            f"array {name!r}: dimension_separator {separator!r} is not one Zarr v2 defines"
        )
    return v2_to_v3(name, zarray, node.attributes), KeyScheme("", separator)
