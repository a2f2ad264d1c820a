"""A truncated netCDF3 file refuses only the variables whose data runs past its end (issue #18).

Found by generating files for the corpus checker: one variable past the end of
the file made the whole scan fail, taking its complete neighbours with it.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import zarr
from scipy.io import netcdf_file

import zarr_manifest_store as zms


@pytest.fixture
def truncated(tmp_path):
    path = tmp_path / "cut.nc"
    with netcdf_file(path, "w") as f:
        f.createDimension("t", None)
        f.createDimension("x", 4)
        f.createVariable("early", "i4", ("x",))[:] = [1, 2, 3, 4]
        f.createVariable("late", "f8", ("x",))[:] = [5.0, 6.0, 7.0, 8.0]
        f.createVariable("rec", "f4", ("t",))[:3] = [1, 2, 3]
    data = path.read_bytes()
    path.write_bytes(data[:-2])  # the last record is cut short
    return path


def test_skip_keeps_the_complete_variables_and_names_the_cut_ones(truncated):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        group = zms.scan(str(truncated), on_unsupported="skip")
    messages = [str(w.message) for w in caught if "left out" in str(w.message)]
    assert sorted(group.arrays) == ["early", "late"]
    assert len(messages) == 1
    assert "'rec'" in messages[0]
    assert "truncated" in messages[0]
    root = zarr.open_group(zms.ManifestStore(group), mode="r")
    np.testing.assert_array_equal(root["early"][:], [1, 2, 3, 4])
    np.testing.assert_array_equal(root["late"][:], [5.0, 6.0, 7.0, 8.0])


def test_raise_names_the_cut_variable(truncated):
    with pytest.raises(zms.UnsupportedDatasetError, match=r"'rec' the file is truncated") as info:
        zms.scan(str(truncated))
    assert str(truncated) in str(info.value)
    assert "'early'" not in str(info.value)
