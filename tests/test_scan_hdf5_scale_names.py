"""Dimension scales are named from the links the scan has listed (issue #18).

Found by qa4sm-reader's validation results: 1,270 datasets that share one
scale took 21 s to scan (47x h5py's visit of the file), as HDF5 searched the
file for the path of each scale reached through a dimension list
(``H5Iget_name``): time quadratic in the number of datasets.
"""

from __future__ import annotations

import sys
import warnings

import h5py
import numpy as np
import pytest
import xarray as xr

import zarr_manifest_store as zms


def _shared_scales(path, *, alias: bool) -> None:
    with h5py.File(path, "w") as f:
        loc = f.create_dataset("loc", data=np.arange(5.0))
        loc.make_scale("loc")
        g = f.create_group("g")
        t = g.create_dataset("t", data=np.arange(3.0))
        t.make_scale("t")
        for i in range(50):
            g.create_dataset(f"v{i}", data=np.full(5, i, "f8")).dims[0].attach_scale(loc)
        w = g.create_dataset("w", data=np.ones((3, 5)))
        w.dims[0].attach_scale(t)
        w.dims[1].attach_scale(loc)
        if alias:
            f["alias"] = loc  # a second hard link: HDF5's search names the scale


@pytest.mark.parametrize("alias", [False, True], ids=["one-link", "two-links"])
def test_scales_have_the_names_h5netcdf_gives(tmp_path, monkeypatch, alias):
    path = tmp_path / "shared_scales.h5"
    _shared_scales(path, alias=alias)
    searches = []
    get_name = h5py.h5i.get_name

    def scan_asks_hdf5(obj):  # h5py's own calls name objects opened by path: no search
        if sys._getframe(1).f_globals["__name__"].startswith("zarr_manifest_store"):
            searches.append(obj)
        return get_name(obj)

    monkeypatch.setattr(h5py.h5i, "get_name", scan_asks_hdf5)
    group = zms.scan(str(path))
    monkeypatch.undo()
    assert bool(searches) == alias  # one hard link: named without searching the file
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with xr.open_dataset(path, engine="h5netcdf", group="g") as expected:
            expected = expected.load()
        actual = xr.open_dataset(zms.ManifestStore(group["g"]), engine="zarr_manifest").load()
    assert expected["w"].dims[0] == "t"
    xr.testing.assert_identical(actual, expected)
