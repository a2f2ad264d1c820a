"""One odd object in an HDF5 file is refused (or renamed) alone, never its neighbours (issue #18);
and what is stored inline instead is encoded exactly.

Each test writes a file with one object the scan cannot describe as it is —
a name Zarr reserves, a named data type, a type NumPy has no equivalent for,
an undefined fill value, a filter whose plugin is missing, a shuffle after a
checksum — beside an ordinary dataset that must come through unchanged.
"""

from __future__ import annotations

import ctypes
import glob
import os
import subprocess
import sys
import warnings

import h5py
import numpy as np
import pytest
import xarray as xr
import zarr
from h5fuzz_types import quad
from h5py import h5d, h5p, h5s, h5t, h5z
from zarr.dtype import parse_dtype

import zarr_manifest_store as zms
from zarr_manifest_store.array import parse_array_metadata
from zarr_manifest_store.codecs import encode_chunk
from zarr_manifest_store.scan.common import file_name, zarr_name
from zarr_manifest_store.scan.hdf5.inline_chunks import plain_bytes


def _scan_skip(path):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        group = zms.scan(str(path), on_unsupported="skip")
    return group, [str(w.message) for w in caught]


def _read(group, name):
    return zarr.open_group(zms.ManifestStore(group), mode="r")[name][...]


def _with_neighbour(f):
    f.create_dataset("plain", data=np.arange(4, dtype="f4"))


@pytest.mark.parametrize("name", ["__categories", "%5F_x", "%", "__"])
def test_reserved_names_map_back_exactly(name):
    stored = zarr_name(name)
    assert not stored.startswith("__")
    assert file_name(stored) == name


def test_a_group_named_with_zarrs_reserved_prefix_is_renamed_not_dropped(tmp_path):
    path = tmp_path / "adata.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("obs/__categories/cat", data=np.array([b"a", b"b"]))
        f.create_dataset("obs/__x", data=np.arange(3))
        _with_neighbour(f)
    group = zms.scan(str(path))  # on_unsupported="raise": nothing is refused
    assert _read(group, "obs/%5F_categories/cat").tolist() == [b"a", b"b"]
    assert _read(group, "obs/%5F_x").tolist() == [0, 1, 2]
    assert _read(group, "plain").tolist() == [0, 1, 2, 3]


def test_named_datatypes_are_not_datasets(tmp_path):
    path = tmp_path / "named.h5"
    with h5py.File(path, "w") as f:
        f["cloud_t"] = h5py.enum_dtype({"CLEAR": 0, "CLOUDY": 1}, basetype="i1")
        f.create_dataset("cloud", data=np.array([0, 1, 1], "i1"), dtype=f["cloud_t"])
        _with_neighbour(f)
    group = zms.scan(str(path))
    assert sorted(group.arrays) == ["cloud", "plain"]
    assert _read(group, "cloud").tolist() == [0, 1, 1]


ENUM_SCRIPT = """
import sys, netCDF4, numpy as np
with netCDF4.Dataset(sys.argv[1], "w") as nc:
    cloud = nc.createEnumType(np.uint8, "cloud_t", {"clear": 0, "cloudy": 1, "missing": 255})
    nc.createDimension("time", 4)
    v = nc.createVariable("cloud", cloud, ("time",), fill_value=255)
    v[:] = np.array([0, 1, 255, 1], dtype=np.uint8)
    t = nc.createVariable("time", "f8", ("time",))
    t[:] = np.arange(4.0)
"""


def test_netcdf4_enum_types_scan_and_open_like_netcdf4(tmp_path):
    # netCDF4-python sets HDF5_PLUGIN_PATH on import: write the file in another process
    path = tmp_path / "enum.nc"
    subprocess.run([sys.executable, "-c", ENUM_SCRIPT, str(path)], check=True)
    group = zms.scan(str(path))  # the enum type is no broken link: nothing refused
    actual = xr.open_zarr(zms.ManifestStore(group), chunks=None).load()
    with xr.open_dataset(path, engine="netcdf4") as expected:
        expected = expected.load()
        assert actual["cloud"].dims == expected["cloud"].dims
        np.testing.assert_array_equal(actual["cloud"].values, expected["cloud"].values)
        np.testing.assert_array_equal(actual["time"].values, expected["time"].values)


def _set_undefined_fill_value(dcpl: h5p.PropDCID, tid: h5t.TypeID) -> None:
    """``H5Pset_fill_value`` with a NULL value (h5py has no call for it; PyTables makes these)."""
    libs = os.path.join(os.path.dirname(h5py.__file__), os.pardir, "h5py.libs")
    found = [p for p in glob.glob(os.path.join(libs, "libhdf5-*")) if "_hl" not in p]
    set_fill_value = ctypes.CDLL(found[0] if found else h5py.h5.__file__).H5Pset_fill_value
    set_fill_value.argtypes = [ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p]
    assert set_fill_value(dcpl.id, tid.id, None) >= 0


def _create(f, name, tid, shape, dcpl=None):
    space = h5s.create_simple(shape)
    return h5d.create(f.id, name.encode(), tid, space, dcpl=dcpl)


def test_an_undefined_fill_value_refuses_only_a_partly_written_dataset(tmp_path):
    path = tmp_path / "nofill.h5"
    with h5py.File(path, "w") as f:
        for name, written in (("partly", 1), ("whole", 3)):
            dcpl = h5p.create(h5p.DATASET_CREATE)
            dcpl.set_chunk((2,))
            _set_undefined_fill_value(dcpl, h5t.NATIVE_INT32)
            dsid = _create(f, name, h5t.NATIVE_INT32, (6,), dcpl)
            assert dcpl.fill_value_defined() == h5d.FILL_VALUE_UNDEFINED
            f[name][: 2 * written] = np.arange(2 * written, dtype="i4") + 1
            dsid.close()
        _with_neighbour(f)
    group, messages = _scan_skip(path)
    assert sorted(group.arrays) == ["plain", "whole"]
    assert _read(group, "whole").tolist() == [1, 2, 3, 4, 5, 6]
    assert any("'partly'" in m and "no fill value" in m for m in messages), messages
    with pytest.raises(zms.UnsupportedDatasetError, match=r"'partly'.*no fill value"):
        zms.scan(str(path))


@pytest.mark.parametrize("make_type", [quad, lambda: h5t.UNIX_D32LE.copy()], ids=["quad", "time"])
def test_a_type_without_numpy_equivalent_refuses_that_dataset_alone(tmp_path, make_type):
    path = tmp_path / "odd_type.h5"
    with h5py.File(path, "w") as f:
        _create(f, "odd", make_type(), (3,)).close()
        _with_neighbour(f)
    group, messages = _scan_skip(path)
    assert sorted(group.arrays) == ["plain"]
    assert _read(group, "plain").tolist() == [0, 1, 2, 3]
    assert any("'odd'" in m and "NumPy cannot represent" in m for m in messages), messages
    with pytest.raises(zms.UnsupportedDatasetError, match=r"'odd'.*NumPy cannot represent"):
        zms.scan(str(path))


def test_a_filter_without_its_plugin_refuses_that_dataset_alone(tmp_path):
    path = tmp_path / "plugin.h5"
    plugin = 300  # HDF5's range for testing filters: no plugin provides it
    assert not h5z.filter_avail(plugin)
    with h5py.File(path, "w") as f:
        dcpl = h5p.create(h5p.DATASET_CREATE)
        dcpl.set_chunk((4,))
        dcpl.set_filter(plugin, h5z.FLAG_OPTIONAL, (1, 2))
        dsid = _create(f, "compressed", h5t.NATIVE_FLOAT, (4,), dcpl)
        dsid.write_direct_chunk((0,), b"not filtered data", filter_mask=0)
        dsid.close()
        _with_neighbour(f)
    group, messages = _scan_skip(path)
    assert sorted(group.arrays) == ["plain"]
    assert any("'compressed'" in m and "id 300" in m for m in messages), messages
    with pytest.raises(zms.UnsupportedDatasetError, match=r"'compressed'.*id 300"):
        zms.scan(str(path))


def test_shuffle_after_fletcher32_is_read_exactly_or_refused(tmp_path):
    # HDF5 shuffles the checksummed buffer and leaves its 4 trailing bytes in place
    path = tmp_path / "checked.h5"
    small = np.arange(100, dtype="f8")
    large = np.arange(300_000, dtype="f8")
    with h5py.File(path, "w") as f:
        for name, data in (("small", small), ("large", large)):
            dcpl = h5p.create(h5p.DATASET_CREATE)
            dcpl.set_chunk((50_000,) if data.size > 100 else (50,))
            dcpl.set_fletcher32()
            dcpl.set_shuffle()
            dcpl.set_deflate(5)
            _create(f, name, h5t.IEEE_F64LE, data.shape, dcpl).close()
            f[name][...] = data
        dcpl = h5p.create(h5p.DATASET_CREATE)
        dcpl.set_chunk((2,))
        dcpl.set_fletcher32()
        dcpl.set_shuffle()
        _create(f, "quads", h5t.STD_I32LE, (4,), dcpl).close()  # 4-byte elements: whole
        f["quads"][...] = [1, 2, 3, 4]
    group, messages = _scan_skip(path)
    assert _read(group, "small").tolist() == small.tolist()  # materialised from h5py
    assert _read(group, "quads").tolist() == [1, 2, 3, 4]  # referenced in place
    assert group["quads"].manifest.paths
    assert "large" not in group.arrays
    assert any("'large'" in m and "fletcher32" in m for m in messages), messages


@pytest.mark.parametrize("libver", ["earliest", "latest"])
def test_partial_edge_chunks_left_unfiltered_are_read_exactly(tmp_path, libver):
    # the chunk option H5D_CHUNK_DONT_FILTER_PARTIAL_CHUNKS (0x2): HDF5 stores the chunks the
    # extent ends inside as they are, yet reports a filter mask of 0 for them
    path = tmp_path / "edges.h5"
    lib = ctypes.CDLL(h5py.h5.__file__)  # h5py does not wrap H5Pset_chunk_opts
    lib.H5Pset_chunk_opts.argtypes = [ctypes.c_int64, ctypes.c_uint]
    with h5py.File(path, "w", libver=libver) as f:
        dcpl = h5p.create(h5p.DATASET_CREATE)
        dcpl.set_chunk((4, 3))
        dcpl.set_deflate(1)
        assert lib.H5Pset_chunk_opts(dcpl.id, 0x2) >= 0
        _create(f, "edges", h5t.STD_I32LE, (9, 7), dcpl).close()
        f["edges"][...] = np.arange(63).reshape(9, 7)
    group, _ = _scan_skip(path)
    assert _read(group, "edges").tolist() == np.arange(63).reshape(9, 7).tolist()
    inline = group["edges"].manifest.inline
    assert sorted(inline) == [(0, 2), (1, 2), (2, 0), (2, 1), (2, 2)]  # the partial ones


@pytest.mark.parametrize(
    ("dtype", "endian"),
    [("<f8", "little"), (">i4", "big"), ("<u2", "big"), ("|b1", None), ("S3", None),
     ("<U2", "little"), ("<M8[s]", "little"), ("<c8", "big")],
)  # fmt: skip
def test_lone_bytes_codec_chunks_encode_as_zarr_encodes_them(dtype, endian):
    zdtype = parse_dtype(np.dtype(dtype).newbyteorder("<"), zarr_format=3)
    config = {"endian": endian} if endian else {}
    metadata = parse_array_metadata(
        {
            "zarr_format": 3,
            "node_type": "array",
            "shape": [2, 3],
            "data_type": zdtype.to_json(zarr_format=3),
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [2, 3]}},
            "chunk_key_encoding": {"name": "default"},
            "fill_value": zdtype.to_json_scalar(zdtype.default_scalar(), zarr_format=3),
            "codecs": [{"name": "bytes", "configuration": config}],
        }
    )
    values = np.arange(6).reshape(2, 3).astype(np.dtype(dtype))
    assert plain_bytes(metadata, [2, 3], values) == encode_chunk(metadata, (2, 3), values)
    assert plain_bytes(metadata, [2, 3], values[:1]) is None  # does not fill the chunk
