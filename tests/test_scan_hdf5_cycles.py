"""Links that lead back to a group being walked, or soft links in a loop (issue #18).

Found by generating odd HDF5 files for the corpus checker: a hard or soft link
to a group that holds it made the scan recurse until ``RecursionError``, and
soft links pointing at each other raised HDF5's "too many links", each failing
the whole file. Each such link is now refused alone, named, and the rest kept.
"""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest
import zarr

import zarr_manifest_store as zms


@pytest.fixture
def cyclic(tmp_path):
    path = tmp_path / "cycles.h5"
    with h5py.File(path, "w") as f:
        a = f.create_group("a")
        a["data"] = np.arange(3)
        a["to_self"] = a  # hard links
        a["to_root"] = f["/"]
        a["soft_to_self"] = h5py.SoftLink("/a")
        f["b/one"] = h5py.SoftLink("/b/two")
        f["b/two"] = h5py.SoftLink("/b/one")
        f["b/data"] = np.arange(4.0)
    return path


CYCLES = {
    "a/to_self": "'/a' that holds it",
    "a/to_root": "'/' that holds it",
    "a/soft_to_self": "'/a' that holds it",
    "b/one": "soft links in a loop",
    "b/two": "soft links in a loop",
}


def test_each_cyclic_link_is_refused_alone(cyclic):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        group = zms.scan(str(cyclic), on_unsupported="skip")
    messages = [str(w.message) for w in caught if "left out" in str(w.message)]
    assert len(messages) == len(CYCLES)
    for name, reason in CYCLES.items():
        assert any(f"'{name}'" in m and reason in m for m in messages), name
    root = zarr.open_group(zms.ManifestStore(group), mode="r")
    np.testing.assert_array_equal(root["a/data"][:], np.arange(3))
    np.testing.assert_array_equal(root["b/data"][:], np.arange(4.0))


def test_raise_names_every_cyclic_link(cyclic):
    with pytest.raises(zms.UnsupportedDatasetError) as info:
        zms.scan(str(cyclic))
    for name in CYCLES:
        assert f"'{name}'" in str(info.value)


def test_a_subgroup_scan_that_links_to_the_root_ends(cyclic):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        group = zms.scan(str(cyclic), group="a", on_unsupported="skip")
    assert "data" in group.arrays
