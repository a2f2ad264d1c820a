"""The xarray layer: virtual datasets whose variables are ManifestArrays, combined like files.

- :mod:`.open`: :func:`open_virtual_dataset` scans one file into an
  ``xr.Dataset`` whose variables wrap ManifestArrays (chunk references, no
  data), except the *loadable* variables — by default the dimension
  coordinates — which hold values decoded as ``xr.open_dataset`` decodes them.
- :mod:`.mfdataset`: :func:`open_virtual_mfdataset` does what
  ``xr.open_mfdataset`` does with such datasets: xarray's own
  ``combine_by_coords`` / ``combine_nested`` concatenate them (:mod:`.combine`
  makes virtual variables comparable), and NumPy's protocol turns that into
  manifest concatenation.
- :mod:`.accessor`: ``ds.virtualize`` turns a virtual dataset into a store, a
  chunk-manifest document or kerchunk references; it is registered with
  ``xr.register_dataset_accessor`` when this package is imported.
- :mod:`.backend`: the ``zarr_manifest`` engine opens a document with
  ``xr.open_dataset`` (xarray finds it through the package's entry point).
- :mod:`.values` reads the values of small virtual arrays; :mod:`.virtual`
  says which variables are virtual.

Nothing below this package imports xarray (the command line above it may).
"""

from zarr_manifest_store.xarray.accessor import VirtualizeAccessor
from zarr_manifest_store.xarray.backend import ManifestBackendEntrypoint
from zarr_manifest_store.xarray.mfdataset import open_virtual_mfdataset
from zarr_manifest_store.xarray.open import open_virtual_dataset, virtual_dataset

__all__ = [
    "ManifestBackendEntrypoint",
    "VirtualizeAccessor",
    "open_virtual_dataset",
    "open_virtual_mfdataset",
    "virtual_dataset",
]
