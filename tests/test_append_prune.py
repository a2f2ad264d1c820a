"""Pruning a grown document's parts: only parts its root does not list go, once unlisted for
``older_than`` (a replaced part counts from when it was dropped); local and object storage."""

from __future__ import annotations

import datetime
import os
import time
from pathlib import Path

import pytest
import xarray as xr
from test_append import document, expected, opened
from test_append_remote import bucket, remote_document, snapshot  # noqa: F401 - a fixture
from test_append_remote import opened as opened_remote
from xarray_files import daily_files

import zarr_manifest_store as zms
from zarr_manifest_store.cli import main
from zarr_manifest_store.document import wire
from zarr_manifest_store.document.commit import LOCK_FILE
from zarr_manifest_store.document.grow import RETIRED

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

HOUR = datetime.timedelta(hours=1)


def append(url, file, **options) -> None:
    ds = zms.open_virtual_dataset(str(file))
    ds.virtualize.to_zarr(url, mode="a", append_dim="time", **options)


def replaced_document(tmp_path: Path, encoding: str = "json"):
    """Three days, the last replaced by a re-delivery: (url, what it reads as, files)."""
    files = daily_files(tmp_path / "data", (4, 4, 4))
    again = daily_files(tmp_path / "again", (4, 4, 4), seed=1)
    url = document(tmp_path, files, encoding)
    append(url, files[1])
    append(url, files[2])
    reader = zms.ManifestStore.open(url, allow=[str(tmp_path)])
    append(url, again[2], on_overlap="replace")
    now = xr.open_mfdataset([str(f) for f in [*files[:2], again[2]]], combine="by_coords")
    return url, now.load(), files, reader


def part_files(url: Path) -> set[str]:
    return {str(p.relative_to(url)) for p in url.glob(f"*/{wire.PARTS_FOLDER}/**/*") if p.is_file()}


def age(paths, hours: float) -> None:
    """Make files (and the files in folders) look ``hours`` old."""
    when = time.time() - hours * 3600
    for path in paths:
        for p in [path, *path.rglob("*")] if path.is_dir() else [path]:
            os.utime(p, (when, when))


def retired(url: Path) -> list[Path]:
    return sorted(url.glob(f"*/{wire.PARTS_FOLDER}/*{RETIRED}"))


@pytest.mark.parametrize("encoding", ["json", "columnar"])
def test_a_replaced_part_goes_only_once_dropped_for_older_than(tmp_path, encoding):
    url, now, files, reader = replaced_document(tmp_path, encoding)
    markers = retired(url)
    assert {m.parent.parent.name for m in markers} == {"t2m"}  # time's new part is the same
    dropped = [m.with_name(m.name.removesuffix(RETIRED)) for m in markers]
    assert all(p.exists() for p in dropped)
    age(dropped, 48)  # written long ago, dropped just now: a reader may still list them
    assert zms.prune_parts(url, older_than=HOUR) == []
    old = xr.open_zarr(reader, consolidated=False).load()  # opened before the replace
    xr.testing.assert_identical(old.drop_encoding(), expected(files).drop_encoding())
    age(markers, 2)
    unlisted = tuple(str(p.relative_to(url)) for p in [*dropped, *markers])
    listed_before = {p for p in part_files(url) if not p.startswith(unlisted)}
    gone = zms.prune_parts(url, older_than=HOUR, dry_run=True)
    assert all(p.exists() for p in dropped)
    assert zms.prune_parts(url, older_than=HOUR) == gone
    assert not [p for p in [*dropped, *markers] if p.exists()]
    assert {k.split("/")[0] for k in gone} == {"t2m"}
    assert part_files(url) == listed_before  # listed parts all kept
    xr.testing.assert_identical(opened(url, tmp_path), now)
    assert not (url / LOCK_FILE).exists()


def test_a_killed_appends_parts_go_once_older_than_and_listed_parts_never(tmp_path):
    files = daily_files(tmp_path / "data", (4, 4, 4))
    url = document(tmp_path, files, "json")
    append(url, files[1])
    listed = part_files(url)
    orphan = url / "t2m" / wire.PARTS_FOLDER / "0123456789abcdef01234567.json"
    orphan.write_bytes(b"{}")  # what an append killed before its commit leaves
    partial = url / "t2m" / wire.PARTS_FOLDER / ".abc.json.0a1b2c.partial"
    partial.write_bytes(b"{")
    assert zms.prune_parts(url, older_than=HOUR) == []
    age([orphan, partial, *(url / p for p in listed)], 3)
    gone = zms.prune_parts(url, older_than=HOUR)
    assert sorted(gone) == sorted(str(p.relative_to(url)) for p in (orphan, partial))
    assert part_files(url) == listed
    assert zms.prune_parts(url, older_than=datetime.timedelta(0)) == []
    append(url, files[2])
    xr.testing.assert_identical(opened(url, tmp_path), expected(files))


def test_pruning_waits_for_an_append_and_refuses_a_negative_age(tmp_path):
    url, _, _, _ = replaced_document(tmp_path)
    (url / LOCK_FILE).write_text("pid 1 on elsewhere since 2026-01-01\n")
    with pytest.raises(FileExistsError, match="another append to it is in progress"):
        zms.prune_parts(url, older_than=datetime.timedelta(0))
    (url / LOCK_FILE).unlink()
    with pytest.raises(ValueError, match="older_than"):
        zms.prune_parts(url, older_than=-HOUR)
    with pytest.raises(FileNotFoundError, match="no chunk-manifest document"):
        zms.prune_parts(tmp_path / "none.zarr", older_than=HOUR)


def test_the_command_line_prunes_parts(tmp_path, capsys):
    url, now, _, _ = replaced_document(tmp_path)
    assert main(["prune-parts", str(url), "--older-than", "1d"]) == 0
    assert "removed 0 files of parts" in capsys.readouterr().out
    before = part_files(url)
    assert main(["prune-parts", str(url), "--older-than", "0s", "--dry-run"]) == 0
    listing = capsys.readouterr().out
    assert "would remove 2 files" in listing
    assert RETIRED in listing
    assert part_files(url) == before
    assert main(["prune-parts", str(url), "--older-than", "0s"]) == 0
    assert "removed 2 files" in capsys.readouterr().out
    assert not retired(url)
    xr.testing.assert_identical(opened(url, tmp_path), now)
    with pytest.raises(SystemExit):
        main(["prune-parts", str(url), "--older-than", "7 days"])
    assert "expected a number and a unit" in capsys.readouterr().err


def test_parts_on_object_storage_are_pruned(bucket, tmp_path):  # noqa: F811
    url, options, files = remote_document(bucket, tmp_path)
    again = daily_files(tmp_path / "again", (4, 4, 4), seed=1)
    remote = {"storage_options": options}
    append(url, files[1], **remote)
    append(url, again[1], on_overlap="replace", **remote)
    assert zms.prune_parts(url, older_than=HOUR, **remote) == []
    before = snapshot(bucket)
    gone = zms.prune_parts(url, older_than=datetime.timedelta(0), **remote)
    assert {k.split("/")[0] for k in gone} == {"t2m"}
    assert any(k.endswith(RETIRED) for k in gone)
    _, name, _ = bucket
    assert set(before) - set(snapshot(bucket)) == {f"{name}/doc.zarr/{k}" for k in gone}
    now = xr.open_mfdataset([str(files[0]), str(again[1])], combine="by_coords").load()
    xr.testing.assert_identical(opened_remote(url, options, tmp_path), now)
