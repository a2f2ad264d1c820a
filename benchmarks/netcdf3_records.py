"""Reading every variable of a netCDF3 file with many records (issue #18).

A netCDF3 record variable stores one slab per record, interleaved with the
other record variables, so its scan has one chunk per record. This writes a
radar-like file like the ARM radar file of the issue (6,646 records by default,
500 gates, about 54 MiB): record variables of several types (a time coordinate,
float32 angles, int8 and int32 flags, an 8-character label, packed int16 moments
with ``_FillValue``, float32 and float64 fields and an int8 quality field of
``--gates`` gates) beside non-record variables (the range coordinate, per-sweep
numbers, a name and a scalar); ``--small`` writes the earlier 5,000-record,
100-gate file (8.3 MiB). It then times, from an open file to every variable in
memory:

- ``xr.open_dataset(path, engine="scipy").load()`` (the reference);
- ``xr.open_zarr(ManifestStore(group)).load()``, default chunks (dask), and
  with ``chunks=None``; the file is scanned once beforehand (the scan is shown
  apart), and each repeat opens a new store, so nothing is kept between them;
- the floor of zarr's and xarray's own cost: the same bytes in a zarr
  ``MemoryStore``, chunked as the store serves them, opened the same two ways.

Both sides decode alike (CF masking and scaling, times); before timing, the
values of every variable are checked against scipy's, exactly as stored
(``mask_and_scale=False``) and as decoded (packed variables decode to float64
here and float32 with scipy: values close, not identical). The runs alternate
(scipy, ours, the floor, ...) and the times are medians of ``--repeat`` runs,
wall clock and CPU time of the process.

Issue #18's targets: default chunks <= 5x scipy, ``chunks=None`` <= 2x; the
last lines print them, and each of ours against its floor. The store serves
record variables in chunks of many records (``zarr_manifest_store.served_rows``:
up to 16 MiB of the file, so one chunk a variable for ``--small``), every record
variable's chunk cut from a memory map of the file (``zarr_manifest_store.served_blocks``)
straight into zarr's output. ``--records 5000 --gates 10`` gives tiny records, where
zarr's and xarray's cost per variable (the floor) is most of it.

    .venv/bin/python benchmarks/netcdf3_records.py [--records 6646] [--gates 500] [--repeat 7]
    .venv/bin/python benchmarks/netcdf3_records.py --small  # 5,000 records, 100 gates
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import xarray as xr
import zarr
from scipy.io import netcdf_file

import zarr_manifest_store as zms

SWEEPS, LABEL = 10, 8


def make_file(path: Path, records: int, gates: int) -> None:
    """A radar-like netCDF3 file: record variables of several types, and non-record ones."""
    rng = np.random.default_rng(18)
    with netcdf_file(path, "w", version=2) as f:
        f.createDimension("time", None)
        f.createDimension("range", gates)
        f.createDimension("sweep", SWEEPS)
        f.createDimension("string_length", LABEL)
        f.createVariable("range", "f4", ("range",))[:] = np.arange(gates, dtype="f4") * 60
        f.createVariable("sweep_number", "i4", ("sweep",))[:] = np.arange(SWEEPS, dtype="i4")
        f.createVariable("instrument_name", "c", ("string_length",))[:] = np.array(
            list(b"XSAPR2\0\0"), "S1"
        )
        f.createVariable("latitude", "f8", ())[...] = 36.6
        time_ = f.createVariable("time", "f8", ("time",))
        time_.units = "seconds since 2026-01-01 00:00:00"
        time_[:records] = np.arange(records) * 0.25
        for name, dtype, values in (
            ("azimuth", "f4", rng.random(records, dtype="f4") * 360),
            ("elevation", "f4", rng.random(records, dtype="f4") * 20),
            ("antenna_transition", "i1", rng.integers(0, 2, records, dtype="i1")),
            ("ray_n_gates", "i4", np.full(records, gates, dtype="i4")),
        ):
            f.createVariable(name, dtype, ("time",))[:records] = values
        labels = np.array([list(f"ray{i:05d}".encode()[:LABEL]) for i in range(records)], "S1")
        f.createVariable("ray_label", "c", ("time", "string_length"))[:records] = labels
        for name in ("reflectivity", "velocity"):
            v = f.createVariable(name, "i2", ("time", "range"))
            v.scale_factor, v.add_offset = np.float32(0.01), np.float32(0.0)
            v._FillValue = np.int16(-32768)
            data = rng.integers(-3000, 7000, (records, gates), dtype="i2")
            data[::97, ::13] = -32768
            v[:records] = data
        width = f.createVariable("spectrum_width", "f4", ("time", "range"))
        width._FillValue = np.float32(-9999.0)
        width[:records] = rng.random((records, gates), dtype="f4")
        f.createVariable("differential_phase", "f8", ("time", "range"))[:records] = rng.random(
            (records, gates)
        )
        quality = f.createVariable("quality", "i1", ("time", "range"))
        quality[:records] = rng.integers(-100, 100, (records, gates), dtype="i1")


def memory_store(path: Path, store: zms.ManifestStore) -> zarr.storage.MemoryStore:
    """The file's variables, as stored, in a zarr MemoryStore chunked as ``store`` serves
    them, uncompressed: what zarr and xarray cost without reading a file."""
    served = zarr.open_group(store, mode="r")
    memory = zarr.storage.MemoryStore()
    with xr.open_dataset(path, engine="scipy", mask_and_scale=False, decode_times=False) as ds:
        encoding = {
            name: {"chunks": served[name].chunks, "compressors": None}
            for name in ds.variables
            if ds[name].ndim
        }
        ds.load().to_zarr(memory, zarr_format=3, encoding=encoding, consolidated=True)
    return memory


def median_times(
    cases: dict[str, Callable[[], object]], repeat: int
) -> dict[str, tuple[float, float]]:
    """Median wall-clock and CPU seconds of ``repeat`` calls of each case, in turn."""
    wall: dict[str, list[float]] = {name: [] for name in cases}
    cpu: dict[str, list[float]] = {name: [] for name in cases}
    for _ in range(repeat):
        for name, fn in cases.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return {name: (statistics.median(wall[name]), statistics.median(cpu[name])) for name in cases}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=6646)
    parser.add_argument("--gates", type=int, default=500)
    parser.add_argument("--small", action="store_true", help="5,000 records of 100 gates")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    if args.small:
        args.records, args.gates = 5000, 100
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "records.nc"
        make_file(path, args.records, args.gates)
        start = time.perf_counter()
        group = zms.scan(str(path))
        scanned = time.perf_counter() - start
        memory = memory_store(path, zms.ManifestStore(group))

        def scipy_load(**options: object) -> xr.Dataset:
            with xr.open_dataset(path, engine="scipy", **options) as ds:
                return ds.load()

        def ours(chunks: dict | None, **options: object) -> xr.Dataset:
            return xr.open_zarr(zms.ManifestStore(group), chunks=chunks, **options).load()

        for chunks in ({}, None):
            xr.testing.assert_identical(
                ours(chunks, mask_and_scale=False), scipy_load(mask_and_scale=False)
            )
            xr.testing.assert_allclose(ours(chunks), scipy_load())
        cases = {
            "scipy open_dataset + load": scipy_load,
            "open_zarr, default chunks": lambda: ours({}),
            "open_zarr, chunks=None": lambda: ours(None),
            "floor: MemoryStore, default": lambda: xr.open_zarr(memory, chunks={}).load(),
            "floor: MemoryStore, None": lambda: xr.open_zarr(memory, chunks=None).load(),
        }
        for fn in cases.values():  # warm up
            fn()
        times = median_times(cases, args.repeat)
        size = path.stat().st_size / 2**20
        records = [v for v in group.arrays if group[v].metadata.dimension_names[:1] == ("time",)]
        print(
            f"{args.records} records, {len(records)} record variables ({args.gates} gates), "
            f"{len(group.arrays) - len(records)} others; {size:.1f} MiB; scan {scanned:.3f} s"
        )
        reference = times["scipy open_dataset + load"]
        print("median of", args.repeat, "         wall (x scipy)      CPU (x scipy)")
        for name, (wall, cpu) in times.items():
            print(
                f"{name:29s} {wall:7.3f} s ({wall / reference[0]:4.1f}x)"
                f"  {cpu:7.3f} s ({cpu / reference[1]:4.1f}x)"
            )
        for name, target, floor in (
            ("open_zarr, default chunks", 5, "floor: MemoryStore, default"),
            ("open_zarr, chunks=None", 2, "floor: MemoryStore, None"),
        ):
            wall, cpu = times[name]
            print(
                f"target {name} <= {target}x scipy: wall {wall / reference[0]:.2f}x, "
                f"CPU {cpu / reference[1]:.2f}x (x its floor: wall {wall / times[floor][0]:.2f}, "
                f"CPU {cpu / times[floor][1]:.2f})"
            )


if __name__ == "__main__":
    main()
