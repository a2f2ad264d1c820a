"""Regenerate the kerchunk fixtures here with real kerchunk (never a test dependency).

Run from anywhere with an environment that has kerchunk, h5py, h5netcdf and
fastparquet, e.g. ``/work/peers/.venv/bin/python tests/data/kerchunk/make_references.py``.
It writes two small netCDF4 files of 60 hourly steps each, then the
references that kerchunk makes from them:

- ``day1.json`` / ``day2.json``: ``SingleHdf5ToZarr`` (small arrays inlined);
- ``combined.json``: ``MultiZarrToZarr`` along ``time`` (its combined
  coordinate, over 100 values, is inlined zstd-compressed), strings left out;
- ``combined.parq/``: the same combination in fsspec's parquet layout, by
  kerchunk's ``refs_to_dataframe`` (4 references per file).

Urls are relative (``day1.nc``): readers resolve them against the working
directory, as fsspec does, so the tests run from this folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import h5netcdf
import h5py
import numpy as np
from kerchunk.combine import MultiZarrToZarr, drop
from kerchunk.df import refs_to_dataframe
from kerchunk.hdf import SingleHdf5ToZarr

HERE = Path(__file__).parent


def write_day(name: str, first_day: int) -> None:
    """60 time steps of (2, 8): t2m float32 (zlib + shuffle, its last chunk never written), sp packed int16.

    Plus a variable-length string variable, which kerchunk embeds as an inline vlen-utf8 chunk.
    """
    rng = np.random.default_rng(first_day)
    t2m = rng.normal(280, 5, (60, 2, 8)).astype("f4")
    t2m[0, 1, 2] = -9999.0
    sp = rng.integers(0, 3000, (60, 2, 8)).astype("i2")
    with h5netcdf.File(HERE / name, "w", track_order=True) as f:
        f.attrs["title"] = f"kerchunk fixture from day {first_day}"
        f.dimensions = {"time": 60, "lat": 2, "lon": 8}
        time = f.create_variable("time", ("time",), "i4")
        time.attrs.update({"units": "hours since 2000-01-01", "calendar": "standard"})
        time[:] = np.arange(first_day * 24, first_day * 24 + 60)
        lat = f.create_variable("lat", ("lat",), "f8")
        lat.attrs["units"] = "degrees_north"
        lat[:] = [10.0, 20.0]
        lon = f.create_variable("lon", ("lon",), "f8")
        lon[:] = np.arange(0.0, 360.0, 45.0)
        zone = f.create_variable(
            "zone", ("lat",), h5py.string_dtype()
        )  # kerchunk embeds vlen strings
        zone[:] = np.array(["tropics", "subtropics"], dtype=object)
        var = f.create_variable(
            "t2m",
            ("time", "lat", "lon"),
            "f4",
            chunks=(10, 2, 8),
            compression="gzip",
            compression_opts=4,
            shuffle=True,
            fillvalue=np.float32(-9999.0),
        )
        var.attrs["units"] = "K"
        var[:50] = t2m[:50]
        packed = f.create_variable("sp", ("time", "lat", "lon"), "i2", chunks=(10, 2, 8))
        packed.attrs.update({"scale_factor": 0.5, "add_offset": 90000.0, "units": "Pa"})
        packed[:] = sp


def main() -> None:
    os.chdir(HERE)
    singles = []
    for name, day in (("day1.nc", 0), ("day2.nc", 3)):
        write_day(name, day)
        refs = SingleHdf5ToZarr(name, url=name, inline_threshold=60).translate()
        Path(name.replace(".nc", ".json")).write_text(json.dumps(refs, indent=1))
        singles.append(refs)
    combined = MultiZarrToZarr(
        singles,
        concat_dims=["time"],
        identical_dims=["lat", "lon"],
        inline_threshold=60,
        preprocess=drop("zone/"),  # else it stacks the time-less strings along time
    ).translate()
    Path("combined.json").write_text(json.dumps(combined, indent=1))
    refs_to_dataframe(combined, "combined.parq", record_size=4)


if __name__ == "__main__":
    main()
