"""Virtual concatenation: NumPy functions on ManifestArrays combine manifests and read exactly."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
import xarray as xr
import zarr
from helpers import array_metadata, hdf5_chunk_manifest

import zarr_manifest_store as zms
from zarr_manifest_store.cf import check_cf_attributes
from zarr_manifest_store.manifest import Fingerprint

RECTILINEAR = {"array.rectilinear_chunks": True}


def h5_array(
    path: Path,
    data: np.ndarray,
    chunks: tuple[int, ...],
    *,
    compress: bool = False,
    written: Any = ...,
    fill: Any = 0,
    attributes: dict[str, Any] | None = None,
    dims: Sequence[str] | None = None,
    level: int = 4,
) -> tuple[zms.ManifestArray, np.ndarray]:
    """An HDF5 dataset written from ``data[written]`` and its ManifestArray; also what it reads as."""
    with h5py.File(path, "w") as f:
        ds = f.create_dataset(
            "v",
            shape=data.shape,
            dtype=data.dtype,
            chunks=chunks,
            fillvalue=fill,
            **(
                {"compression": "gzip", "compression_opts": level, "shuffle": True}
                if compress
                else {}
            ),
        )
        ds[written] = data[written]
    codecs = [{"name": "bytes", "configuration": {"endian": "little"}}]
    if compress:
        codecs += [
            {"name": "numcodecs.shuffle", "configuration": {"elementsize": data.dtype.itemsize}},
            {"name": "numcodecs.zlib", "configuration": {"level": level}},
        ]
    meta = array_metadata(
        data.shape,
        chunks,
        str(data.dtype),
        fill_value=fill,
        codecs=codecs,
        attributes=attributes,
        dimension_names=None if dims is None else list(dims),
    )
    expected = np.full(data.shape, fill, dtype=data.dtype)
    expected[written] = data[written]
    return zms.ManifestArray(metadata=meta, manifest=hdf5_chunk_manifest(path, "v")), expected


def read(array: zms.ManifestArray) -> np.ndarray:
    """The values of ``array``, read from its source files through ManifestStore."""
    with zarr.config.set(RECTILINEAR):
        return zarr.open_array(zms.ManifestStore(array), mode="r")[...]


@contextlib.contextmanager
def sources_gone(*arrays: zms.ManifestArray) -> Iterator[None]:
    """Hide every source file, proving that whatever runs inside reads none of them."""
    paths = {p for a in arrays for p in a.manifest.paths}
    for p in paths:
        os.rename(p, f"{p}.away")
    try:
        yield
    finally:
        for p in paths:
            os.rename(f"{p}.away", p)


def with_inline(array: zms.ManifestArray, coords: tuple[int, ...]) -> zms.ManifestArray:
    """``array`` with the chunk at ``coords`` copied into the manifest as inline bytes."""
    m = array.manifest
    ref = m.get(coords)
    with open(ref.path, "rb") as f:
        f.seek(ref.offset)
        data = f.read(ref.length)
    index = m.path_index.copy()
    index[coords] = 0xFFFF_FFFE
    return array.with_manifest(
        zms.ChunkManifest(
            paths=m.paths,
            path_index=index,
            offsets=np.where(index < 0xFFFF_FFFE, m.offsets, 0),
            lengths=np.where(index < 0xFFFF_FFFE, m.lengths, 0),
            inline={**m.inline, coords: data},
        )
    )


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(42)


# ---------------------------------------------------------------------- concatenation


def test_concatenate_combines_manifests_without_reading(tmp_path, rng):
    a, ea = h5_array(tmp_path / "a.h5", rng.random((4, 6), dtype="f4"), (2, 3), compress=True)
    b, eb = h5_array(tmp_path / "b.h5", rng.random((6, 6), dtype="f4"), (2, 3), compress=True)
    with sources_gone(a, b):
        c = np.concatenate([a, b, a], axis=0)
    assert isinstance(c, zms.ManifestArray)
    assert c.shape == (14, 6)
    assert c.metadata.chunk_grid.to_dict()["name"] == "regular"
    assert c.manifest.paths == (str(tmp_path / "a.h5"), str(tmp_path / "b.h5"))
    assert c.manifest.get((2, 1)) == b.manifest.get((0, 1))
    assert c.manifest.get((5, 1)) == a.manifest.get((0, 1))
    np.testing.assert_array_equal(read(c), np.concatenate([ea, eb, ea]))
    assert zms.concat([a, b], axis=-2).manifest.equals(np.concatenate([a, b]).manifest)


def test_concatenate_along_a_later_axis_and_missing_chunks(tmp_path, rng):
    data = rng.integers(-1000, 1000, (4, 6), dtype="i2")
    a, ea = h5_array(tmp_path / "a.h5", data, (2, 3), written=np.s_[:2], fill=-1)
    b, eb = h5_array(tmp_path / "b.h5", data[:, :3], (2, 3), fill=-1)
    assert a.manifest.nchunks == 2  # the chunks never written stay missing: fill value
    c = np.concatenate([a, b], axis=1)
    assert c.chunk_sizes == ((2, 2), (3, 3, 3))
    np.testing.assert_array_equal(read(c), np.concatenate([ea, eb], axis=1))


def test_ragged_uncompressed_files_give_a_rectilinear_grid_read_exactly(tmp_path, rng):
    # 5 steps of chunk 2: the last chunk is stored at full size but holds one step.
    parts = [
        h5_array(tmp_path / f"{i}.h5", rng.random((n, 3, 5), dtype="f4"), (2, 2, 5))
        for i, n in enumerate([5, 4, 3])
    ]
    arrays = [a for a, _ in parts]
    with sources_gone(*arrays):
        c = np.concatenate(arrays)
    assert c.chunk_sizes == ((2, 2, 1, 2, 2, 2, 2), (2, 2), (5,))
    grid = c.metadata.chunk_grid.to_dict()
    assert grid["name"] == "rectilinear"
    assert grid["configuration"]["chunk_shapes"][1:] == (2, 5)  # regular axes stay bare ints
    # the edge chunk of the first file now reads exactly its one valid step
    assert c.manifest.get((2, 0, 0)).length == arrays[0].manifest.get((2, 0, 0)).length // 2
    np.testing.assert_array_equal(read(c), np.concatenate([e for _, e in parts]))


def test_ragged_compressed_files_are_refused_or_stored_inline(tmp_path, rng):
    a, ea = h5_array(tmp_path / "a.h5", rng.random((5, 4), dtype="f4"), (2, 2), compress=True)
    b, eb = h5_array(tmp_path / "b.h5", rng.random((3, 4), dtype="f4"), (2, 2), compress=True)
    with pytest.raises(zms.UnsupportedDatasetError) as err:
        np.concatenate([a, b])
    message = str(err.value)
    assert str(tmp_path / "a.h5") in message
    assert "length 5 along axis 0 is not a multiple of the chunk size 2" in message
    assert "edge_chunks='inline'" in message

    c = zms.concat([a, b], edge_chunks="inline")
    assert sorted(c.manifest.inline) == [(2, 0), (2, 1)]
    assert c.chunk_sizes == ((2, 2, 1, 2, 2), (2, 2))
    np.testing.assert_array_equal(read(c), np.concatenate([ea, eb]))
    # a ragged *last* input needs nothing: its overhanging chunk stays at the end
    e = np.concatenate([a[0:4], b])
    assert e.chunk_sizes == ((2, 2, 2, 2), (2, 2))
    np.testing.assert_array_equal(read(e), np.concatenate([ea[:4], eb]))


def test_ragged_along_an_inner_axis_is_exact_only_by_inlining(tmp_path, rng):
    # Along axis 1 the valid part of an edge chunk is strided in its bytes: it cannot be shortened.
    a, ea = h5_array(tmp_path / "a.h5", rng.random((4, 5), dtype="f4"), (2, 2))
    b, eb = h5_array(tmp_path / "b.h5", rng.random((4, 2), dtype="f4"), (2, 2))
    with pytest.raises(zms.UnsupportedDatasetError, match="along axis 1"):
        np.concatenate([a, b], axis=1)
    c = zms.concat([a, b], axis=1, edge_chunks="inline")
    np.testing.assert_array_equal(read(c), np.concatenate([ea, eb], axis=1))
    # with chunks of 1 along the axes before it, the valid part leads the bytes again
    a1, ea1 = h5_array(tmp_path / "a1.h5", rng.random((4, 5), dtype="f4"), (1, 2))
    b1, eb1 = h5_array(tmp_path / "b1.h5", rng.random((4, 2), dtype="f4"), (1, 2))
    with sources_gone(a1, b1):
        c1 = np.concatenate([a1, b1], axis=1)
    assert not c1.manifest.inline
    np.testing.assert_array_equal(read(c1), np.concatenate([ea1, eb1], axis=1))


def test_inline_chunks_are_kept_and_ragged_ones_reencoded_without_reading(tmp_path, rng):
    a, ea = h5_array(tmp_path / "a.h5", rng.random((5, 4), dtype="f4"), (2, 2), compress=True)
    b, eb = h5_array(tmp_path / "b.h5", rng.random((2, 4), dtype="f4"), (2, 2), compress=True)
    a = with_inline(with_inline(a, (2, 0)), (2, 1))  # both edge chunks of a live in the manifest
    b = with_inline(b, (0, 1))
    with sources_gone(a, b):
        c = np.concatenate([a, b])
    assert sorted(c.manifest.inline) == [(2, 0), (2, 1), (3, 1)]
    assert c.manifest.inline[(3, 1)] == b.manifest.inline[(0, 1)]
    np.testing.assert_array_equal(read(c), np.concatenate([ea, eb]))


def test_chunk_sizes_may_differ_along_the_concatenation_axis(tmp_path, rng):
    # e.g. monthly files, each one chunk along time
    parts = [
        h5_array(tmp_path / f"{i}.h5", rng.random((n, 4), dtype="f4"), (n, 2), compress=True)
        for i, n in enumerate([31, 28, 31])
    ]
    c = np.concatenate([a for a, _ in parts])
    assert c.chunk_sizes == ((31, 28, 31), (2, 2))
    np.testing.assert_array_equal(read(c), np.concatenate([e for _, e in parts]))


def test_concatenated_arrays_concatenate_again(tmp_path, rng):
    parts = [
        h5_array(tmp_path / f"{i}.h5", rng.random((n, 2), dtype="f4"), (2, 2))
        for i, n in enumerate([3, 5, 2, 3])
    ]
    a, b, c, d = (p[0] for p in parts)
    nested = np.concatenate([np.concatenate([a, b]), np.concatenate([c, d])])
    flat = np.concatenate([a, b, c, d])
    assert nested.chunk_sizes == flat.chunk_sizes == ((2, 1, 2, 2, 1, 2, 2, 2), (2,))
    assert nested.manifest.equals(flat.manifest)
    np.testing.assert_array_equal(read(nested), np.concatenate([e for _, e in parts]))


def test_fingerprints_are_merged_and_conflicts_refused(tmp_path, rng):
    a, _ = h5_array(tmp_path / "a.h5", rng.random((2, 2), dtype="f4"), (2, 2))
    b, _ = h5_array(tmp_path / "b.h5", rng.random((2, 2), dtype="f4"), (2, 2))

    def fingerprinted(x: zms.ManifestArray, fp: Fingerprint) -> zms.ManifestArray:
        return x.with_manifest(x.manifest.replace(fingerprints=dict.fromkeys(x.manifest.paths, fp)))

    fa, fb = Fingerprint(size=1, mtime_ns=2), Fingerprint(size=3, mtime_ns=4)
    c = np.concatenate([fingerprinted(a, fa), b, fingerprinted(b, fb), fingerprinted(a, fa)])
    assert dict(c.manifest.fingerprints) == {str(tmp_path / "a.h5"): fa, str(tmp_path / "b.h5"): fb}
    with pytest.raises(zms.SourceChangedError, match=r"a\.h5' was scanned twice"):
        np.concatenate([fingerprinted(a, fa), fingerprinted(a, fb)])


def test_inlining_edge_chunks_checks_the_fingerprint_first(tmp_path, rng):
    a, _ = h5_array(tmp_path / "a.h5", rng.random((3, 2), dtype="f4"), (2, 2), compress=True)
    m = a.manifest
    stale = a.with_manifest(m.replace(fingerprints={m.paths[0]: Fingerprint(size=1)}))
    with pytest.raises(zms.SourceChangedError, match="changed since it was scanned"):
        zms.concat([stale, a], edge_chunks="inline")


# ---------------------------------------------------------------------- refusals


@pytest.fixture
def pair(tmp_path, rng):
    def make(name: str, **kw: Any) -> zms.ManifestArray:
        data = kw.pop("data", rng.random((4, 4), dtype="f4"))
        return h5_array(tmp_path / name, data, kw.pop("chunks", (2, 2)), **kw)[0]

    return make


@pytest.mark.parametrize(
    ("other", "match"),
    [
        ({"data": np.zeros((4, 4), "f8")}, r"dtypes differ \(float32 vs float64\)"),
        ({"compress": True}, "codecs differ"),
        ({"fill": -1}, r"fill values differ \(0\.0 vs -1\.0\)"),
        ({"chunks": (2, 1)}, r"chunks differ on axis 1 \(size 2 vs size 1\)"),
        ({"data": np.zeros((4, 3), "f4")}, r"shapes \(4, 4\) and \(4, 3\) differ on axis 1"),
    ],
)
def test_mismatched_inputs_are_refused_naming_them(pair, other, match):
    a, b = pair("a.h5"), pair("b.h5", **other)
    with pytest.raises(ValueError, match=match) as err:
        np.concatenate([a, a, b])
    assert "input 0 (" in str(err.value)
    assert "a.h5) and input 2 (" in str(err.value)
    assert "b.h5)" in str(err.value)


def test_compression_levels_may_differ_they_decode_alike(pair, tmp_path, rng):
    d1, d2 = rng.random((4, 4), dtype="f4"), rng.random((4, 4), dtype="f4")
    a, ea = h5_array(tmp_path / "a.h5", d1, (2, 2), compress=True, level=1)
    b, eb = h5_array(tmp_path / "b.h5", d2, (2, 2), compress=True, level=9)
    np.testing.assert_array_equal(read(np.concatenate([a, b])), np.concatenate([ea, eb]))


@pytest.mark.parametrize(
    ("attrs_a", "attrs_b", "match"),
    [
        (
            {"scale_factor": 0.01},
            {"scale_factor": 0.02},
            r"'scale_factor' is 0\.01 in .*a\.h5 but 0\.02 in .*b\.h5",
        ),
        ({"add_offset": 273.15}, {}, r"'add_offset' is 273\.15 in .*a\.h5 but absent in .*b\.h5"),
        (
            {"_FillValue": "AAAAAAAA+H8="},
            {"_FillValue": "AAAAAACIw8A="},
            r"'_FillValue' is nan .* but -10000\.0",
        ),
        ({"missing_value": [1, 2]}, {"missing_value": [1, 3]}, "'missing_value'"),
        ({"units": "days since 2000-01-01"}, {"units": "days since 2001-01-01"}, "'units'"),
        ({"calendar": "noleap"}, {"calendar": "standard"}, "'calendar'"),
    ],
)
def test_cf_encoding_mismatches_are_refused_naming_attribute_and_files(
    pair, attrs_a, attrs_b, match
):
    a, b = pair("a.h5", attributes=attrs_a), pair("b.h5", attributes=attrs_b)
    with pytest.raises(ValueError, match=match):
        np.concatenate([a, b])
    with pytest.raises(ValueError, match=match):
        np.stack([a, b])


def test_cf_attributes_that_agree_pass(pair):
    attrs = {"scale_factor": 0.5, "_FillValue": "AAAAAAAA+H8=", "units": "K", "history": "a"}
    a = pair("a.h5", attributes=attrs)
    b = pair("b.h5", attributes={**attrs, "history": "b", "_FillValue": "AAAAAAAA+P8="})
    c = np.concatenate([a, b])  # two NaN encodings are one fill value; history is not encoding
    assert c.attributes["history"] == "a"


def test_check_cf_attributes_is_reusable_on_decoded_attributes():
    check_cf_attributes([{"units": "K"}, {"units": "K"}], ["a.nc", "b.nc"])
    check_cf_attributes(
        [{"scale_factor": np.float32(0.5)}, {"scale_factor": np.array([0.5])}], ["a.nc", "b.nc"]
    )
    check_cf_attributes([{"units": "a"}, {"units": "b"}], ["a.nc", "b.nc"], names=["scale_factor"])
    with pytest.raises(
        ValueError, match=r"'missing_value' is \[1, 2\] in a.nc but \[1, 3\] in b.nc"
    ):
        check_cf_attributes(
            [{"missing_value": np.array([1, 2])}, {"missing_value": np.array([1, 3])}],
            ["a.nc", "b.nc"],
        )
    with pytest.raises(ValueError, match=r"cannot combine variable 't2m': attribute 'units'"):
        check_cf_attributes([{"units": "K"}, {"units": "C"}], ["a.nc", "b.nc"], variable="t2m")


def test_numpy_inputs_and_unsupported_functions_are_refused_clearly(pair):
    a = pair("a.h5")
    with pytest.raises(TypeError, match=r"input 1, a numpy.ndarray, with ManifestArrays"):
        np.concatenate([a, np.zeros((4, 4), "f4")])
    with pytest.raises(TypeError, match=r"numpy.mean needs the values of a ManifestArray"):
        np.mean(a)
    with pytest.raises(TypeError, match=r"numpy.add needs the values"):
        np.add(a, 1)
    with pytest.raises(TypeError, match=r"comparing values \(==\).*ManifestArray.equals"):
        a == a  # noqa: B015
    with pytest.raises(ValueError, match="axis=None"):
        np.concatenate([a, a], axis=None)
    scalar = pair("s.h5", data=np.zeros((2,), "f4"), chunks=(1,))[0]
    with pytest.raises(ValueError, match="zero-dimensional"):
        np.concatenate([scalar, scalar])
    assert a.astype("float32") is a
    with pytest.raises(TypeError, match="from float32 to float64"):
        a.astype("float64")
    assert np.result_type(a, np.float64) == np.float64
    assert (np.shape(a), np.ndim(a), np.size(a)) == ((4, 4), 2, 16)


# ---------------------------------------------------------------------- stack, expand_dims, broadcast_to, transpose


def test_stack_expand_dims_broadcast_to(tmp_path, rng):
    a, ea = h5_array(tmp_path / "a.h5", rng.random((5, 3), dtype="f4"), (2, 2), compress=True)
    b, eb = h5_array(tmp_path / "b.h5", rng.random((5, 3), dtype="f4"), (2, 2), compress=True)
    with sources_gone(a, b):
        s = np.stack([a, b, a], axis=1)
        e = np.expand_dims(a, (0, 2))
        w = np.broadcast_to(a, (4, 5, 3))
    assert s.shape == (5, 3, 3)
    assert s.chunk_sizes == ((2, 2, 2), (1, 1, 1), (2, 2))
    np.testing.assert_array_equal(read(s), np.stack([ea, eb, ea], axis=1))
    assert e.shape == (1, 5, 1, 3)
    np.testing.assert_array_equal(read(e), np.expand_dims(ea, (0, 2)))
    assert w.manifest.nchunks == 4 * a.manifest.nchunks
    assert len(w.manifest.paths) == 1
    np.testing.assert_array_equal(read(w), np.broadcast_to(ea, (4, 5, 3)))
    with pytest.raises(ValueError, match="same shape"):
        np.stack([a, a[0:4]])


def test_broadcasting_a_length_one_axis(tmp_path, rng):
    a, ea = h5_array(tmp_path / "a.h5", rng.random((1, 3), dtype="f4"), (1, 2))
    w = np.broadcast_to(a, (4, 3))
    assert w.chunk_sizes == ((1, 1, 1, 1), (2, 2))
    np.testing.assert_array_equal(read(w), np.broadcast_to(ea, (4, 3)))
    # a length-1 axis stored in a bigger chunk (HDF5 keeps the full chunk) must be cut first
    wide, ewide = h5_array(tmp_path / "w.h5", rng.random((1, 3), dtype="f4"), (1, 3))
    tall = np.concatenate([wide, wide])  # shape (2, 3): take one row of a chunk of 1
    np.testing.assert_array_equal(read(np.broadcast_to(tall[1:2], (3, 3))), np.tile(ewide, (3, 1)))
    with pytest.raises(ValueError, match="cannot broadcast"):
        np.broadcast_to(a, (4, 4))


def test_transpose_keeps_chunks_in_place_with_a_transpose_codec(tmp_path, rng):
    a, ea = h5_array(tmp_path / "a.h5", rng.random((5, 3, 4), dtype="f4"), (2, 2, 3), compress=True)
    t = np.transpose(a, (2, 0, 1))
    assert t.shape == (4, 5, 3)
    transpose_codec = t.metadata.to_dict()["codecs"][0]
    assert transpose_codec["name"] == "transpose"
    assert list(transpose_codec["configuration"]["order"]) == [1, 2, 0]
    np.testing.assert_array_equal(read(t), np.transpose(ea, (2, 0, 1)))
    np.testing.assert_array_equal(read(t.T), np.transpose(ea, (2, 0, 1)).T)
    assert t.transpose(1, 2, 0).metadata == a.metadata  # back to the stored order: no codec
    b, eb = h5_array(tmp_path / "b.h5", rng.random((5, 3, 4), dtype="f4"), (2, 2, 3), compress=True)
    c = zms.concat([t, b.transpose(2, 0, 1)], axis=1, edge_chunks="inline")  # 5 = 2 + 2 + 1
    np.testing.assert_array_equal(read(c), np.concatenate([ea, eb]).transpose(2, 0, 1))


# ---------------------------------------------------------------------- indexing


def test_chunk_aligned_slicing(tmp_path, rng):
    data = rng.random((7, 4, 3), dtype="f4")
    a, ea = h5_array(tmp_path / "a.h5", data, (2, 1, 3), compress=True, dims=["t", "y", "x"])
    keys = {
        "rows": np.s_[2:6],
        "to the end": np.s_[4:],
        "ends anywhere": np.s_[0:5, 1:3],
        "int on size-1 chunks": np.s_[..., 2, :],
        "negative int": np.s_[:, -1],
        "step on size-1 chunks": np.s_[:, ::-2],
        "int array": np.s_[:, [3, 0, 0]],
        "bool mask": np.s_[:, np.array([True, False, True, True])],
        "new axis": np.s_[None, 2:4, :, None],
        "empty": np.s_[2:2],
    }
    with sources_gone(a):
        views = {name: a[key] for name, key in keys.items()}
    for name, view in views.items():
        assert view.shape == ea[keys[name]].shape, name
        np.testing.assert_array_equal(read(view), ea[keys[name]], err_msg=name)
    assert views["int on size-1 chunks"].dimension_names == ("t", "x")
    assert views["new axis"].dimension_names == (None, "t", "y", None, "x")
    assert len(a[:, 1:2].manifest.paths) == 1


@pytest.mark.parametrize(
    ("key", "match"),
    [
        (np.s_[1:4], r"slice 1:4 on axis 0 starts at 1, inside the chunk 0:2"),
        (np.s_[3], r"index 3 on axis 0 selects one element of a chunk of 2"),
        (np.s_[::2], r"axis 0: picking single elements needs chunks of size 1"),
        (np.s_[:, 9], "out of bounds"),
        (np.s_[0:2, [0, 1], [0, 1]], "at most one array index"),
        (np.s_[0, 0, 0, 0], "too many indices"),
        (np.s_[..., ...], "single ellipsis"),
    ],
)
def test_slicing_inside_chunks_is_refused(tmp_path, rng, key, match):
    # compressed: rows inside uncompressed chunks are selected by narrowing their references
    a, _ = h5_array(tmp_path / "a.h5", rng.random((7, 4, 3), dtype="f4"), (2, 1, 3), compress=True)
    with pytest.raises(IndexError, match=match):
        a[key]


# ---------------------------------------------------------------------- serving and xarray


def test_rectilinear_arrays_are_served_and_read_without_setting_zarrs_flag(tmp_path, rng):
    a, ea = h5_array(tmp_path / "a.h5", rng.random((3, 2), dtype="f4"), (2, 2), dims=["t", "x"])
    c = np.concatenate([a, a])
    with zarr.config.set({"array.rectilinear_chunks": False}):
        store = zms.ManifestStore(zms.ManifestGroup(arrays={"v": c}))  # leaves zarr's flag alone
        assert not zarr.config.get("array.rectilinear_chunks")
    store = zms.ManifestStore(zms.ManifestGroup(arrays={"v": c}))
    np.testing.assert_array_equal(
        zarr.open_group(store, mode="r")["v"][:], np.concatenate([ea, ea])
    )
    ds = xr.open_zarr(store, consolidated=False)
    np.testing.assert_array_equal(ds["v"].values, np.concatenate([ea, ea]))


def test_xarray_combines_variables_wrapping_manifest_arrays(tmp_path, rng):
    def dataset(i: int, n: int) -> tuple[xr.Dataset, np.ndarray]:
        a, ea = h5_array(tmp_path / f"{i}.h5", rng.random((n, 3), dtype="f4"), (1, 3))
        time = np.arange(i * 10, i * 10 + n)
        return xr.Dataset({"v": (("time", "x"), a)}, coords={"time": time}), ea

    (d0, e0), (d1, e1), (d2, e2) = dataset(0, 2), dataset(1, 3), dataset(2, 1)
    combined = xr.combine_by_coords([d2, d0, d1], coords="minimal", compat="override")
    v = combined["v"].variable._data
    assert isinstance(v, zms.ManifestArray)
    np.testing.assert_array_equal(read(v), np.concatenate([e0, e1, e2]))
    picked = combined.isel(time=[4, 0])["v"].variable._data
    np.testing.assert_array_equal(read(picked), np.concatenate([e0, e1, e2])[[4, 0]])
    stacked = xr.concat([d0, d0], dim="member", coords="minimal", compat="override")
    np.testing.assert_array_equal(read(stacked["v"].variable._data), np.stack([e0, e0]))
    assert dict(combined.chunks) == {}  # not mistaken for a dask-like chunked array
    with pytest.raises(TypeError, match="holds chunk references, not values"):
        _ = combined["v"].values
