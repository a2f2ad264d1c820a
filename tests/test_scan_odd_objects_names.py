"""Node names no Zarr node can have, stored reversibly rather than failing the file (issue #18).

Found by generating netCDF-C files with odd names: a variable named
``zarr.json`` (or ``.`` / ``..`` in HDF5) made the whole scan fail with
``invalid member name``.
"""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest
import scipy.io
import xarray as xr
import zarr

import zarr_manifest_store as zms
from zarr_manifest_store.scan.common import file_name, zarr_name

NAMES = [
    ".",
    "..",
    "zarr.json",
    "%7Aarr.json",
    "__x",
    "%",
    "c",
    "a\\b",
    "\\",
    "__%5C\\",
    "\u00e9\\",
]


@pytest.mark.parametrize("name", NAMES)
def test_every_name_maps_back_exactly(name):
    stored = zarr_name(name)
    assert stored not in (".", "..", "zarr.json")
    assert not stored.startswith("__")
    assert "\\" not in stored  # zarr-python reads it as '/'
    assert file_name(stored) == name
    assert len({zarr_name(n) for n in NAMES}) == len(NAMES)


def test_nodes_named_with_a_backslash_are_read(tmp_path):
    """HyperSpy names a group ``... $t-\\lambda$``: zarr-python reads ``\\`` as ``/``, so the
    group's data was neither found nor named in a warning."""
    path = tmp_path / "backslash.h5"
    with h5py.File(path, "w") as f:
        f.create_group("thickness $t-\\lambda$").create_dataset("data", data=np.arange(4.0))
        f["a\\b"] = np.arange(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is left out
        group = zms.scan(str(path), on_unsupported="raise")
    root = zarr.open_group(zms.ManifestStore(group), mode="r")
    assert sorted(root.keys()) == ["%61%5Cb", "%74hickness $t-%5Clambda$"]
    with h5py.File(path) as f:
        np.testing.assert_array_equal(root["%61%5Cb"][:], f["a\\b"][:])
        stored = root["%74hickness $t-%5Clambda$"]
        np.testing.assert_array_equal(stored["data"][:], f["thickness $t-\\lambda$/data"][:])
    view = xr.open_dataset(
        zms.ManifestStore(group), engine="zarr_manifest", group="%74hickness $t-%5Clambda$"
    )
    expected = xr.open_dataset(
        path, engine="h5netcdf", group="thickness $t-\\lambda$", phony_dims="sort"
    )
    xr.testing.assert_identical(view.load(), expected.load())


def test_nodes_named_as_zarr_metadata_or_dots_are_kept(tmp_path):
    path = tmp_path / "odd.h5"
    with h5py.File(path, "w") as f:
        f["zarr.json"] = np.arange(3)
        f.create_group("..").create_dataset("v", data=[1, 2])
        f["plain"] = np.arange(2)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is left out
        group = zms.scan(str(path), on_unsupported="raise")
    root = zarr.open_group(zms.ManifestStore(group), mode="r")
    with h5py.File(path) as f:
        names = {zarr_name(n) for n in f}
        assert set(root.keys()) == names
        np.testing.assert_array_equal(root["%7Aarr.json"][:], f["zarr.json"][:])
        np.testing.assert_array_equal(root["%2E."]["v"][:], f[".."]["v"][:])


@pytest.fixture
def non_utf8_names(tmp_path):
    """A dataset, a group and an attribute whose names are not UTF-8 (Latin-1 ``é``)."""
    path = tmp_path / "latin1_names.h5"
    with h5py.File(path, "w") as f:
        ok = f.create_dataset("ok", data=np.arange(3))
        ok.attrs["units"] = "m"
        space = h5py.h5s.create(h5py.h5s.SCALAR)
        h5py.h5a.create(ok.id, b"caf\xe9", h5py.h5t.NATIVE_INT32, space).write(np.array(5, "i4"))
        data = h5py.h5d.create(
            f.id, b"caf\xe9", h5py.h5t.NATIVE_FLOAT, h5py.h5s.create_simple((3,))
        )
        data.write(h5py.h5s.ALL, h5py.h5s.ALL, np.arange(3, dtype="f4"))
        h5py.h5g.create(f.id, b"grp\xe9")
    return path


def test_names_that_are_not_utf8_are_refused_alone(non_utf8_names):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        group = zms.scan(str(non_utf8_names), on_unsupported="skip")
    messages = " | ".join(str(w.message) for w in caught)
    assert "left out dataset 'caf\ufffd': has a name that is not UTF-8 text" in messages
    assert "left out dataset 'grp\ufffd'" in messages
    assert "attribute 'caf\ufffd' has a name that is not UTF-8 text; left out" in messages
    root = zarr.open_group(zms.ManifestStore(group), mode="r")
    assert list(root.keys()) == ["ok"]
    assert dict(root["ok"].attrs) == {"units": "m"}
    np.testing.assert_array_equal(root["ok"][:], np.arange(3))
    with pytest.raises(zms.UnsupportedDatasetError, match="'caf\ufffd'"):
        zms.scan(str(non_utf8_names))


def test_netcdf3_variables_named_as_zarr_reserves_are_kept(tmp_path):
    """netCDF-3 names may start with ``__`` or hold a ``\\``: one such variable failed the whole
    file (``invalid member name``)."""
    path = tmp_path / "odd_names.nc"
    names = ["__x", "a\\b", "zarr.json", "%y", "ok"]
    with scipy.io.netcdf_file(path, "w") as f:
        f.createDimension("time", None)
        f.createDimension("x", 3)
        for i, name in enumerate(names):
            f.createVariable(name, "i4", ("x",))[:] = np.arange(3) + i
        f.createVariable("t\\1", "f8", ("time", "x"))[:] = np.ones((2, 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing is left out
        group = zms.scan(str(path), on_unsupported="raise")
    view = xr.open_dataset(zms.ManifestStore(group), engine="zarr_manifest").load()
    expected = xr.open_dataset(path, engine="scipy").load()
    renamed = expected.rename({name: zarr_name(name) for name in expected.variables})
    xr.testing.assert_identical(view, renamed)
    assert sorted(view.variables) == ["%25y", "%5F_x", "%61%5Cb", "%74%5C1", "%7Aarr.json", "ok"]
