"""Scanner helpers: attributes decoded to JSON, _FillValue encoded as xarray's Zarr backend reads it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from xarray.backends.zarr import FillValueCoder

from zarr_manifest_store.cf import fill_value_attribute, json_attribute
from zarr_manifest_store.io.paths import source_path


@pytest.mark.parametrize(
    ("value", "dtype"),
    [
        (np.float32(-9999.0), "float32"),
        (np.nan, "float64"),
        (np.inf, "float16"),
        (-32767, "int16"),
        (65535, "uint16"),
        (True, "bool"),
        (1 + 2j, "complex64"),
    ],
)
def test_fill_value_attribute_round_trips_through_xarrays_decoder(value, dtype):
    encoded = fill_value_attribute(value, np.dtype(dtype))
    decoded = FillValueCoder.decode(encoded, np.dtype(dtype))
    if isinstance(decoded, float) and math.isnan(decoded):
        assert math.isnan(value)
    else:
        assert decoded == value


def test_json_attribute_decodes_hdf5_values():
    assert json_attribute(b"degrees_north") == "degrees_north"
    assert json_attribute(np.array([1.5], dtype="f4")) == 1.5
    assert json_attribute(np.array([1, 2], dtype="i2")) == [1, 2]
    assert json_attribute(np.array([b"a", b"b"], dtype=object)) == ["a", "b"]
    assert math.isnan(json_attribute(np.float64("nan")))
    assert json_attribute(np.int64(3)) == 3
    assert json_attribute("text") == "text"


def test_source_path_is_absolute_for_local_files(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert source_path("f.nc") == str(tmp_path / "f.nc")
    assert source_path("s3://bucket/f.nc") == "s3://bucket/f.nc"
    assert source_path("file:///data/f.nc") == "file:///data/f.nc"


@pytest.mark.parametrize("dtype", ["S2", "U3", "O", "T"])
def test_text_and_bytes_fill_values_have_no_attribute(dtype):
    # xarray's Zarr v3 backend cannot decode them: the value stays in the Zarr fill_value only
    assert fill_value_attribute(b"x" if dtype == "S2" else "x", np.dtype(dtype)) is None


def test_string_variables_with_a_fill_value_open_in_xarray(tmp_path):
    import h5py
    import xarray as xr

    import zarr_manifest_store as zms

    path = tmp_path / "strings.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("c", data=np.array([b"ab", b"cd"])).attrs["_FillValue"] = np.array([b"zz"])
        f.create_dataset("u", data=np.array(["é", "x"], dtype=h5py.string_dtype()))
        f["u"].attrs["_FillValue"] = "none"
    ds = xr.open_zarr(zms.ManifestStore(zms.scan_hdf5(path))).load()
    assert ds["c"].values.tolist() == [b"ab", b"cd"]
    assert ds["u"].values.tolist() == ["é", "x"]
