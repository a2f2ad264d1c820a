"""The corpus checker's classes for what a scan warned it left out (issue #18).

An attribute with no exact JSON form (a region reference) is refused with a
warning naming it: when nothing else differs, the view is ``refused``, not a
``mismatch``; a silent omission, an extra attribute or another value stays one.
A neighbour of a refused variable that differs only as the reference would
without it (xarray decides coordinates over the whole group) is ``refused`` too.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import xarray as xr
from scipy.io import netcdf_file

import zarr_manifest_store as zms
from benchmarks.real_files import check, views

WARNED = ["<file>:/: attribute 'region' has no JSON form; left out"]


def _compare(expected_attrs: dict, actual_attrs: dict) -> tuple[str, str]:
    expected = xr.Dataset({"t": ("x", np.arange(2.0), expected_attrs)}, attrs=expected_attrs)
    actual = xr.Dataset({"t": ("x", np.arange(2.0), actual_attrs)}, attrs=actual_attrs)
    out = views.compare_datasets(expected, actual, "", WARNED)
    assert out["t"] == out["(attributes)"]
    return out["t"]


def test_only_warned_attributes_missing_is_refused() -> None:
    cls, reason = _compare({"units": "m", "region": object()}, {"units": "m"})
    assert (cls, reason) == ("refused", "attributes refused: region left out with a warning")


def test_warned_attribute_missing_beside_another_difference_is_a_mismatch() -> None:
    cls, reason = _compare({"units": "m", "region": 1}, {"units": "km"})
    assert (cls, reason) == ("mismatch", "attribute 'units': 'km' where 'm' was expected")
    cls, reason = _compare({"units": "m", "region": 1}, {})
    assert cls == "mismatch"
    assert "missing units silently" in reason
    cls, reason = _compare({"region": 1}, {"extra": 2})
    assert cls == "mismatch"
    assert "extra extra" in reason


def test_variables_zarr_reserves_are_compared_under_their_stored_names() -> None:
    expected = xr.Dataset({"__x": ("n", [1, 2]), "zarr.json": ("n", [3, 4])})
    actual = xr.Dataset({"%5F_x": ("n", [1, 2]), "%7Aarr.json": ("n", [3, 5])})
    out = views.compare_datasets(expected, actual, "", [])
    assert out["__x"] == ("equal", "")
    assert out["zarr.json"][0] == "mismatch"
    assert out["zarr.json"][1].startswith("values")
    assert "%5F_x" not in out


def test_a_streamed_netcdf3_files_records_are_the_reference_engines_limitation(tmp_path) -> None:
    path = tmp_path / "streamed.nc"
    with netcdf_file(path, "w") as f:
        f.createDimension("t", None)
        f.createDimension("n", 2)
        f.createVariable("a", "i4", ("t", "n"))[:3] = np.arange(6, dtype="i4").reshape(3, 2)
        f.createVariable("fixed", "f8", ("n",))[:] = [1.0, 2.0]
    complete = xr.open_dataset(path, engine="scipy").load()
    assert views.streamed_records(str(path), "netcdf3", complete) == frozenset()
    data = bytearray(path.read_bytes())
    data[4:8] = b"\xff\xff\xff\xff"  # numrecs: STREAMING
    path.write_bytes(bytes(data))
    reference = complete.isel(t=slice(0, 0))  # as netCDF-C showed a streamed file of the corpus
    assert views.streamed_records(str(path), "netcdf3", reference) == {"a"}
    ours = xr.open_dataset(zms.ManifestStore(zms.scan(str(path))), engine="zarr_manifest")
    xr.testing.assert_identical(ours.load(), complete)


REFUSED_NEIGHBOUR_SCRIPT = """
import sys, netCDF4, numpy as np
with netCDF4.Dataset(sys.argv[1], "w") as nc:
    nc.createDimension("x", 2)
    nc.createDimension("n", 3)
    nc.createDimension("len", 4)
    seq = nc.createVariable("seq", nc.createVLType(np.int32, "seq_t"), ("n", "len"))
    seq[0, 0] = np.arange(2, dtype="i4")  # no Zarr codec: refused, the only one on 'n'
    nc.createVariable("n", "f4", ("x",))[:] = [1.0, 2.0]  # a coordinate while 'n' is in use
    text = nc.createVariable("text", "S1", ("x", "len"))  # 'len' joined once 'seq' is gone
    text[:] = np.array([list(b"abcd"), list(b"efgh")], "S1")
"""


def test_a_neighbours_difference_that_only_a_refusal_makes_is_refused(tmp_path) -> None:
    path = tmp_path / "neighbours.nc"
    subprocess.run([sys.executable, "-c", REFUSED_NEIGHBOUR_SCRIPT, str(path)], check=True)
    with xr.open_dataset(path, engine="netcdf4") as expected:  # the reference, with 'seq'
        assert "n" in expected.coords
        assert expected["text"].dims == ("x", "len")
    with pytest.warns(UserWarning, match="left out dataset 'seq'"):
        store = zms.ManifestStore(zms.scan(str(path), on_unsupported="skip"))
    ours = xr.open_dataset(store, engine="zarr_manifest")
    assert "n" not in ours.coords  # as without 'seq'
    assert ours["text"].dims == ("x",)
    result = check.check_file(str(path))
    classes = {r["variable"]: (r["class"], r["reason"]) for r in result["views"] if "class" in r}
    for name in ("n", "text"):
        cls, reason = classes[name]
        assert cls == "refused"
        assert reason.startswith(f"{views.WHOLE_GROUP}: equal to h5netcdf's view without seq; ")
    assert classes["seq"][0] == "refused"
    assert {cls for cls, _ in classes.values()} <= {"equal", "refused", "open_zarr-differs"}
