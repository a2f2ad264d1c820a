"""The bugs the HDF5 fuzzer (tests/h5fuzz_files.py, benchmarks/fuzz_hdf5.py) found, each on a
small file generated here: exact or refused alone, never wrong values or a failed scan."""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest
import zarr
from h5py import h5d, h5p, h5s, h5t

import zarr_manifest_store as zms
from zarr_manifest_store.scan.hdf5 import scan_file

pytestmark = pytest.mark.filterwarnings("ignore::zarr.errors.UnstableSpecificationWarning")


def _scan_skip(path) -> tuple[zms.ManifestGroup, list[str]]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        group = zms.scan(str(path), on_unsupported="skip")
    return group, [str(w.message) for w in caught if "left out" in str(w.message)]


def _read(group: zms.ManifestGroup, name: str) -> np.ndarray:
    return zarr.open_group(zms.ManifestStore(group), mode="r")[name][...]


def _dataset(f, name, shape, *, chunks=None, fill=None, fill_time=None, filters=()):
    dcpl = h5p.create(h5p.DATASET_CREATE)
    if chunks:
        dcpl.set_chunk(chunks)
    if fill is not None:
        dcpl.set_fill_value(np.array([fill], dtype="<i4"))
    if fill_time is not None:
        dcpl.set_fill_time(fill_time)
    for code in filters:
        dcpl.set_filter(code, h5py.h5z.FLAG_OPTIONAL, ())
    space = h5s.create_simple(shape)
    return h5py.Dataset(h5d.create(f.id, name.encode(), h5t.STD_I32LE, space, dcpl=dcpl))


def test_a_virtual_datasets_contiguous_source_is_described(tmp_path):
    """A virtual dataset whose source is contiguous and never written failed the whole scan
    (AttributeError)."""
    with h5py.File(tmp_path / "src.h5", "w") as f:
        f.create_dataset("a", shape=(5,), dtype="<i2", fillvalue=3)
    layout = h5py.VirtualLayout(shape=(1, 5), dtype="<i2")
    layout[0] = h5py.VirtualSource("src.h5", "a", shape=(5,))
    with h5py.File(tmp_path / "vds.h5", "w") as f:
        f.create_virtual_dataset("v", layout, fillvalue=3)
    group = zms.scan(str(tmp_path / "vds.h5"))
    assert _read(group, "v").tolist() == [[3, 3, 3, 3, 3]]


@pytest.mark.parametrize("read_headers", [True, False])
@pytest.mark.parametrize("userblock", [0, 512, 4096])
def test_unwritten_contiguous_data_after_a_user_block_reads_as_its_fill_value(
    tmp_path, userblock, read_headers
):
    """HDF5 gives an unallocated contiguous dataset the offset ``user block - 1`` (the base
    address added to the undefined address): the scan read the user block's last byte and
    what follows it as data, when it described the dataset through h5py (a header it does
    not read itself: ``read_headers=False`` forces that)."""
    path = tmp_path / "ub.h5"
    with h5py.File(path, "w", userblock_size=userblock or None) as f:
        f.create_dataset("never", shape=(3,), dtype="<u8", fillvalue=7)
        f["written"] = np.arange(3, dtype="<u8")
    with open(path, "r+b") as raw:
        raw.write(b"\xff" * userblock)  # what a user block holds is none of HDF5's business
    group = scan_file(str(path), read_headers=read_headers)
    assert _read(group, "never").tolist() == [7, 7, 7]
    assert _read(group, "written").tolist() == [0, 1, 2]


def test_fill_time_never_refuses_only_data_never_written(tmp_path):
    """With fill time "never" (netCDF's NC_NOFILL) HDF5 leaves the reader's buffer as it was
    where nothing was written: such data was served as the fill value."""
    path = tmp_path / "nofill.h5"
    with h5py.File(path, "w") as f:
        never = h5d.FILL_TIME_NEVER
        _dataset(f, "contiguous", (4,), fill=5, fill_time=never)
        _dataset(f, "chunked", (4,), chunks=(2,), fill=5, fill_time=never)[:2] = [1, 2]
        _dataset(f, "whole", (4,), chunks=(2,), fill=5, fill_time=never)[:] = [1, 2, 3, 4]
        _dataset(f, "ifset", (4,), chunks=(2,), fill=5)[:2] = [1, 2]
    group, messages = _scan_skip(path)
    assert sorted(group.arrays) == ["ifset", "whole"]
    assert _read(group, "whole").tolist() == [1, 2, 3, 4]
    assert _read(group, "ifset").tolist() == [1, 2, 5, 5]
    for name in ("contiguous", "chunked"):
        assert any(f"'{name}'" in m and "fill time 'never'" in m for m in messages), messages
    with pytest.raises(zms.UnsupportedDatasetError, match=r"'chunked'.*fill time 'never'"):
        zms.scan(str(path))


def test_data_read_with_h5py_is_refused_where_never_written_without_a_fill_value(tmp_path):
    """A filter without a Zarr codec (lzf) makes the scan read the data with h5py, which
    gives whatever its buffer held where chunks were never written and no fill value is
    defined (or the fill time is "never"): that was stored inline as the data."""
    path = tmp_path / "lzf.h5"
    lzf = h5py.h5z.FILTER_LZF
    with h5py.File(path, "w") as f:
        never = h5d.FILL_TIME_NEVER
        _dataset(f, "partly", (6,), chunks=(2,), fill=5, fill_time=never, filters=[lzf])[:2] = 1
        _dataset(f, "whole", (6,), chunks=(2,), fill=5, fill_time=never, filters=[lzf])[:] = 3
    group, messages = _scan_skip(path)
    assert sorted(group.arrays) == ["whole"]
    assert _read(group, "whole").tolist() == [3] * 6
    assert any("'partly'" in m and "never written" in m for m in messages), messages


@pytest.mark.parametrize("libver", ["earliest", "v110", "latest"])
@pytest.mark.parametrize(
    ("shape", "maxshape", "chunks"),
    [
        ((4, 3), (4, None), (2, 1)),
        ((4, 3), (8, None), (2, 1)),
        ((4, 3, 5), (4, None, 5), (2, 1, 2)),
        ((4, 3, 5), (7, 3, None), (3, 2, 2)),
        ((5, 6), (None, 6), (2, 4)),
    ],
)
def test_chunks_of_an_unlimited_axis_that_is_not_the_first_are_placed_right(
    tmp_path, libver, shape, maxshape, chunks
):
    """An extensible-array chunk index (one unlimited axis, 1.10 format or later) whose
    unlimited axis is not the first: HDF5 2.0 reports its chunks' offsets in the index's
    swizzled order, which failed the file (IndexError) or misplaced chunks."""
    path = tmp_path / "earray.h5"
    data = np.arange(np.prod(shape), dtype="<i4").reshape(shape)
    grown = tuple(n + 2 if m is None else n for n, m in zip(shape, maxshape, strict=True))
    with h5py.File(path, "w", libver=libver) as f:
        f.create_dataset("x", data=data, maxshape=maxshape, chunks=chunks)
        grow = f.create_dataset("grow", data=data, maxshape=maxshape, chunks=chunks, fillvalue=-1)
        grow.resize(grown)
        grow[tuple(slice(n - 1, n) for n in grown)] = 99
    group = zms.scan(str(path))
    with h5py.File(path) as f:
        for name in ("x", "grow"):
            np.testing.assert_array_equal(_read(group, name), f[name][...])


def test_external_files_shorter_than_their_segments_read_as_hdf5_reads_them(tmp_path):
    """HDF5 reads what lies past the end of an external file as zeros: the scan referenced
    those bytes, and reading the array failed (the file 'changed since it was scanned')."""
    path = tmp_path / "ext.h5"
    data = np.arange(12, dtype="<i4").reshape(6, 2)
    (tmp_path / "short.bin").write_bytes(b"\x01" * 4 + data[:2].tobytes())  # rows 2.. never written
    (tmp_path / "whole.bin").write_bytes(data.tobytes())
    with h5py.File(path, "w") as f:
        for name, size in (("short", 48), ("whole", h5py.h5f.UNLIMITED)):
            file = str(tmp_path / f"{name}.bin")
            offset = 4 if name == "short" else 0
            f.create_dataset(name, shape=(6, 2), dtype="<i4", external=[(file, offset, size)])
    group = zms.scan(str(path))
    with h5py.File(path) as f:
        for name in ("short", "whole"):
            np.testing.assert_array_equal(_read(group, name), f[name][...])
    assert _read(group, "short")[2:].tolist() == [[0, 0]] * 4


def test_external_files_split_inside_a_row_are_read_whole_when_small(tmp_path):
    """External segments that split a row cannot be chunks of a regular grid; the data is
    read once and stored inline when small, as other such data is (it was refused)."""
    path = tmp_path / "split.h5"
    raw = np.arange(12, dtype="<i4").tobytes()
    (tmp_path / "a.bin").write_bytes(raw[:20])
    (tmp_path / "b.bin").write_bytes(raw[20:])
    with h5py.File(path, "w") as f:
        segments = [(str(tmp_path / "a.bin"), 0, 20), (str(tmp_path / "b.bin"), 0, 28)]
        f.create_dataset("split", shape=(4, 3), dtype="<i4", external=segments)
    group = zms.scan(str(path))
    assert _read(group, "split").tolist() == np.arange(12).reshape(4, 3).tolist()
    with pytest.raises(zms.UnsupportedDatasetError, match="inside a row"):
        zms.scan(str(path), max_inline_bytes=16)


def test_compounds_zarr_packs_differently_are_read_inline_when_small(tmp_path):
    """Compounds with padding, mixed byte orders or enum fields were refused outright; their
    values are exact in Zarr's packed little-endian struct of the same fields."""
    path = tmp_path / "compounds.h5"
    padded = np.dtype(
        {"names": ["a", "b"], "formats": ["u1", "<f8"], "offsets": [0, 8], "itemsize": 16}
    )
    mixed = np.dtype([("a", "<i4"), ("b", ">f8")])
    enum = np.dtype([("e", h5py.enum_dtype({"A": 0, "B": 1}, basetype="u1")), ("x", "<u4")])
    with h5py.File(path, "w") as f:
        f["padded"] = np.array([(1, 2.5), (255, -1.0)], dtype=padded)
        f.create_dataset("chunked", data=np.array([(3, 1e300)] * 5, dtype=mixed), chunks=(2,))
        f["enum"] = np.array([(1, 7), (0, 2**32 - 1)], dtype=enum)
        f["large"] = np.zeros(100_000, dtype=padded)
    group, messages = _scan_skip(path)
    assert sorted(group.arrays) == ["chunked", "enum", "padded"]
    with h5py.File(path) as f:
        for name in ("chunked", "enum", "padded"):
            assert _read(group, name).tolist() == f[name][...].tolist(), name
    assert any("'large'" in m and "max_inline_bytes" in m for m in messages), messages


def test_absent_sources_of_a_virtual_dataset_are_refused_not_kept_as_fill(tmp_path):
    """HDF5 reads a virtual dataset's absent source (file or dataset) as fill values only
    until the source appears; a scan would keep those fill values for good, so the virtual
    dataset is refused, alone, naming the source, its neighbours described."""
    with h5py.File(tmp_path / "src0.h5", "w") as f:
        f.create_dataset("a", data=np.arange(4, dtype="<i2"), chunks=(2,))
    with h5py.File(tmp_path / "src1.h5", "w") as f:
        f["other"] = np.zeros(4, dtype="<i2")  # no dataset 'a'
    layouts = {}
    for name, sources in {"gone": ["src0.h5", "gone.h5"], "no_a": ["src0.h5", "src1.h5"]}.items():
        layouts[name] = h5py.VirtualLayout(shape=(2, 4), dtype="<i2")
        for i, source in enumerate(sources):
            layouts[name][i] = h5py.VirtualSource(source, "a", shape=(4,))
    whole = h5py.VirtualLayout(shape=(1, 4), dtype="<i2")
    whole[0] = h5py.VirtualSource("src0.h5", "a", shape=(4,))
    path = tmp_path / "vds.h5"
    with h5py.File(path, "w") as f:
        for name, layout in layouts.items():
            f.create_virtual_dataset(name, layout, fillvalue=-7)
        f.create_virtual_dataset("whole", whole, fillvalue=-7)
    with pytest.warns(UserWarning, match="virtual dataset") as caught:
        group = zms.scan(str(path), on_unsupported="skip")
    messages = [str(w.message) for w in caught]
    assert sorted(group.arrays) == ["whole"]
    np.testing.assert_array_equal(_read(group, "whole"), [np.arange(4)])
    assert any("'gone.h5' cannot be found" in m and "HDF5_VDS_PREFIX" in m for m in messages)
    assert any("src1.h5:a is missing" in m for m in messages), messages
    with pytest.raises(zms.UnsupportedDatasetError, match="gone"):
        zms.scan(str(path), on_unsupported="raise")


def test_virtual_datasets_whose_sources_cannot_be_placed_are_read_inline_when_small(tmp_path):
    """Part of a source, sources of different chunk shapes, boxes off chunk boundaries:
    these were refused; HDF5's reading of them is stored inline when small."""
    with h5py.File(tmp_path / "src.h5", "w") as f:
        f.create_dataset("a", data=np.arange(10, dtype="<f4"), chunks=(4,))
        f.create_dataset("b", data=np.arange(10, dtype="<f4") * 2, chunks=(5,))
        f.create_dataset("big", data=np.arange(400_000, dtype="<f8"), chunks=(1000,))
    mixed = h5py.VirtualLayout(shape=(2, 10), dtype="<f4")
    mixed[0] = h5py.VirtualSource("src.h5", "a", shape=(10,))
    mixed[1] = h5py.VirtualSource("src.h5", "b", shape=(10,))
    part = h5py.VirtualLayout(shape=(3,), dtype="<f4")
    part[:] = h5py.VirtualSource("src.h5", "a", shape=(10,))[2:5]
    big = h5py.VirtualLayout(shape=(200_000,), dtype="<f8")
    big[:] = h5py.VirtualSource("src.h5", "big", shape=(400_000,))[:200_000]
    path = tmp_path / "vds.h5"
    with h5py.File(path, "w") as f:
        f.create_virtual_dataset("mixed", mixed, fillvalue=-1)
        f.create_virtual_dataset("part", part, fillvalue=-1)
        f.create_virtual_dataset("big", big, fillvalue=-1)
    group, messages = _scan_skip(path)
    with h5py.File(path) as f:
        for name in ("mixed", "part"):
            np.testing.assert_array_equal(_read(group, name), f[name][...])
    assert "big" not in group.arrays
    assert any("'big'" in m and "max_inline_bytes" in m for m in messages), messages
