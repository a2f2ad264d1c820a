"""Files of many small datasets (MATLAB v7.3, EEGLAB): scanned exactly, without zarr's
per-array costs (issue #18; timings in benchmarks/scan_many_datasets.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import zarr

import zarr_manifest_store as zms
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
