"""ManifestArray and ManifestGroup: the in-memory model of a virtual hierarchy."""

from __future__ import annotations

import operator
import pickle

import numpy as np
import pytest
import zarr
from helpers import array_metadata
from zarr.core.metadata.v3 import ArrayV3Metadata

from zarr_manifest_store import ChunkManifest, ManifestArray, ManifestGroup
from zarr_manifest_store.array import HANDLED_FUNCTIONS, implements, parse_array_metadata


def manifest(grid: tuple[int, ...]) -> ChunkManifest:
    paths = np.full(grid, "f.nc")
    return ChunkManifest.from_arrays(
        paths=paths, offsets=np.zeros(grid, int), lengths=np.ones(grid, int)
    )


def test_array_from_dict_and_from_metadata_object():
    meta = array_metadata(
        (10, 6), (4, 3), "int16", dimension_names=["y", "x"], attributes={"units": "m"}
    )
    a = ManifestArray(metadata=meta, manifest=manifest((3, 2)))
    assert a.shape == (10, 6)
    assert a.ndim == 2
    assert a.dtype == np.dtype("int16")
    assert a.chunk_sizes == ((4, 4, 4), (3, 3))
    assert a.dimension_names == ("y", "x")
    assert a.attributes == {"units": "m"}
    assert a.nbytes == 120
    assert isinstance(a.metadata, ArrayV3Metadata)
    b = ManifestArray(metadata=a.metadata, manifest=a.manifest)
    assert b.equals(a)


def test_array_rejects_a_manifest_of_another_grid():
    with pytest.raises(
        ValueError, match=r"manifest's chunk grid \(2, 2\) does not match .* \(3, 2\)"
    ):
        ManifestArray(metadata=array_metadata((10, 6), (4, 3)), manifest=manifest((2, 2)))


def test_array_rejects_invalid_metadata_with_a_value_error():
    with pytest.raises(ValueError, match="invalid Zarr v3 array metadata"):
        ManifestArray(
            metadata={**array_metadata((4,), (2,)), "data_type": "nonsense"},
            manifest=manifest((2,)),
        )


def test_np_asarray_tells_the_user_to_open_it_through_the_store():
    a = ManifestArray(metadata=array_metadata((4,), (2,)), manifest=manifest((2,)))
    with pytest.raises(TypeError, match=r"ManifestStore.*zarr.open_group\(store, mode='r'\)"):
        np.asarray(a)


def test_rectilinear_chunk_grid():
    meta = array_metadata((5,), (2,))
    meta["chunk_grid"] = {
        "name": "rectilinear",
        "configuration": {"kind": "inline", "chunk_shapes": [[2, 3]]},
    }
    a = ManifestArray(metadata=meta, manifest=manifest((2,)))
    assert a.chunk_sizes == ((2, 3),)


def test_scalar_array():
    a = ManifestArray(metadata=array_metadata((), ()), manifest=manifest(()))
    assert a.shape == ()
    assert a.chunk_sizes == ()


def test_array_pickles():
    a = ManifestArray(
        metadata=array_metadata((4,), (2,), fill_value="NaN"), manifest=manifest((2,))
    )
    assert pickle.loads(pickle.dumps(a)).equals(a)


def test_group_is_an_immutable_nested_mapping():
    a = ManifestArray(metadata=array_metadata((4,), (2,)), manifest=manifest((2,)))
    inner = ManifestGroup(arrays={"u": a})
    g = ManifestGroup(
        arrays={"t": a}, groups={"sub": inner, "empty": ManifestGroup()}, attributes={"k": 1}
    )
    assert list(g) == ["t", "sub", "empty"]
    assert len(g) == 3
    assert g["sub/u"] is a
    assert g["empty"] == ManifestGroup()
    assert [p for p, _ in g.walk()] == ["t", "sub", "sub/u", "empty"]
    with pytest.raises(KeyError):
        g["missing"]
    with pytest.raises(KeyError, match="is an array"):
        g["t/x"]
    with pytest.raises(TypeError):
        g.attributes["k"] = 2  # type: ignore[index]
    with pytest.raises(TypeError):
        g.arrays["new"] = a  # type: ignore[index]
    assert g.replace(attributes={"k": 2}).attributes == {"k": 2}
    assert pickle.loads(pickle.dumps(g)) == g


@pytest.mark.parametrize("name", ["", "a/b", "zarr.json", "..", "__private"])
def test_group_rejects_bad_member_names(name):
    with pytest.raises(ValueError, match="invalid member name"):
        ManifestGroup(groups={name: ManifestGroup()})


def test_group_rejects_clashing_names_and_unserialisable_attributes():
    a = ManifestArray(metadata=array_metadata((4,), (2,)), manifest=manifest((2,)))
    with pytest.raises(ValueError, match="both as arrays and as groups"):
        ManifestGroup(arrays={"x": a}, groups={"x": ManifestGroup()})
    with pytest.raises(ValueError, match="JSON-serialisable"):
        ManifestGroup(attributes={"bad": object()})
    with pytest.raises(TypeError, match="must be a ManifestArray"):
        ManifestGroup(arrays={"x": ManifestGroup()})  # type: ignore[dict-item]


def test_equality_treats_nan_attributes_as_equal():
    meta = array_metadata((4,), (2,), fill_value="NaN", attributes={"valid_min": float("nan")})
    a = ManifestArray(metadata=meta, manifest=manifest((2,)))
    b = ManifestArray(metadata=dict(meta), manifest=manifest((2,)))
    assert a.equals(b)
    assert ManifestGroup(arrays={"a": a}, attributes={"x": float("nan")}).equals(
        ManifestGroup(arrays={"a": b}, attributes={"x": float("nan")})
    )


def test_chunk_sizes_of_a_long_grid_are_listed_only_when_asked():
    meta = array_metadata((10_000_000,), (1,))
    grid = (10_000_000,)
    m = ChunkManifest(
        paths=["f"],
        path_index=np.zeros(grid, np.uint32),
        offsets=np.zeros(grid, np.uint64),
        lengths=np.ones(grid, np.uint64),
    )
    a = ManifestArray(metadata=meta, manifest=m)
    assert a._chunk_sizes is None
    assert len(a.chunk_sizes[0]) == 10_000_000


def test_numpy_functions_and_methods_dispatch_through_the_registry(monkeypatch):
    a = ManifestArray(metadata=array_metadata((4, 2), (2, 1)), manifest=manifest((2, 2)))
    with pytest.raises(TypeError, match=r"numpy\.flip needs the values of a ManifestArray"):
        np.flip(a)
    monkeypatch.setitem(HANDLED_FUNCTIONS, np.flip, None)
    implements(np.flip)(lambda array, axis=None: ("flipped", array, axis))
    assert np.flip(a, axis=1) == ("flipped", a, 1)
    monkeypatch.setitem(HANDLED_FUNCTIONS, operator.getitem, lambda array, key: ("item", key))
    monkeypatch.setitem(HANDLED_FUNCTIONS, np.transpose, lambda array, axes: ("axes", axes))
    assert a[1:] == ("item", slice(1, None))
    assert a.transpose(1, 0) == ("axes", (1, 0))
    assert a.T == ("axes", None)


def test_rectilinear_metadata_parses_without_zarr_flag():
    """A ManifestArray's rectilinear grid parses even where the user turned zarr's flag off,
    and the flag is never touched; a grid that does not cover the shape is refused."""
    doc = {
        "shape": [9],
        "data_type": "float32",
        "chunk_grid": {
            "name": "rectilinear",
            "configuration": {"kind": "inline", "chunk_shapes": [[3, 2, 4]]},
        },
        "chunk_key_encoding": {"name": "default"},
        "fill_value": 0,
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
    }
    seen = []
    with zarr.config.set({"array.rectilinear_chunks": False}):
        original = zarr.config.set
        with pytest.MonkeyPatch.context() as m:
            m.setattr(zarr.config, "set", lambda *a, **k: seen.append(a) or original(*a, **k))
            meta = parse_array_metadata(doc)
        assert zarr.config.get("array.rectilinear_chunks") is False
    assert seen == []
    assert meta.chunk_grid.to_dict()["configuration"]["chunk_shapes"] == ([3, 2, 4],)
    short = {
        **doc,
        "chunk_grid": {
            "name": "rectilinear",
            "configuration": {"kind": "inline", "chunk_shapes": [[3, 2]]},
        },
    }
    with pytest.raises(ValueError, match="sum to 5"):
        parse_array_metadata(short)
