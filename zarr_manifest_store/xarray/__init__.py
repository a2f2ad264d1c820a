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
  ``xr.open_dataset`` / ``xr.open_datatree`` (xarray finds it through the
  package's entry point); :mod:`.engine`: the ``virtual`` engine opens files
  as virtual datasets, also through ``xr.open_mfdataset``, whose dask blocks
  :mod:`.dask_blocks` reads back into ManifestArrays.
- :mod:`.datatree`: :func:`open_virtual_datatree`, every group of a file;
  :mod:`.tree_accessor`: ``tree.virtualize``.
- :mod:`.values` reads the values of small virtual arrays; :mod:`.virtual`
  says which variables are virtual.

Nothing below this package imports xarray (the command line above it may).
"""

from zarr_manifest_store.xarray.accessor import VirtualizeAccessor
from zarr_manifest_store.xarray.backend import ManifestBackendEntrypoint
from zarr_manifest_store.xarray.datatree import open_virtual_datatree
from zarr_manifest_store.xarray.engine import VirtualBackendEntrypoint
from zarr_manifest_store.xarray.mfdataset import open_virtual_mfdataset
from zarr_manifest_store.xarray.open import open_virtual_dataset, virtual_dataset
from zarr_manifest_store.xarray.tree_accessor import VirtualizeTreeAccessor

__all__ = [
    "ManifestBackendEntrypoint",
    "VirtualBackendEntrypoint",
    "VirtualizeAccessor",
    "VirtualizeTreeAccessor",
    "open_virtual_dataset",
    "open_virtual_datatree",
    "open_virtual_mfdataset",
    "virtual_dataset",
]
