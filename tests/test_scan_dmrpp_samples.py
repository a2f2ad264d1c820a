"""scan_dmrpp on real DMR++ files that a package publishes: pydap's test sidecars, written by
OPeNDAP's build_dmrpp 3.21 for NASA-style netCDF-4 files.

pydap ships the sidecars without their data files, so each test stands a data file in of the
size the sidecar needs, with known bytes where the sidecar says a variable lies: what is read
back shows that the chunk references, types and byte order were taken from the sidecar exactly.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr
from samples import Pin, sample

import zarr_manifest_store as zms

PYDAP = Pin(
    "pydap",
    "3.5.11",
    "pydap-3.5.11-py3-none-any.whl",
    "17047c35989f84c1cb137771c5cf75348f220f5f7f49ecb04736a67b2b1daf26",
)
DMRS = "pydap/tests/data/dmrs"


def _sidecar(name: str, tmp_path: Path) -> Path:
    """The published sidecar, copied beside where its data file will be."""
    dest = tmp_path / name
    shutil.copy(sample(PYDAP, f"{DMRS}/{name}"), dest)
    return dest


def _data_file(path: Path, size: int, pieces: dict[int, bytes]) -> Path:
    with open(path, "wb") as f:
        f.truncate(size)
        for offset, data in pieces.items():
            f.seek(offset)
            f.write(data)
    return path


def test_air_sidecar(tmp_path):
    """air.nc.dmrpp: its placeholder href names the data file by the sidecar's own name."""
    dmrpp = _sidecar("air.nc.dmrpp", tmp_path)
    lat = np.linspace(75, 15, 25, dtype="<f4")
    air = np.arange(2920 * 25 * 53, dtype="<i2").reshape(2920, 25, 53) % 30000
    air[0, 0, 0] = -32767  # the HDF5 fill value, but no _FillValue attribute: not masked
    _data_file(
        tmp_path / "air.nc", 7_769_179, {5179: lat.tobytes(), 10283: air.tobytes()}
    )  # the time values end there
    g = zms.scan(dmrpp)
    assert sorted(g.arrays) == ["air", "lat", "lon", "time"]
    assert g["air"].metadata.dimension_names == ("time", "lat", "lon")
    assert g["air"].manifest.get((0, 0, 0)) == (str(tmp_path / "air.nc"), 10283, 7_738_000)
    assert g["air"].metadata.attributes["actual_range"] == [
        float(np.float32(185.1600037)),
        float(np.float32(322.1000061)),
    ]
    assert g["time"].metadata.attributes["calendar"] == "standard"
    assert "build_dmrpp_metadata" not in g.attributes  # the tool's, not the file's
    assert g.attributes["Conventions"] == "COARDS"
    ds = xr.open_zarr(zms.ManifestStore(g), consolidated=False, decode_times=False)
    np.testing.assert_array_equal(ds.lat.values, lat)
    assert ds.air.dtype == np.float64  # scale_factor 0.01, as xarray decodes the file
    np.testing.assert_allclose(ds.air.values[1], air[1] * 0.01)
    assert ds.air.values[0, 0, 0] == pytest.approx(-327.67)  # as xarray reads the file itself
    assert g["air"].metadata.fill_value == -32767


def test_grouped_sidecars(tmp_path):
    """air_groups.nc.dmrpp and TestGroupData.nc4.dmrpp: groups and dimensions of the root."""
    dmrpp = _sidecar("air_groups.nc.dmrpp", tmp_path)
    _data_file(tmp_path / "air_groups.nc", 8_000_000, {})
    g = zms.scan_dmrpp(dmrpp, group="test/group")
    assert g["air"].shape == (2920, 25, 53)
    dmrpp = _sidecar("TestGroupData.nc4.dmrpp", tmp_path)
    _data_file(tmp_path / "TestGroupData.nc4", 100_000, {})
    g = zms.scan_dmrpp(dmrpp)
    assert g["SimpleGroup"]["Temperature"].metadata.dimension_names == ("time", "Y", "X")
    assert g["data"]["air"].shape == (1, 25, 53)


def test_fill_value_only_sidecar(tmp_path):
    """A scalar never written: read as its fill value, with no data file needed; an
    attribute container (no JSON form) left out with a warning."""
    dmrpp = _sidecar("fill_value_scalar_no_chunks.nc4.dmrpp", tmp_path)
    with pytest.warns(UserWarning, match="container 'container'"):
        g = zms.scan_dmrpp(dmrpp)
    assert zarr.open_group(zms.ManifestStore(g), mode="r")["data"][()] == -999
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = xr.open_zarr(zms.ManifestStore(g), consolidated=False)
    assert np.isnan(ds.data.values)
