"""The real-files checker (benchmarks/real_files) on files generated here: it classifies right.

Nothing is downloaded: the corpus part is exercised on a local archive.
"""

from __future__ import annotations

import io
import subprocess
import tarfile
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
import zarr
from scipy.io import netcdf_file

from benchmarks.real_files import check, compare, datasets, fetch, report, runner, views


def _classes(records: list[dict], key: str) -> dict[str, str]:
    return {r[key]: r["class"] for r in records}


@pytest.fixture
def plain_file(tmp_path: Path) -> str:
    path = tmp_path / "plain.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "t", data=np.linspace(0, 1, 60).reshape(6, 10), chunks=(2, 5), compression="gzip"
        )
        f["grp/counts"] = np.arange(7, dtype=">i4")
        f["grp/names"] = np.array([b"ab", b"cde"], dtype="S3")
        f["scalar"] = np.float32(np.nan)
    return str(path)


@pytest.fixture
def refusing_file(tmp_path: Path) -> str:
    """An HDF5 file with a dataset of object references (no Zarr data type) beside a plain one."""
    path = tmp_path / "refs.h5"
    with h5py.File(path, "w") as f:
        f["a"] = np.arange(5)
        refs = f.create_dataset("refs", (2,), dtype=h5py.ref_dtype)
        refs[0] = f["a"].ref
    return str(path)


def test_exact_file(plain_file: str) -> None:
    result = check.check_file(plain_file)
    assert result["error"] is None
    assert _classes(result["datasets"], "name") == {
        "t": "exact", "grp/counts": "exact", "grp/names": "exact", "scalar": "exact"
    }  # fmt: skip
    views = _classes([v for v in result["views"] if v["group"] == ""], "variable")
    assert set(views.values()) == {"equal"}
    assert {"t", "scalar", "(attributes)"} <= set(views)
    assert result["times"]["scan"] > 0
    assert result["times"]["h5py_visit"] > 0


def test_refused_dataset_is_named(refusing_file: str) -> None:
    result = check.check_file(refusing_file)
    assert _classes(result["datasets"], "name") == {"a": "exact", "refs": "refused"}
    refused = next(d for d in result["datasets"] if d["name"] == "refs")
    assert "refs" in refused["reason"]
    assert any("refs" in w for w in result["warnings"])


def test_netcdf3_variables_and_view(tmp_path: Path) -> None:
    path = tmp_path / "f.nc"
    with netcdf_file(path, "w") as f:
        f.createDimension("x", 3)
        v = f.createVariable("v", "f4", ("x",))
        v[:] = [1.5, 2.5, -1]
        v.units = "m"
    result = check.check_file(str(path))
    assert result["format"] == "netcdf3"
    assert _classes(result["datasets"], "name") == {"v": "exact"}
    assert _classes(result["views"], "variable") == {"v": "equal", "(attributes)": "equal"}


def test_missing_and_wrong_are_told_apart() -> None:
    """A hand-made Zarr view with one array of wrong values and one array left out silently."""
    root = zarr.open_group(zarr.storage.MemoryStore(), mode="w")
    root.create_array("wrong", data=np.array([1, 2, 4]))
    root.create_array("same", data=np.array([1.0, np.nan]))
    warned = ["<file>: left out dataset 'grp/refused': no Zarr type"]
    assert datasets.classify("same", np.array([1.0, np.nan]), root, warned) == {"class": "exact"}
    wrong = datasets.classify("wrong", np.array([1, 2, 3]), root, warned)
    assert wrong["class"] == "wrong"
    assert "1 of 3 values differ" in wrong["reason"]
    assert datasets.classify("gone", np.zeros(2), root, warned)["class"] == "missing"
    assert datasets.classify("grp/refused", np.zeros(2), root, warned)["class"] == "refused"
    assert datasets.classify("grp/refused/x", np.zeros(2), root, warned)["class"] == "refused"
    failed = datasets.classify("wrong", np.zeros(2), None, [], "OSError: boom")
    assert failed == {"class": "file-error", "reason": "OSError: boom"}


def test_values_compare_strings_by_value_and_numbers_by_kind() -> None:
    assert (
        compare.difference(np.array([b"ab", b"c"], dtype="S2"), np.array(["ab", "c"], dtype=object))
        is None
    )
    assert compare.difference(np.arange(3, dtype="<i4"), np.arange(3, dtype=">i4")) is None
    assert "dtype" in compare.difference(np.arange(3, dtype="i4"), np.arange(3, dtype="f8"))
    assert compare.difference(np.array([np.nan, 1.0]), np.array([np.nan, 1.0])) is None
    assert "values differ" in compare.difference(np.array([0.0, 1.0]), np.array([0.0, 2.0]))


def test_view_differences_are_named() -> None:
    expected = xr.Dataset(
        {
            "s": ("x", np.array(["a", "b"], dtype=object)),
            "t": ("x", np.array([1.0, 2.0]), {"units": "m", "TITLE": "", "flags": [1, 2]}),
            "gone": ((), 1),
        },
        attrs={"history": "made"},
    )
    actual = xr.Dataset(
        {
            "s": ("x", np.array([b"a", b"b"])),
            "t": ("x", np.array([1.0, 2.0]), {"units": "m"}),
            "extra": ((), 1),
        },
        attrs={"history": "made"},
    )
    warned = ["<file>:/t: attribute 'flags' has no JSON form; left out"]
    out = views.compare_datasets(expected, actual, "", warned)
    assert out["s"] == ("mismatch", "dtype |S1 (kind S) where object (kind O) was expected")
    assert out["t"] == (
        "mismatch",
        "attributes: missing TITLE silently, missing flags with a warning",
    )
    assert out["gone"] == ("mismatch", "missing variable")
    assert out["extra"] == ("mismatch", "extra variable")
    assert out["(attributes)"] == ("equal", "")
    assert report.signature("dtype <U12 where |S3: 'x' (3, 4)") == "dtype <UN where |SN: '…' […]"


def test_worker_process_and_timeout(plain_file: str) -> None:
    file = fetch.CorpusFile(plain_file, "generated", "0", "plain.h5", "hdf5", 0, "")
    result = runner.run_one(file, timeout=120, memory_gb=8)
    assert result["error"] is None
    assert result["stage"] == "done"
    assert {d["class"] for d in result["datasets"]} == {"exact"}
    late = runner.run_one(file, timeout=0.001, memory_gb=8)
    assert late["error"]["message"].startswith("timeout after")
    assert report.summarize([result, late])["total"]["timeouts"] == 1


def test_archive_members_are_sniffed_not_named(tmp_path: Path, plain_file: str) -> None:
    """HDF5 (also after a user block) and netCDF3 members are extracted whatever their names."""
    block = tmp_path / "block.h5"
    with h5py.File(block, "w", userblock_size=512) as f:
        f["x"] = np.arange(3)
    nc3 = tmp_path / "minc.mnc"
    with netcdf_file(nc3, "w") as f:
        f.createDimension("x", 1)
    members = {
        "pkg/tests/data/odd.set": Path(plain_file).read_bytes(),
        "pkg/tests/data/block.mat": block.read_bytes(),
        "pkg/tests/data/minc.mnc": nc3.read_bytes(),
        "pkg/README.txt": b"CDF is not at the start",
    }
    archive = tmp_path / "pkg-1.0.tar.gz"
    with tarfile.open(archive, "w:gz") as t:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    pin = fetch.Pin("pkg", "1.0", archive.name, "")
    files = fetch.extract(pin, archive, tmp_path / "cache")
    assert {f.member: f.format for f in files} == {
        "pkg/tests/data/odd.set": "hdf5",
        "pkg/tests/data/block.mat": "hdf5",
        "pkg/tests/data/minc.mnc": "netcdf3",
    }
    assert all(Path(f.path).read_bytes() == members[f.member] for f in files)


def test_debian_packages_are_pins_and_their_installed_files_members(
    tmp_path: Path, plain_file: str
) -> None:
    """A ``[[debian]]`` pin follows the PyPI ones; a .deb's installed files (dpkg-deb reads its
    data archive) are sniffed as any archive's members, named by their installed paths."""
    pins = tmp_path / "packages.toml"
    pins.write_text(
        '[[debian]]\nname = "data"\nversion = "1:1.0-1"\nfile = "data.deb"\nsha256 = ""\n'
        '[[package]]\nname = "pkg"\nversion = "1.0"\nfile = "pkg.tar.gz"\nsha256 = ""\n'
    )
    assert [(p.name, p.registry) for p in fetch.load_pins(pins)] == [
        ("pkg", "pypi"),
        ("data", "debian"),
    ]
    root = tmp_path / "build"
    (root / "DEBIAN").mkdir(parents=True)
    (root / "DEBIAN" / "control").write_text(
        "Package: data\nVersion: 1:1.0-1\nArchitecture: all\n"
        "Maintainer: nobody <nobody@localhost>\nDescription: test data\n"
    )
    share = root / "usr" / "share" / "data"
    share.mkdir(parents=True)
    (share / "plain.cdf").write_bytes(Path(plain_file).read_bytes())
    (share / "README").write_text("a text file, not CDF\x01")
    deb = tmp_path / "data.deb"
    subprocess.run(["dpkg-deb", "--build", "--root-owner-group", str(root), str(deb)], check=True)
    pin = fetch.load_pins(pins)[1]
    files = fetch.extract(pin, deb, tmp_path / "cache")
    assert [(f.member, f.format) for f in files] == [("usr/share/data/plain.cdf", "hdf5")]
    assert Path(files[0].path).read_bytes() == Path(plain_file).read_bytes()


def test_reference_engine_per_kind_of_file(tmp_path: Path, plain_file: str) -> None:
    """netCDF-4 files go to h5netcdf then netcdf4; plain HDF5 to h5netcdf only; netCDF3 to scipy."""
    nc4 = tmp_path / "nc4.nc"
    with h5py.File(nc4, "w") as f:
        f.attrs["_NCProperties"] = b"version=2"
    nested = tmp_path / "nested.nc"
    with h5py.File(nested, "w") as f:
        f.create_dataset("g/x", data=np.arange(2)).attrs["_Netcdf4Dimid"] = 0
    assert views.netcdf_kind(plain_file, "hdf5") == "hdf5"
    assert views.netcdf_kind(str(nc4), "hdf5") == "netcdf4"
    assert views.netcdf_kind(str(nested), "hdf5") == "netcdf4"
    assert views.ENGINES["hdf5"] == ("h5netcdf",)
    assert views.ENGINES["netcdf4"] == ("h5netcdf", "netcdf4")
    assert views.ENGINES["netcdf3"][0] == "scipy"


def test_typed_attributes_compare_through_the_package_view(tmp_path: Path) -> None:
    """The zarr_manifest engine's view is compared; xr.open_zarr's documented differences are
    recorded apart; an object reference compares as its object's path."""
    path = tmp_path / "typed.h5"
    with h5py.File(path, "w") as f:
        packed = f.create_dataset("p", data=np.array([1, -7, 300], dtype="i2"))
        packed.attrs["scale_factor"] = np.float32(0.01)
        packed.attrs["add_offset"] = np.float32(0.5)
        f.attrs["ref"] = packed.ref
        f.attrs["_nc_note"] = "shown by h5netcdf, hidden by xarray's Zarr backend"
    result = check.check_file(str(path))
    records = [v for v in result["views"] if v["group"] == ""]
    assert {(v["variable"], v["class"]) for v in records} == {
        ("p", "equal"),  # float32 here; float64 through xr.open_zarr, equal once rounded
        ("(attributes)", "equal"),
        ("(attributes)", "open_zarr-differs"),
    }
    documented = next(v for v in records if v["class"] == "open_zarr-differs")
    assert documented["reason"].startswith("xr.open_zarr: ")


def test_a_group_no_engine_opens_is_unreadable_not_skipped(tmp_path: Path) -> None:
    path = tmp_path / "odd.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("x", data=np.arange(3)).attrs["DIMENSION_LIST"] = 5  # h5netcdf fails
    records = list(views.check_views(str(path), "hdf5", None, [""], []))
    assert [r["class"] for r in records] == ["unreadable"]
    assert records[0]["reason"].startswith("no engine opens it: h5netcdf: ")


def test_a_file_over_a_minute_of_ours_is_slow() -> None:
    result = {
        "times": {"scan": 51.5, "open_group": 0.5},
        "view_times": [{"timing": {"open_dataset": 8.0, "open_zarr": 9.0}}],
    }
    assert report.slow(result) == ["61.0 s of ours (scan, open, views), over 60 s"]
    result["view_times"][0]["timing"]["open_zarr"] = 4.0
    assert report.slow(result) == []


def test_times_xarray_cannot_decode_are_compared_undecoded(tmp_path: Path) -> None:
    path = tmp_path / "times.nc"
    with netcdf_file(path, "w") as f:
        f.createDimension("time", 2)
        t = f.createVariable("time", "i", ("time",))
        t[:] = [0, 2_147_483_000]  # beyond every datetime type xarray decodes to
        t.units = "days since 1961-01-01"
    with pytest.raises(ValueError, match="unable to decode time units"):
        xr.open_dataset(path, engine="scipy")
    result = check.check_file(str(path))
    assert _classes(result["views"], "variable") == {"time": "equal", "(attributes)": "equal"}
    assert {v["engine"] for v in result["views"]} == {"scipy, decode_times=False"}


def test_a_refused_name_holding_a_backslash_is_found_in_its_warning():
    """Refusal warnings write names as Python's repr does (a backslash doubled): the checker
    took such a refused dataset for a silently missing one."""
    message = "f.h5: left out dataset 'g/back\\\\slash': holds references"
    assert datasets.refused_by("g/back\\slash", datasets.named_in([message]))
