"""``make demo`` / ``zarr-manifest demo``: a month of daily netCDF files read as one Zarr dataset.

1. writes a sample archive: daily netCDF-4 files of hourly 2 m temperature and
   packed precipitation on a 2.5° grid, zlib-compressed, with CF time, as a
   data centre publishes them;
2. scans and combines them with :func:`zarr_manifest_store.xarray.open_virtual_mfdataset`
   (what ``zarr-manifest scan`` does), recording where every chunk lies;
3. writes the chunk-manifest document;
4. reopens it with ``xr.open_dataset(..., engine="zarr_manifest")``, prints the
   dataset, and times that beside ``xr.open_mfdataset`` opening the files,
   then reads every value both ways and checks that they are identical.

The demo writes netCDF-4 with h5netcdf and times ``xr.open_mfdataset``, which
needs dask: ``pip install 'zarr-manifest-store[demo]'``.

>>> run(files=3)  # doctest: +SKIP
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

import numpy as np
import pandas as pd
import xarray as xr

from zarr_manifest_store.xarray import open_virtual_mfdataset

__all__ = ["run", "write_archive"]

LAT = np.linspace(90.0, -90.0, 73, dtype="float32")
LON = np.arange(0.0, 360.0, 2.5, dtype="float32")
HOURS = 24
TIME_CHUNK = 6
REPEATS = 3
"""Opening times are the best of this many runs."""


def write_archive(folder: str | os.PathLike[str], files: int = 30) -> list[Path]:
    """Write ``files`` daily netCDF-4 files ``era_2026-01-01.nc``, ... into ``folder``.

    Each holds 24 hourly steps of ``t2m`` (float32, K, chunks of 6 hours,
    zlib + shuffle) and ``tp`` (precipitation packed as int16 with
    ``scale_factor``, as ERA5 files are), on a 73 x 144 latitude-longitude
    grid, with time as "hours since 2026-01-01" (CF).

    >>> paths = write_archive("demo-archive", files=2)
    >>> [p.name for p in paths]
    ['era_2026-01-01.nc', 'era_2026-01-02.nc']
    """
    _require("h5netcdf")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(2026)
    lat, lon = np.deg2rad(LAT)[:, None], np.deg2rad(LON)[None, :]
    climate = 300.0 - 45.0 * np.sin(lat) ** 2 + 3.0 * np.cos(2 * lon) * np.cos(lat)
    paths = []
    for day in range(files):
        start = pd.Timestamp("2026-01-01") + pd.Timedelta(days=day)
        hours = np.arange(day * HOURS, (day + 1) * HOURS)
        diurnal = 4.0 * np.sin(2 * np.pi * hours / 24)[:, None, None] * np.cos(lat)
        t2m = climate + diurnal + rng.normal(0, 0.5, (HOURS, LAT.size, LON.size))
        tp = np.clip(rng.gamma(0.3, 4e-4, (HOURS, LAT.size, LON.size)) - 2e-4, 0, None)
        path = folder / f"era_{start:%Y-%m-%d}.nc"
        _day(start, t2m.astype("float32"), tp).to_netcdf(
            path, engine="h5netcdf", encoding=_encoding()
        )
        paths.append(path)
    return paths


def _day(start: pd.Timestamp, t2m: np.ndarray, tp: np.ndarray) -> xr.Dataset:
    """One day's file: hourly ``t2m`` and ``tp`` from ``start``, with CF attributes."""
    return xr.Dataset(
        {
            "t2m": (
                ("time", "lat", "lon"),
                t2m,
                {"units": "K", "long_name": "2 metre temperature"},
            ),
            "tp": (("time", "lat", "lon"), tp, {"units": "m", "long_name": "total precipitation"}),
        },
        coords={
            "time": ("time", pd.date_range(start, periods=HOURS, freq="h")),
            "lat": ("lat", LAT, {"units": "degrees_north", "standard_name": "latitude"}),
            "lon": ("lon", LON, {"units": "degrees_east", "standard_name": "longitude"}),
        },
        attrs={
            "Conventions": "CF-1.8",
            "title": "zarr-manifest-store demo: hourly surface fields",
            "source": "synthetic",
        },
    )


def _encoding() -> dict[str, dict[str, Any]]:
    """How a day's file stores its variables: CF time in hours, chunks of ``TIME_CHUNK``
    hours, zlib with shuffle, ``tp`` packed into int16 (as ERA5 files are)."""
    chunks = (TIME_CHUNK, LAT.size, LON.size)
    compress = {"zlib": True, "complevel": 4, "shuffle": True}
    return {
        "time": {"units": "hours since 2026-01-01", "calendar": "standard", "dtype": "int64"},
        "t2m": {"chunksizes": chunks, **compress},
        "tp": {
            "dtype": "int16",
            "scale_factor": 1e-6,
            "add_offset": 0.0,
            "_FillValue": -32767,
            "chunksizes": chunks,
            **compress,
        },
    }


def run(
    files: int = 30, keep: str | os.PathLike[str] | None = None, out: TextIO | None = None
) -> None:
    """Write a sample archive, scan it into a document, reopen it, and time both ways of opening.

    ``keep`` names a folder to write into and leave in place (by default a
    temporary folder, removed at the end).
    """
    out = out or sys.stdout
    if keep is not None:
        folder = Path(keep).absolute()
        if folder.exists() and any(folder.iterdir()):
            raise FileExistsError(
                f"{folder} is not empty: the demo keeps its files in a new or empty folder"
            )
        _demo(folder, files, out, kept=True)
        return
    with tempfile.TemporaryDirectory(prefix="zarr-manifest-demo-") as tmp:
        _demo(Path(tmp), files, out, kept=False)


def _demo(folder: Path, files: int, out: TextIO, *, kept: bool) -> None:
    _require("dask")

    def say(text: str = "") -> None:
        print(text, file=out)

    archive, document = folder / "archive", folder / "demo.zarr"
    say(
        f"zarr-manifest-store demo: {files} daily netCDF files read as one Zarr dataset, their data not copied"
    )
    say()
    paths = _write_and_store(archive, document, files, say)
    _reopen_and_compare(archive, document, paths, say)
    say()
    say("Now with your own files:")
    say("   zarr-manifest scan 'your/data/*.nc' -o yours.zarr")
    say("   zarr-manifest info yours.zarr")
    if kept:
        say(f"   zarr-manifest info {document}    # the demo's document, kept in {folder}")


def _write_and_store(
    archive: Path, document: Path, files: int, say: Callable[..., None]
) -> list[Path]:
    """Steps 1 to 3: the sample archive, scanned and combined, stored as ``document``."""
    paths, seconds = _timed(lambda: write_archive(archive, files))
    size = sum(p.stat().st_size for p in paths)
    say(
        f"1. Wrote a sample archive of {files} netCDF-4 files ({_mib(size)}, zlib-compressed)  [{seconds:.2f} s]"
    )
    say(f"   {archive}/{paths[0].name} ... {paths[-1].name}")

    ds, seconds = _timed(lambda: open_virtual_mfdataset(sorted(map(str, paths))))
    nrefs = ds.virtualize.nrefs
    say(f"2. Scanned and combined them  [{seconds:.2f} s]")
    say(
        '   ds = zms.open_virtual_mfdataset("archive/*.nc")    # combine="by_coords", as xarray does'
    )
    loaded = [str(d) for d in ds.dims if d in ds.indexes]
    say(f"   {nrefs} chunk references; the coordinates {', '.join(loaded)} loaded")

    _, seconds = _timed(lambda: ds.virtualize.to_zarr(document))
    files_written = [p for p in document.rglob("*") if p.is_file()]
    written = sum(p.stat().st_size for p in files_written)
    say(f"3. Wrote the chunk-manifest document  [{seconds:.2f} s]")
    say('   ds.virtualize.to_zarr("demo.zarr")')
    say(f"   {document}: {len(files_written)} files, {_kib(written)}")
    return paths


def _reopen_and_compare(
    archive: Path, document: Path, paths: list[Path], say: Callable[..., None]
) -> None:
    """Step 4: the document reopened with xarray, timed and read beside the files themselves."""

    def open_document() -> xr.Dataset:
        return xr.open_dataset(document, engine="zarr_manifest", allow=[archive], chunks={})

    def open_files() -> xr.Dataset:
        return xr.open_mfdataset(paths, engine="h5netcdf")

    best_document = _best(open_document)
    best_files = _best(open_files)
    opened = open_document()
    say("4. Reopened it with xarray:")
    say('   xr.open_dataset("demo.zarr", engine="zarr_manifest", allow=["archive/"], chunks={})')
    say()
    say(str(opened))
    say()

    reference = open_files()
    expected, read_files = _timed(lambda: reference.load())
    got, read_document = _timed(lambda: opened.load())
    dims = [d for d in got.dims if d in got.coords]
    names = [*got.data_vars, *dims, *(c for c in got.coords if c not in dims)]
    identical = [name for name in names if _same(got[name], expected[name])]
    differing = [name for name in names if name not in identical]

    mfdataset = f'xr.open_mfdataset({len(paths)} files, engine="h5netcdf")'
    manifest = 'xr.open_dataset("demo.zarr", engine="zarr_manifest")'
    width = max(len(mfdataset), len(manifest)) + 3
    say("Timings on this machine (the files were just written, so they sit in the OS page cache):")
    say(f"   opening: metadata and coordinates only, no data values read (best of {REPEATS} runs)")
    say(f"      {mfdataset:<{width}}{best_files * 1e3:8.1f} ms")
    say(
        f"      {manifest:<{width}}{best_document * 1e3:8.1f} ms   "
        f"({best_files / best_document:.0f}x faster)"
    )
    say(f"   reading every value with .load(): {_mib(got.nbytes)} decoded (one run each)")
    say(f"      {'from the netCDF files, through h5netcdf':<{width}}{read_files * 1e3:8.1f} ms")
    say(
        f"      {'from the same files, through the document':<{width}}{read_document * 1e3:8.1f} ms"
    )
    opened.close()
    reference.close()
    if differing:
        raise AssertionError(f"the document's values differ from the files' for {differing}")
    say(f"Values identical to xr.open_mfdataset's: yes ({', '.join(map(str, identical))})")


def _same(a: Any, b: Any) -> bool:
    a, b = np.asarray(a.values), np.asarray(b.values)
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return bool(np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))


def _timed[T](function: Callable[[], T]) -> tuple[T, float]:
    started = time.perf_counter()
    result = function()
    return result, time.perf_counter() - started


def _best(function: Callable[[], Any]) -> float:
    times = []
    for _ in range(REPEATS):
        result, seconds = _timed(function)
        result.close()
        times.append(seconds)
    return min(times)


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def _kib(n: int) -> str:
    return f"{n / 2**10:.1f} KiB"


def _require(module: str) -> None:
    if importlib.util.find_spec(module) is None:
        raise ImportError(
            f"the demo needs {module}: pip install 'zarr-manifest-store[demo]' "
            f"(h5netcdf writes the sample files, dask runs xr.open_mfdataset)"
        )
