"""The format registry: recognition in passes, and formats added through entry points."""

from __future__ import annotations

import importlib
import importlib.metadata
import sys
import textwrap
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
import zarr

import zarr_manifest_store as zms
from zarr_manifest_store.scan import ENTRY_POINT_GROUP, REGISTRY, Format, Registry, sniff

PLUGIN = '''
"""A third-party format: "RAW1", a little-endian int32 count, then the int32 values."""
import os

import zarr_manifest_store as zms
from zarr_manifest_store.scan import Format


def scan_raw(url, *, storage_options=None):
    path = os.path.abspath(os.fspath(url))
    with open(path, "rb") as f:
        count = int.from_bytes(f.read(8)[4:], "little")
    array = zms.ManifestArray(
        metadata={
            "shape": [count],
            "data_type": "int32",
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [count]}},
            "chunk_key_encoding": {"name": "default"},
            "fill_value": 0,
            "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
            "dimension_names": ["x"],
        },
        manifest=zms.ChunkManifest.from_dict(
            {"0": {"path": path, "offset": 8, "length": 4 * count}}
        ),
    )
    return zms.ManifestGroup(arrays={"values": array}, attributes={"format": "raw"})


def is_raw_folder(folder):
    return folder.exists("RAW1.index")


FORMAT = Format(
    name="raw",
    scan=scan_raw,
    description="raw int32 files (b'RAW1')",
    signatures=(b"RAW1",),
    sniff_folder=is_raw_folder,
    folder_description="raw folders (a RAW1.index file)",
)
NOT_A_FORMAT = {"name": "raw"}
'''


def write_raw(path: Path, values: np.ndarray) -> Path:
    path.write_bytes(b"RAW1" + len(values).to_bytes(4, "little") + values.astype("<i4").tobytes())
    return path


@pytest.fixture
def installed_plugin(tmp_path):
    """A distribution installed in ``tmp_path`` (on sys.path) declaring the format ``raw``."""
    site = tmp_path / "site"
    site.mkdir()
    (site / "zms_raw_format.py").write_text(textwrap.dedent(PLUGIN))
    info = site / "zms_raw_format-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: zms-raw-format\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\nraw = zms_raw_format:FORMAT\n")
    sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    REGISTRY.reload()
    try:
        yield tmp_path
    finally:
        sys.path.remove(str(site))
        sys.modules.pop("zms_raw_format", None)
        REGISTRY.reload()


def test_an_installed_entry_point_adds_a_format_to_zms_scan(installed_plugin):
    path = write_raw(installed_plugin / "values.raw", np.arange(5) * 7)
    assert sniff(path) == "raw"
    group = zms.scan(path)
    assert group.attributes == {"format": "raw"}
    read = zarr.open_group(zms.ManifestStore(group), mode="r")["values"][:]
    np.testing.assert_array_equal(read, np.arange(5) * 7)
    # the unknown-format message lists what the installed formats read
    unknown = installed_plugin / "mystery.dat"
    unknown.write_bytes(b"MYST")
    with pytest.raises(zms.UnsupportedDatasetError, match=r"and raw int32 files \(b'RAW1'\)$"):
        zms.scan(unknown)


def test_a_format_recognises_folders(installed_plugin):
    folder = installed_plugin / "raw-folder"
    folder.mkdir()
    with pytest.raises(zms.UnsupportedDatasetError, match=r"or raw folders \(a RAW1.index file\)"):
        sniff(folder)
    (folder / "RAW1.index").write_text("")
    assert sniff(folder) == "raw"


def test_formats_leave_with_their_distribution(installed_plugin):
    assert "raw" in {f.name for f in REGISTRY.formats}
    sys.path.remove(str(installed_plugin / "site"))
    try:
        REGISTRY.reload()
        assert "raw" not in {f.name for f in REGISTRY.formats}
    finally:
        sys.path.insert(0, str(installed_plugin / "site"))


def _entry_point(name: str, value: str) -> importlib.metadata.EntryPoint:
    return importlib.metadata.EntryPoint(name=name, value=value, group=ENTRY_POINT_GROUP)


def test_broken_entry_points_are_skipped_with_a_warning(installed_plugin):
    registry = Registry(builtin=dict(REGISTRY.builtin))
    entry_points = [
        _entry_point("missing", "no_such_module_here:FORMAT"),
        _entry_point("wrong", "zms_raw_format:NOT_A_FORMAT"),
        _entry_point("raw", "zms_raw_format:FORMAT"),
        _entry_point("raw2", "zms_raw_format:FORMAT"),  # the same name twice
    ]
    with pytest.warns(UserWarning, match=ENTRY_POINT_GROUP) as caught:
        loaded = registry.load(entry_points)
    assert list(loaded) == ["raw"]
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 3
    assert messages[0].startswith("entry point 'missing' (no_such_module_here:FORMAT)")
    assert "fails to load" in messages[0]
    assert "names a dict, not a zarr_manifest_store.scan.Format" in messages[2]
    assert messages[1].startswith("entry point 'raw2'")
    assert "a format named 'raw' is already registered" in messages[1]


def test_a_format_cannot_take_a_builtin_name(installed_plugin):
    impostor = "zms_raw_format:FORMAT"
    registry = Registry(builtin={"raw": REGISTRY.builtin["hdf5"]})
    with pytest.warns(UserWarning, match="a format named 'raw' is already registered"):
        assert registry.load([_entry_point("raw", impostor)]) == {}


def _always(_: object) -> bool:
    return True


def test_signatures_win_over_another_formats_sniff(tmp_path):
    """A format that sniffs every file gets only the files no signature claims."""

    def scan_anything(url, **options):
        return zms.ManifestGroup(attributes={"scanned": "anything"})

    greedy = Format(name="greedy", scan=scan_anything, description="anything", sniff=_always)
    registry = Registry(builtin={**REGISTRY.builtin, "greedy": greedy})
    h5 = tmp_path / "f.h5"
    with h5py.File(h5, "w", userblock_size=512) as f:  # the signature at 512, inside the head
        f["v"] = np.arange(3)
    nc = tmp_path / "f.nc"
    xr.Dataset({"v": ("x", np.arange(3.0))}).to_netcdf(nc, engine="scipy")
    other = tmp_path / "f.dat"
    other.write_bytes(b"something else")
    assert registry.identify(h5).name == "hdf5"
    assert registry.identify(nc).name == "netcdf3"
    assert registry.identify(other).name == "greedy"
    assert greedy.options is None  # takes any option


def test_signatures_beyond_the_head_cost_a_read_each(tmp_path, monkeypatch):
    """HDF5 after a large user block is found by reading 8 bytes at each power of two."""
    path = tmp_path / "f.h5"
    with h5py.File(path, "w", userblock_size=65536) as f:
        f["v"] = np.arange(3)
    reads = []
    real_pread = __import__("os").pread

    def pread(fd, n, offset):
        reads.append((offset, n))
        return real_pread(fd, n, offset)

    monkeypatch.setattr("os.pread", pread)
    assert sniff(path) == "hdf5"
    assert reads == [(4096, 8), (8192, 8), (16384, 8), (32768, 8), (65536, 8)]


def test_options_a_scanner_does_not_take_are_named(tmp_path):
    nc = tmp_path / "f.nc"
    xr.Dataset({"v": ("x", np.arange(3.0))}).to_netcdf(nc, engine="scipy")
    assert REGISTRY["netcdf3"].options >= {"storage_options", "drop_variables"}
    with pytest.raises(
        TypeError, match=r"scan_netcdf3\(\) \(the netcdf3 scanner\).*'max_inline_bytes'"
    ):
        zms.scan(nc, max_inline_bytes=10)
    with pytest.raises(KeyError):
        REGISTRY["no-such-format"]


def test_mappings_no_format_reads_are_refused():
    registry = Registry(builtin={"hdf5": REGISTRY.builtin["hdf5"]})
    with pytest.raises(
        zms.UnsupportedDatasetError, match="cannot identify the format of a mapping"
    ):
        registry.identify_mapping({"version": 1, "refs": {}})


def test_files_a_builtin_signature_claims_need_no_entry_points(tmp_path, monkeypatch):
    """Reading entry points costs tens of milliseconds: HDF5 and netCDF3 files skip it."""
    nc = tmp_path / "f.nc"
    xr.Dataset({"v": ("x", np.arange(3.0))}).to_netcdf(nc, engine="scipy")
    looked_up = []
    monkeypatch.setattr(importlib.metadata, "entry_points", lambda **kw: looked_up.append(kw) or [])
    registry = Registry(builtin=dict(REGISTRY.builtin))
    assert registry.identify(nc).name == "netcdf3"
    assert looked_up == []
    other = tmp_path / "f.dat"
    other.write_bytes(b"something else")
    with pytest.raises(zms.UnsupportedDatasetError):
        registry.identify(other)
    assert looked_up == [{"group": ENTRY_POINT_GROUP}]
