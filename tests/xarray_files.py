"""netCDF-4 files for the xarray-layer tests, written by xarray itself (h5netcdf)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

LAT = np.linspace(-60.0, 60.0, 6)
LON = np.arange(0.0, 360.0, 45.0)


def daily_files(
    folder: Path,
    steps: Sequence[int] = (4, 4, 4),
    *,
    compress: bool = True,
    time_chunk: int = 2,
    units: str | Sequence[str] = "hours since 2020-01-01",
    extra: dict[str, Any] | None = None,
    seed: int = 0,
) -> list[Path]:
    """Files ``day000.nc``, ... of hourly ``t2m`` (time, lat, lon), consecutive in time.

    ``steps`` gives each file's number of time steps (ragged when they differ or
    are not multiples of ``time_chunk``); ``units`` the time units, one for all
    files or one per file; ``extra`` adds variables (name -> (dims, values,
    attrs)) to every file.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    per_file = [units] * len(steps) if isinstance(units, str) else list(units)
    paths = []
    start = pd.Timestamp("2020-01-01")
    for i, (n, unit) in enumerate(zip(steps, per_file, strict=True)):
        time = pd.date_range(start, periods=n, freq="h")
        start = time[-1] + pd.Timedelta(hours=1)
        t2m = rng.normal(280, 5, (n, LAT.size, LON.size)).astype("float32")
        t2m[0, 0, 0] = np.nan
        ds = xr.Dataset(
            {"t2m": (("time", "lat", "lon"), t2m, {"units": "K", "long_name": "temperature"})},
            coords={
                "time": time,
                "lat": ("lat", LAT, {"units": "degrees_north"}),
                "lon": ("lon", LON, {"units": "degrees_east"}),
            },
            attrs={"title": "daily test file", "file_number": i},
        )
        for name, (dims, values, attrs) in (extra or {}).items():
            ds[name] = (dims, values, attrs)
        encoding: dict[str, Any] = {
            "time": {"units": unit, "dtype": "int64"},
            "t2m": {"chunksizes": (time_chunk, 3, 4), "zlib": compress}
            | ({"complevel": 1} if compress else {}),
        }
        path = folder / f"day{i:03d}.nc"
        ds.to_netcdf(path, engine="h5netcdf", encoding=encoding)
        paths.append(path)
    return paths
