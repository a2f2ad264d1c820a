"""Appends add manifest parts: no stored manifest is read or changed, readers opened before keep
the old state, a re-delivered tail is replaced only when asked, and hostile parts are refused."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from test_append import ENCODINGS, document, expected, opened, refused_untouched, snapshot
from xarray_files import daily_files

import zarr_manifest_store as zms
from zarr_manifest_store.cli import main
from zarr_manifest_store.document import wire
from zarr_manifest_store.document.lazy import MAX_CACHED_BLOCKS
from zarr_manifest_store.document.location import Location
from zarr_manifest_store.ops.appendable import overlap

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def append(url: Path, file: Path, **options) -> None:
    ds = zms.open_virtual_dataset(str(file))
    ds.virtualize.to_zarr(url, mode="a", append_dim="time", **options)


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_an_append_reads_and_changes_no_stored_manifest(tmp_path, encoding, monkeypatch):
    """Only new part files and the two zarr.json files are written; of the data variable's
    stored manifest nothing is read but (columnar) its group's metadata."""
    files = daily_files(tmp_path / "data", (4, 4, 4))
    url = document(tmp_path, files, encoding, steps_written=2)
    before = snapshot(url)
    read: list[str] = []
    for name in ("read", "read_many"):
        original = getattr(Location, name)

        def recording(self, keys, *args, _original=original, **kwargs):
            read.extend([keys] if isinstance(keys, str) else keys)
            return _original(self, keys, *args, **kwargs)

        monkeypatch.setattr(Location, name, recording)
    append(url, files[2])
    monkeypatch.undo()
    after = snapshot(url)
    changed = {k for k in before if after[k] != before[k]}
    assert changed == {"zarr.json", "t2m/zarr.json", "time/zarr.json"}
    added = set(after) - set(before)
    assert added
    assert all(k.split("/")[1] == wire.PARTS_FOLDER for k in added)
    assert not [k for k in read if k.startswith("t2m/") and k != "t2m/manifest/zarr.json"]
    xr.testing.assert_identical(opened(url, tmp_path), expected(files))


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_many_part_manifest_reads_verifies_loads_and_pickles(tmp_path, encoding):
    files = daily_files(tmp_path / "data", (4,) * 8)
    url = document(tmp_path, files, encoding)
    for file in files[1:]:
        append(url, file)
    config = json.loads((url / "t2m" / "zarr.json").read_text())["storage_transformers"][0]
    assert config["configuration"]["encoding"] == "parts"
    assert len(config["configuration"]["parts"]) == 8
    xr.testing.assert_identical(opened(url, tmp_path), expected(files))
    store = zms.ManifestStore.open(url, allow=[str(tmp_path)])
    assert store.verify().ok
    manifest = store.root["t2m"].manifest
    copy = pickle.loads(pickle.dumps(manifest))
    items = dict(manifest.items())
    assert len(items) == 16 * 4
    assert not manifest.loaded
    assert dict(copy.load().items()) == items == dict(manifest.load().items())
    loaded = zms.ManifestStore.open(url, allow=[str(tmp_path)], load=True)
    xr.testing.assert_identical(xr.open_zarr(loaded, consolidated=False).load(), expected(files))
    merged = tmp_path / "merged.zarr"  # written anew: one manifest per array again
    zms.write_manifest(zms.scan(str(url), allow=[str(tmp_path)]), merged, encoding=encoding)
    assert "parts" not in (merged / "t2m" / "zarr.json").read_text()
    xr.testing.assert_identical(opened(merged, tmp_path), expected(files))
    zms.write_manifest(zms.scan(str(merged), allow=[str(tmp_path)]), url, mode="w")
    parts = (url / "t2m" / wire.PARTS_FOLDER).rglob("*")
    assert not [p for p in parts if p.is_file()]  # replaced: its parts removed
    xr.testing.assert_identical(opened(url, tmp_path), expected(files))


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_serving_many_parts_holds_a_bounded_cache_of_their_blocks(tmp_path, encoding):
    """Chunks are served from the parts' blocks through one cache of MAX_CACHED_BLOCKS; with
    the whole manifest too large to hold, nothing more is kept."""
    files = daily_files(tmp_path / "data", (2,) * 24, time_chunk=1)
    url = document(tmp_path, files, encoding)
    for file in files[1:]:
        append(url, file)
    expected_refs = dict(
        zms.ManifestStore.open(url, allow=[str(tmp_path)]).root["t2m"].manifest.items()
    )
    store = zms.ManifestStore.open(url, allow=[str(tmp_path)], max_dense_chunks=8)
    manifest = store.root["t2m"].manifest
    got = {c: manifest.get(c) for c in expected_refs}
    assert got == expected_refs
    assert not manifest.loaded
    assert len(manifest._blocks) <= MAX_CACHED_BLOCKS


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_redelivered_last_day_is_refused_unless_replaced(tmp_path, encoding):
    files = daily_files(tmp_path / "data", (4, 4, 4))
    again = daily_files(tmp_path / "again", (4, 4, 4), seed=1)  # the same times, new values
    url = document(tmp_path, files, encoding)
    append(url, files[1])
    append(url, files[2])
    message = refused_untouched(
        url, zms.open_virtual_dataset(str(again[2])), "overlap", append_dim="time"
    )
    assert "day002.nc" in message
    assert "'time'" in message
    assert "on_overlap='replace'" in message
    assert "(4 overlapping label(s))" in message
    reader = zms.ManifestStore.open(url, allow=[str(tmp_path)])
    append(url, again[2], on_overlap="replace")
    replaced = xr.open_mfdataset([str(f) for f in [*files[:2], again[2]]], combine="by_coords")
    xr.testing.assert_identical(opened(url, tmp_path), replaced.load())
    old = xr.open_zarr(reader, consolidated=False).load()
    xr.testing.assert_identical(old.drop_encoding(), expected(files).drop_encoding())
    append(url, again[2], on_overlap="replace")  # once more: the same document
    xr.testing.assert_identical(opened(url, tmp_path), replaced.load())


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_replacing_needs_whole_chunks(tmp_path, encoding):
    files = daily_files(tmp_path / "data", (4, 4, 4))
    later = daily_files(tmp_path / "later", (4, 4, 2, 4))  # the last: hours 10..13
    url = document(tmp_path, files, encoding, steps_written=3)
    new = zms.open_virtual_dataset(str(later[3]))
    message = refused_untouched(url, new, "inside a chunk", append_dim="time", on_overlap="replace")
    assert "'time'" in message


def test_overlapping_labels_must_repeat_the_stored_ones_exactly():
    stored = np.array([0, 1, 2, 3])
    with pytest.raises(ValueError, match=r"first labels \[2, 4\] are not the stored last ones"):
        overlap("time", stored, np.array([2, 4, 5]), "time", None, "doc.zarr", "x.nc", "replace")
    assert overlap("time", stored, np.array([2, 3, 4]), "time", None, "d", "x.nc", "replace") == 2
    assert overlap("time", stored[::-1], np.array([0, -1]), "time", None, "d", "x", "replace") == 1
    assert overlap("time", stored, np.array([4, 5]), "time", None, "d", "x.nc") == 0
    with pytest.raises(ValueError, match="on_overlap must be one of"):
        overlap("time", stored, np.array([4]), "time", None, "d", "x.nc", "keep")


def test_the_command_line_replaces_on_request(tmp_path, capsys):
    files = daily_files(tmp_path / "data", (4, 4))
    again = daily_files(tmp_path / "again", (4, 4), seed=1)
    url = tmp_path / "doc.zarr"
    assert main(["scan", str(files[0]), "-o", str(url)]) == 0
    assert main(["scan", str(files[1]), "--append-to", str(url)]) == 0
    assert main(["scan", str(again[1]), "--append-to", str(url)]) == 2
    assert "overlap" in capsys.readouterr().err
    assert main(["scan", str(again[1]), "--append-to", str(url), "--on-overlap", "replace"]) == 0
    replaced = xr.open_mfdataset([str(files[0]), str(again[1])], combine="by_coords").load()
    xr.testing.assert_identical(opened(url, tmp_path), replaced)


# ---------------------------------------------------------------------- hostile parts


def in_parts(url: Path, edit) -> None:
    """Edit array t2m's transformer configuration in its zarr.json and the root's copy."""
    for key, path in (
        ("t2m/zarr.json", ()),
        ("zarr.json", ("consolidated_metadata", "metadata", "t2m")),
    ):
        document_ = json.loads((url / key).read_text())
        meta = document_
        for step in path:
            meta = meta[step]
        edit(meta["storage_transformers"][0]["configuration"])
        (url / key).write_text(json.dumps(document_))


@pytest.fixture
def parted(tmp_path) -> Path:
    files = daily_files(tmp_path / "data", (4, 4))
    url = document(tmp_path, files, "json")
    append(url, files[1])
    return url


def read_t2m(url: Path) -> np.ndarray:
    store = zms.ManifestStore.open(url, allow=[str(url.parent)])
    return np.asarray(store.root["t2m"].manifest.load().nchunks)


def test_more_parts_than_the_limit_are_refused_naming_it(parted):
    in_parts(parted, lambda c: c.update(parts=c["parts"] * (wire.MAX_PARTS // 2 + 1)))
    with pytest.raises(zms.ManifestError, match=f"MAX_PARTS={wire.MAX_PARTS}"):
        zms.ManifestStore.open(parted, allow=[str(parted.parent)])


@pytest.mark.parametrize(
    ("edit", "error", "match"),
    [
        (lambda c: c["parts"][0].update(manifest="../t2m/manifest.json"), PermissionError, "leave"),
        (lambda c: c["parts"][0].update(manifest="/etc/passwd"), zms.ManifestError, "relative"),
        (lambda c: c["parts"][1].update(used=1), zms.ManifestError, "give 3 chunks"),
        (lambda c: c["parts"][1].update(used=3), zms.ManifestError, "more than the part's extent"),
        (lambda c: c.update(axis=3), zms.ManifestError, "not an axis"),
        (lambda c: c["parts"][1].update(manifest="manifest.json"), zms.ManifestError, "earlier"),
        (lambda c: c["parts"][1].update(extent=2**40, used=2), zms.ManifestError, "max_chunks"),
        (lambda c: c.update(sources={}) or c.pop("axis"), zms.ManifestError, "'axis' and 'parts'"),
    ],
)
def test_malformed_parts_are_refused(parted, edit, error, match):
    in_parts(parted, edit)
    with pytest.raises(error, match=match):
        read_t2m(parted)
