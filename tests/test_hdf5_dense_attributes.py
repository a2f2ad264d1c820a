"""Dense attribute storage read from the file (issue #18): a header whose attributes HDF5
moved to a fractal heap indexed by a version 2 B-tree takes the header path, and the scan
equals the scan through h5py (names, order, values)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5netcdf
import h5py
import numpy as np
import pytest
from test_hdf5_headers import assert_same_scan, described_from_headers

from zarr_manifest_store.scan.hdf5.headers import FileBytes, Unrecognised, lookup3
from zarr_manifest_store.scan.hdf5.parsed import HeaderDataset


def _values(i: int) -> object:
    """An attribute of each type the header path reads, by ``i``."""
    kinds = (
        np.arange(i % 5 + 1, dtype="i4"),
        np.float64(i) / 3,
        np.bytes_(b"fixed" * (i % 4 + 1)),
        f"text {i}",
        np.array([1, 2], "u1"),
        np.array([f"s{i}", "two"], h5py.string_dtype()),
    )
    return kinds[i % len(kinds)]


def _make(path: Path, count: int, track: bool, deleted: int = 0) -> dict[str, object]:
    """A dataset ``d`` of ``count`` attributes created in another order than by name."""
    with h5py.File(path, "w", libver="latest", track_order=track) as f:
        d = f.create_dataset("d", data=np.arange(3.0), track_order=track)
        for i in range(count):
            d.attrs.create(f"z{(count - i) % count:04d}" + "x" * (i % 7), _values(i))
        for i in range(0, 2 * deleted, 2):  # free space in the heap
            del d.attrs[f"z{(count - i) % count:04d}" + "x" * (i % 7)]
        return {name: d.attrs[name] for name in d.attrs}


def _header_attributes(path: Path) -> HeaderDataset:
    with h5py.File(path, "r") as f, open(path, "rb") as raw:
        address = f.id.links.get_info(b"d").u
        ds = HeaderDataset.read(FileBytes.local(raw.fileno()), f, "d", address)
        return {name: ds.attributes[name] for name in ds.attributes}


def _assert_read_like_h5py(path: Path) -> None:
    """Dataset ``d``'s attributes from its header are h5py's, and so is the scan."""
    with h5py.File(path, "r") as f:
        expected = dict(f["d"].attrs)
    found = _header_attributes(path)
    assert list(found) == list(expected)
    for name, value in expected.items():
        np.testing.assert_array_equal(found[name], value)
    assert_same_scan(path)


@pytest.mark.parametrize("track", [False, True])
@pytest.mark.parametrize(("count", "deleted"), [(9, 0), (50, 0), (500, 0), (60, 20)])
def test_dense_attributes_take_the_header_path(
    tmp_path: Path, track: bool, count: int, deleted: int
) -> None:
    path = tmp_path / "dense.h5"
    expected = _make(path, count, track, deleted)
    found = _header_attributes(path)
    assert list(found) == list(expected)  # h5py's order: creation order where tracked
    assert (list(found) == sorted(found)) != track
    for name, value in expected.items():
        np.testing.assert_array_equal(found[name], value)
        assert type(found[name]) is type(value)
    assert described_from_headers(path) == {"/d"}
    assert_same_scan(path)


def test_long_names_and_values(tmp_path: Path) -> None:
    path = tmp_path / "long.h5"
    with h5py.File(path, "w", libver="latest") as f:
        d = f.create_dataset("d", data=np.arange(3.0), track_order=True)
        for i in range(12):  # up to 2.4 KiB: objects in the heap's blocks
            d.attrs[f"{'n' * (50 * i + 1)}{i}"] = np.arange(20 * i, dtype="f8")
    _assert_read_like_h5py(path)
    with h5py.File(path, "a") as f:  # past the heap's largest managed object: a huge object
        f["d"].attrs["huge"] = np.arange(1000, dtype="f8")
    assert described_from_headers(path) == set()  # h5py's, as before
    assert_same_scan(path)


def _deep(path: Path) -> None:
    with h5py.File(path, "w", libver="latest") as f:
        d = f.create_dataset("d", data=np.arange(3.0), track_order=True)
        for i in range(700):  # 700 KB of attributes: past the root indirect block's direct rows
            d.attrs[f"a{i}"] = np.full(120, i, "f8")


def test_indirect_blocks_below_indirect_blocks(tmp_path: Path) -> None:
    path = tmp_path / "deep.h5"
    _deep(path)
    _assert_read_like_h5py(path)


NETCDF_C_DENSE = """
import sys, netCDF4, numpy as np
with netCDF4.Dataset(sys.argv[1], "w") as nc:
    nc.createDimension("x", 3)
    nc.createVariable("x", "f8", ("x",))[:] = [1, 2, 3]
    for n in (9, 40):
        v = nc.createVariable(f"v{n}", "f4", ("x",))
        for i in range(n):
            v.setncattr(f"a{n - i:03d}", np.float32(i) if i % 2 else f"text {i}")
        v[:] = 1
"""


def test_netcdf_c_dense_attributes(tmp_path: Path) -> None:
    path = tmp_path / "netcdf-c.nc"
    subprocess.run([sys.executable, "-c", NETCDF_C_DENSE, str(path)], check=True)
    assert described_from_headers(path) >= {"/v9", "/v40"}
    assert_same_scan(path)


@pytest.mark.parametrize("signature", [b"FRHP", b"FHDB", b"FHIB", b"BTHD", b"BTIN", b"BTLF"])
def test_a_damaged_block_is_left_to_h5py(tmp_path: Path, signature: bytes) -> None:
    path = tmp_path / "damaged.h5"
    _make(path, 500, True)
    data = bytearray(path.read_bytes())
    at = data.index(signature) + 20  # inside the block, under its checksum
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(Unrecognised, match="checksum mismatch"):
        _header_attributes(path)


def test_an_indirect_block_that_holds_itself_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "loop.h5"
    _deep(path)
    data = bytearray(path.read_bytes())
    root = data.index(b"FHIB\0")
    while data[root + 13 : root + 18] != bytes(5):  # the root: at heap offset 0
        root = data.index(b"FHIB\0", root + 1)
    entries = root + 18  # after the heap's address (8 bytes) and the block offset (5)
    child = entries + 8 * 4 * 8  # row 8, the first of indirect blocks (width 4)
    assert data[child : child + 8] != b"\xff" * 8
    data[child : child + 8] = root.to_bytes(8, "little")
    size = 18 + 12 * 4 * 8  # the root's 12 rows
    data[root + size : root + size + 4] = lookup3(bytes(data[root : root + size])).to_bytes(
        4, "little"
    )
    path.write_bytes(bytes(data))
    with pytest.raises(Unrecognised, match="offset"):
        _header_attributes(path)


def test_h5netcdf_dense_attributes(tmp_path: Path) -> None:
    path = tmp_path / "h5netcdf.nc"
    with h5netcdf.File(path, "w") as f:
        f.dimensions = {"x": 3}
        f.create_variable("x", ("x",), "f8", data=[1.0, 2.0, 3.0])
        v = f.create_variable("v", ("x",), "f4", data=np.ones(3, "f4"))
        for i in range(30):
            v.attrs[f"a{30 - i:02d}"] = f"text {i}" if i % 2 else np.int32(i)
    with h5py.File(path, "r") as f:
        assert list(f["v"].attrs) != sorted(f["v"].attrs)  # creation order is kept
    assert "/v" in described_from_headers(path)
    assert_same_scan(path)
