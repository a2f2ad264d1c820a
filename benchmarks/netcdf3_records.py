"""Reading every record variable of a netCDF3 file with many records (issue #18).

A netCDF3 record variable stores one slab per record, interleaved with the
other record variables, so its scan has one chunk per record. This writes a
file of ``--records`` records (a radar-like layout: a time coordinate and a
few record variables of a hundred gates) and times loading every variable:

- ``xr.open_dataset(path, engine="scipy").load()`` (the reference);
- ``xr.open_zarr(ManifestStore(scan))`` with default chunks (dask), and with
  ``chunks=None``.

Issue #18's targets: default chunks <= 5x scipy, ``chunks=None`` <= 2x. The
store serves record variables in chunks of many records
(``zarr_manifest_store.served_rows``), each read in one range of the file.

    .venv/bin/python benchmarks/netcdf3_records.py [--records 5000] [--repeat 3]
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import xarray as xr
from scipy.io import netcdf_file

import zarr_manifest_store as zms

GATES = 100
VARIABLES = ("reflectivity", "velocity", "width")


def make_file(path: Path, records: int) -> None:
    with netcdf_file(path, "w", version=2) as f:
        f.createDimension("time", None)
        f.createDimension("range", GATES)
        t = f.createVariable("time", "f8", ("time",))
        t[:records] = np.arange(records, dtype="f8")
        for i, name in enumerate(VARIABLES):
            v = f.createVariable(name, "f4", ("time", "range"))
            v[:records] = np.arange(records * GATES, dtype="f4").reshape(records, GATES) + i


def best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=5000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "records.nc"
        make_file(path, args.records)
        store = zms.ManifestStore(zms.scan(str(path)))

        def scipy_load() -> xr.Dataset:
            with xr.open_dataset(path, engine="scipy") as ds:
                return ds.load()

        expected = scipy_load()
        for chunks in ({}, None):
            actual = xr.open_zarr(store, chunks=chunks).load()
            xr.testing.assert_identical(actual, expected)
        reference = best(scipy_load, args.repeat)
        dask = best(lambda: xr.open_zarr(store).load(), args.repeat)
        plain = best(lambda: xr.open_zarr(store, chunks=None).load(), args.repeat)
        print(f"{args.records} records x {len(VARIABLES)} record variables of {GATES} gates")
        print(f"scipy open_dataset + load:      {reference:.3f} s")
        print(f"open_zarr (default chunks):     {dask:.3f} s ({dask / reference:.1f}x)")
        print(f"open_zarr (chunks=None):        {plain:.3f} s ({plain / reference:.1f}x)")


if __name__ == "__main__":
    main()
