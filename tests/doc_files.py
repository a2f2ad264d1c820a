"""The files the documentation's examples and the docstrings' doctests run against.

``data/era_2026-01-0{1,2,3}.nc``: three daily netCDF-4 files as ``zarr-manifest demo`` writes
them; ``stations.nc``: a small netCDF3 file; ``refs.json``: kerchunk references to the
first day (written for each copy, since they hold absolute paths).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import xarray as xr

import zarr_manifest_store as zms
from zarr_manifest_store.cli.demo import write_archive

DAYS = 3


def write_sample_folder(folder: Path) -> Path:
    """Fill ``folder`` with the sample files; returns it."""
    data = folder / "data"
    write_archive(data, files=DAYS)
    stations = xr.Dataset(
        {"t2m": (("time", "station"), np.arange(12, dtype="float32").reshape(3, 4) + 270)},
        coords={"time": ("time", np.arange(3), {"units": "days since 2026-01-01"})},
    )
    stations.to_netcdf(
        folder / "stations.nc", engine="scipy", format="NETCDF3_CLASSIC", unlimited_dims=["time"]
    )
    return folder


def copy_sample_folder(template: Path, destination: Path) -> Path:
    """A copy of the sample files in ``destination``, with ``refs.json`` pointing into it."""
    shutil.copytree(template, destination, dirs_exist_ok=True)
    zms.to_kerchunk(zms.scan(destination / "data" / "era_2026-01-01.nc"), destination / "refs.json")
    return destination
