"""Chunked datasets described from their object headers (issue #18): the layout and filter
pipeline messages give exactly what h5py's creation properties give, every dataset reads
through ManifestStore exactly as h5py reads it (or is refused alone, as through h5py), and
the ordinary ones take the header path: chunk indexes of every kind (version 1 B-tree,
single chunk, implicit, fixed array, extensible array, version 2 B-tree), HDF5's filters
and plugins', fill values, partial edge chunks, unlimited dimensions, unwritten chunks.
"""

from __future__ import annotations

import ctypes
import importlib
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import pytest
import zarr
from h5py import h5d, h5p, h5s, h5t, h5z
from test_hdf5_headers import assert_same_scan, described_from_headers

import zarr_manifest_store as zms
from zarr_manifest_store.scan.hdf5.headers import FileBytes
from zarr_manifest_store.scan.hdf5.parsed import HeaderDataset, header_dataset

fuzz = importlib.import_module("benchmarks.fuzz_hdf5")

PLUGINS = {
    "blosc": hdf5plugin.Blosc(cname="lz4", clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE),
    "zstd": hdf5plugin.Zstd(clevel=3),
    "lz4": hdf5plugin.LZ4(),
    "bitshuffle": hdf5plugin.Bitshuffle(),
}
DONT_FILTER_PARTIAL_CHUNKS = 0x0002
"""HDF5's ``H5D_CHUNK_DONT_FILTER_PARTIAL_CHUNKS``."""
UNUSUAL = {"/no_partial_filtering", "/fill_never_unwritten"}
"""Datasets the header path leaves to h5py (a layout flag it does not read; fill time never)."""


def _low_level(f: h5py.File, name: str, shape, maxshape, chunks, setup) -> h5py.Dataset:
    """A dataset created through a creation property list that ``setup`` fills in."""
    dcpl = h5p.create(h5p.DATASET_CREATE)
    dcpl.set_chunk(chunks)
    setup(dcpl)
    space = h5s.create_simple(shape, maxshape)
    h5d.create(f.id, name.encode(), h5t.NATIVE_INT32, space, dcpl=dcpl).close()
    return f[name]


def _chunked_kinds(path: Path, libver: str) -> None:
    data = np.arange(70, dtype="f4").reshape(10, 7)
    ints = np.arange(70, dtype="i4").reshape(10, 7) - 30
    with h5py.File(path, "w", libver=libver) as f:
        f.create_dataset("gzip", data=data, chunks=(4, 3), compression="gzip")
        f.create_dataset("shuffle_gzip", data=ints, chunks=(4, 3), shuffle=True, compression=4)
        f.create_dataset("fletcher", data=data, chunks=(5, 7), fletcher32=True)
        f.create_dataset("all_three", data=ints, chunks=(3, 3), shuffle=True, fletcher32=True)
        f.create_dataset("plain", data=data, chunks=(10, 7))  # one chunk: single-chunk index
        f.create_dataset("lzf", data=ints, chunks=(4, 4), compression="lzf")
        f.create_dataset("scaleoffset", data=ints, chunks=(4, 4), scaleoffset=0)
        if h5z.filter_avail(h5z.FILTER_SZIP):
            f.create_dataset("szip", data=ints, chunks=(4, 4), compression="szip")
        _low_level(f, "nbit", (6,), (6,), (4,), lambda d: d.set_filter(h5z.FILTER_NBIT))[...] = (
            np.arange(6)
        )
        for name, plugin in PLUGINS.items():
            f.create_dataset(name, data=ints, chunks=(4, 3), **plugin)
        f.create_dataset("big_endian", data=data.astype(">f8"), chunks=(3, 2), compression=1)
        f.create_dataset("cube", data=np.arange(60, dtype="u2").reshape(3, 4, 5), chunks=(2, 3, 2))
        filled = f.create_dataset("fill", shape=(10, 7), chunks=(4, 3), dtype="f4", fillvalue=-1.5)
        filled[:4, :3] = 1  # one chunk written, the rest never
        f.create_dataset("unwritten", shape=(5,), chunks=(2,), dtype="i2", compression="gzip")
        grow = f.create_dataset("unlimited", data=np.arange(5.0), chunks=(2,), maxshape=(None,))
        grow.resize((9,))
        grow[5:] = 7  # written past the first extent; chunk 2 stays partly the fill value
        late = f.create_dataset("unlimited_last", data=ints, chunks=(4, 3), maxshape=(10, None))
        late.resize((10, 12))
        both = f.create_dataset("two_unlimited", data=ints, chunks=(4, 3), maxshape=(None, None))
        both[8:, 5:] = 0
        fixed = f.create_dataset("fixed_max", (10, 7), "f4", chunks=(4, 3), maxshape=(20, 7))
        fixed[...] = data
        f.create_dataset("single_filtered", data=data, chunks=(10, 7), compression="gzip")

        def early(dcpl: h5p.PropDCID) -> None:
            dcpl.set_alloc_time(h5d.ALLOC_TIME_EARLY)

        _low_level(f, "implicit", (9,), (9,), (4,), early)[:5] = np.arange(5)

        def no_partial(dcpl: h5p.PropDCID) -> None:
            dcpl.set_deflate(1)
            lib = ctypes.CDLL(h5py.h5.__file__)  # h5py does not wrap H5Pset_chunk_opts
            lib.H5Pset_chunk_opts.argtypes = [ctypes.c_int64, ctypes.c_uint]
            assert lib.H5Pset_chunk_opts(dcpl.id, DONT_FILTER_PARTIAL_CHUNKS) >= 0

        _low_level(f, "no_partial_filtering", (9,), (9,), (4,), no_partial)[...] = np.arange(9)

        def never(dcpl: h5p.PropDCID) -> None:
            dcpl.set_fill_time(h5d.FILL_TIME_NEVER)

        _low_level(f, "fill_never_unwritten", (9,), (9,), (4,), never)[:4] = 1
        for name in ("gzip", "unlimited", "plain"):
            f[name].attrs["units"] = "K"
            f[name].attrs["long_name"] = f"the {name}"


@pytest.fixture(params=["earliest", "latest"])
def chunked_file(request, tmp_path: Path) -> Path:
    path = tmp_path / f"chunked-{request.param}.h5"
    _chunked_kinds(path, request.param)
    return path


def _headers(path: Path) -> dict[str, HeaderDataset]:
    found = {}
    with h5py.File(path, "r") as f, open(path, "rb") as raw:
        file = FileBytes.local(raw.fileno())
        for name in f:
            info = f.id.links.get_info(name.encode())
            ds = header_dataset(file, f, "/", name, info.u)
            if ds is not None:
                found[name] = ds
    return found


def test_chunked_datasets_take_the_header_path(chunked_file: Path) -> None:
    with h5py.File(chunked_file, "r") as f:
        names = {f"/{n}" for n in f}
    assert described_from_headers(chunked_file) == names - UNUSUAL


def test_creation_properties_from_headers_are_h5pys(chunked_file: Path) -> None:
    with h5py.File(chunked_file, "r") as f:
        for name, ds in _headers(chunked_file).items():
            ours, theirs = ds.create_plist, f[name].id.get_create_plist()
            assert ours.get_layout() == theirs.get_layout() == h5d.CHUNKED, name
            assert ours.get_chunk() == theirs.get_chunk(), name
            assert ours.get_nfilters() == theirs.get_nfilters(), name
            for i in range(theirs.get_nfilters()):
                assert ours.get_filter(i) == theirs.get_filter(i), (name, i)
            assert ours.fill_value_defined() == theirs.fill_value_defined(), name
            if theirs.fill_value_defined() != h5d.FILL_VALUE_UNDEFINED:
                mine, h5pys = np.zeros(1, ds.dtype), np.zeros(1, ds.dtype)
                ours.get_fill_value(mine)
                theirs.get_fill_value(h5pys)
                assert mine.tobytes() == h5pys.tobytes(), name


def test_chunked_datasets_read_as_h5py_reads_them(chunked_file: Path) -> None:
    assert_same_scan(chunked_file, on_unsupported="skip")
    result = fuzz.check(chunked_file)
    assert not fuzz.failures(result), result
    classes = {r["name"]: r["class"] for r in result["records"] if r["name"]}
    assert classes.pop("fill_never_unwritten") == "refused"
    assert set(classes.values()) == {"exact"}, classes


def test_filter_pipeline_version_1_names_and_padding(tmp_path: Path) -> None:
    """Version 1 pipelines store every name padded to 8 bytes and pad odd client data."""
    path = tmp_path / "v1.h5"
    with h5py.File(path, "w", libver="earliest") as f:
        f.create_dataset("x", data=np.arange(9), chunks=(4,), compression="gzip", shuffle=True)
        f.create_dataset("blosc", data=np.arange(9.0), chunks=(4,), **PLUGINS["blosc"])
    with h5py.File(path, "r") as f:
        for name, ds in _headers(path).items():
            theirs = f[name].id.get_create_plist()
            filters = [theirs.get_filter(i) for i in range(theirs.get_nfilters())]
            assert [ds.create_plist.get_filter(i) for i in range(len(filters))] == filters
    assert set(_headers(path)) == {"x", "blosc"}


def test_datasets_open_by_name_where_hdf5_cannot_open_them_by_address(tmp_path, monkeypatch):
    """``H5Oopen_by_addr`` is a deprecated call an HDF5 may be built without: the scan then opens
    header-described datasets by name and gives the same result."""
    from zarr_manifest_store.scan.hdf5 import library

    path = tmp_path / "f.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("g/chunked", data=np.arange(100.0), chunks=(10,), compression="gzip")
    monkeypatch.setattr(library, "_opener", lambda: None)
    assert described_from_headers(path) == {"/g/chunked"}
    store = zms.ManifestStore(zms.scan(str(path)))
    assert zarr.open_group(store, mode="r")["g/chunked"][...].tolist() == np.arange(100.0).tolist()
