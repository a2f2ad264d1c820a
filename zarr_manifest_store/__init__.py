"""zarr-manifest-store: read archival HDF5 / netCDF files as Zarr v3 without copying them.

Scan files into chunk manifests (where every chunk's bytes live), combine them
virtually, store the result as a chunk-manifest document, and read it through
:class:`ManifestStore`, a read-only zarr-python store.
"""

from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.errors import ManifestError, SourceChangedError, UnsupportedDatasetError
from zarr_manifest_store.group import ManifestGroup
from zarr_manifest_store.manifest import ChunkManifest, ChunkRef
from zarr_manifest_store.sources import SourceStatus, VerifyReport
from zarr_manifest_store.store import ManifestStore

__all__ = [
    "ChunkManifest",
    "ChunkRef",
    "ManifestArray",
    "ManifestError",
    "ManifestGroup",
    "ManifestStore",
    "SourceChangedError",
    "SourceStatus",
    "UnsupportedDatasetError",
    "VerifyReport",
]
