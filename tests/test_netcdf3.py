"""netCDF3 scanner: every variable read through ManifestStore equals what scipy / netCDF-C read."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import zarr

import zarr_manifest_store as zms
from zarr_manifest_store.cf import TYPED_ATTRIBUTES
from zarr_manifest_store.scan.netcdf3 import read_netcdf3_header, scan_netcdf3

FORMATS = {1: "NETCDF3_CLASSIC", 2: "NETCDF3_64BIT"}


def chunk_shape(a: zms.ManifestArray) -> tuple[int, ...]:
    return tuple(a.metadata.chunk_grid.to_dict()["configuration"]["chunk_shape"])


def open_virtual(g: zms.ManifestGroup) -> xr.Dataset:
    return xr.open_zarr(zms.ManifestStore(g), consolidated=False).load()


def mixed_dataset() -> xr.Dataset:
    """Record variables of several types (odd slab sizes pad), char arrays, fills, scalars."""
    rng = np.random.default_rng(1)
    return xr.Dataset(
        {
            "t2m": (("time", "y", "x"), rng.normal(280, 5, (5, 3, 4)).astype("f4"), {"units": "K"}),
            "flag": (("time", "k"), rng.integers(-100, 100, (5, 3)).astype("i1")),
            "count": (("time",), np.arange(5, dtype="i2"), {"_FillValue": np.int16(3)}),
            "station": (("n", "strlen"), np.array([list(b"abc"), list(b"de\0")], dtype="S1")),
            "depth": (("y",), np.array([1.5, np.nan, 3.5]), {"_FillValue": 3.5, "units": "m"}),
            "lon": (("x",), np.linspace(0, 3, 4, dtype="f8")),
            "big": (("y", "x"), np.arange(12, dtype="i4").reshape(3, 4)),
            "answer": ((), np.float32(42.0), {"long_name": "a scalar"}),
        },
        attrs={"title": "netCDF3 test", "version": np.int16(3), "scale": np.array([1.0, 2.5])},
    )


@pytest.fixture(params=[1, 2], ids=["classic", "64bit-offset"])
def scipy_file(request, tmp_path: Path) -> Path:
    path = tmp_path / f"scipy-v{request.param}.nc"
    mixed_dataset().to_netcdf(
        path, engine="scipy", format=FORMATS[request.param], unlimited_dims=["time"]
    )
    return path


def test_scipy_files_read_identical_to_scipy(scipy_file):
    g = scan_netcdf3(scipy_file)
    expected = xr.open_dataset(scipy_file, engine="scipy").load()
    xr.testing.assert_identical(open_virtual(g), expected)
    # record variables: one chunk per record, big-endian bytes, straight from the file
    t2m = g["t2m"]
    assert chunk_shape(t2m) == (1, 3, 4)
    assert t2m.manifest.shape == (5, 1, 1)
    assert list(t2m.metadata.to_dict()["codecs"]) == [
        {"name": "bytes", "configuration": {"endian": "big"}}
    ]


def test_record_stride_spans_every_record_variable(scipy_file):
    header = read_netcdf3_header(scipy_file)
    # t2m (48 bytes), flag (3 bytes, padded to 4), count (2 bytes, padded to 4)
    assert header.record_bytes == 48 + 4 + 4
    offsets = scan_netcdf3(scipy_file)["flag"].manifest.offsets.ravel()
    assert np.all(np.diff(offsets.astype(np.int64)) == 56)
    assert header.format in ("classic", "64-bit offset")


def netcdf_c(path: Path, file_format: str, code: str) -> None:
    """Write ``path`` with the netCDF-C library: ``code`` runs with ``nc`` open, in a subprocess.

    A subprocess, because importing netCDF4 points HDF5_PLUGIN_PATH at its own
    filter plugins, which breaks h5py's blosc filter for the rest of the process.
    """
    script = (
        "import netCDF4, numpy as np\n"
        f"with netCDF4.Dataset({str(path)!r}, 'w', format={file_format!r}) as nc:\n"
        + textwrap.indent(textwrap.dedent(code), "    ")
    )
    subprocess.run([sys.executable, "-c", script], check=True)


def test_netcdf_c_written_classic_file(tmp_path):
    """netCDF-C lays files out differently from scipy (header padding, alignment)."""
    path = tmp_path / "netcdf-c.nc"
    code = """
        nc.createDimension("time", None)
        nc.createDimension("lat", 3)
        nc.createDimension("nchar", 4)
        nc.title = "written by netCDF-C"
        t = nc.createVariable("time", "f8", ("time",))
        t.units = "days since 2000-01-01"
        t.calendar = "noleap"
        v = nc.createVariable("v", "i2", ("time", "lat"), fill_value=np.int16(-1))
        v.scale_factor = 0.5
        name = nc.createVariable("name", "S1", ("time", "nchar"))
        nc.createVariable("unwritten", "f4", ("lat",))  # netCDF-C fills it with its default
        t[:] = np.arange(4)
        v[:] = np.array([[1, -1, 3], [4, 5, 6], [7, 8, -1], [10, 11, 12]], dtype="i2")
        name[:] = netCDF4.stringtochar(np.array(["ab", "cde", "f", "ghij"], dtype="S4"))
    """
    netcdf_c(path, "NETCDF3_CLASSIC", code)
    g = scan_netcdf3(path)
    expected = xr.open_dataset(path, engine="scipy").load()
    xr.testing.assert_identical(open_virtual(g), expected)
    assert g["unwritten"].fill_value == np.float32(9.9692099683868690e36)
    assert zarr.open_group(zms.ManifestStore(g), mode="r")["unwritten"][0] == np.float32(
        9.9692099683868690e36
    )


@pytest.mark.parametrize("dtype", ["i1", "S1", "i2"])
def test_single_record_variable_is_not_padded(tmp_path, dtype):
    """netCDF's special case: with one record variable, records are packed without padding."""
    path = tmp_path / "single.nc"
    data = np.arange(15).reshape(5, 3).astype(dtype) if dtype != "S1" else None
    if data is None:
        data = np.array([list(b"abc"), list(b"def"), list(b"ghi"), list(b"jk\0"), list(b"l\0\0")])
        data = data.astype("S1")
    xr.Dataset({"v": (("time", "k"), data)}).to_netcdf(
        path, engine="scipy", unlimited_dims=["time"]
    )
    g = scan_netcdf3(path)
    assert read_netcdf3_header(path).record_bytes == 3 * np.dtype(dtype).itemsize
    xr.testing.assert_identical(open_virtual(g), xr.open_dataset(path, engine="scipy").load())


def test_cdf5_file_with_its_extra_types(tmp_path):
    path = tmp_path / "cdf5.nc"
    values = {
        "u1": np.array([[0, 255, 7]] * 2, dtype="u1"),
        "u2": np.array([[0, 65535, 7]] * 2, dtype="u2"),
        "u4": np.array([[0, 2**32 - 1, 7]] * 2, dtype="u4"),
        "i8": np.array([[-(2**62), 2**62, 7]] * 2, dtype="i8"),
        "u8": np.array([[0, 2**64 - 2, 7]] * 2, dtype="u8"),
    }
    np.savez(tmp_path / "values.npz", **values)
    code = f"""
        nc.createDimension("time", None)
        nc.createDimension("x", 3)
        for name, data in np.load({str(tmp_path / "values.npz")!r}).items():
            var = nc.createVariable(name, name, ("time", "x"))
            var.set_auto_maskandscale(False)
            var[:] = data
        nc.createVariable("fixed", "i8", ("x",))[:] = np.array([1, 2, 3])
    """
    netcdf_c(path, "NETCDF3_64BIT_DATA", code)
    assert path.read_bytes()[:4] == b"CDF\x05"
    assert read_netcdf3_header(path).format == "64-bit data (CDF5)"
    g = scan_netcdf3(path)
    root = zarr.open_group(zms.ManifestStore(g), mode="r")
    for name, data in values.items():
        np.testing.assert_array_equal(root[name][:], data)
        assert root[name].dtype == np.dtype(name)
    np.testing.assert_array_equal(root["fixed"][:], [1, 2, 3])
    assert list(root["u8"].attrs) == []  # written without fill values: nothing to mask
    assert g["u8"].fill_value == 18446744073709551614  # netCDF's default for uint64


def test_default_fill_values_and_fill_value_attribute(tmp_path):
    path = tmp_path / "fills.nc"
    xr.Dataset(
        {
            "plain_short": (("x",), np.array([1, -32767], dtype="i2")),
            "plain_double": (("x",), np.array([1.0, 2.0])),
            "filled": (("x",), np.array([5, -5], dtype="i4"), {"_FillValue": np.int32(-5)}),
        }
    ).to_netcdf(path, engine="scipy", encoding={"plain_double": {"_FillValue": None}})
    g = scan_netcdf3(path)
    assert g["plain_short"].fill_value == -32767
    assert g["plain_double"].fill_value == 9.9692099683868690e36
    assert g["filled"].fill_value == -5
    assert "_FillValue" not in g["plain_short"].attributes  # scipy does not mask defaults either
    got = open_virtual(g)
    xr.testing.assert_identical(got, xr.open_dataset(path, engine="scipy").load())
    assert np.isnan(got["filled"].values[1])


def test_char_variable_fill_value_is_kept_and_masked_by_the_zarr_manifest_engine(tmp_path):
    """xarray's Zarr v3 backend cannot decode a bytes _FillValue: it is the Zarr fill_value and a
    typed record, which the zarr_manifest engine masks with, as scipy does (issue #18)."""
    path = tmp_path / "char-fill.nc"
    code = """
        nc.createDimension("n", 2)
        nc.createDimension("s", 3)
        name = nc.createVariable("name", "S1", ("n", "s"), fill_value=b"x")
        name[:] = netCDF4.stringtochar(np.array(["ab", "x"], dtype="S3"))
    """
    netcdf_c(path, "NETCDF3_CLASSIC", code)
    g = scan_netcdf3(path)
    assert g["name"].fill_value == b"x"
    assert "_FillValue" not in g["name"].attributes
    assert g["name"].attributes[TYPED_ATTRIBUTES]["_FillValue"]["dtype"] == "|S1"
    got = open_virtual(g)  # xr.open_zarr: not masked
    np.testing.assert_array_equal(got["name"].values, [b"ab", b"x"])
    raw = xr.open_dataset(path, engine="scipy", mask_and_scale=False).load()
    assert raw["name"].attrs.pop("_FillValue") == b"x"
    assert TYPED_ATTRIBUTES not in got["name"].attrs  # the engine's: not served to zarr
    xr.testing.assert_identical(got, raw)
    masked = xr.open_dataset(zms.ManifestStore(g), engine="zarr_manifest").load()
    xr.testing.assert_identical(masked, xr.open_dataset(path, engine="scipy").load())


def test_large_non_record_variables_split_along_leading_axis(tmp_path):
    path = tmp_path / "large.nc"
    data = np.arange(100 * 30, dtype=">f8").reshape(100, 30)  # 240 bytes per row
    xr.Dataset({"a": (("y", "x"), data), "z": (("y",), np.arange(100.0))}).to_netcdf(
        path, engine="scipy"
    )
    g = scan_netcdf3(path, contiguous_chunk_bytes=1000)
    assert chunk_shape(g["a"]) == (4, 30)  # 4 rows of 240 bytes fit in 1000
    assert g["a"].manifest.shape == (25, 1)
    assert chunk_shape(g["z"]) == (100,)
    xr.testing.assert_identical(open_virtual(g), xr.open_dataset(path, engine="scipy").load())


@pytest.mark.parametrize(("rows", "expected_chunk"), [(82, 41), (98, 14), (97, 97)])
def test_split_never_reads_past_the_end_of_the_file(tmp_path, rows, expected_chunk):
    """The last variable's edge chunk would run past EOF: rows must divide the axis, or no split."""
    path = tmp_path / "tail.nc"
    data = np.arange(rows * 3, dtype="f8").reshape(rows, 3)  # 24-byte rows: 41 fit in 1000
    xr.Dataset({"a": (("y", "x"), data)}).to_netcdf(path, engine="scipy")
    g = scan_netcdf3(path, contiguous_chunk_bytes=1000)
    assert chunk_shape(g["a"]) == (expected_chunk, 3)
    ref = g["a"].manifest
    assert int(ref.offsets.max() + ref.lengths.max()) <= os.path.getsize(path)
    xr.testing.assert_identical(open_virtual(g), xr.open_dataset(path, engine="scipy").load())


def test_empty_record_dimension_and_streaming_record_count(tmp_path):
    path = tmp_path / "records.nc"
    xr.Dataset({"v": (("time", "x"), np.ones((4, 2), dtype="f4"))}).to_netcdf(
        path, engine="scipy", unlimited_dims=["time"]
    )
    raw = bytearray(path.read_bytes())
    raw[4:8] = b"\xff\xff\xff\xff"  # numrecs = STREAMING: the count comes from the file size
    streaming = tmp_path / "streaming.nc"
    streaming.write_bytes(bytes(raw))
    assert read_netcdf3_header(streaming).numrecs == 4
    np.testing.assert_array_equal(open_virtual(scan_netcdf3(streaming))["v"], np.ones((4, 2)))

    empty = tmp_path / "empty.nc"
    xr.Dataset({"v": (("time", "x"), np.ones((0, 2), dtype="f4"))}).to_netcdf(
        empty, engine="scipy", unlimited_dims=["time"]
    )
    g = scan_netcdf3(empty)
    assert g["v"].shape == (0, 2)
    assert open_virtual(g)["v"].shape == (0, 2)


def test_sources_by_absolute_path_with_fingerprints(scipy_file, monkeypatch):
    monkeypatch.chdir(scipy_file.parent)
    g = scan_netcdf3(scipy_file.name)
    manifest = g["t2m"].manifest
    assert manifest.paths == (str(scipy_file),)
    stat = os.stat(scipy_file)
    assert manifest.fingerprints[str(scipy_file)] == (stat.st_size, stat.st_mtime_ns, None)


def test_drop_variables_and_groups(scipy_file):
    g = scan_netcdf3(scipy_file, drop_variables=["t2m", "flag"])
    assert sorted(g) == sorted(set(mixed_dataset().variables) - {"t2m", "flag"})
    assert "lon" not in scan_netcdf3(scipy_file, drop_variables="lon")
    with pytest.raises(ValueError, match="netCDF3 file, which has no groups"):
        scan_netcdf3(scipy_file, group="forecast")


def scipy_bytes(tmp_path: Path) -> bytes:
    path = tmp_path / "good.nc"
    mixed_dataset().to_netcdf(path, engine="scipy", unlimited_dims=["time"])
    return path.read_bytes()


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda b: b"CDF\x03" + b[4:], r"starts with b'CDF\\x03', not a netCDF3 signature"),
        (lambda b: b[:60], "the header ends inside"),
        (lambda b: b[:8] + b"\x00\x00\x00\x0d" + b[12:], "expected the dimension list"),
        (lambda b: b[:12] + b"\xff\xff\xff\xff" + b[16:], "the number of dimensions is negative"),
        (lambda b: b[:-100], "is truncated: variable"),
    ],
    ids=["magic", "short-header", "tag", "negative-count", "truncated-data"],
)
def test_malformed_files_name_the_file_and_the_problem(tmp_path, mangle, message):
    path = tmp_path / "bad.nc"
    path.write_bytes(mangle(scipy_bytes(tmp_path)))
    with pytest.raises(ValueError, match=message) as info:
        scan_netcdf3(path)
    assert str(path) in str(info.value)


def test_remote_file_over_http_reads_only_the_header(http_server):
    path = http_server.root / "remote.nc"
    mixed_dataset().to_netcdf(path, engine="scipy", unlimited_dims=["time"])
    url = f"{http_server.url}/remote.nc"
    g = scan_netcdf3(url)
    assert http_server.requests.count("GET") <= 2  # the header (and fsspec's size probe)
    assert g["t2m"].manifest.paths == (url,)
    assert g["t2m"].manifest.fingerprints[url].size == path.stat().st_size
    xr.testing.assert_identical(open_virtual(g), xr.open_dataset(path, engine="scipy").load())
