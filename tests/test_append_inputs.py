"""Documents (and Icechunk repositories) as inputs: scanned, opened and combined like files."""

from __future__ import annotations

from pathlib import Path

import fsspec
import pytest
import xarray as xr
from icechunk_repos import local_repository
from test_icechunk import write
from xarray_files import daily_files

import zarr_manifest_store as zms
from zarr_manifest_store.scan import REGISTRY, Folder

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def expected(files: list[Path]) -> xr.Dataset:
    return xr.open_mfdataset([str(f) for f in files], combine="by_coords").load()


def stored(ds: xr.Dataset, tmp_path: Path, name: str = "out.zarr") -> xr.Dataset:
    """What a virtual dataset reads as, once written as a document."""
    ds.virtualize.to_zarr(tmp_path / name)
    return xr.open_dataset(tmp_path / name, engine="zarr_manifest", allow=[str(tmp_path)]).load()


def folder(path: Path) -> Folder:
    return Folder(str(path), fsspec.filesystem("file"), str(path))


def test_scan_returns_the_stored_hierarchy(tmp_path):
    files = daily_files(tmp_path / "data", (4, 4))
    group = zms.open_virtual_mfdataset([str(f) for f in files]).virtualize.to_group()
    zms.write_manifest(group, tmp_path / "doc.zarr")
    assert REGISTRY.identify(tmp_path / "doc.zarr").name == "chunk-manifest"
    scanned = zms.scan(tmp_path / "doc.zarr", allow=[str(tmp_path / "data")])
    assert sorted(scanned.arrays) == sorted(group.arrays)
    assert scanned["t2m"].manifest == group["t2m"].manifest
    assert scanned.attributes == group.attributes


def test_a_documents_sources_need_allowing_as_for_a_store(tmp_path):
    files = daily_files(tmp_path / "data", (4,))
    zms.write_manifest(zms.scan(str(files[0])), tmp_path / "doc.zarr")
    with pytest.raises(PermissionError, match="allow="):
        zms.open_virtual_dataset(tmp_path / "doc.zarr")
    inside = tmp_path / "inside.zarr"  # sources inside the folder: relative, always allowed
    (inside / "data").mkdir(parents=True)
    (inside / "data" / "day.nc").write_bytes(files[0].read_bytes())
    zms.write_manifest(zms.scan(str(inside / "data" / "day.nc")), inside, mode="w")
    assert zms.scan(inside)["t2m"].manifest.paths == (str(inside / "data" / "day.nc"),)


def test_open_virtual_dataset_of_a_document_is_the_stored_dataset(tmp_path):
    files = daily_files(tmp_path / "data", (4, 4))
    zms.open_virtual_mfdataset([str(f) for f in files]).virtualize.to_zarr(tmp_path / "doc.zarr")
    allow = [str(tmp_path / "data")]
    ds = zms.open_virtual_dataset(tmp_path / "doc.zarr", allow=allow)
    assert isinstance(ds.t2m.data, zms.ManifestArray)
    xr.testing.assert_identical(stored(ds, tmp_path), expected(files))
    loaded = zms.open_virtual_dataset(
        tmp_path / "doc.zarr", allow=allow, loadable_variables=["t2m", "time", "lat", "lon"]
    )
    xr.testing.assert_identical(loaded.drop_encoding(), expected(files).drop_encoding())


def test_documents_combine_with_files(tmp_path):
    files = daily_files(tmp_path / "data", (4, 4, 4))
    zms.open_virtual_mfdataset([str(f) for f in files[:2]]).virtualize.to_zarr(
        tmp_path / "doc.zarr"
    )
    both = zms.open_virtual_mfdataset(
        [str(tmp_path / "doc.zarr"), str(files[2])],
        combine="by_coords",
        scan_options={"allow": [str(tmp_path / "data")]},
    )
    xr.testing.assert_identical(stored(both, tmp_path, "both.zarr"), expected(files))


def test_plain_zarr_stores_and_repositories_are_not_documents(tmp_path):
    files = daily_files(tmp_path / "data", (4,))
    xr.open_dataset(files[0]).to_zarr(tmp_path / "plain.zarr", zarr_format=3, consolidated=True)
    zms.write_manifest(zms.scan(str(files[0])), tmp_path / "doc.zarr")
    is_document = REGISTRY["chunk-manifest"].sniff_folder
    assert is_document(folder(tmp_path / "doc.zarr"))
    assert not is_document(folder(tmp_path / "plain.zarr"))
    assert not is_document(folder(tmp_path / "data"))


def test_an_icechunk_repository_folder_is_scanned_through_scan_icechunk(tmp_path):
    files = daily_files(tmp_path / "data", (4, 4))
    repo = local_repository(tmp_path / "repo", [f"file://{tmp_path}/"])
    write(zms.open_virtual_mfdataset([str(f) for f in files]), repo)
    assert REGISTRY.identify(tmp_path / "repo").name == "icechunk"
    assert not REGISTRY["chunk-manifest"].sniff_folder(folder(tmp_path / "repo"))
    group = zms.scan(tmp_path / "repo")
    assert group["t2m"].manifest == zms.scan_icechunk(repo)["t2m"].manifest
    ds = zms.open_virtual_dataset(tmp_path / "repo")
    xr.testing.assert_identical(stored(ds, tmp_path), expected(files))


def test_a_documents_group_and_dropped_variables(tmp_path):
    files = daily_files(tmp_path / "data", (4,), extra={"u": (("time",), [1.0, 2, 3, 4], {})})
    inner = zms.scan(str(files[0]))
    zms.write_manifest(zms.ManifestGroup(groups={"era": inner}), tmp_path / "doc.zarr")
    allow = [str(tmp_path / "data")]
    ds = zms.open_virtual_dataset(
        tmp_path / "doc.zarr", group="era", drop_variables=["u"], allow=allow
    )
    assert sorted(ds.variables) == ["lat", "lon", "t2m", "time"]
    with pytest.raises(ValueError, match="no group 'other'"):
        zms.scan(tmp_path / "doc.zarr", group="other", allow=allow)
