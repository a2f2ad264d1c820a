"""ChunkManifest: columnar storage, constructors, validation, memory accounting."""

from __future__ import annotations

import contextlib
import pickle
import sys

import numpy as np
import pytest

from zarr_manifest_store import ChunkManifest, ChunkRef
from zarr_manifest_store.manifest import INLINE, MAX_END, MISSING, Fingerprint


def small_manifest() -> ChunkManifest:
    return ChunkManifest.from_arrays(
        paths=np.array([["a.nc", "b.nc"], ["a.nc", ""]]),
        offsets=np.array([[0, 100], [200, 0]]),
        lengths=np.array([[10, 20], [30, 0]]),
    )


def test_from_arrays_is_columnar_with_a_deduplicated_path_table():
    m = small_manifest()
    assert m.shape == (2, 2)
    assert m.paths == ("a.nc", "b.nc")
    assert m.path_index.dtype == np.uint32
    assert m.path_index.tolist() == [[0, 1], [0, MISSING]]
    assert m.offsets.dtype == np.uint64
    assert m.lengths.dtype == np.uint64
    assert m.nchunks == 3
    assert m.get((1, 0)) == ChunkRef("a.nc", 200, 30)
    assert m.get((1, 1)) is None
    assert m.nbytes_referenced == 60


def test_from_dict_round_trips_through_to_dict():
    entries = {
        "0.0": {"path": "s3://b/x.nc", "offset": 8, "length": 4},
        "1.2": {"path": "s3://b/y.nc", "offset": 0, "length": 16},
        "0.1": {"data": b"\x00\x01"},
    }
    m = ChunkManifest.from_dict(entries)
    assert m.shape == (2, 3)
    assert m.path_index[0, 1] == INLINE
    assert m.get((0, 1)) == b"\x00\x01"
    assert m.to_dict() == {k: entries[k] for k in ("0.0", "0.1", "1.2")}
    assert ChunkManifest.from_dict(m.to_dict(), shape=m.shape).equals(m)


def test_from_dict_with_explicit_shape_and_scalar_grid():
    m = ChunkManifest.from_dict({"0.1": {"path": "a", "offset": 0, "length": 1}}, shape=(3, 4))
    assert m.shape == (3, 4)
    assert m.nchunks == 1
    scalar = ChunkManifest.from_dict({"0": {"path": "a", "offset": 5, "length": 1}}, shape=())
    assert scalar.shape == ()
    assert scalar.get(()) == ChunkRef("a", 5, 1)
    assert scalar.to_dict() == {"0": {"path": "a", "offset": 5, "length": 1}}


def test_inline_chunks_from_arrays():
    m = ChunkManifest.from_arrays(
        paths=np.array(["", "a.nc"]),
        offsets=np.array([0, 4]),
        lengths=np.array([0, 4]),
        inline={(0,): b"abcd"},
    )
    assert m.get((0,)) == b"abcd"
    assert m.inline == {(0,): b"abcd"}
    assert m.nchunks == 2
    with pytest.raises(ValueError, match=r"chunk '1' is both inline and a reference"):
        ChunkManifest.from_arrays(
            paths=np.array(["", "a.nc"]), offsets=[0, 4], lengths=[0, 4], inline={(1,): b"x"}
        )


@pytest.mark.parametrize(
    ("offsets", "lengths", "message"),
    [
        ([[0, -5]], [[1, 1]], r"chunk '0\.1': offset is negative \(-5\)"),
        ([[0, 1]], [[1, -1]], r"chunk '0\.1': length is negative"),
        ([[0.5, 1.0]], [[1, 1]], r"chunk '0\.0': offset must be an integer"),
        ([[0, 1]], [[1, "x"]], r"length must be an integer"),
        (
            [[0, 1, 2]],
            [[1, 1]],
            r"offsets have shape \(1, 3\), but the chunk grid has shape \(1, 2\)",
        ),
        (
            [[0, MAX_END]],
            [[1, 1]],
            r"chunk '0\.1': offset 9223372036854775807 \+ length 1 overflows",
        ),
        ([[0, 2**64 - 1]], [[1, 1]], r"chunk '0\.1': offset exceeds 9223372036854775807"),
        (
            np.array([[0, 2**64 - 1]], dtype=np.uint64),
            [[1, 1]],
            r"chunk '0\.1': offset .* overflows",
        ),
        (
            np.array([[0, 1]], dtype=np.uint64),
            np.array([[1, -2]]),
            r"chunk '0\.1': length is negative",
        ),
    ],
)
def test_from_arrays_validation_names_chunk_and_field(offsets, lengths, message):
    with pytest.raises(ValueError, match=message):
        ChunkManifest.from_arrays(paths=np.array([["a", "a"]]), offsets=offsets, lengths=lengths)


@pytest.mark.parametrize(
    ("entries", "message"),
    [
        ({"0": {"path": "a", "offset": -1, "length": 1}}, r"chunk '0': offset -1 is out of range"),
        (
            {"0": {"path": "a", "offset": "12", "length": 1}},
            r"chunk '0': offset must be an integer, got '12'",
        ),
        (
            {"0": {"path": "a", "offset": True, "length": 1}},
            r"chunk '0': offset must be an integer",
        ),
        ({"0": {"path": "a", "offset": 1.0, "length": 1}}, r"chunk '0': offset must be an integer"),
        (
            {"0": {"path": 7, "offset": 1, "length": 1}},
            r"chunk '0': path must be a non-empty string",
        ),
        ({"0": {"path": "a", "offset": 1}}, r"chunk '0': entry needs exactly the fields"),
        ({"0": {"path": "a", "offset": MAX_END, "length": 2}}, r"chunk '0': offset .* overflows"),
        (
            {"x.1": {"path": "a", "offset": 0, "length": 1}},
            r"chunk key 'x\.1' is not a chunk grid index",
        ),
        ({"-1": {"path": "a", "offset": 0, "length": 1}}, r"chunk key '-1'"),
        ({"0": {"path": "a", "offset": 0, "length": 1}, "0.0": {"data": b""}}, r"chunk key '0\.0'"),
        ({"0": ["a", 0, 1]}, r"chunk '0': entry must be a mapping"),
    ],
)
def test_from_dict_validation_names_chunk_and_field(entries, message):
    with pytest.raises(ValueError, match=message):
        ChunkManifest.from_dict(entries)


def test_from_dict_rejects_keys_outside_the_given_grid():
    with pytest.raises(ValueError, match=r"chunk '2\.0' lies outside the chunk grid \(2, 2\)"):
        ChunkManifest.from_dict({"2.0": {"path": "a", "offset": 0, "length": 1}}, shape=(2, 2))


def test_columnar_constructor_checks_index_against_table():
    with pytest.raises(ValueError, match=r"chunk '1': path_index 3 is outside the path table of 1"):
        ChunkManifest(paths=["a"], path_index=[0, 3], offsets=[0, 0], lengths=[1, 1])
    with pytest.raises(ValueError, match=r"inline data and the INLINE path_index must go together"):
        ChunkManifest(paths=["a"], path_index=[0, INLINE], offsets=[0, 0], lengths=[1, 0])


def test_manifest_is_immutable():
    m = small_manifest()
    with pytest.raises(ValueError, match="read-only"):
        m.offsets[0, 0] = 5
    with pytest.raises(TypeError):
        m.inline[(0, 0)] = b"x"  # type: ignore[index]


def test_lengths_are_narrowed_but_exposed_as_uint64():
    m = ChunkManifest.from_arrays(paths=np.array(["a"]), offsets=[0], lengths=[2**40])
    assert m.lengths.dtype == np.uint64
    assert m.get((0,)) == ChunkRef("a", 0, 2**40)
    small = small_manifest()
    assert small._lengths.dtype == np.uint32


def test_nbytes_counts_the_path_table_and_inline_bytes():
    m = small_manifest()
    arrays = m.path_index.nbytes + m.offsets.nbytes + m._lengths.nbytes
    table = sys.getsizeof(m.paths) + sum(sys.getsizeof(p) for p in m.paths)
    assert m.nbytes >= arrays + table
    big_table = m.rename_paths(lambda p: p * 1000)
    assert big_table.nbytes - m.nbytes >= 2 * 999 * 4
    with_inline = ChunkManifest.from_dict({"0": {"data": b"x" * 10_000}})
    assert with_inline.nbytes > 10_000


def test_rename_paths_with_mapping_and_function():
    m = small_manifest()
    renamed = m.rename_paths({"a.nc": "s3://bucket/a.nc"})
    assert renamed.paths == ("s3://bucket/a.nc", "b.nc")
    assert renamed.get((1, 0)) == ChunkRef("s3://bucket/a.nc", 200, 30)
    assert m.rename_paths(str.upper).paths == ("A.NC", "B.NC")


def test_equality_ignores_path_table_order():
    m = small_manifest()
    same = ChunkManifest(
        paths=["b.nc", "a.nc"],
        path_index=np.array([[1, 0], [1, MISSING]]),
        offsets=m.offsets,
        lengths=m.lengths,
    )
    assert same.equals(m)
    assert same == m
    assert not m.equals(m.rename_paths({"b.nc": "c.nc"}))
    assert not m.equals("not a manifest")


def test_pickle_round_trip():
    m = ChunkManifest.from_dict({"0": {"path": "a", "offset": 1, "length": 2}, "1": {"data": b"z"}})
    assert pickle.loads(pickle.dumps(m)).equals(m)


def test_items_lists_present_chunks_in_c_order():
    m = small_manifest()
    assert [c for c, _ in m.items()] == [(0, 0), (0, 1), (1, 0)]


def test_fingerprints_follow_the_path_table():
    fp = Fingerprint(size=10, mtime_ns=123)
    m = ChunkManifest.from_dict(
        {"0": {"path": "a", "offset": 0, "length": 1}}, fingerprints={"a": fp}
    )
    assert m.fingerprints == {"a": fp}
    assert m.rename_paths({"a": "b"}).fingerprints == {"b": fp}
    assert pickle.loads(pickle.dumps(m)).fingerprints == {"a": fp}
    with pytest.raises(ValueError, match="fingerprint given for 'z', which no chunk references"):
        ChunkManifest.from_dict(
            {"0": {"path": "a", "offset": 0, "length": 1}}, fingerprints={"z": fp}
        )


# ---------------------------------------------------------------------- operations


def chunks_of(m: ChunkManifest) -> dict[tuple[int, ...], ChunkRef | bytes]:
    return dict(m.items())


def test_replace_swaps_parts_and_keeps_the_rest():
    m = small_manifest().replace(fingerprints={"a.nc": Fingerprint(size=1)})
    shorter = m.replace(lengths=np.array([[1, 2], [3, 0]]))
    assert shorter.get((1, 0)) == ChunkRef("a.nc", 200, 3)
    assert shorter.paths == m.paths
    assert shorter.fingerprints == m.fingerprints
    assert m.get((1, 0)) == ChunkRef("a.nc", 200, 30)  # the original is untouched
    with pytest.raises(TypeError, match=r"no part\(s\) \['length'\]"):
        m.replace(length=[1])
    with pytest.raises(ValueError, match="lengths have shape"):
        m.replace(lengths=[1, 2])


def test_take_selects_outer_positions_and_drops_unused_paths():
    m = ChunkManifest.from_dict(
        {
            "0.0": {"path": "a.nc", "offset": 0, "length": 1},
            "0.1": {"path": "b.nc", "offset": 1, "length": 2},
            "1.0": {"data": b"inline"},
            "1.1": {"path": "a.nc", "offset": 3, "length": 4},
        },
        fingerprints={"a.nc": Fingerprint(size=9), "b.nc": Fingerprint(size=8)},
    )
    picked = m.take([[1, 1, 0], [0]])
    assert picked.shape == (3, 1)
    assert chunks_of(picked) == {(0, 0): b"inline", (1, 0): b"inline", (2, 0): m.get((0, 0))}
    assert picked.paths == ("a.nc",)
    assert picked.fingerprints == {"a.nc": Fingerprint(size=9)}
    assert m.take([[], [0, 1]]).shape == (0, 2)
    with pytest.raises(IndexError, match=r"axis 1 lies outside 0\.\.1"):
        m.take([[0], [-1]])
    with pytest.raises(ValueError, match="one sequence of positions per axis"):
        m.take([[0]])


def test_concat_lays_grids_side_by_side_with_one_path_table():
    m = ChunkManifest.from_dict(
        {"0.0": {"path": "x", "offset": 0, "length": 1}, "1.0": {"data": b"m"}}
    )
    n = ChunkManifest.from_dict(
        {"0.0": {"path": "y", "offset": 5, "length": 1}, "0.1": {"data": b"n"}},
        shape=(2, 2),
    )
    fp = {"y": Fingerprint(size=6)}
    joined = ChunkManifest.concat([m, n], axis=1, fingerprints=fp)
    assert joined.shape == (2, 3)
    assert joined.paths == ("x", "y")
    assert joined.fingerprints == fp
    assert chunks_of(joined) == {
        (0, 0): ChunkRef("x", 0, 1),
        (0, 1): ChunkRef("y", 5, 1),
        (0, 2): b"n",
        (1, 0): b"m",
    }
    shared = ChunkManifest.concat(
        [n, n.rename_paths({"y": "x"}), m.take([[0], [0, 0]])], axis=0, fingerprints={}
    )
    assert shared.paths == ("y", "x")
    assert shared.get((4, 1)) == ChunkRef("x", 0, 1)


def test_concat_checks_the_grids_line_up():
    m = ChunkManifest.from_arrays(paths=[["x"]], offsets=[[0]], lengths=[[1]])
    n = ChunkManifest.from_arrays(paths=[["y", "y"]], offsets=[[0, 1]], lengths=[[1, 1]])
    assert ChunkManifest.concat([m, n], axis=1, fingerprints={}).paths == ("x", "y")
    with pytest.raises(ValueError, match="does not line up"):
        ChunkManifest.concat([m, n], axis=0, fingerprints={})
    with pytest.raises(ValueError, match="need at least one manifest"):
        ChunkManifest.concat([], fingerprints={})


def test_transpose_expand_dims_and_squeeze_move_inline_chunks_along():
    m = ChunkManifest.from_dict(
        {"0.1.2": {"path": "a", "offset": 7, "length": 1}, "1.0.0": {"data": b"z"}},
        shape=(2, 2, 3),
    )
    t = m.transpose((2, 0, 1))
    assert t.shape == (3, 2, 2)
    assert chunks_of(t) == {(0, 1, 0): b"z", (2, 0, 1): ChunkRef("a", 7, 1)}
    e = m.expand_dims((0, 2))
    assert e.shape == (1, 2, 1, 2, 3)
    assert chunks_of(e) == {(0, 0, 0, 1, 2): ChunkRef("a", 7, 1), (0, 1, 0, 0, 0): b"z"}
    assert e.squeeze(2).squeeze(0).equals(m)
    with pytest.raises(ValueError, match="not of length 1"):
        m.squeeze(0)
    with pytest.raises(ValueError, match="don't match a grid of 3 dimensions"):
        m.transpose((1, 0))


def test_with_inline_replaces_references_and_forgets_unused_paths():
    m = small_manifest().replace(fingerprints={"b.nc": Fingerprint(size=5)})
    inlined = m.with_inline({(0, 1): b"bytes of b", (1, 1): b"was missing"})
    assert inlined.paths == ("a.nc",)
    assert inlined.fingerprints == {}
    assert chunks_of(inlined) == {
        (0, 0): ChunkRef("a.nc", 0, 10),
        (0, 1): b"bytes of b",
        (1, 0): ChunkRef("a.nc", 200, 30),
        (1, 1): b"was missing",
    }
    with pytest.raises(ValueError, match=r"inline chunk '2\.0' lies outside the chunk grid"):
        m.with_inline({(2, 0): b""})


# ---------------------------------------------------------------------- the sparse form


def sparse_and_dense() -> tuple[ChunkManifest, ChunkManifest]:
    """One manifest held sparse (5 entries in a grid of 90,000 chunks) and densified."""
    entries = {
        "0.0": {"path": "a.nc", "offset": 0, "length": 10},
        "0.299": {"path": "b.nc", "offset": 7, "length": 3},
        "17.4": {"data": b"inline"},
        "150.2": {"path": "a.nc", "offset": 100, "length": 20},
        "299.299": {"path": "a.nc", "offset": 200, "length": 2**33},
    }
    sparse = ChunkManifest.from_dict(entries, shape=(300, 300), fingerprints={"a.nc": (300,)})
    return sparse, sparse.densify()


def test_a_grid_much_larger_than_its_entries_is_held_sparse():
    sparse, dense = sparse_and_dense()
    assert sparse.sparse
    assert not dense.sparse
    assert sparse.nbytes < 2_000 < dense.nbytes
    assert sparse == dense
    assert dense == sparse


def test_the_sparse_form_answers_like_the_dense_one():
    sparse, dense = sparse_and_dense()
    for question in (
        lambda m: m.shape,
        lambda m: m.ndim,
        lambda m: m.paths,
        lambda m: m.nchunks,
        lambda m: m.nbytes_referenced,
        lambda m: dict(m.fingerprints),
        lambda m: list(m.items()),
        lambda m: m.to_dict(),
        lambda m: m.source_extents(),
        lambda m: [m.get(c) for c in [(0, 0), (0, 1), (17, 4), (299, 299), (150, 2)]],
        lambda m: [np.asarray(c).tolist() for c in m.references()],
        lambda m: m.path_index.tolist(),
        lambda m: m.lengths.tolist(),
        lambda m: m.rename_paths(str.upper).to_dict(),
        lambda m: m.replace(inline={(17, 4): b"other"}).get((17, 4)),
        lambda m: m.take([[299, 0], [299, 0]]).to_dict(),
        lambda m: m.transpose([1, 0]).to_dict(),
        lambda m: m.expand_dims(1).squeeze(1).to_dict(),
        lambda m: m.with_inline({(1, 1): b"x"}).to_dict(),
        lambda m: ChunkManifest.concat([m, m], fingerprints={}).to_dict(),
        lambda m: pickle.loads(pickle.dumps(m)).to_dict(),
    ):
        assert question(sparse) == question(dense)
    assert pickle.loads(pickle.dumps(sparse)).sparse


def test_sparse_lookups_outside_the_grid_raise_index_error():
    sparse, _ = sparse_and_dense()
    for coords in [(300, 0), (0, -1), (1,)]:
        with pytest.raises(IndexError):
            sparse.get(coords)


def test_from_entries_names_the_chunk_at_fault():
    base = {"shape": (1000, 1000), "paths": ["a.nc"], "offsets": [0, 0], "lengths": [1, 1]}
    with pytest.raises(ValueError, match=r"chunk '999\.999' is given twice"):
        ChunkManifest.from_entries(chunks=[999_999, 999_999], path_index=[0, 0], **base)
    with pytest.raises(ValueError, match="lies outside the chunk grid"):
        ChunkManifest.from_entries(chunks=[10**6, 0], path_index=[0, 0], **base)
    with pytest.raises(ValueError, match=r"chunk '5\.7': path_index 3 is outside the path table"):
        ChunkManifest.from_entries(chunks=[5007, 1], path_index=[3, 0], **base)
    with pytest.raises(ValueError, match=r"chunk '0\.9': offset 9223372036854775807 \+ length"):
        ChunkManifest.from_entries(
            shape=(1000, 1000),
            chunks=[9, 5],
            paths=["a.nc"],
            path_index=[0, 0],
            offsets=[MAX_END, 0],
            lengths=[1, 1],
        )


def test_from_dict_costs_its_entries_not_the_grid():
    m = ChunkManifest.from_dict({"99999999.99999999": {"path": "a.nc", "offset": 0, "length": 1}})
    assert m.shape == (10**8, 10**8)
    assert m.nchunks == 1
    assert m.nbytes < 1_000
    with pytest.raises(ValueError, match="max_dense_chunks"):
        _ = m.offsets


@pytest.mark.parametrize("ndim", [0, 1, 3])
def test_whole_inline_is_the_manifest_the_general_constructor_builds(ndim):
    grid = (1,) * ndim
    data = bytes(range(7))
    general = ChunkManifest(
        paths=[],
        path_index=np.full(grid, INLINE, dtype=np.uint32),
        offsets=np.zeros(grid, dtype=np.uint64),
        lengths=np.zeros(grid, dtype=np.uint64),
        inline={(0,) * ndim: data},
    )
    quick = ChunkManifest.whole_inline(bytearray(data), ndim)
    assert quick.equals(general)
    assert general.equals(quick)
    assert quick.shape == general.shape == grid
    assert quick.paths == general.paths == ()
    assert quick.get((0,) * ndim) == general.get((0,) * ndim) == data
    assert dict(quick.inline) == {(0,) * ndim: data}
    assert type(quick.inline[(0,) * ndim]) is bytes
    for field in ("path_index", "offsets", "lengths"):
        mine, theirs = getattr(quick, field), getattr(general, field)
        assert mine.dtype == theirs.dtype
        assert np.array_equal(mine, theirs)
        with contextlib.suppress(ValueError):  # the columns are shared: a change must not leak
            mine[...] = MISSING
    assert ChunkManifest.whole_inline(data, ndim).get((0,) * ndim) == data
    assert pickle.loads(pickle.dumps(quick)).equals(general)


def test_one_file_is_the_manifest_the_general_constructor_builds(tmp_path):
    """A scanned chunked dataset's manifest (``one_file``: unchecked) against the same
    columns through the checked constructor: equal, read-only, and pickled alike."""
    import h5py

    import zarr_manifest_store as zms

    path = tmp_path / "chunked.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("a", shape=(10, 7), chunks=(4, 3), dtype="<i4", compression="gzip")
        d[:8] = np.arange(56).reshape(8, 7)  # the last row of chunks never written
    quick = zms.scan(path).arrays["a"].manifest
    fp = quick.fingerprints[str(path)]
    general = ChunkManifest(
        paths=[str(path)],
        path_index=np.array(quick.path_index),
        offsets=np.array(quick.offsets),
        lengths=np.array(quick.lengths),
        fingerprints={str(path): fp},
    )
    assert quick.equals(general)
    assert general.equals(quick)
    assert 0 < quick.nchunks < np.prod(quick.shape)
    for field in ("path_index", "offsets", "lengths"):
        mine, theirs = getattr(quick, field), getattr(general, field)
        assert mine.dtype == theirs.dtype
        with contextlib.suppress(ValueError):  # a change must not reach the manifest
            mine[...] = 7
    assert quick.equals(general)
    assert pickle.loads(pickle.dumps(quick)).equals(general)


def test_a_scan_keeps_few_objects_per_array_for_the_garbage_collector(tmp_path):
    """Each full pass of Python's garbage collector walks every object it tracks, and a scan
    of many small datasets set off several: a scanned chunked array holds a handful (its
    metadata, manifest and array), not the chunk index's buffers or a mapping of its own."""
    import gc

    import h5py

    import zarr_manifest_store as zms

    path = tmp_path / "many.h5"
    with h5py.File(path, "w") as f:
        for i in range(300):
            f.create_dataset(f"v{i}", data=np.arange(40, dtype="f4"), chunks=(16,))
    zms.scan(path)  # caches filled
    gc.collect()
    before = len(gc.get_objects())
    group = zms.scan(path)
    gc.collect()
    assert len(group.arrays) == 300
    assert (len(gc.get_objects()) - before) / 300 <= 5
