"""Attributes whose NumPy type JSON loses, in the xarray views of a scan (issue #18).

The ``zarr_manifest`` engine's view equals ``xr.open_dataset`` of the file
(scipy for netCDF3, h5netcdf for HDF5) for float32 packing, ``char`` fill
values, complex and compound attributes, object references and ``_NC...``
group attributes; ``xr.open_zarr`` shows their JSON forms (documented in
docs/howto/scanning.md).
"""

from __future__ import annotations

import base64
import warnings

import h5netcdf
import h5py
import numpy as np
import pytest
import xarray as xr
from scipy.io import netcdf_file

import zarr_manifest_store as zms
from zarr_manifest_store.cf import TYPED_ATTRIBUTES, stored_attribute, typed_attributes


def _engine_view(path, **options):
    store = zms.ManifestStore(zms.scan(str(path)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return xr.open_dataset(store, engine="zarr_manifest", **options).load()


def _open_zarr_view(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return xr.open_zarr(zms.ManifestStore(zms.scan(str(path))), chunks=None).load()


def _reference(path, engine):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with xr.open_dataset(path, engine=engine) as ds:
            return ds.load()


def test_float32_packing_unpacks_to_float32_as_h5netcdf_does(tmp_path):
    path = tmp_path / "packed.nc"
    with h5netcdf.File(path, "w") as f:
        f.dimensions = {"x": 6}
        v = f.create_variable("t", ("x",), dtype="i2")
        v[:] = np.array([-32767, -100, 0, 7, 1234, 32766], dtype="i2")
        v.attrs["scale_factor"] = np.float32(0.01)
        v.attrs["add_offset"] = np.float32(273.15)
        v.attrs["_FillValue"] = np.int16(-32767)
        w = f.create_variable("w", ("x",), dtype="i2")  # float64 packing: JSON keeps it
        w[:] = np.arange(6, dtype="i2")
        w.attrs["scale_factor"] = 0.1
    expected = _reference(path, "h5netcdf")
    assert expected["t"].dtype == np.float32
    assert expected["w"].dtype == np.float64
    actual = _engine_view(path)
    xr.testing.assert_identical(actual, expected)
    assert actual["t"].values.tobytes() == expected["t"].values.tobytes()
    # xr.open_zarr sees JSON numbers: float64, the documented difference
    assert _open_zarr_view(path)["t"].dtype == np.float64
    assert TYPED_ATTRIBUTES not in zms.scan(str(path))["w"].attributes


def test_netcdf3_float32_packing_and_char_fill_value_as_scipy_shows_them(tmp_path):
    path = tmp_path / "nc3.nc"
    with netcdf_file(path, "w") as f:
        f.createDimension("n", 3)
        f.createDimension("s", 2)
        c = f.createVariable("c", "c", ("n",))
        c[:] = np.array([b"a", b"b", b"c"])
        c._FillValue = b"b"
        words = f.createVariable("words", "c", ("n", "s"))
        words[:] = np.array([[b"a", b"x"], [b"b", b"b"], [b"c", b"d"]])
        words._FillValue = b"b"
        plain = f.createVariable("plain", "c", ("n",))  # no _FillValue: nothing masked
        plain[:] = np.array([b"\x00", b"b", b"c"])
        r = f.createVariable("r", "h", ("n",))
        r[:] = [-13055, 2, 30809]
        r.scale_factor = np.float32(0.001)
        r.add_offset = np.float32(-0.5)
    expected = _reference(path, "scipy")
    assert np.isnan(expected["c"].values[1])
    assert expected["r"].dtype == np.float32
    actual = _engine_view(path)
    xr.testing.assert_identical(actual, expected)
    assert actual["c"].dtype == object
    assert actual["c"].values[0] == b"a"
    assert _open_zarr_view(path)["c"].values.tolist() == [b"a", b"b", b"c"]  # not masked


def test_complex_compound_and_opaque_attributes_as_h5netcdf_shows_them(tmp_path):
    path = tmp_path / "typed.h5"
    pair = np.dtype([("a", "<i4"), ("b", "<f8"), ("name", "S3")])
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("x", data=np.arange(3.0))
        ds.attrs["c64"] = np.complex64(4.3 - 1j)
        ds.attrs["c128"] = np.array([1 + 2j, -3.5j])
        ds.attrs["pair"] = np.array((1, 2.5, b"abc"), dtype=pair)
        ds.attrs["pairs"] = np.array([(1, 2.5, b"x"), (3, -1.0, b"yz")], dtype=pair)
        ds.attrs["dump"] = np.void(b"\x80\x04pickled")  # opaque bytes (HyperSpy)
        f.attrs["z"] = np.complex128(1j)
    expected = _reference(path, "h5netcdf")
    actual = _engine_view(path)
    dump = expected["x"].attrs.pop("dump")  # xarray finds an opaque attribute never identical
    assert actual["x"].attrs.pop("dump").tobytes() == dump.tobytes()
    xr.testing.assert_identical(actual, expected)
    for name, value in expected["x"].attrs.items():
        assert type(actual["x"].attrs[name]) is type(value), name
        assert np.asarray(actual["x"].attrs[name]).dtype == np.asarray(value).dtype, name
    assert type(actual.attrs["z"]) is np.complex128
    plain = _open_zarr_view(path)["x"].attrs  # JSON forms
    assert plain["c64"] == [pytest.approx(4.3), -1.0]
    assert plain["pair"] == {"a": 1, "b": 2.5, "name": "abc"}
    assert plain["pairs"][1] == {"a": 3, "b": -1.0, "name": "yz"}
    assert base64.standard_b64decode(plain["dump"]) == b"\x80\x04pickled"


def test_object_references_become_their_objects_paths(tmp_path):
    path = tmp_path / "refs.h5"
    with h5py.File(path, "w") as f:
        f.create_group("specifications")
        table = f.create_dataset("table", data=np.arange(3))
        column = f.create_dataset("column", data=np.arange(3))
        f.attrs[".specloc"] = f["specifications"].ref
        column.attrs["table"] = table.ref
        column.attrs["both"] = np.array([table.ref, column.ref], dtype=h5py.ref_dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no attribute is left out
        group = zms.scan(str(path))
    assert group.attributes == {".specloc": "/specifications"}
    assert group["column"].attributes == {"table": "/table", "both": ["/table", "/column"]}
    expected = _reference(path, "h5netcdf")
    with h5py.File(path) as f:
        assert f[expected.attrs[".specloc"]].name == "/specifications"
    actual = _engine_view(path)
    assert actual.attrs == {".specloc": "/specifications"}
    assert actual["column"].attrs["both"] == ["/table", "/column"]


def test_nc_named_group_attributes_show_as_h5netcdf_shows_them(tmp_path):
    path = tmp_path / "gold.nc"
    with h5netcdf.File(path, "w") as f:
        f.attrs["_NCPROPERTIES"] = np.arange(3, dtype="i1")
        f.attrs["title"] = "t"
    expected = _reference(path, "h5netcdf")
    assert "_NCPROPERTIES" in expected.attrs
    xr.testing.assert_identical(_engine_view(path), expected)
    assert "_NCPROPERTIES" not in _open_zarr_view(path).attrs  # xarray's Zarr backend hides it


def test_integers_wider_than_numpys_are_read_exactly(tmp_path):
    path = tmp_path / "wide.h5"
    value = 2**100 + 5
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("x", data=np.arange(2))
        wide = h5py.h5t.STD_U64LE.copy()
        wide.set_size(16)
        wide.set_precision(128)
        attr = h5py.h5a.create(ds.id, b"ref_time", wide, h5py.h5s.create(h5py.h5s.SCALAR))
        attr.write(np.frombuffer(value.to_bytes(16, "little"), dtype="V16").reshape(()), wide)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert zms.scan(str(path))["x"].attributes == {"ref_time": value}


def test_typed_groups_in_a_datatree(tmp_path):
    path = tmp_path / "tree.nc"
    with h5netcdf.File(path, "w") as f:
        g = f.create_group("inner")
        g.dimensions = {"x": 2}
        v = g.create_variable("t", ("x",), dtype="i2", data=np.array([1, 2], dtype="i2"))
        v.attrs["scale_factor"] = np.float32(0.5)
        v.attrs["add_offset"] = np.float32(0.25)
        g.attrs["z"] = np.complex64(1 + 1j)
    store = zms.ManifestStore(zms.scan(str(path)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = xr.open_datatree(store, engine="zarr_manifest")
        inner = xr.open_dataset(store, engine="zarr_manifest", group="inner")
        groups = xr.open_groups(store, engine="zarr_manifest", group="inner")
    assert tree["inner"]["t"].dtype == np.float32
    assert type(tree["inner"].attrs["z"]) is np.complex64
    assert inner["t"].dtype == np.float32
    assert list(groups) == ["."]


def test_typed_records_round_trip_and_refuse_malformed_ones():
    for value in (np.float32(0.1), np.array([1 + 2j, 3j], "<c8"), np.bytes_(b"b")):
        json_form, record = stored_attribute("scale_factor", value)
        restored = typed_attributes({"scale_factor": json_form, TYPED_ATTRIBUTES: {"x": record}})
        assert np.asarray(restored["x"]).dtype == np.asarray(value).dtype
        assert np.array_equal(restored["x"], value)
    big = np.array([1.5], ">f4")  # big-endian, one value: a native scalar, as netCDF readers give
    assert stored_attribute("add_offset", big)[1]["dtype"] == "<f4"
    assert stored_attribute("scale_factor", np.float64(0.5)) == (0.5, None)
    with pytest.raises(ValueError, match="malformed record for 'x'"):
        typed_attributes({TYPED_ATTRIBUTES: {"x": {"dtype": "|O", "shape": [], "data": ""}}})
    with pytest.raises(ValueError, match="malformed record for 'x'"):
        typed_attributes({TYPED_ATTRIBUTES: {"x": {"dtype": "<f4", "shape": [9], "data": "AAAA"}}})


def test_a_malformed_record_in_a_document_is_refused_naming_the_array(tmp_path):
    path = tmp_path / "packed.nc"
    with h5netcdf.File(path, "w") as f:
        f.dimensions = {"x": 2}
        v = f.create_variable("t", ("x",), dtype="i2", data=np.array([1, 2], dtype="i2"))
        v.attrs["scale_factor"] = np.float32(0.5)
    group = zms.scan(str(path))
    attributes = dict(group["t"].attributes)
    attributes[TYPED_ATTRIBUTES] = {"scale_factor": {"dtype": "<f4", "shape": [2], "data": ""}}
    bad = zms.ManifestGroup(
        arrays={"t": group["t"].with_metadata(attributes=attributes)},
        attributes=group.attributes,
    )
    with pytest.raises(
        ValueError, match="array 't': attribute '_zarr_manifest_types' has a malformed"
    ):
        xr.open_dataset(zms.ManifestStore(bad), engine="zarr_manifest")


def test_typed_attributes_survive_a_virtual_dataset_written_as_a_document(tmp_path):
    path = tmp_path / "packed.nc"
    with h5netcdf.File(path, "w") as f:
        f.dimensions = {"x": 3}
        v = f.create_variable("t", ("x",), dtype="i2", data=np.array([1, -2, 3], dtype="i2"))
        v.attrs["scale_factor"] = np.float32(0.01)
        v.attrs["add_offset"] = np.float32(-0.5)
    zms.open_virtual_dataset(str(path)).virtualize.to_zarr(str(tmp_path / "doc.zarr"), mode="w")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        actual = xr.open_dataset(
            tmp_path / "doc.zarr", engine="zarr_manifest", allow=[str(tmp_path)]
        ).load()
    xr.testing.assert_identical(actual, _reference(path, "h5netcdf"))
