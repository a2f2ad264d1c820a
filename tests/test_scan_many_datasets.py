"""Files of many small datasets (MATLAB v7.3, EEGLAB): scanned exactly, without zarr's
per-array costs (issue #18; timings in benchmarks/scan_many_datasets.py)."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
import zarr
from dask.base import tokenize

import zarr_manifest_store as zms
import zarr_manifest_store.served_metadata as served_metadata
from zarr_manifest_store.array import parse_array_metadata
from zarr_manifest_store.scan.hdf5.metadata import CHUNK_KEY_ENCODING, array_metadata, regular

sys.path.insert(0, str(Path(__file__).parent.parent / "benchmarks"))
from scan_many_datasets import make_file


def _doc(attributes):
    return {
        "shape": [1, 4],
        "data_type": "float64",
        "chunk_key_encoding": CHUNK_KEY_ENCODING,
        "fill_value": 0.0,
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
        "chunk_grid": regular((1, 4)),
        "attributes": attributes,
        "dimension_names": ["a", "b"],
    }


def test_metadata_parsed_once_per_shape_keeps_each_arrays_attributes():
    first = array_metadata(_doc({"H5PATH": "/EEG/a", "n": [1, 2]}))
    second = array_metadata(_doc({"H5PATH": "/EEG/b"}))
    bare = array_metadata(_doc({}))
    assert first == parse_array_metadata(_doc({"H5PATH": "/EEG/a", "n": [1, 2]}))
    assert first.to_dict() == parse_array_metadata(first.to_dict()).to_dict()
    assert second.attributes == {"H5PATH": "/EEG/b"}
    assert bare.attributes == {}
    assert first.attributes == {"H5PATH": "/EEG/a", "n": [1, 2]}


def test_metadata_memo_keeps_documents_marshal_writes_alike_apart():
    # marshal writes a NumPy value as its raw bytes, so these two keys are the same bytes
    numpy_fill = {**_doc({}), "fill_value": np.float64(1.5)}
    raw_fill = {**_doc({}), "fill_value": np.float64(1.5).tobytes()}
    assert array_metadata(numpy_fill).fill_value == 1.5
    with pytest.raises((TypeError, ValueError)):
        array_metadata(raw_fill)  # zarr's own refusal, not the cached NumPy document's
    assert array_metadata(numpy_fill).fill_value == 1.5
    # JSON values marshal exactly: each parses as zarr parses it alone
    for fill in ("NaN", -0.0, 0.0, 1, True):
        doc = {**_doc({}), "data_type": "bool" if fill is True else "float64", "fill_value": fill}
        parsed, expected = array_metadata(doc), parse_array_metadata(doc)
        assert parsed.to_dict() == expected.to_dict()
        assert repr(parsed.fill_value) == repr(expected.fill_value)  # -0.0 is not 0.0


def test_many_compact_datasets_read_back_exactly(tmp_path):
    path = tmp_path / "many.h5"
    make_file(path, 30)
    root = zarr.open_group(zms.ManifestStore(zms.scan(str(path))), mode="r")
    with h5py.File(path) as f:
        names = list(f["#refs#"])
        for name in names:
            expected = f["#refs#"][name]
            actual = root[f"#refs#/{name}"]
            np.testing.assert_array_equal(actual[...], expected[()])
            assert actual.dtype == expected.dtype.newbyteorder("<")
            assert dict(actual.attrs) == {
                k: v.decode() if isinstance(v, bytes) else v.item()
                for k, v in expected.attrs.items()
            }


def _wide(n: int, path: str = "/data/f.bin") -> zms.ManifestGroup:
    """A group of ``n`` one-chunk arrays (the i-th float64 of ``path`` each) in a subgroup."""
    arrays = {}
    for i in range(n):
        manifest = zms.ChunkManifest.from_arrays(
            paths=np.array([[path]]), offsets=np.array([[8 * i]]), lengths=np.array([[8]])
        )
        arrays[f"v{i}"] = zms.ManifestArray(
            metadata=_doc({}) | {"shape": [1, 1], "chunk_grid": regular((1, 1))}, manifest=manifest
        )
    inner = zms.ManifestGroup(arrays=arrays, groups={}, attributes={})
    return zms.ManifestGroup(arrays={}, groups={"cells": inner}, attributes={"title": "wide"})


def test_a_wide_hierarchy_is_served_without_consolidated_metadata(monkeypatch):
    monkeypatch.setattr(served_metadata, "MAX_CONSOLIDATED_MEMBERS", 5)
    small, wide = zms.ManifestStore(_wide(4)), zms.ManifestStore(_wide(5))
    assert small.supports_consolidated_metadata
    assert not wide.supports_consolidated_metadata
    assert "consolidated_metadata" in json.loads(small.get_sync("zarr.json").to_bytes())
    root = json.loads(wide.get_sync("zarr.json").to_bytes())
    assert "consolidated_metadata" not in root
    assert root["attributes"] == {"title": "wide"}
    opened = zarr.open_group(wide, mode="r")
    assert sorted(opened["cells"].array_keys()) == [f"v{i}" for i in range(5)]
    assert opened["cells/v3"].shape == (1, 1)


def test_xarray_opens_a_wide_hierarchy_without_a_warning(monkeypatch, tmp_path):
    monkeypatch.setattr(served_metadata, "MAX_CONSOLIDATED_MEMBERS", 5)
    source = tmp_path / "f.bin"
    source.write_bytes(np.arange(6, dtype="<f8").tobytes())
    group = _wide(6, str(source))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ds = xr.open_zarr(zms.ManifestStore(group), group="cells", decode_times=False)
    assert [float(ds[f"v{i}"].values[0, 0]) for i in range(6)] == [0, 1, 2, 3, 4, 5]


def test_dask_names_a_store_without_pickling_its_hierarchy(monkeypatch):
    store, other = zms.ManifestStore(_wide(3)), zms.ManifestStore(_wide(3))

    def refuse(self):
        raise AssertionError("pickled")

    monkeypatch.setattr(zms.ManifestStore, "__getstate__", refuse)
    assert tokenize(store) == tokenize(store) != tokenize(other)
