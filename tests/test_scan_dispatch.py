"""zms.scan: identifies a file by its first bytes and hands it to the right scanner."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr

import zarr_manifest_store as zms
from zarr_manifest_store.scan import REGISTRY, sniff

KERCHUNK = Path(__file__).parent / "data" / "kerchunk"


@pytest.fixture
def netcdf3_file(tmp_path: Path) -> Path:
    path = tmp_path / "classic.nc"
    xr.Dataset({"t": (("time",), np.arange(3.0)), "x": (("x",), [1, 2])}).to_netcdf(
        path, engine="scipy", format="NETCDF3_CLASSIC"
    )
    return path


@pytest.fixture
def fake_hdf5_scanner(monkeypatch):
    """Stands in for scan_hdf5 (issue 3) to check what the dispatcher hands it."""
    calls = []

    def scan_hdf5(url, **options):
        calls.append((url, options))
        return zms.ManifestGroup(attributes={"scanned": "hdf5"})

    hdf5 = REGISTRY.builtin["hdf5"]
    monkeypatch.setitem(REGISTRY.builtin, "hdf5", dataclasses.replace(hdf5, scan=scan_hdf5))
    return calls


def test_netcdf3_goes_to_scan_netcdf3_with_its_options(netcdf3_file):
    assert sniff(netcdf3_file) == "netcdf3"
    g = zms.scan(netcdf3_file, drop_variables=["x"])
    assert g.equals(zms.scan_netcdf3(netcdf3_file, drop_variables=["x"]))
    assert list(g) == ["t"]
    with pytest.raises(TypeError, match="scan_netcdf3"):
        zms.scan(netcdf3_file, no_such_option=1)


@pytest.mark.parametrize("version", [2, 5])
def test_every_netcdf3_version_byte_is_recognised(tmp_path, netcdf3_file, version):
    raw = bytearray(netcdf3_file.read_bytes())
    raw[3] = version
    path = tmp_path / f"v{version}.nc"
    path.write_bytes(bytes(raw))
    assert sniff(path) == "netcdf3"


def test_kerchunk_json_parquet_and_dicts_go_to_scan_kerchunk(monkeypatch):
    monkeypatch.chdir(KERCHUNK)
    expected = zms.scan_kerchunk("combined.json")
    assert sniff("combined.json") == "kerchunk"
    assert sniff("combined.parq") == "kerchunk"
    assert zms.scan("combined.json").equals(expected)
    assert zms.scan("combined.parq").equals(expected)
    refs = (KERCHUNK / "combined.json").read_text()
    assert zms.scan(__import__("json").loads(refs)).equals(expected)
    assert zms.scan("day1.json", drop_variables="sp").arrays.keys() == {
        "lat",
        "lon",
        "t2m",
        "time",
        "zone",
    }


@pytest.mark.parametrize("userblock", [0, 512, 8192])
def test_hdf5_goes_to_scan_hdf5_with_its_options(tmp_path, fake_hdf5_scanner, userblock):
    path = tmp_path / "f.h5"
    with h5py.File(path, "w", userblock_size=userblock) as f:
        f["v"] = np.arange(4)
    assert sniff(path) == "hdf5"
    g = zms.scan(path, group="/", on_unsupported="skip")
    assert g.attributes == {"scanned": "hdf5"}
    assert fake_hdf5_scanner == [(path, {"group": "/", "on_unsupported": "skip"})]


def test_hdf5_scan_equals_scan_hdf5(gzip_shuffle_file):
    hdf5 = pytest.importorskip("zarr_manifest_store.scan.hdf5", reason="scan_hdf5 is issue 3's")
    path, _ = gzip_shuffle_file
    assert zms.scan(path).equals(hdf5.scan_hdf5(path))


@pytest.mark.parametrize(
    ("content", "seen"),
    [
        (b"\x89PNG\r\n\x1a\n rest of an image", r"b'\\x89PNG\\r\\n\\x1a\\n rest of'"),
        (b"%PDF\x00\x00", r"b'%PDF\\x00\\x00'"),  # GRIB, once refused here, is read now
        (b"", r"b'' \(an empty file\)"),
    ],
)
def test_unknown_files_are_refused_naming_their_first_bytes(tmp_path, content, seen):
    path = tmp_path / "mystery.dat"
    path.write_bytes(content)
    with pytest.raises(zms.UnsupportedDatasetError, match=f"{path.name}'?: it starts with {seen}"):
        zms.scan(path)


def test_folders_other_than_parquet_references_or_zarr_stores_are_refused(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(zms.UnsupportedDatasetError, match="not kerchunk parquet references"):
        zms.scan(tmp_path / "empty")
    store = tmp_path / "store.zarr"
    store.mkdir()
    (store / "zarr.json").write_text('{"zarr_format": 3, "node_type": "group"}')
    assert sniff(store) == "zarr"  # Zarr stores are a format of their own (issue 21)


def test_remote_files_over_http(http_server, netcdf3_file):
    shutil.copy(netcdf3_file, http_server.root / "classic.nc")
    url = f"{http_server.url}/classic.nc"
    assert sniff(url) == "netcdf3"
    assert http_server.requests.count("GET") <= 2  # the first bytes (and fsspec's size probe)
    g = zms.scan(url)
    assert g["t"].manifest.paths == (url,)
    xr.testing.assert_identical(
        xr.open_zarr(zms.ManifestStore(g), consolidated=False).load(),
        xr.open_dataset(netcdf3_file, engine="scipy").load(),
    )


def test_remote_parquet_references_on_s3(s3, monkeypatch):
    monkeypatch.chdir(KERCHUNK)
    fs, bucket, server = s3
    fs.put(str(KERCHUNK / "combined.parq"), f"{bucket}/refs.parq", recursive=True)
    url = f"s3://{bucket}/refs.parq"
    g = zms.scan(url, storage_options=server.storage_options)
    assert g.equals(zms.scan_kerchunk("combined.parq"))
