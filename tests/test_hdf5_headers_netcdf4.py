"""netCDF-4 variables described from their object headers (issue #18).

netCDF-C and h5netcdf track attribute creation order and give every variable a
``DIMENSION_LIST`` of object references: such variables take the header path, their
attributes in creation order and their dimensions named from the references, and the scan
equals the scan through h5py (names, dimension names, attributes and their order, values,
warnings). What the headers cannot answer exactly is h5py's: a
scale of two hard links, a reference to a deleted scale.
"""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import h5netcdf
import h5py
import numpy as np
import pytest
from test_hdf5_headers import assert_same_scan, described_from_headers

from zarr_manifest_store.scan.hdf5 import scan_file
from zarr_manifest_store.scan.hdf5.headers import FileBytes
from zarr_manifest_store.scan.hdf5.parsed import header_dataset

NETCDF_C_SCRIPT = """
import sys, netCDF4, numpy as np
with netCDF4.Dataset(sys.argv[1], "w") as nc:
    for name, size in (("time", None), ("x", 3), ("nchar", 4), ("lat", 2)):
        nc.createDimension(name, size)
    nc.title = "netCDF-4 by netCDF-C"
    t = nc.createVariable("time", "f8", ("time",))
    t.units = "days since 2000-01-01"
    t[:4] = np.arange(4.0)
    nc.createVariable("x", "i4", ("x",))[:] = [10, 20, 30]
    v = nc.createVariable("v", "f4", ("time", "x"), fill_value=np.float32(-1))
    v.zeta, v.alpha, v.mid = 1, "text", np.int16(3)  # created in another order than by name
    v[:2] = np.arange(6, dtype="f4").reshape(2, 3)  # shorter than its unlimited dimension
    for i, codes in enumerate((["i1", "u1", "i2"], ["u2", "i4", "u4"], ["i8", "u8", "f4"])):
        a = nc.createVariable(f"attrs{i}", "i2", ("x",))
        for code in codes:
            a.setncattr(f"a_{code}", np.array([1, 2], code))
        a[:] = [1, 2, 3]
    b = nc.createVariable("texts", "f8", ("x",))
    b.a_f8 = np.array([1.5, -2.0])
    b.text = "chars"
    b.setncattr_string("strings", ["one", "two"])
    b.setncattr_string("string", "one")
    b[:] = 1.0
    many = nc.createVariable("many", "f8", ("x",))  # past 8 attributes: dense storage
    for i in range(12):
        many.setncattr(f"m{i:02d}", i)
    many[:] = 1.0
    s = nc.createVariable("scalar", "i8", ())
    s.note = "a scalar"
    s[...] = 5
    c = nc.createVariable("chars", "S1", ("x", "nchar"))
    c[:] = netCDF4.stringtochar(np.array(["ab", "cde", "f"], "S4"))
    nc.createVariable("strs", str, ("x",))[:] = np.array(["a", "bb", "ccc"], object)
    nc.createVariable("lat", "f4", ("x",))[:] = [1, 2, 3]  # named like a dimension it is not on
    g = nc.createGroup("g")
    g.createDimension("y", 2)
    g.createVariable("gv", "f4", ("time", "y", "x"), zlib=True)[:3] = np.ones((3, 2, 3), "f4")
    g.createVariable("y", "f8", ("y",))[:] = [0.5, 1.5]
    d = g.createGroup("deeper").createVariable("d", "i4", ("y", "lat"))
    d[:] = np.arange(4).reshape(2, 2)
"""


def _every_dataset(path: Path) -> set[str]:
    """The paths of every link to a dataset (``visititems`` visits an object once)."""
    found: set[str] = set()

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Group):
            found.update(f"{obj.name.rstrip('/')}/{n}" for n in obj)

    with h5py.File(path, "r") as f:
        visit("/", f)
        f.visititems(visit)
        return {n for n in found if isinstance(f[n], h5py.Dataset)}


def _iterated_scales(path: Path, monkeypatch) -> list[str]:
    """The datasets whose scales a scan looks up through h5py (``H5DSiterate_scales``)."""
    asked: list[str] = []
    iterate = h5py.h5ds.iterate

    def counted(dsid, axis, func, *args):
        asked.append(h5py.h5i.get_name(dsid).decode())
        return iterate(dsid, axis, func, *args)

    monkeypatch.setattr(h5py.h5ds, "iterate", counted)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scan_file(str(path), on_unsupported="skip")
    return asked


def test_a_file_written_by_netcdf_c(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "netcdf-c.nc"
    subprocess.run([sys.executable, "-c", NETCDF_C_SCRIPT, str(path)], check=True)
    assert_same_scan(path, on_unsupported="skip")
    fast = described_from_headers(path)
    # variable-length strings are h5py's; every other variable the headers' (dense attributes too)
    assert _every_dataset(path) - fast == {"/strs"}
    assert "/_nc4_non_coord_lat" in fast
    assert _iterated_scales(path, monkeypatch) == ["/strs"]
    with h5py.File(path, "r") as f:  # the order checked is not the names' order
        assert list(f["v"].attrs)[2:5] == ["zeta", "alpha", "mid"]


@pytest.fixture
def h5netcdf_file(tmp_path: Path) -> Path:
    """A netCDF-4 file by h5netcdf, and datasets h5py attaches odd scales to."""
    path = tmp_path / "h5netcdf.nc"
    with h5netcdf.File(path, "w") as f:
        f.dimensions = {"x": 3, "time": None}
        f.attrs["title"] = "h5netcdf"
        f.create_variable("x", ("x",), "f8", data=[1.0, 2.0, 3.0])
        t = f.create_variable("time", ("time",), "i4", chunks=(4,))
        f.resize_dimension("time", 4)
        t[:] = np.arange(4)
        v = f.create_variable("v", ("time", "x"), "f4", chunks=(2, 3), fillvalue=np.float32(-9))
        v[:2] = np.ones((2, 3), "f4")
        v.attrs["zeta"] = np.int8(1)
        v.attrs["alpha"] = "text"
        v.attrs["mid"] = np.array([1.5, 2.5])
        f.create_variable("scalar", (), "i8", data=5).attrs["flags"] = np.array([1, 2], "i1")
        g = f.create_group("g")
        g.dimensions = {"y": 2}
        gv = g.create_variable("gv", ("time", "y", "x"), "f4", chunks=(2, 2, 3), compression="gzip")
        gv[:3] = np.ones((3, 2, 3), "f4")
        g.create_group("deeper").create_variable("d", ("y",), "u2", data=[1, 2])
    with h5py.File(path, "a") as f:
        f["x2"] = np.arange(3.0) * 2
        f["x2"].make_scale("x2")
        two = f.create_dataset("two", data=np.ones(3))  # two scales on its axis: the last names it
        two.dims[0].attach_scale(f["x"])
        two.dims[0].attach_scale(f["x2"])
        f["linked"] = np.arange(2.0)
        f["linked"].make_scale("linked")
        f["also"] = f["linked"]  # a scale of two hard links: HDF5 searches for its name
        f.create_dataset("by_linked", data=np.ones(2)).dims[0].attach_scale(f["linked"])
        f["gone"] = np.arange(5.0)
        f["gone"].make_scale("gone")
        f.create_dataset("dangling", data=np.ones(5)).dims[0].attach_scale(f["gone"])
        del f["gone"]  # its reference now leads nowhere
    return path


def test_a_file_written_by_h5netcdf(h5netcdf_file: Path, monkeypatch) -> None:
    assert_same_scan(h5netcdf_file, on_unsupported="skip")
    assert described_from_headers(h5netcdf_file) == _every_dataset(h5netcdf_file)
    # scales named from the headers, but for the scale of two links and the deleted one
    assert _iterated_scales(h5netcdf_file, monkeypatch) == ["/by_linked", "/dangling"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        group = scan_file(str(h5netcdf_file), on_unsupported="skip")
    assert [m for m in map(str, (w.message for w in caught)) if "'dangling'" in m]
    assert group["two"].metadata.dimension_names == ("x2",)
    assert group["v"].metadata.dimension_names == ("time", "x")
    assert group["g/gv"].metadata.dimension_names == ("time", "y", "x")
    assert list(group["v"].attributes)[1:4] == ["zeta", "alpha", "mid"]  # after _FillValue


def test_attributes_come_in_creation_order(tmp_path: Path) -> None:
    path = tmp_path / "ordered.h5"
    with h5py.File(path, "w", libver="latest") as f:
        x = f.create_dataset("x", data=np.arange(3), track_order=True)
        for name in ("zeta", "alpha", "mid"):
            x.attrs[name] = name
        del x.attrs["zeta"]
        x.attrs["zeta"] = 2  # created again: last
        dense = f.create_dataset("dense", data=np.arange(3), track_order=True)
        for i in range(12):
            dense.attrs[f"a{11 - i:02d}"] = i
    assert_same_scan(path)
    with h5py.File(path, "r") as f, open(path, "rb") as raw:
        assert list(f["x"].attrs) == ["alpha", "mid", "zeta"]
        info = f.id.links.get_info(b"x")
        ds = header_dataset(FileBytes.local(raw.fileno()), f, "/", "x", info.u)
        assert ds is not None
        assert list(ds.attributes) == ["alpha", "mid", "zeta"]
    assert described_from_headers(path) == {"/x", "/dense"}  # dense storage read too
