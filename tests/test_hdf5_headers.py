"""Datasets described from their object headers give exactly what h5py's path gives (issue #18).

Every file is scanned twice, describing small datasets from their headers and
every dataset through h5py, and the two results (arrays, manifests, inline
chunks, attributes, warnings, errors) must be identical: files of every kind
(the generated corpus, each attribute type, fill values, byte orders, user
blocks, MATLAB-v7.3-like and netCDF-4 files), written with version 1 object
headers (libver earliest) and version 2 ones (latest).
"""

from __future__ import annotations

import os
import struct
import warnings
from pathlib import Path

import h5netcdf
import h5py
import numpy as np
import pytest
from h5py import h5d, h5p, h5s, h5t
from hdf5_corpus import CASES, Case

from zarr_manifest_store.scan.hdf5 import dimensions, scan_file
from zarr_manifest_store.scan.hdf5.headers import (
    BLOCK_BYTES,
    FileBytes,
    Unrecognised,
    lookup3,
    object_messages,
)
from zarr_manifest_store.scan.hdf5.parsed import HeaderDataset, header_dataset

LIBVERS = ("earliest", "latest")


def _scan(path: Path | str, read_headers: bool, **options):
    """The scan's result (or its error) and its warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = scan_file(str(path), read_headers=read_headers, **options)
        except Exception as e:  # the same error both ways is parity too
            result = (type(e), str(e))
    return result, [str(w.message) for w in caught]


def assert_same_scan(path: Path | str, *, fails: bool = False, **options) -> None:
    """Both ways give the same result and warnings (the same error, where ``fails``)."""
    fast, fast_warnings = _scan(path, True, **options)
    slow, slow_warnings = _scan(path, False, **options)
    assert isinstance(slow, tuple) == fails, slow
    assert fast == slow
    assert fast_warnings == slow_warnings


def described_from_headers(path: Path) -> set[str]:
    """The datasets of the file the fast path describes from their headers."""
    found: set[str] = set()
    with h5py.File(path, "r") as f, open(path, "rb") as raw:
        file = FileBytes.local(raw.fileno())

        def visit(name: str, obj: object) -> None:
            if isinstance(obj, h5py.Group):
                for link in obj:
                    info = obj.id.links.get_info(link.encode())
                    if info.type != h5py.h5l.TYPE_HARD:
                        continue
                    ds = header_dataset(file, obj, obj.name, link, info.u)
                    if ds is not None:
                        found.add(ds.name)

        visit("/", f)
        f.visititems(visit)
    return found


@pytest.fixture(params=LIBVERS)
def libver(request, monkeypatch) -> str:
    """Files written by h5py with this library version bound (v1 or v2 object headers)."""

    class Bounded(h5py.File):
        def __init__(self, *args, **kwargs):
            if (len(args) > 1 and args[1] in ("w", "a", "x")) or kwargs.get("mode") in ("w", "a"):
                kwargs.setdefault("libver", request.param)
            super().__init__(*args, **kwargs)

    monkeypatch.setattr(h5py, "File", Bounded)
    return request.param


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_corpus_scans_the_same_from_headers(case: Case, libver: str, tmp_path: Path) -> None:
    path = tmp_path / f"{case.name}.h5"
    case.build(path)
    assert_same_scan(path, on_unsupported="skip", **case.options)


def _attributes(obj: h5py.HLObject) -> None:
    """One attribute of every kind of number and string h5py writes."""
    a = obj.attrs
    a["f8"] = 1.5
    a["f4_big"] = np.array([1.0, -2.5], dtype=">f4")
    a["i1"] = np.int8(-3)
    a["u8"] = np.arange(6, dtype="u8").reshape(2, 3)
    a["i2_big"] = np.array(7, dtype=">i2")
    a["bytes"] = np.bytes_("double")
    a["bytes_array"] = np.array([b"ab", b"c"], dtype="S2")
    a["str"] = "variable-length text"
    a["str_array"] = np.array(["x", "yz", "é"], dtype=h5py.string_dtype())
    a["ascii_vlen"] = np.array([b"abc"], dtype=h5py.string_dtype("ascii"))
    a["empty_numbers"] = h5py.Empty("f4")
    a["empty_text"] = h5py.Empty("S3")
    a["zero_length"] = np.zeros(0, dtype="i4")
    a["float16"] = np.float16(0.5)


def _other_attributes(obj: h5py.HLObject) -> None:
    """Attributes of types left to h5py."""
    a = obj.attrs
    a["bool"] = np.True_
    a["complex"] = np.complex64(1 + 2j)
    a["compound"] = np.array((1, 2.5), dtype=[("a", "i2"), ("b", "f8")])
    a["enum"] = np.array(1, dtype=h5py.enum_dtype({"a": 0, "b": 1}, basetype="u1"))
    a["reference"] = obj.ref
    a["empty_vlen"] = ""


def _nullterm_string(obj: h5py.HLObject, name: str, value: bytes, pad: int) -> None:
    """A fixed-length string attribute with netCDF-C's null-terminated padding (or another)."""
    tid = h5t.C_S1.copy()
    tid.set_size(len(value))
    tid.set_strpad(pad)
    aid = h5py.h5a.create(obj.id, name.encode(), tid, h5s.create(h5s.SCALAR))
    aid.write(np.array(value, dtype=f"S{len(value)}"), mtype=tid)


def _kinds(path: Path) -> None:
    with h5py.File(path, "w") as f:
        f["scalar"] = 2.5
        f["contiguous"] = np.arange(12, dtype="i2").reshape(3, 4)
        f["big_endian"] = np.arange(5, dtype=">f8")
        f["text"] = np.array([b"ab", b"c"], dtype="S2")
        f["empty"] = np.zeros((0, 3), dtype="u1")
        f.create_dataset("null", data=h5py.Empty("f4"))
        f.create_dataset("unwritten", shape=(4,), dtype="f4", fillvalue=-1.5)
        f.create_dataset("unwritten_default", shape=(2, 2), dtype="i4")
        f.create_dataset("filled", data=np.ones(3), fillvalue=np.nan)
        f.create_dataset("chunked", data=np.arange(10.0), chunks=(4,), compression="gzip")
        f.create_dataset("vlen", data=["a", "bc"], dtype=h5py.string_dtype())
        f.create_dataset("bools", data=np.array([True, False]))
        f.create_dataset("complex", data=np.array([1 + 2j]))
        f.create_dataset("half", data=np.array([1.5], dtype="f2"))
        f.create_dataset("ref", data=np.array([f.ref], dtype=h5py.ref_dtype))
        f.create_dataset("big_compound", data=np.zeros(2, dtype=[("a", ">i2"), ("b", "<f8")]))
        for layout, name in ((h5d.COMPACT, "compact"), (h5d.CONTIGUOUS, "no_fill")):
            dcpl = h5p.create(h5p.DATASET_CREATE)
            dcpl.set_layout(layout)
            if name == "no_fill":
                dcpl.set_fill_time(h5d.FILL_TIME_NEVER)
                dcpl.set_fill_value(np.array(7, "i4"))
            space = h5s.create_simple((2, 3))
            h5d.create(f.id, name.encode(), h5t.STD_I32LE, space, dcpl=dcpl).close()
        f["compact"][...] = np.arange(6).reshape(2, 3)
        f["plain"] = np.arange(4.0)
        _attributes(f["plain"])
        _attributes(f)
        f["few"] = np.arange(2.0)  # compact attribute storage in v2 headers too (<= 8)
        for name in ("f4_big", "bytes", "str", "str_array", "empty_text", "zero_length"):
            f["few"].attrs[name] = f["plain"].attrs[name]
        f["other"] = np.arange(2.0)
        _other_attributes(f["other"])
        _other_attributes(f)
        f["strings"] = np.arange(3)
        _nullterm_string(f["strings"], "nullterm", b"ab\0c", h5t.STR_NULLTERM)
        _nullterm_string(f["strings"], "nullpad", b"ab\0c", h5t.STR_NULLPAD)
        f["spacepad"] = np.arange(3)
        _nullterm_string(f["spacepad"], "spacepad", b"ab  ", h5t.STR_SPACEPAD)
        f["dense"] = np.arange(2)
        for i in range(12):
            f["dense"].attrs[f"a{i:02d}"] = i  # past 8: dense storage with libver latest
        f["named_type"] = np.dtype("<i4")
        f.create_dataset("of_named_type", data=np.arange(3, dtype="i4"), dtype=f["named_type"])
        f.create_group("sub/deeper")["x"] = np.arange(3)
        f["sub"].attrs["title"] = "a group"
        f["soft"] = h5py.SoftLink("/plain")
        f["hard"] = f["plain"]


def test_every_kind_of_dataset_scans_the_same(libver: str, tmp_path: Path) -> None:
    path = tmp_path / "kinds.h5"
    _kinds(path)
    assert_same_scan(path, on_unsupported="skip")
    fast = described_from_headers(path)
    # the ordinary datasets are described from their headers (else this test proves nothing)
    assert {"/scalar", "/contiguous", "/big_endian", "/text", "/compact", "/few"} <= fast
    assert {"/unwritten", "/unwritten_default", "/filled", "/sub/deeper/x", "/strings"} <= fast
    assert "/chunked" in fast
    assert {"/other", "/spacepad"} <= fast  # attributes of other types: h5py reads those alone
    assert not {"/vlen", "/ref", "/null", "/of_named_type"} & fast
    assert {"/dense", "/plain"} <= fast  # in dense attribute storage with libver latest


def test_user_block_and_matlab_like_file(tmp_path: Path) -> None:
    path = tmp_path / "matlab.mat"
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        for i in range(30):
            dcpl = h5p.create(h5p.DATASET_CREATE)
            dcpl.set_layout(h5d.COMPACT if i % 2 else h5d.CONTIGUOUS)
            dtype = h5t.IEEE_F64LE if i % 3 else h5t.STD_U16LE
            name = f"c{i}".encode()
            h5d.create(refs.id, name, dtype, h5s.create_simple((1, 3)), dcpl=dcpl).close()
            refs[name.decode()][...] = np.arange(3).reshape(1, 3) + i
            refs[name.decode()].attrs["MATLAB_class"] = np.bytes_("double" if i % 3 else "char")
            refs[name.decode()].attrs["H5PATH"] = np.bytes_(f"/EEG/f{i}")
        f["EEG/data"] = np.zeros((4, 5), dtype="f4")
        f["EEG/data"].attrs["MATLAB_class"] = np.bytes_("single")
    with open(path, "r+b") as raw:
        raw.write(b"MATLAB 7.3 MAT-file".ljust(128))
    assert_same_scan(path)
    assert len(described_from_headers(path)) == 31


def test_netcdf4_file_written_by_h5netcdf(tmp_path: Path) -> None:
    path = tmp_path / "cf.nc"
    with h5netcdf.File(path, "w") as f:
        f.dimensions = {"x": 3, "time": None}
        x = f.create_variable("x", ("x",), "f8", data=[1.0, 2.0, 3.0])
        x.attrs["units"] = "m"
        t = f.create_variable("time", ("time",), "i4", chunks=(4,))
        t.resize_dimension("time", 2) if hasattr(t, "resize_dimension") else None
        v = f.create_variable("v", ("x",), "f4", data=np.ones(3), fillvalue=np.float32(-9))
        v.attrs["long_name"] = "a variable"
        s = f.create_variable("scalar", (), "i8", data=5)
        s.attrs["flag_values"] = np.array([1, 2], dtype="i1")
        f.attrs["title"] = "netCDF-4"
    assert_same_scan(path)


def test_odd_headers_fall_back_rather_than_guess(tmp_path: Path) -> None:
    path = tmp_path / "v2.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f["x"] = np.arange(3.0)
        address = h5py.h5o.get_info(f["x"].id).addr
    data = bytearray(path.read_bytes())
    with h5py.File(path, "r") as f, open(path, "rb") as raw:
        assert header_dataset(FileBytes.local(raw.fileno()), f["/"], "/", "x", address)
    data[address + 10] ^= 0xFF  # inside the header: its checksum no longer matches
    path.write_bytes(bytes(data))
    with open(path, "rb") as raw:
        file = FileBytes.local(raw.fileno())
        with pytest.raises(Unrecognised, match="checksum"):
            HeaderDataset.read(file, None, "/x", address)


def test_lookup3_matches_hdf5s_checksums() -> None:
    # Bob Jenkins' published test values of hashlittle with initval 0
    assert lookup3(b"") == 0xDEADBEEF
    assert lookup3(b"Four score and seven years ago") == 0x17770551


def test_files_without_a_superblock_read_nothing(tmp_path: Path) -> None:
    path = tmp_path / "nothing.h5"
    path.write_bytes(os.urandom(100))
    with open(path, "rb") as raw, pytest.raises(Unrecognised):
        FileBytes.local(raw.fileno())


def test_remote_files_scan_the_same_from_headers(http_server, monkeypatch) -> None:
    path = http_server.root / "kinds.h5"
    _kinds(path)
    described: list[HeaderDataset | None] = []

    def recorded(*args):
        described.append(header_dataset(*args))
        return described[-1]

    monkeypatch.setattr(dimensions, "header_dataset", recorded)
    assert_same_scan(f"{http_server.url}/kinds.h5", on_unsupported="skip")
    assert sum(ds is not None for ds in described) >= 10  # read through the remote file


def test_a_null_dataset_is_refused_alone(tmp_path: Path) -> None:
    path = tmp_path / "null.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("null", data=h5py.Empty("f4"))
        f["x"] = np.arange(3)
    with pytest.warns(UserWarning, match="'null': has a null dataspace"):
        group = scan_file(str(path), on_unsupported="skip")
    assert list(group.arrays) == ["x"]


def test_damaged_headers_are_left_to_h5py_without_looping_or_reading_the_file(
    tmp_path: Path,
) -> None:
    superblock = b"\x89HDF\r\n\x1a\n" + bytes([0, 0, 0, 0, 0, 8, 8, 0]) + bytes(48)
    prefix = struct.pack("<BBHII4x", 1, 0, 1, 1, 24)
    looping = struct.pack("<HHB3xQQ", 0x10, 16, 0, 144, 24)  # continues at itself
    path = tmp_path / "damaged.h5"
    path.write_bytes(superblock.ljust(128, b"\0") + prefix + looping + bytes(64))
    with open(path, "rb") as raw:
        file = FileBytes.local(raw.fileno())
        with pytest.raises(Unrecognised, match="loop"):
            object_messages(file, 128)
        huge = struct.pack("<BBHII4x", 1, 0, 1, 1, 1 << 30)  # a damaged size field
        path.write_bytes(superblock.ljust(128, b"\0") + huge + bytes(64))
    with open(path, "rb") as raw, pytest.raises(Unrecognised, match="bytes at address"):
        object_messages(FileBytes.local(raw.fileno()), 128)


@pytest.mark.parametrize("libver", LIBVERS)
def test_a_scan_leaves_no_h5py_object_to_the_garbage_collector(tmp_path, libver):
    """The objects a scan opens are freed when it returns, not left in reference cycles: the
    garbage collector may free them later on any thread, and an h5py object freed takes h5py's
    lock. A store read on a thread while the caller holds that lock (iterating an h5py file's
    ``items()``, say) deadlocked when such a collection came on the reading thread."""
    import gc

    path = tmp_path / "f.h5"
    with h5py.File(path, "w", libver=libver) as f:
        f.create_dataset("compact", data=np.arange(4.0), chunks=None)
        f.create_dataset("chunked", data=np.arange(100.0), chunks=(10,), compression="gzip")
        f["chunked"].attrs["units"] = "K"
        f.create_group("g").create_dataset("ref", data=f["compact"].ref)  # read through h5py
    gc.collect()
    collecting = gc.get_debug()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the reference dataset is refused
            scan_file(str(path), on_unsupported="skip")
        gc.collect()
        left = {type(o).__qualname__ for o in gc.garbage if type(o).__module__.startswith("h5py")}
    finally:
        gc.set_debug(collecting)
        gc.garbage.clear()
    assert not left


def test_reads_across_blocks_give_exactly_the_bytes_asked(tmp_path: Path) -> None:
    path = tmp_path / "blocks.h5"
    with h5py.File(path, "w") as f:
        f["data"] = np.random.default_rng(0).integers(0, 255, 5 * BLOCK_BYTES, dtype="u1")
    data = path.read_bytes()
    fd = os.open(path, os.O_RDONLY)
    try:
        file = FileBytes.local(fd)
        rng = np.random.default_rng(1)
        for _ in range(200):
            start = int(rng.integers(0, len(data)))
            stop = min(len(data), start + int(rng.integers(0, 3 * BLOCK_BYTES)))
            assert file.read(start, stop) == data[start:stop]
            assert file.at(start - file.base, stop - start) == data[start:stop]
        edge = 2 * BLOCK_BYTES
        assert file.read(edge - 1, edge + 1) == data[edge - 1 : edge + 1]
        assert file.at(edge - 1, 2) == data[edge - 1 : edge + 1]
        assert file.at(edge - 1, 1) == data[edge - 1 : edge]
        assert file.read(edge, edge) == b""
        assert file.at(len(data) - 3, 3) == data[-3:]
        for address, size in [(len(data) - 2, 3), (len(data) + 5, 1), (8, -1), (-1, 4)]:
            with pytest.raises(Unrecognised):  # past the end, or no bytes at all
                file.at(address, size)
    finally:
        os.close(fd)
