"""The chunk-manifest document: a Zarr v3 hierarchy whose arrays' chunks are byte ranges elsewhere.

:func:`write_manifest` stores a hierarchy; :func:`open_document` (also
``ManifestStore.open``) opens one. The format is specified in
``spec/chunk-manifest.md``: ordinary ``zarr.json`` files with consolidated
metadata at the root, each array declaring the ``chunk-manifest`` storage
transformer, and its references in ``manifest.json`` (JSON encoding) or in a
``manifest/`` group of Zarr arrays (columnar encoding).
"""

from zarr_manifest_store.document.lazy import LazyChunkManifest
from zarr_manifest_store.document.read import open_document
from zarr_manifest_store.document.write import write_manifest

__all__ = ["LazyChunkManifest", "open_document", "write_manifest"]
