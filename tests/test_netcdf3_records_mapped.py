"""netCDF-3 record variables of local files cut straight from a memory map of the file (issue
#18, small records): no buffer is read for them, values exact whether mapped or read, a file
cut short or changed after it was opened refused with a clear error (never a crash), the
allow-list kept, and every map closed with its descriptor."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import zarr

import zarr_manifest_store as zms
from tests.test_netcdf3_records import _one_record_variable
from tests.test_served_rows import _check_views, _count_reads, _radar, _raw, unmapped  # noqa: F401
from zarr_manifest_store import served_rows
from zarr_manifest_store.io import local


@pytest.fixture
def small_span(monkeypatch):
    """Served chunks of 16 KiB of the file, so that a few hundred records make several."""
    monkeypatch.setattr(served_rows, "ROW_SPAN_BYTES", 16 << 10)


def _maps_of(path: Path) -> list[str]:
    """This process's memory maps of ``path``."""
    return [line for line in Path("/proc/self/maps").read_text().splitlines() if str(path) in line]


@pytest.mark.parametrize("chunks", [{}, None])
def test_record_variables_of_a_local_file_are_cut_from_its_map(
    tmp_path, monkeypatch, small_span, chunks
):
    """Every record variable as scipy gives it, and none of the record section read into a
    buffer: only the non-record variables are read; nothing is kept."""
    path = tmp_path / "radar.nc"
    _radar(path, 333)
    store = zms.ManifestStore(zms.scan(str(path)))
    lengths = _count_reads(monkeypatch)
    _check_views(path, store)
    assert lengths
    assert max(lengths) <= 40 * 4  # the range coordinate, the instrument name
    assert store._served["phase"].blocks.held_bytes == 0
    assert _maps_of(path)
    store.close()
    assert not _maps_of(path)  # closed with the descriptor


@pytest.mark.parametrize("mapped", [True, False])
@pytest.mark.parametrize(
    ("dtype", "width"), [("c", 3), ("i2", 3), ("i1", 5), ("f8", None), ("i2", None)]
)
def test_one_record_variable_is_exact_mapped_or_read(
    tmp_path, monkeypatch, small_span, mapped, dtype, width
):
    """A lone record variable (read row by row, not by a family) of odd sizes: the same
    values from the map as from reads."""
    if not mapped:
        monkeypatch.setattr(local.LocalFiles, "read_mapped", lambda *args: False)
    path = tmp_path / "one.nc"
    _one_record_variable(path, dtype, width, 777)
    store = zms.ManifestStore(zms.scan(str(path)))
    lengths = _count_reads(monkeypatch)
    np.testing.assert_array_equal(zarr.open_group(store, mode="r")["v"][:], _raw(path, "v"))
    assert (max(lengths, default=0) > 1000) is not mapped  # the records were read, or not


@pytest.mark.usefixtures("unmapped")
def test_a_file_read_where_no_map_can_be_had_is_exact(tmp_path, small_span):
    path = tmp_path / "radar.nc"
    _radar(path, 333)
    store = zms.ManifestStore(zms.scan(str(path)))
    _check_views(path, store)
    assert not _maps_of(path)


def test_the_allow_list_holds_for_mapped_reads(tmp_path):
    path = tmp_path / "radar.nc"
    _radar(path, 333)
    group = zms.scan(str(path))
    store = zms.ManifestStore(group, allow=[str(tmp_path / "elsewhere")])
    with pytest.raises(PermissionError, match=r"radar\.nc"):
        zarr.open_group(store, mode="r")["phase"][:]
    assert not _maps_of(path)


def test_maps_close_with_descriptors_evicted(tmp_path, monkeypatch, small_span):
    """At most ``MAX_OPEN_FILES`` idle descriptors stay open, and their maps with them."""
    monkeypatch.setattr(local, "MAX_OPEN_FILES", 1)
    paths = [tmp_path / f"radar{i}.nc" for i in range(3)]
    for i, path in enumerate(paths):
        _radar(path, 100, start=100 * i)
    scans = [zms.scan(str(p)) for p in paths]
    names = ("time", "ray_label", "reflectivity", "phase")
    arrays = {name: np.concatenate([s[name] for s in scans], axis=0) for name in names}
    store = zms.ManifestStore(zms.ManifestGroup(arrays=arrays))
    group = zarr.open_group(store, mode="r")
    for name in names:
        expected = np.concatenate([_raw(p, name) for p in paths])
        np.testing.assert_array_equal(group[name][:], expected, err_msg=name)
    assert sum(bool(_maps_of(p)) for p in paths) == 1
    store.close()
    assert not any(_maps_of(p) for p in paths)


_CUT_SHORT = """
import os, sys, warnings
warnings.simplefilter("ignore")
import zarr, zarr_manifest_store as zms
from zarr_manifest_store import served_rows
from tests.test_served_rows import _radar
served_rows.ROW_SPAN_BYTES = 16 << 10
path, verify, change = sys.argv[1], sys.argv[2], sys.argv[3]
_radar(path, 333)
store = zms.ManifestStore(zms.scan(path), verify=verify)
group = zarr.open_group(store, mode="r")
group["time"][:]  # the file is open and mapped
if change == "truncate":
    os.truncate(path, os.path.getsize(path) // 2)
else:
    _radar(path, 50, start=333, mode="a")
try:
    group["phase"][:]
except OSError as e:
    print(type(e).__name__, e)
else:
    print("read")
"""


@pytest.mark.parametrize("verify", ["first-use", "never"])
@pytest.mark.parametrize("change", ["truncate", "append"])
def test_a_file_changed_after_it_was_mapped_is_refused_never_a_crash(tmp_path, verify, change):
    """A file cut short after it was mapped is refused naming it (reading past its end
    would end the process); one appended to is refused as changed unless ``verify="never"``
    (its first records are as they were)."""
    path = tmp_path / "radar.nc"
    script = textwrap.dedent(_CUT_SHORT)
    run = subprocess.run(
        [sys.executable, "-c", script, str(path), verify, change],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).parent.parent,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    if change == "append" and verify == "never":
        assert run.stdout.strip() == "read"
        return
    assert run.stdout.startswith("SourceChangedError"), run.stdout
    assert str(path) in run.stdout
    assert ("too short" if verify == "never" else "changed") in run.stdout
