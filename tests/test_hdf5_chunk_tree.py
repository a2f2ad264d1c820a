"""Version 1 B-tree chunk indexes read from the file's bytes (scan/hdf5/chunk_tree.py, issue #18):
on many generated files (ranks 1-4, one to thousands of chunks so that trees have levels, small
and default node sizes, partial edge chunks, never-written chunks, unlimited and resized
datasets, filters and a chunk that skipped one, a user block, netCDF-4 from netCDF-C) the
columns equal ``chunk_iter``'s, and the scan then opens no chunked dataset; hostile trees
are refused by the reader, and the scan falls back to HDF5 and is never wrong.
"""

from __future__ import annotations

import ctypes
import importlib
import struct
import subprocess
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import zarr
from h5py import h5f, h5p

import zarr_manifest_store as zms
from zarr_manifest_store.scan.common import Refused
from zarr_manifest_store.scan.hdf5 import chunk_index, chunk_tree, scan_file
from zarr_manifest_store.scan.hdf5.chunk_array import array_columns
from zarr_manifest_store.scan.hdf5.chunk_tree import Columns, StoredIndex, btree_columns
from zarr_manifest_store.scan.hdf5.headers import FileBytes, Unrecognised, object_messages
from zarr_manifest_store.scan.hdf5.messages import chunk_dims
from zarr_manifest_store.scan.hdf5.parsed import HeaderDataset, header_dataset

fuzz = importlib.import_module("benchmarks.fuzz_hdf5")
LAYOUT = 8
"""The data layout message's type."""


def _create(path: Path, libver: str, k: int | None, userblock: int = 0) -> h5py.File:
    """A new file whose chunk B-tree nodes hold at most ``2 k`` children (None: HDF5's 32)."""
    fcpl = h5p.create(h5p.FILE_CREATE)
    if k is not None:
        setter = ctypes.CDLL(h5py.h5.__file__).H5Pset_istore_k
        setter.argtypes, setter.restype = [ctypes.c_int64, ctypes.c_uint], ctypes.c_int
        assert setter(fcpl.id, k) >= 0
    if userblock:
        fcpl.set_userblock(userblock)
    fapl = h5p.create(h5p.FILE_ACCESS)
    low = {"earliest": h5f.LIBVER_EARLIEST, "v108": h5f.LIBVER_V18}[libver]
    fapl.set_libver_bounds(low, h5f.LIBVER_V18)  # layout version 3: v1 B-tree indexes
    return h5py.File(h5f.create(str(path).encode(), h5f.ACC_TRUNC, fcpl=fcpl, fapl=fapl))


def _random_datasets(f: h5py.File, rng: np.random.Generator, count: int) -> None:
    for i in range(count):
        rank = int(rng.integers(1, 5))
        shape = tuple(int(n) for n in rng.integers(1, [40, 20, 9, 6][rank - 1] + 1, rank))
        chunks = tuple(int(rng.integers(1, n + 1)) for n in shape)
        unlimited = rng.random() < 0.3
        maxshape = tuple(None if unlimited and a == 0 else n * 3 for a, n in enumerate(shape))
        options = [{}, {"compression": "gzip"}, {"shuffle": True, "compression": 1}]
        options.append({"fletcher32": True})
        ds = f.create_dataset(
            f"g{i % 3}/d{i}", shape=shape, dtype=rng.choice(["i1", "<f4", ">i8"]),
            chunks=chunks, maxshape=maxshape, fillvalue=3, **options[i % len(options)],
        )  # fmt: skip
        values = rng.integers(-100, 100, shape)
        written = rng.random()
        if written > 0.7:
            ds[...] = values
        elif written > 0.1:  # some chunks, the rest never written
            for _ in range(int(rng.integers(1, 6))):
                start = tuple(int(rng.integers(0, n)) for n in shape)
                region = tuple(slice(s, s + int(rng.integers(1, 4))) for s in start)
                ds[region] = values[region]
        if rng.random() < 0.3:
            grown = tuple(n + int(rng.integers(0, n + 1)) for n in shape)
            ds.resize(grown)
            ds[tuple(slice(n // 2, None) for n in grown)] = 7
        elif rng.random() < 0.2:
            ds.resize(tuple(max(1, n // 2) for n in shape))  # shrunk: chunks pruned


def _skipped_filter(f: h5py.File) -> None:
    """A gzip dataset one of whose chunks is stored raw, its filter mask saying so."""
    ds = f.create_dataset("skipped", data=np.arange(40, dtype="<i4"), chunks=(8,), compression=9)
    ds.id.write_direct_chunk((16,), np.arange(100, 108, dtype="<i4").tobytes(), filter_mask=1)


def _many_chunks(f: h5py.File) -> None:
    f.create_dataset("many", data=np.arange(3000, dtype="<i2"), chunks=(1,))
    f.create_dataset("grid", data=np.arange(60 * 70, dtype="<f4").reshape(60, 70), chunks=(2, 3))
    sparse = f.create_dataset("sparse", shape=(500, 6), chunks=(2, 2), dtype="u1", fillvalue=9)
    sparse[::7, 1:5] = 1


def _columns(index: StoredIndex, grid: tuple[int, ...], maxshape) -> Columns:
    if index.layout[0] == 3:
        return btree_columns(index.file, index.layout, index.dims, grid)
    return array_columns(index.file, index.layout, index.dims, grid, maxshape)


def _compare(path: Path) -> tuple[int, int]:
    """Asserts that the columns of every dataset whose index is read from the file equal
    ``chunk_iter``'s; how many, and how many were left to it (nodes or blocks larger than
    an object header)."""
    compared = left = 0
    with h5py.File(path, "r") as f, open(path, "rb") as raw:
        file = FileBytes.local(raw.fileno())
        names: list[str] = []
        f.visititems(
            lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None
        )
        for name in names:
            if f[name].chunks is None:
                continue  # a netCDF dimension without a variable
            ds, (group, link) = f[name], ("/" + name).rsplit("/", 1)
            parent = f[group or "/"]
            address = parent.id.links.get_info(link.encode()).u
            layout = next(m.body for m in object_messages(file, address) if m.type == LAYOUT)
            index = StoredIndex.of(file, layout, chunk_dims(layout, file))
            if index is None:
                assert layout[0] > 3, name  # an extensible array or a version 2 B-tree
                continue
            chunks = ds.chunks
            grid = tuple(-(-n // c) for n, c in zip(ds.shape, chunks, strict=True))
            try:
                ours = _columns(index, grid, ds.maxshape)
            except Unrecognised:
                left += 1
                continue
            theirs = chunk_index._iterated(ds.id, chunks, grid, ds.maxshape)
            assert ours[0] == theirs[0], name
            assert ours[1] == theirs[1], name
            assert sorted(ours[2]) == sorted(theirs[2]), name
            compared += 1
    return compared, left


@pytest.mark.parametrize("libver", ["earliest", "v108"])
@pytest.mark.parametrize("k", [None, 2, 5])
@pytest.mark.parametrize("seed", range(4))
def test_columns_equal_chunk_iters(tmp_path: Path, libver: str, k: int | None, seed: int) -> None:
    path = tmp_path / "f.h5"
    rng = np.random.default_rng(seed)
    with _create(path, libver, k, userblock=512 * (seed % 2)) as f:
        _random_datasets(f, rng, 12)
        if seed == 0:
            _skipped_filter(f)
            _many_chunks(f)
    compared, left = _compare(path)
    assert compared >= 12
    assert left == 0
    with open(path, "rb") as raw:
        assert FileBytes.local(raw.fileno()).chunk_btree_k == (k or 32)
    result = fuzz.check(path)
    assert not fuzz.failures(result), result


@pytest.mark.parametrize("seed", range(4))
def test_fixed_arrays_and_single_chunks_equal_chunk_iters(tmp_path: Path, seed: int) -> None:
    """The 1.10 format's indexes of datasets without unlimited axes (and the extensible
    arrays and version 2 B-trees of those with, left to ``chunk_iter``)."""
    path = tmp_path / "f.h5"
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w", libver="latest", userblock_size=512 * (seed % 2)) as f:
        _random_datasets(f, rng, 12)
        f.create_dataset("single", data=np.arange(12.0).reshape(3, 4), chunks=(3, 4))
        zipped = f.create_dataset("single_gzip", data=np.arange(12), chunks=(12,), compression=1)
        zipped.id.write_direct_chunk((0,), np.arange(12, dtype="<i8").tobytes(), filter_mask=1)
        f.create_dataset("single_unwritten", shape=(5,), chunks=(5,), dtype="i2")
        _skipped_filter(f)
        f.create_dataset("paged", data=np.arange(3000, dtype="<i2"), chunks=(2,))
        f.create_dataset("paged_gzip", data=np.arange(3000.0), chunks=(2,), compression=1)
        sparse = f.create_dataset("paged_sparse", shape=(5000,), chunks=(1,), dtype="i1")
        sparse[3:7] = 1  # pages 0 and 3 of five written, the others never
        sparse[3100:3104] = 2
        f.create_dataset("larger_maximum", data=np.arange(20), chunks=(3,), maxshape=(50,))
        early = f.create_dataset("fixed_sparse", shape=(30, 8), chunks=(4, 3), dtype="u2")
        early[5:9, 2:4] = 7
    compared, left = _compare(path)
    assert compared >= 11
    assert left == 0
    result = fuzz.check(path)
    assert not fuzz.failures(result), result


def test_trees_have_levels(tmp_path: Path) -> None:
    path = tmp_path / "f.h5"
    with _create(path, "earliest", 2) as f:
        _many_chunks(f)
    with h5py.File(path, "r") as f, open(path, "rb") as raw:
        file = FileBytes.local(raw.fileno())
        root = _root(f, file, "many")
        assert file.at(root, 6)[5] >= 5  # 3000 chunks, at most 4 a node


def test_netcdf4_files_written_by_netcdf_c(tmp_path: Path) -> None:
    path = tmp_path / "c.nc"
    script = textwrap.dedent(f"""
        import netCDF4, numpy as np
        with netCDF4.Dataset({str(path)!r}, "w", format="NETCDF4") as nc:
            nc.createDimension("time", None)
            nc.createDimension("x", 30)
            t = nc.createVariable("t", "f8", ("time",))
            v = nc.createVariable("v", "i4", ("time", "x"), zlib=True, chunksizes=(2, 7))
            w = nc.createVariable("w", "f4", ("x",), chunksizes=(4,), fill_value=-1.0)
            big = nc.createVariable("big", "u2", ("time", "x"), chunksizes=(1, 1))
            t[:] = np.arange(41)
            v[:40] = np.arange(1200).reshape(40, 30)
            w[3:9] = 1
            big[:35] = np.arange(1050).reshape(35, 30)
    """)
    subprocess.run([sys.executable, "-c", script], check=True)
    assert _compare(path)[0] >= 4
    result = fuzz.check(path)
    assert not fuzz.failures(result), result


@pytest.mark.parametrize("libver", ["earliest", "latest"])
def test_the_scan_opens_no_chunked_dataset(tmp_path: Path, monkeypatch, libver: str) -> None:
    path = tmp_path / "f.h5"
    with h5py.File(path, "w", libver=libver) as f:
        for i in range(20):
            ds = f.create_dataset(f"g/v{i}", data=np.arange(40.0) + i, chunks=(16,), compression=1)
            ds.attrs["units"] = "m"
        f.create_dataset("unwritten", shape=(10, 10), chunks=(3, 3), dtype="i2")
        f.create_dataset("single", data=np.arange(6), chunks=(6,))

    def opened(self):
        raise AssertionError(f"{self.name} was opened")

    monkeypatch.setattr(HeaderDataset, "id", property(opened))
    arrays = zms.scan(str(path))
    assert len(arrays["g"]) == 20
    assert arrays["single"].manifest.lengths.tolist() == [48]
    assert arrays["g/v3"].manifest.lengths.size == 3


# Hostile trees: each mutation of a file's bytes is refused by the reader (chunk_iter would list
# chunks that HDF5's lookups do not find), and the scan is never wrong.


def _root(f: h5py.File, file: FileBytes, name: str) -> int:
    parent, link = f[name].parent, name.rsplit("/", 1)[-1]
    ds = header_dataset(file, parent, parent.name, link, parent.id.links.get_info(link.encode()).u)
    assert ds is not None
    assert ds.create_plist.index is not None
    return file.address(ds.create_plist.index.layout, 3)


def _tree_file(path: Path) -> list[int]:
    """A file of one 1-D dataset in a tree of levels; the addresses of its first nodes from
    the root down to a leaf."""
    with _create(path, "earliest", 2) as f:
        f.create_dataset("x", data=np.arange(100, dtype="<i4"), chunks=(2,))
    with h5py.File(path, "r") as f, open(path, "rb") as raw:
        file = FileBytes.local(raw.fileno())
        nodes = [_root(f, file, "x")]
        while file.at(nodes[-1], 6)[5]:
            nodes.append(_children(file, nodes[-1], 2)[0])
    assert len(nodes) >= 3
    return nodes


def _children(file: FileBytes, node: int, ndims: int) -> list[int]:
    used = struct.unpack_from("<H", file.at(node, 8), 6)[0]
    entry = 8 + 8 * ndims + 8
    raw = file.at(node + 24, used * entry)
    return [struct.unpack_from("<Q", raw, i * entry + entry - 8)[0] for i in range(used)]


def _patch(path: Path, address: int, data: bytes) -> None:
    with open(path, "r+b") as raw:
        raw.seek(address)
        raw.write(data)


ENTRY = 8 + 8 * 2 + 8
"""Bytes of a key and a child address of the 1-D dataset's tree."""


def _mutations(root: int, child: int, grandchild: int, leaf: int) -> dict[str, tuple[int, bytes]]:
    first_key = root + 24
    leaf_key = leaf + 24
    return {
        "signature": (root, b"TRES"),
        "truncated node": (root, b"TREE"),
        "node type": (root + 4, b"\x00"),
        "level": (child + 5, b"\x05"),
        "entries over capacity": (child + 6, struct.pack("<H", 5)),
        "child is its parent": (first_key + ENTRY - 8, struct.pack("<Q", root)),
        "child is a sibling's": (child + 24 + ENTRY - 8 + ENTRY, struct.pack("<Q", grandchild)),
        "chunk size 0": (leaf_key, struct.pack("<I", 0)),
        "offset not a multiple": (leaf_key + 8, struct.pack("<Q", 1)),
        "offset off the grid": (leaf_key + 8, struct.pack("<Q", 200)),
        "element offset": (leaf_key + 16, struct.pack("<Q", 4)),
        "duplicate chunk": (leaf_key + ENTRY + 8, struct.pack("<Q", 0)),
        "address past the file": (leaf_key + ENTRY - 8, struct.pack("<Q", 1 << 40)),
        "key out of order": (first_key + 8, struct.pack("<Q", 98)),
        "leaf key out of order": (leaf_key + 8, struct.pack("<Q", 4)),  # its next chunk's is 2
    }


@pytest.mark.parametrize("mutation", list(_mutations(0, 0, 0, 0)))
def test_hostile_trees_are_refused_then_read_by_hdf5(tmp_path: Path, mutation: str) -> None:
    path = tmp_path / "f.h5"
    root, child, grandchild, *_, leaf = _tree_file(path)
    if mutation == "truncated node":  # a node whose entries run past the end of the file
        end = path.stat().st_size - 30
        _patch(path, end, b"TREE\x01\x01\x04\x00")
        _patch(path, root + 24 + ENTRY - 8, struct.pack("<Q", end))
    address, data = _mutations(root, child, grandchild, leaf)[mutation]
    _patch(path, address, data)
    with h5py.File(path, "r") as f, open(path, "rb") as raw:
        file = FileBytes.local(raw.fileno())
        layout = _layout(f, file)
        with pytest.raises(Refused, match="damaged chunk index"):
            btree_columns(file, layout, (2, 4), (50,))
    result = fuzz.check(path)
    assert not fuzz.failures(result), result


def _layout(f: h5py.File, file: FileBytes) -> bytes:
    ds = header_dataset(file, f, "/", "x", f.id.links.get_info(b"x").u)
    assert ds is not None
    assert ds.create_plist.index is not None
    return ds.create_plist.index.layout


def test_chunks_chunk_iter_lists_off_the_grid_refuse_the_dataset(tmp_path: Path) -> None:
    """Read through h5py, a chunk that HDF5 lists past the dataset's grid refused it alone
    (its flat index overran the columns: an IndexError that failed the whole file)."""
    path = tmp_path / "f.h5"
    *_, leaf = _tree_file(path)
    with h5py.File(path, "a") as f:
        f["y"] = np.arange(3.0)
    with open(path, "rb") as raw:
        used = struct.unpack_from("<H", FileBytes.local(raw.fileno()).at(leaf, 8), 6)[0]
    _patch(path, leaf + 24 + (used - 1) * ENTRY + 8, struct.pack("<Q", 200))  # its last chunk
    with pytest.warns(UserWarning, match="x.*chunk outside its extent"):
        arrays = scan_file(str(path), read_headers=False, on_unsupported="skip")
    assert list(arrays) == ["y"]


def test_nodes_larger_than_a_header_are_read_by_hdf5(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "f.h5"
    _tree_file(path)
    monkeypatch.setattr(chunk_tree, "MAX_HEADER_BYTES", 64)
    with h5py.File(path, "r") as f, open(path, "rb") as raw:
        file = FileBytes.local(raw.fileno())
        with pytest.raises(Unrecognised):
            btree_columns(file, _layout(f, file), (2, 4), (50,))
    store = zms.ManifestStore(zms.scan(str(path)))
    assert zarr.open_group(store, mode="r")["x"][...].tolist() == list(range(100))


@pytest.mark.parametrize("chunks", [10, 2000])
def test_damaged_fixed_arrays_refuse_their_dataset(tmp_path: Path, chunks: int) -> None:
    """A byte of a chunk's address changed: the data block's checksum fails (or, with 2000
    chunks, the first page's, after the block's prefix and its bitmap of two pages)."""
    path = tmp_path / "f.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f.create_dataset("x", data=np.arange(10 * chunks, dtype="<i4"), chunks=(10,), compression=1)
        f.create_dataset("y", data=np.arange(3.0))
    with h5py.File(path, "r") as f, open(path, "rb") as raw:
        file = FileBytes.local(raw.fileno())
        layout = _layout(f, file)
        header = file.address(layout, len(layout) - 8)
        block = file.address(file.at(header, 28), 8 + 8)
    first = block + 6 + 8 + (1 + 4 if chunks > 1024 else 0)  # the first element
    _patch(path, first + 3 * 17, b"\x01")
    with h5py.File(path, "r") as f, open(path, "rb") as raw:
        file = FileBytes.local(raw.fileno())
        what = "a page's checksum" if chunks > 1024 else "its data block's"
        with pytest.raises(Refused, match=f"damaged chunk index .fixed array: {what}"):
            array_columns(file, _layout(f, file), (10, 4), (chunks,), (10 * chunks,))
    with pytest.warns(UserWarning, match="x.*damaged chunk index"):
        arrays = zms.scan(str(path), on_unsupported="skip")
    assert list(arrays) == ["y"]


def _sparse_file(path: Path, shape: tuple[int, int], written: list[tuple[int, int]]) -> int:
    """Dataset ``x`` of ``shape`` in chunks of 2 x 2 with only the chunks ``written`` stored
    (fill value -1), and ``y`` beside it; the address of ``x``'s B-tree root (a leaf)."""
    with h5py.File(path, "w") as f:
        x = f.create_dataset("x", shape, "f8", chunks=(2, 2), fillvalue=-1)
        for i, j in written:
            x[2 * i : 2 * i + 2, 2 * j : 2 * j + 2] = np.arange(4.0).reshape(2, 2) + 10 * i + j
        f["y"] = np.arange(3.0)
    with h5py.File(path, "r") as f, open(path, "rb") as raw:
        file = FileBytes.local(raw.fileno())
        return file.address(_layout(f, file), 3)


def _move_chunk(path: Path, leaf: int, chunk: tuple[int, int], to: tuple[int, int]) -> None:
    """Changes the key of ``chunk`` (its element offsets) in the B-tree leaf at ``leaf``."""
    entry = 8 + 8 * 3 + 8  # size and mask, three offsets (the last the element's), child
    with open(path, "rb") as raw:
        node = FileBytes.local(raw.fileno()).at(leaf, 24 + 8 * entry)
    used = struct.unpack_from("<H", node, 6)[0]
    for i in range(used):
        if struct.unpack_from("<QQ", node, 24 + i * entry + 8) == chunk:
            _patch(path, leaf + 24 + i * entry + 8, struct.pack("<QQ", *to))
            return
    raise AssertionError(f"no chunk at {chunk}")


@pytest.mark.parametrize(
    ("shape", "written", "chunk", "to"),
    [
        # an inner axis past the grid: its flat index was chunk (1, 0)'s, never written
        ((4, 6), [(0, 0), (0, 1), (0, 2), (1, 1), (1, 2)], (0, 4), (0, 6)),
        # an axis of one chunk at 2: the chunk was filed at (0, 1) as if the axis were 0
        ((2, 6), [(0, 0), (0, 2)], (0, 4), (2, 2)),
    ],
    ids=["inner axis", "axis of one chunk"],
)
def test_chunks_listed_off_the_grid_on_any_axis_refuse_the_dataset(
    tmp_path: Path, shape: tuple[int, int], written: list, chunk: tuple, to: tuple
) -> None:
    """HDF5's lookups never find a chunk its index lists off the grid (reading gives the fill
    value where the scan filed the chunk): both ways of reading the index refuse it."""
    path = tmp_path / "f.h5"
    _move_chunk(path, _sparse_file(path, shape, written), chunk, to)
    with h5py.File(path, "r") as f:
        found: list[tuple[int, ...]] = []
        f["x"].id.chunk_iter(lambda info: found.append(info.chunk_offset))
        assert to in found  # chunk_iter lists it
        cells = np.prod(shape) // 4
        assert (f["x"][...] == -1).sum() == 4 * (cells - len(written) + 1)  # not found
    for read_headers in (False, True):
        with pytest.warns(UserWarning, match="x.*(outside its extent|damaged chunk index)"):
            arrays = scan_file(str(path), read_headers=read_headers, on_unsupported="skip")
        assert list(arrays) == ["y"]


def test_a_chunk_listed_twice_refuses_the_dataset(tmp_path: Path) -> None:
    """A key moved onto its neighbour's: ``chunk_iter`` lists chunk (0, 1) twice, HDF5's lookups
    find one of the two (and the fill value at (0, 2)); both ways of reading the index refuse."""
    path = tmp_path / "f.h5"
    written = [(i, j) for i in range(2) for j in range(3)]
    _move_chunk(path, _sparse_file(path, (4, 6), written), (0, 4), (0, 2))
    with h5py.File(path, "r") as f:
        found: list[tuple[int, ...]] = []
        f["x"].id.chunk_iter(lambda info: found.append(info.chunk_offset))
        assert found.count((0, 2)) == 2
    for read_headers in (False, True):
        with pytest.warns(UserWarning, match="x.*(listed twice|damaged chunk index)"):
            arrays = scan_file(str(path), read_headers=read_headers, on_unsupported="skip")
        assert list(arrays) == ["y"]
