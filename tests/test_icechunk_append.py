"""to_icechunk(..., append_dim=...) and region=: checked like a combine, refused without a trace."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
import zarr
from append_cases import first_combined, repacked_file
from icechunk_repos import local_repository
from test_icechunk import expected, open_icechunk, packed_files, write
from xarray_files import daily_files

import zarr_manifest_store as zms

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def archive(tmp_path, files, steps_written=1):
    """A repository holding the first ``steps_written`` files, combined."""
    repo = local_repository(tmp_path / "repo", [f"file://{tmp_path}/"])
    write(first_combined(files, steps_written), repo, "first")
    return repo


def refused_untouched(repo, new, match, **options):
    """Appending ``new`` is refused with ``match`` and the session holds no change."""
    before = open_icechunk(repo)
    session = repo.writable_session("main")
    with pytest.raises(ValueError, match=match) as e:
        zms.to_icechunk(new, session.store, **options)
    assert not session.has_uncommitted_changes
    xr.testing.assert_identical(open_icechunk(repo), before)
    return str(e.value)


@pytest.mark.parametrize(
    "units",
    ["hours since 2020-01-01", ["hours since 2020-01-01", "hours since 2020-01-01 04:00"] * 2],
    ids=["same-units", "per-file-units"],
)
def test_daily_appends_read_like_open_mfdataset(tmp_path, units):
    files = daily_files(tmp_path / "data", (4, 4, 4, 4), units=units)
    repo = archive(tmp_path, files)
    for f in files[1:]:
        write(zms.open_virtual_dataset(str(f)), repo, f.name, append_dim="time")
    xr.testing.assert_identical(open_icechunk(repo), expected(files))
    assert len(list(repo.ancestry(branch="main"))) == 5  # one commit per day, and the first


def test_part_with_other_chunks_grows_a_rectilinear_grid(tmp_path):
    files = daily_files(tmp_path / "data", (4, 4), time_chunk=2)
    later = daily_files(tmp_path / "later", (4, 4, 4), time_chunk=4)[2]  # hours 8-11, chunks of 4
    repo = archive(tmp_path, files, 2)
    write(zms.open_virtual_dataset(str(later)), repo, "chunks of 4", append_dim="time")
    xr.testing.assert_identical(open_icechunk(repo), expected([*files, later]))
    stored = zarr.open_array(repo.readonly_session("main").store, path="t2m", mode="r")
    assert stored.metadata.chunk_grid.to_dict()["name"] == "rectilinear"
    assert stored.read_chunk_sizes[0] == (2, 2, 2, 2, 4)


def test_ragged_part_closes_the_array(tmp_path):
    files = daily_files(tmp_path / "data", (4, 3, 4), compress=True)
    repo = archive(tmp_path, files)
    write(zms.open_virtual_dataset(str(files[1])), repo, "ragged", append_dim="time")
    xr.testing.assert_identical(open_icechunk(repo), expected(files[:2]))
    message = refused_untouched(
        repo,
        zms.open_virtual_dataset(str(files[2])),
        "not a multiple of its chunk size",
        append_dim="time",
    )
    assert "'t2m'" in message


def test_a_group_appends_too(tmp_path):
    files = daily_files(tmp_path / "data", (4, 4))
    groups = [zms.scan(str(f)) for f in files]
    repo = local_repository(tmp_path / "repo", [f"file://{tmp_path}/"])
    write(groups[0], repo)
    write(groups[1], repo, append_dim="time")
    xr.testing.assert_identical(open_icechunk(repo), expected(files))


def test_differing_packing_is_refused_naming_variable_attribute_and_file(tmp_path):
    files = packed_files(tmp_path / "data")
    repo = archive(tmp_path, files)
    other = repacked_file(tmp_path / "other", files)
    message = refused_untouched(
        repo, zms.open_virtual_dataset(str(other)), "scale_factor", append_dim="time"
    )
    assert "'p'" in message
    assert "packed9.nc" in message


def test_overlapping_times_are_refused(tmp_path):
    files = daily_files(tmp_path / "data", (4, 4))
    repo = archive(tmp_path, files, 2)
    message = refused_untouched(
        repo, zms.open_virtual_dataset(str(files[1])), "does not continue", append_dim="time"
    )
    assert "'time'" in message


def test_missing_variable_and_changed_coordinate_are_refused(tmp_path):
    files = daily_files(tmp_path / "data", (4, 4))
    repo = archive(tmp_path, files)
    new = zms.open_virtual_dataset(str(files[1]))
    refused_untouched(repo, new.drop_vars("t2m"), r"missing \['t2m'\]", append_dim="time")
    moved = new.assign_coords(lat=new.lat + 1)
    message = refused_untouched(repo, moved, "differs from the one stored", append_dim="time")
    assert "'lat'" in message


def test_a_dimension_no_array_has_is_refused(tmp_path):
    files = daily_files(tmp_path / "data", (4, 4))
    repo = archive(tmp_path, files)
    new = zms.open_virtual_dataset(str(files[1]))
    refused_untouched(repo, new, "no array of the new part has that dimension", append_dim="step")


def test_appending_to_nothing_is_refused(tmp_path):
    files = daily_files(tmp_path / "data", (4,))
    repo = local_repository(tmp_path / "repo", [f"file://{tmp_path}/"])
    session = repo.writable_session("main")
    with pytest.raises(FileNotFoundError, match="no group 'era'"):
        zms.open_virtual_dataset(str(files[0])).virtualize.to_icechunk(
            session.store, group="era", append_dim="time"
        )


def test_region_replaces_the_chunks_of_one_stretch(tmp_path):
    files = daily_files(tmp_path / "data", (4, 4, 4))
    repo = archive(tmp_path, files, 3)
    fixed = daily_files(tmp_path / "fixed", (4, 4), seed=7)[1]  # day 2 again, other values
    write(zms.open_virtual_dataset(str(fixed)), repo, "fix day 2", region={"time": slice(4, 8)})
    got = open_icechunk(repo)
    want = expected([files[0], fixed, files[2]])
    xr.testing.assert_identical(got, want)
    assert not np.array_equal(got.t2m.values, expected(files).t2m.values)


def test_region_off_chunk_boundaries_is_refused(tmp_path):
    files = daily_files(tmp_path / "data", (4, 4, 4))
    repo = archive(tmp_path, files, 3)
    new = zms.open_virtual_dataset(str(files[1]))
    refused_untouched(repo, new, "chunk boundaries", region={"time": slice(3, 7)})
    refused_untouched(repo, new, "one dimension", region={"time": slice(4, 8), "lat": slice(0, 6)})


def test_virtual_times_in_other_units_are_refused(tmp_path):
    """A time coordinate left virtual keeps its file's units: appending it needs the same."""
    units = ["hours since 2020-01-01", "hours since 2020-01-01 04:00"]
    files = daily_files(tmp_path / "data", (4, 4), units=units)
    repo = local_repository(tmp_path / "repo", [f"file://{tmp_path}/"])
    write(zms.scan(str(files[0])), repo)
    message = refused_untouched(repo, zms.scan(str(files[1])), "'units'", append_dim="time")
    assert "day001.nc" in message
