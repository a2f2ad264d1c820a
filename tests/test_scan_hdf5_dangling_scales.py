"""A dimension list that refers to a scale deleted since refuses only its dataset (issue #18).

Found by generating odd HDF5 files for the corpus checker: HDF5's
``H5DSiterate_scales`` raised a RuntimeError that failed the whole file.
"""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest
import zarr

import zarr_manifest_store as zms


@pytest.fixture
def dangling(tmp_path):
    path = tmp_path / "dangling.h5"
    with h5py.File(path, "w") as f:
        x = f.create_dataset("x", data=np.arange(3.0))
        x.make_scale("x")
        gone = f.create_dataset("gone", data=np.arange(4.0))
        gone.make_scale("y")
        d = f.create_dataset("d", data=np.ones((3, 4)))
        d.dims[0].attach_scale(x)
        d.dims[1].attach_scale(gone)
        del f["gone"]
        f.create_dataset("kept", data=np.arange(3.0)).dims[0].attach_scale(x)
    return path


def test_only_the_dataset_with_a_dangling_scale_is_refused(dangling):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        group = zms.scan(str(dangling), on_unsupported="skip")
    messages = [str(w.message) for w in caught if "left out" in str(w.message)]
    assert messages == [
        f"{dangling}: left out dataset 'd': has a dimension list that refers to a scale that "
        "no longer exists"
    ]
    root = zarr.open_group(zms.ManifestStore(group), mode="r")
    np.testing.assert_array_equal(root["kept"][:], np.arange(3.0))
    assert root["kept"].metadata.dimension_names == ("x",)


def test_a_scale_of_two_axes_is_refused_for_its_axes_not_its_name(tmp_path):
    """A 2-D dataset made a scale was named by its own name on both axes, and zarr's metadata
    check refused it as if h5py could not read it."""
    path = tmp_path / "grid_scale.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("grid", data=np.ones((2, 3))).make_scale("grid")
        f["plain"] = np.arange(4)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        group = zms.scan(str(path), on_unsupported="skip")
    messages = [str(w.message) for w in caught if "left out" in str(w.message)]
    assert messages == [
        f"{path}: left out dataset 'grid': has an axis of length 3 that no dimension matches"
    ]
    assert "plain" in group.arrays
