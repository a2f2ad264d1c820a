"""Appending to a chunk-manifest document: read like open_mfdataset, refused without a trace."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
from pathlib import Path

import numpy as np
import pytest
import xarray as xr
from append_cases import first_combined, repacked_file
from test_icechunk import packed_files
from xarray_files import daily_files

import zarr_manifest_store as zms
from zarr_manifest_store.cli import main
from zarr_manifest_store.document.append import LOCK_FILE

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

ENCODINGS = ["json", "columnar"]


def expected(files: list[Path]) -> xr.Dataset:
    return xr.open_mfdataset([str(f) for f in files], combine="by_coords").load()


def document(tmp_path: Path, files: list[Path], encoding: str, steps_written: int = 1) -> Path:
    """A document holding the first ``steps_written`` files, combined."""
    url = tmp_path / "doc.zarr"
    first_combined(files, steps_written).virtualize.to_zarr(url, encoding=encoding)
    return url


def opened(url: Path, tmp_path: Path) -> xr.Dataset:
    return xr.open_dataset(url, engine="zarr_manifest", allow=[str(tmp_path)]).load()


def snapshot(url: Path) -> dict[str, str]:
    """Every file of the document by path, as a digest of its bytes."""
    return {
        str(p.relative_to(url)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(url.rglob("*"))
        if p.is_file()
    }


def refused_untouched(url: Path, new, match: str, error=ValueError, **options) -> str:
    """Appending ``new`` is refused with ``match`` and the document's bytes are unchanged."""
    before = snapshot(url)
    with pytest.raises(error, match=match) as e:
        new.virtualize.to_zarr(url, mode="a", **options)
    assert snapshot(url) == before
    return str(e.value)


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(
    "units",
    ["hours since 2020-01-01", ["hours since 2020-01-01", "hours since 2020-01-01 04:00"] * 2],
    ids=["same-units", "per-file-units"],
)
def test_daily_appends_read_like_open_mfdataset(tmp_path, encoding, units):
    files = daily_files(tmp_path / "data", (4, 4, 4, 4), units=units)
    url = document(tmp_path, files, encoding)
    for f in files[1:]:
        zms.open_virtual_dataset(str(f)).virtualize.to_zarr(url, mode="a", append_dim="time")
    xr.testing.assert_identical(opened(url, tmp_path), expected(files))
    assert not (url / LOCK_FILE).exists()


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_group_appends_with_the_function_and_virtual_times(tmp_path, encoding):
    files = daily_files(tmp_path / "data", (4, 4, 4))
    url = tmp_path / "doc.zarr"
    zms.write_manifest(zms.scan(str(files[0])), url, encoding=encoding)
    for f in files[1:]:
        zms.append_manifest(zms.scan(str(f)), url, append_dim="time")
    xr.testing.assert_identical(opened(url, tmp_path), expected(files))
    stored = zms.ManifestStore.open(url, allow=[str(tmp_path)]).root
    assert stored["time"].manifest.nchunks == 3  # one reference per file, none loaded


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_part_with_other_chunks_grows_a_rectilinear_grid(tmp_path, encoding):
    files = daily_files(tmp_path / "data", (4, 4), time_chunk=2)
    later = daily_files(tmp_path / "later", (4, 4, 4), time_chunk=4)[2]  # hours 8-11, chunks of 4
    url = document(tmp_path, files, encoding, 2)
    zms.open_virtual_dataset(str(later)).virtualize.to_zarr(url, mode="a", append_dim="time")
    xr.testing.assert_identical(opened(url, tmp_path), expected([*files, later]))
    meta = json.loads((url / "t2m" / "zarr.json").read_bytes())
    assert meta["chunk_grid"]["name"] == "rectilinear"


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_ragged_part_closes_the_array(tmp_path, encoding):
    files = daily_files(tmp_path / "data", (4, 3, 4))
    url = document(tmp_path, files, encoding)
    zms.open_virtual_dataset(str(files[1])).virtualize.to_zarr(url, mode="a", append_dim="time")
    xr.testing.assert_identical(opened(url, tmp_path), expected(files[:2]))
    message = refused_untouched(
        url,
        zms.open_virtual_dataset(str(files[2])),
        "not a multiple of its chunk size",
        append_dim="time",
    )
    assert "'t2m'" in message


def test_many_appends_to_a_columnar_manifest_keep_its_blocks_few(tmp_path):
    """Blocks grow with the grid (doubling), so 24 appends leave one or two block files."""
    files = daily_files(tmp_path / "data", (2,) * 24, time_chunk=2)
    url = tmp_path / "doc.zarr"
    zms.write_manifest(zms.scan(str(files[0])), url, encoding="columnar")
    for f in files[1:]:
        zms.append_manifest(zms.scan(str(f)), url, append_dim="time")
    xr.testing.assert_identical(opened(url, tmp_path), expected(files))
    blocks = list((url / "t2m" / "manifest" / "offset").rglob("*/*"))
    assert 1 <= len([b for b in blocks if b.is_file()]) <= 2


def test_differing_packing_is_refused_naming_variable_attribute_and_file(tmp_path):
    files = packed_files(tmp_path / "data")
    url = document(tmp_path, files, "json")
    other = repacked_file(tmp_path / "other", files)
    message = refused_untouched(
        url, zms.open_virtual_dataset(str(other)), "scale_factor", append_dim="time"
    )
    assert "'p'" in message
    assert "packed9.nc" in message


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_overlapping_times_are_refused(tmp_path, encoding):
    files = daily_files(tmp_path / "data", (4, 4))
    url = document(tmp_path, files, encoding, 2)
    message = refused_untouched(
        url, zms.open_virtual_dataset(str(files[1])), "does not continue", append_dim="time"
    )
    assert "'time'" in message
    virtual = tmp_path / "virtual.zarr"  # times left virtual: read from the sources to compare
    zms.write_manifest(zms.scan(str(files[0])), virtual, encoding=encoding)
    zms.append_manifest(zms.scan(str(files[1])), virtual, append_dim="time")
    before = snapshot(virtual)
    for again in files:
        with pytest.raises(ValueError, match="does not continue"):
            zms.append_manifest(zms.scan(str(again)), virtual, append_dim="time")
    assert snapshot(virtual) == before


def test_missing_variable_and_changed_coordinate_are_refused(tmp_path):
    files = daily_files(tmp_path / "data", (4, 4))
    url = document(tmp_path, files, "json")
    new = zms.open_virtual_dataset(str(files[1]))
    refused_untouched(url, new.drop_vars("t2m"), r"missing \['t2m'\]", append_dim="time")
    moved = new.assign_coords(lat=new.lat + 1)
    message = refused_untouched(url, moved, "other values than the one stored", append_dim="time")
    assert "'lat'" in message


def test_other_dtype_and_units_are_refused(tmp_path):
    files = daily_files(tmp_path / "data", (4, 4))
    url = document(tmp_path, files, "json")
    new = zms.open_virtual_dataset(str(files[1]), loadable_variables=["time", "lat", "lon", "t2m"])
    wider = new.assign(t2m=new.t2m.astype("float64"))
    message = refused_untouched(url, wider, "dtypes differ", append_dim="time")
    assert "'t2m'" in message
    virtual = zms.scan(str(files[1]))
    virtual["t2m"].attributes["units"] = "degC"
    with pytest.raises(ValueError, match="'units'"):
        zms.append_manifest(virtual, url, append_dim="time")


def test_a_dimension_no_array_has_and_a_missing_document_are_refused(tmp_path):
    files = daily_files(tmp_path / "data", (4, 4))
    url = document(tmp_path, files, "json")
    new = zms.open_virtual_dataset(str(files[1]))
    refused_untouched(url, new, "no array of the new part has that dimension", append_dim="step")
    before = snapshot(url)
    with pytest.raises(ValueError, match="needs mode='a' and append_dim"):
        new.virtualize.to_zarr(url, mode="a")
    assert snapshot(url) == before
    with pytest.raises(FileNotFoundError, match="no chunk-manifest document"):
        zms.append_manifest(zms.scan(str(files[1])), tmp_path / "none.zarr", append_dim="time")


def test_an_append_in_progress_makes_another_fail_cleanly(tmp_path):
    files = daily_files(tmp_path / "data", (4, 4))
    url = document(tmp_path, files, "json")
    (url / LOCK_FILE).write_text("pid 1 on elsewhere since 2026-01-01T00:00:00+00:00\n")
    message = refused_untouched(
        url,
        zms.open_virtual_dataset(str(files[1])),
        "another append to it is in progress",
        error=FileExistsError,
        append_dim="time",
    )
    assert "retry" in message
    assert "pid 1 on elsewhere" in message
    (url / LOCK_FILE).unlink()
    zms.open_virtual_dataset(str(files[1])).virtualize.to_zarr(url, mode="a", append_dim="time")
    xr.testing.assert_identical(opened(url, tmp_path), expected(files))


def test_sources_the_append_may_not_read_are_named(tmp_path):
    files = daily_files(tmp_path / "data", (4, 4))
    url = tmp_path / "doc.zarr"
    zms.write_manifest(zms.scan(str(files[0])), url)
    later = tmp_path / "later"
    later.mkdir()
    moved = later / files[1].name
    moved.write_bytes(files[1].read_bytes())
    with pytest.raises(PermissionError, match="allow="):
        zms.append_manifest(zms.scan(str(moved)), url, append_dim="time")
    zms.append_manifest(zms.scan(str(moved)), url, append_dim="time", allow=[str(files[0].parent)])
    xr.testing.assert_identical(opened(url, tmp_path), expected([files[0], moved]))


def test_values_stay_exact_after_appends(tmp_path):
    files = daily_files(tmp_path / "data", (4, 4, 4))
    url = document(tmp_path, files, "columnar")
    for f in files[1:]:
        zms.open_virtual_dataset(str(f)).virtualize.to_zarr(url, mode="a", append_dim="time")
    got = opened(url, tmp_path).t2m.values
    want = np.concatenate([xr.open_dataset(f).t2m.values for f in files])
    np.testing.assert_array_equal(got, want)


def _append_in_a_process(path: str, url: str, start, results) -> None:
    """One of two processes appending the same file at once."""
    start.wait()
    try:
        zms.append_manifest(zms.scan(path), url, append_dim="time")
    except (FileExistsError, ValueError) as e:
        results.put(f"{type(e).__name__}: {e}")
    else:
        results.put("appended")


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_two_processes_appending_at_once_one_wins(tmp_path, encoding):
    files = daily_files(tmp_path / "data", (4, 4))
    url = tmp_path / "doc.zarr"
    zms.write_manifest(zms.scan(str(files[0])), url, encoding=encoding)
    context = multiprocessing.get_context("spawn")
    start, results = context.Barrier(2), context.Queue()
    workers = [
        context.Process(target=_append_in_a_process, args=(str(files[1]), str(url), start, results))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    outcomes = [results.get(timeout=120) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
    assert outcomes.count("appended") == 1
    (lost,) = (o for o in outcomes if o != "appended")
    assert "retry" in lost or "does not continue" in lost
    xr.testing.assert_identical(opened(url, tmp_path), expected(files))
    assert not (url / LOCK_FILE).exists()


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_readers_opened_before_an_append_keep_reading_the_old_state(tmp_path, encoding):
    """Whether it loaded its manifests at open or loads them after the append, a reader opened
    before reads the old state exactly (appends change no stored manifest); a new one, the new."""
    files = daily_files(tmp_path / "data", (4, 4, 4))
    url = document(tmp_path, files, encoding)
    loaded = zms.ManifestStore.open(url, allow=[str(tmp_path)], load=True)
    lazy = zms.ManifestStore.open(url, allow=[str(tmp_path)])
    zms.open_virtual_dataset(str(files[1])).virtualize.to_zarr(url, mode="a", append_dim="time")
    between = zms.ManifestStore.open(url, allow=[str(tmp_path)])
    zms.open_virtual_dataset(str(files[2])).virtualize.to_zarr(url, mode="a", append_dim="time")
    for store, count in ((loaded, 1), (lazy, 1), (between, 2)):
        old = xr.open_zarr(store, consolidated=False).load()
        xr.testing.assert_identical(old.drop_encoding(), expected(files[:count]).drop_encoding())
    xr.testing.assert_identical(opened(url, tmp_path), expected(files))


def test_the_command_line_appends_and_refuses_naming_the_file(tmp_path, capsys):
    files = daily_files(tmp_path / "data", (4, 4, 4))
    url = tmp_path / "doc.zarr"
    assert main(["scan", str(files[0]), "-o", str(url)]) == 0
    assert main(["scan", str(files[1]), str(files[2]), "--append-to", str(url)]) == 0
    assert "appended 2 files to" in capsys.readouterr().out
    xr.testing.assert_identical(opened(url, tmp_path), expected(files))
    before = snapshot(url)
    assert main(["scan", str(files[2]), "--append-to", str(url), "--append-dim", "time"]) == 2
    refusal = capsys.readouterr().err
    assert "does not continue" in refusal
    assert "day002.nc" in refusal
    assert snapshot(url) == before
