"""The shortcuts that make scanning many small datasets cheap give exactly what the slow way
gives (issue #18): dataset properties read once, metadata and fill values memoised, manifest
checks skipped only where they cannot fail."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import zarr

import zarr_manifest_store as zms
from zarr_manifest_store.array import parse_array_metadata
from zarr_manifest_store.manifest import INLINE, MISSING, ChunkManifest
from zarr_manifest_store.manifest.columns import cells
from zarr_manifest_store.scan.hdf5.metadata import CHUNK_KEY_ENCODING, array_metadata, regular
from zarr_manifest_store.scan.hdf5.objects import Dataset, member


def _odd_shapes(path):
    with h5py.File(path, "w") as f:
        f["scalar"] = 1.5
        f.create_dataset("null", data=h5py.Empty("f4"))
        f.create_dataset("empty", shape=(0, 3), dtype="i2")
        f.create_dataset("grows", data=np.zeros((3, 4)), maxshape=(None, 4), chunks=(2, 2))
        f.create_dataset("fixed", data=np.arange(6, dtype=">u4").reshape(2, 3))
        f.create_dataset("text", data=np.array([b"ab", b"c"], dtype="S2"))
        f.create_dataset("pair", data=np.zeros(2, dtype=[("a", "<i2"), ("b", "<f8")]))
        f.create_dataset("strings", data=["x", "yz"], dtype=h5py.string_dtype())


def test_dataset_properties_read_once_equal_h5pys(tmp_path):
    path = tmp_path / "shapes.h5"
    _odd_shapes(path)
    with h5py.File(path, "r") as f:
        for name in f:
            ours, theirs = member(f["/"], name), f[name]
            assert isinstance(ours, Dataset)
            for prop in ("shape", "size", "maxshape", "name", "dtype"):
                assert getattr(ours, prop) == getattr(theirs, prop), (name, prop)
            if theirs.shape is not None:
                assert ours.ndim == theirs.ndim
                np.testing.assert_array_equal(ours[()], theirs[()])  # its own reading still works


def test_memoised_metadata_tells_apart_values_python_finds_equal():
    def doc(fill):
        return {
            "shape": [2],
            "data_type": "float64",
            "chunk_key_encoding": CHUNK_KEY_ENCODING,
            "fill_value": fill,
            "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
            "chunk_grid": regular((2,)),
            "attributes": {"n": 1},
        }

    positive, negative = array_metadata(doc(0.0)), array_metadata(doc(-0.0))  # 0.0 == -0.0
    assert np.signbit(negative.fill_value)
    assert not np.signbit(positive.fill_value)
    assert negative.to_dict() == parse_array_metadata(doc(-0.0)).to_dict()
    assert negative.attributes == {"n": 1}
    numpy_fill = array_metadata(doc(np.float64(2.5)))  # not marshallable: parsed directly
    assert numpy_fill.fill_value == 2.5


def test_fill_values_memoised_per_type_not_per_bytes(tmp_path):
    path = tmp_path / "fills.h5"
    one = np.float32(1.0)
    with h5py.File(path, "w") as f:  # the same four bytes as a float and as an integer
        f.create_dataset("f", shape=(4,), dtype="f4", fillvalue=one, chunks=(2,))
        f.create_dataset("i", shape=(4,), dtype="i4", fillvalue=one.view("i4"), chunks=(2,))
        f.create_dataset("g", shape=(4,), dtype="f4", fillvalue=-0.0, chunks=(2,))
        f.create_dataset("h", shape=(4,), dtype="f4", fillvalue=0.0, chunks=(2,))
    root = zarr.open_group(zms.ManifestStore(zms.scan(str(path))), mode="r")
    assert root["f"][...].tolist() == [1.0] * 4
    assert root["i"][...].tolist() == [int(one.view("i4"))] * 4
    assert np.signbit(root["g"][...]).all()
    assert not np.signbit(root["h"][...]).any()


def test_one_chunk_manifests_are_checked_as_any_other():
    zero = np.zeros((1,), np.uint64)
    with pytest.raises(ValueError, match="path_index 1 is outside the path table of 1"):
        ChunkManifest(paths=["a"], path_index=np.ones((1,), np.uint32), offsets=zero, lengths=zero)
    inline_mark = np.full((1,), INLINE, np.uint32)
    with pytest.raises(ValueError, match="inline data and the INLINE path_index"):
        ChunkManifest(paths=[], path_index=inline_mark, offsets=zero, lengths=zero)
    missing = np.full((1,), MISSING, np.uint32)
    with pytest.raises(ValueError, match="inline data and the INLINE path_index"):
        ChunkManifest(paths=[], path_index=missing, offsets=zero, lengths=zero, inline={(0,): b"x"})
    scalar = ChunkManifest(
        paths=[],
        path_index=np.array(INLINE, np.uint32),
        offsets=np.array(0, np.uint64),
        lengths=np.array(0, np.uint64),
        inline={(): b"abcd"},
    )
    assert scalar.inline == {(): b"abcd"}


def test_cells_lists_true_cells_in_c_order_as_python_ints():
    assert list(cells(np.array(True))) == [()]
    assert list(cells(np.array(False))) == []
    mask = np.zeros((2, 3, 2), bool)
    mask[1, 0, 1] = mask[0, 2, 0] = True
    found = list(cells(mask))
    assert found == [(0, 2, 0), (1, 0, 1)]
    assert all(type(c) is int for cell in found for c in cell)
