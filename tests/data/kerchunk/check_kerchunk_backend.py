"""Check that kerchunk's own xarray backend reads what ``zms.to_kerchunk`` writes (run by hand).

kerchunk is never a test dependency, so this runs in two environments:

    .venv/bin/python tests/data/kerchunk/check_kerchunk_backend.py export /tmp/zms-refs
    /work/peers/.venv/bin/python tests/data/kerchunk/check_kerchunk_backend.py check /tmp/zms-refs

``export`` (this project's environment) exports references, JSON and parquet,
for: the MultiZarrToZarr fixture re-imported with ``scan_kerchunk`` (inline
zstd coordinates, a missing chunk), a netCDF3 file scanned with
``scan_netcdf3`` (record variables, a scalar, char data), and a single-day
fixture (raw inline coordinates, a missing chunk); beside each, the values
``ManifestStore`` reads, as netCDF. ``check`` (an environment with kerchunk)
opens every reference set with ``engine="kerchunk"`` and compares.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import xarray as xr

HERE = Path(__file__).parent


def export(out: Path) -> None:
    import os

    import zarr_manifest_store as zms
    from zarr_manifest_store.scan.kerchunk import scan_kerchunk
    from zarr_manifest_store.scan.netcdf3 import scan_netcdf3
    from zarr_manifest_store.writers.kerchunk import to_kerchunk

    out.mkdir(parents=True, exist_ok=True)
    os.chdir(HERE)  # the fixtures' urls are relative to this folder
    nc3 = out / "classic.nc"
    xr.Dataset(
        {
            "t": (("time", "x"), np.arange(8, dtype="f4").reshape(4, 2), {"_FillValue": 5.0}),
            "name": (("x", "strlen"), np.array([list(b"ab"), list(b"c\0")], dtype="S1")),
            "s": ((), 3.5),
        }
    ).to_netcdf(nc3, engine="scipy", format="NETCDF3_CLASSIC", unlimited_dims=["time"])
    groups = {
        "multizarr": scan_kerchunk("combined.json"),
        "netcdf3": scan_netcdf3(nc3),
        "inline": scan_kerchunk("day1.json"),
    }
    for name, group in groups.items():
        expected = xr.open_zarr(zms.ManifestStore(group), consolidated=False).load()
        expected.to_netcdf(out / f"{name}.expected.nc", engine="h5netcdf")
        to_kerchunk(group, out / f"{name}.json")
        to_kerchunk(group, out / f"{name}.parq")
    print(f"exported {len(groups)} reference sets, JSON and parquet, to {out}")


def check(out: Path) -> None:
    failures = 0
    for expected_file in sorted(out.glob("*.expected.nc")):
        name = expected_file.name.removesuffix(".expected.nc")
        expected = xr.open_dataset(expected_file, engine="h5netcdf").load()
        for suffix in ("json", "parq"):
            refs = out / f"{name}.{suffix}"
            try:
                got = xr.open_dataset(
                    str(refs), engine="kerchunk", storage_options={"remote_protocol": "file"}
                ).load()
                xr.testing.assert_equal(got, expected)
                print(f"ok    {refs.name}: kerchunk's backend reads it equal")
            except Exception as e:  # report every failure, not just the first
                failures += 1
                print(f"FAIL  {refs.name}: {type(e).__name__}: {e}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    {"export": export, "check": check}[sys.argv[1]](Path(sys.argv[2]))
