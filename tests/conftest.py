"""Shared fixtures: small HDF5 files generated on the fly."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest


@pytest.fixture
def gzip_shuffle_file(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """An HDF5 file with a (12, 10) float32 dataset 't2m', chunks (4, 5), gzip + shuffle."""
    data = np.random.default_rng(0).normal(280, 10, size=(12, 10)).astype("float32")
    path = tmp_path / "gzip_shuffle.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "t2m", data=data, chunks=(4, 5), compression="gzip", shuffle=True, fillvalue=-9999.0
        )
    return path, data
