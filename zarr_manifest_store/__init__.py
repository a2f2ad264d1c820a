"""zarr-manifest-store: read archival HDF5 / netCDF files as Zarr v3 without copying them.

Scan files into chunk manifests (where every chunk's bytes live), combine them
virtually, store the result as a chunk-manifest document, and read it through
:class:`ManifestStore`, a read-only zarr-python store.

Importing the package runs :func:`zarr_manifest_store.registration.register`:
it registers the package's codec pipelines with zarr and adjusts two zarr
settings the user has not chosen (see that function). It also imports the
xarray layer (:mod:`zarr_manifest_store.xarray`), which registers the
``virtualize`` accessor on every ``xr.Dataset`` and ``xr.DataTree`` through
xarray's own ``register_dataset_accessor`` / ``register_datatree_accessor``;
xarray finds the ``zarr_manifest`` and ``virtual`` engines through the
package's ``xarray.backends`` entry points.
"""

from typing import Any

from zarr_manifest_store import registration
from zarr_manifest_store import scan as _scan_package
from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.document import append_manifest, prune_parts, write_manifest
from zarr_manifest_store.errors import ManifestError, SourceChangedError, UnsupportedDatasetError
from zarr_manifest_store.group import ManifestGroup
from zarr_manifest_store.io.sources import SourceStatus, VerifyReport
from zarr_manifest_store.manifest import ChunkManifest, ChunkRef
from zarr_manifest_store.ops import concat
from zarr_manifest_store.scan import scan
from zarr_manifest_store.scan.hdf5 import scan_hdf5
from zarr_manifest_store.scan.icechunk import scan_icechunk
from zarr_manifest_store.scan.kerchunk import scan_kerchunk
from zarr_manifest_store.scan.netcdf3 import scan_netcdf3
from zarr_manifest_store.store import ManifestStore
from zarr_manifest_store.writers.icechunk import icechunk_containers, to_icechunk
from zarr_manifest_store.writers.kerchunk import to_kerchunk
from zarr_manifest_store.xarray import (
    open_virtual_dataset,
    open_virtual_datatree,
    open_virtual_mfdataset,
)

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
    "append_manifest",
    "concat",
    "icechunk_containers",
    "open_virtual_dataset",
    "open_virtual_datatree",
    "open_virtual_mfdataset",
    "prune_parts",
    "scan",
    "scan_dmrpp",
    "scan_fits",
    "scan_grib",
    "scan_hdf5",
    "scan_icechunk",
    "scan_kerchunk",
    "scan_netcdf3",
    "scan_tiff",
    "scan_zarr",
    "to_icechunk",
    "to_kerchunk",
    "write_manifest",
]


def __getattr__(name: str) -> Any:
    """``scan_fits``, ``scan_tiff``, ``scan_grib``, ``scan_dmrpp``, ``scan_zarr``: imported with
    their formats' libraries when first asked for, so that importing the package loads none."""
    if name in __all__:  # the names not bound above
        return getattr(_scan_package, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


registration.register()  # zarr's codec pipelines and settings: the one thing importing the package does to zarr
