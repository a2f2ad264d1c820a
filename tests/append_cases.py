"""What the append tests of documents and of Icechunk repositories both build: the first
files combined, and a packed file whose packing differs from the others'."""

from __future__ import annotations

from pathlib import Path

import xarray as xr

import zarr_manifest_store as zms


def first_combined(files: list[Path], steps_written: int = 1) -> xr.Dataset:
    """The virtual dataset of the first ``steps_written`` files, combined by coordinates."""
    return zms.open_virtual_mfdataset([str(f) for f in files[:steps_written]], combine="by_coords")


def repacked_file(folder: Path, packed: list[Path]) -> Path:
    """``folder/packed9.nc``: the second of ``packed`` 100 days on, packed with another
    ``scale_factor`` (appending it must be refused)."""
    other = folder / "packed9.nc"
    other.parent.mkdir()
    ds = xr.open_dataset(packed[1]).load()
    ds["time"] = ds.time + 100
    packing = {"dtype": "int16", "scale_factor": 0.02, "add_offset": 10.0, "_FillValue": -32767}
    ds.to_netcdf(
        other, engine="h5netcdf", encoding={"p": {**packing, "chunksizes": (2, 3), "zlib": True}}
    )
    return other
