"""An HDF5 file that HDF5 refuses to open is named in the error (issue #18).

Found while generating damaged files for the corpus checker: a file cut short
(an interrupted download) raised HDF5's own message, which does not say which
file of a collection it was.
"""

from __future__ import annotations

import h5py
import numpy as np
import pytest

import zarr_manifest_store as zms


def test_a_truncated_file_is_named(tmp_path):
    whole = tmp_path / "whole.h5"
    with h5py.File(whole, "w") as f:
        f.create_dataset("a", data=np.random.rand(20000), chunks=(1000,))
    cut = tmp_path / "cut.h5"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(OSError, match=r"cut\.h5: HDF5 cannot open it \(.*truncated file") as info:
        zms.scan(str(cut))
    assert isinstance(info.value.__cause__, OSError)
