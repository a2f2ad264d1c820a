"""Text attributes whose bytes are not valid in their encoding, in the views of a scan (issue #18).

Found in the real-file corpus (hickle's pickled type names; old files' Latin-1
degree signs): scipy and netCDF-C show invalid UTF-8 as U+FFFD, h5netcdf
decodes a fixed-length string in its HDF5 character set keeping invalid bytes
as lone surrogates. The JSON form is the U+FFFD text (``xr.open_zarr``, netCDF-C);
a text record keeps the bytes for the ``zarr_manifest`` engine, which shows
h5netcdf's text.
"""

from __future__ import annotations

import warnings

import h5py
import numpy as np
import pytest
import xarray as xr
from scipy.io import netcdf_file

import zarr_manifest_store as zms
from zarr_manifest_store.cf import TYPED_ATTRIBUTES, typed_attributes


def _quiet(open_, *args, **kwargs) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with open_(*args, **kwargs) as ds:
            return ds.load()


def _engine_view(target, **kwargs):
    return _quiet(xr.open_dataset, target, engine="zarr_manifest", **kwargs)


def test_latin1_netcdf3_attribute_shows_as_scipy_shows_it(tmp_path):
    path = tmp_path / "latin1.nc"
    with netcdf_file(path, "w") as f:
        f.createDimension("x", 2)
        v = f.createVariable("t", "f4", ("x",))
        v[:] = [1, 2]
        v.units = b"\xb0C"  # Latin-1, as old writers stored a degree sign
        v.long_name = "température".encode()
        f.history = b"caf\xe9"
    expected = _quiet(xr.open_dataset, path, engine="scipy")
    assert expected["t"].attrs["units"] == "\ufffdC"
    store = zms.ManifestStore(zms.scan(str(path)))
    for view in (_engine_view(store), _quiet(xr.open_zarr, store, chunks=None)):
        assert view["t"].attrs == expected["t"].attrs
        assert view.attrs == expected.attrs


@pytest.fixture
def odd_text_file(tmp_path):
    path = tmp_path / "odd_text.h5"
    with h5py.File(path, "w") as f:
        d = f.create_dataset("v", data=np.arange(3.0))
        d.attrs["pickled"] = np.bytes_(b"\x80\x03cnumpy\nndarray\nq\x00.")  # fixed, ASCII set
        d.attrs["ascii_set_utf8_bytes"] = np.bytes_("°C".encode())
        d.attrs["names"] = np.array([b"caf\xe9", b"ok"])
        d.attrs["one_byte"] = np.bytes_(b"x")
        d.attrs["one_odd_byte"] = np.bytes_(b"\xb0")  # h5netcdf keeps characters as bytes
        d.attrs["odd_characters"] = np.array([b"a", b"\xb0"], dtype="S1")
        d.attrs["grid"] = np.array([[b"ab", b"c"], [b"d", b"ef"]])  # h5netcdf flattens it
        d.attrs.create("vlen", b"\xb0C\xff", dtype=h5py.string_dtype("utf-8"))
        d.attrs.create("vlens", [b"\xb0", b"fine"], dtype=h5py.string_dtype("utf-8"))
        f.attrs["title"] = np.bytes_(b"r\xe9sum\xe9")
    return path


def test_invalid_text_bytes_show_as_h5netcdf_shows_them(odd_text_file):
    expected = _quiet(xr.open_dataset, odd_text_file, engine="h5netcdf", phony_dims="access")
    assert expected["v"].attrs["pickled"].startswith("\udc80\x03cnumpy")
    assert expected["v"].attrs["ascii_set_utf8_bytes"] == "\udcc2\udcb0C"
    store = zms.ManifestStore(zms.scan(str(odd_text_file)))
    view = _engine_view(store)
    assert view["v"].attrs == expected["v"].attrs
    assert view.attrs == expected.attrs
    plain = _quiet(xr.open_zarr, store, chunks=None)  # the JSON forms, as netCDF-C shows them
    assert plain["v"].attrs["pickled"].startswith("\ufffd\x03cnumpy")
    assert plain["v"].attrs["ascii_set_utf8_bytes"] == "°C"
    assert plain["v"].attrs["vlen"] == "\ufffdC\ufffd"
    assert plain.attrs["title"] == "r\ufffdsum\ufffd"


def test_invalid_text_bytes_survive_a_document(odd_text_file, tmp_path):
    expected = _quiet(xr.open_dataset, odd_text_file, engine="h5netcdf", phony_dims="access")
    out = tmp_path / "doc.zarr"
    zms.write_manifest(zms.scan(str(odd_text_file)), out)  # no lone surrogate reaches JSON
    view = _engine_view(str(out), allow=[str(tmp_path)])
    assert view["v"].attrs == expected["v"].attrs
    assert view.attrs == expected.attrs


def test_a_text_record_naming_another_encoding_is_refused():
    record = {"dtype": "|S2", "shape": [], "data": "gAM=", "text": "rot13"}
    with pytest.raises(ValueError, match=r"malformed record for 'units'.*not 'rot13'"):
        typed_attributes({"units": "?", TYPED_ATTRIBUTES: {"units": record}})
