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
import zarr

import zarr_manifest_store as zms
from zarr_manifest_store.scan.common import file_name, zarr_name


@pytest.mark.parametrize("name", [".", "..", "zarr.json", "%7Aarr.json", "__x", "%", "c"])
def test_every_name_maps_back_exactly(name):
    stored = zarr_name(name)
    assert stored not in (".", "..", "zarr.json")
    assert not stored.startswith("__")
    assert file_name(stored) == name


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
