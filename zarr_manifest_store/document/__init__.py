"""The chunk-manifest document: a Zarr v3 hierarchy whose arrays' chunks are byte ranges elsewhere.

:func:`write_manifest` stores a hierarchy, :func:`append_manifest` grows it along a
dimension (:func:`prune_parts` removes the parts it no longer lists); :func:`read_document` reads one
back (``ManifestStore.open`` serves what it reads). The format is specified in
``spec/chunk-manifest.md``: ordinary ``zarr.json`` files with consolidated
metadata at the root, each array declaring the ``chunk-manifest`` storage
transformer, and its references in ``manifest.json`` (JSON encoding) or in a
``manifest/`` group of Zarr arrays (columnar encoding). The package reads and
writes hierarchies only; it never builds a store.
"""

from zarr_manifest_store.document.append import append_manifest
from zarr_manifest_store.document.lazy import LazyChunkManifest
from zarr_manifest_store.document.prune import prune_parts
from zarr_manifest_store.document.read import Document, read_document
from zarr_manifest_store.document.write import write_manifest

__all__ = [
    "Document",
    "LazyChunkManifest",
    "append_manifest",
    "prune_parts",
    "read_document",
    "write_manifest",
]
