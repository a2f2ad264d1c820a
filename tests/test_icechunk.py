"""to_icechunk and scan_icechunk against real Icechunk repositories (local storage and the S3
emulator), with values compared to the source files."""

from __future__ import annotations

import json
import os
import threading
import time
import warnings
from datetime import UTC, datetime
from pathlib import Path

import icechunk as ic
import numpy as np
import pytest
import xarray as xr
import zarr
from icechunk_repos import local_repository, reopen, s3_repository
from xarray_files import daily_files

import zarr_manifest_store as zms
from zarr_manifest_store.scan.icechunk import path_of
from zarr_manifest_store.writers.icechunk import write as icechunk_write
from zarr_manifest_store.writers.icechunk.boxes import group_boxes
from zarr_manifest_store.writers.icechunk.locations import checksum_of, location_of

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


def open_icechunk(repo: ic.Repository, group: str | None = None) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return xr.open_zarr(
            reopen(repo).readonly_session("main").store, group=group, consolidated=False
        ).load()


def expected(files: list[Path]) -> xr.Dataset:
    return xr.open_mfdataset([str(f) for f in files], combine="by_coords").load()


def write(ds_or_group, repo: ic.Repository, message: str = "write", **options) -> None:
    session = repo.writable_session("main")
    if isinstance(ds_or_group, xr.Dataset):
        ds_or_group.virtualize.to_icechunk(session.store, **options)
    else:
        zms.to_icechunk(ds_or_group, session.store, **options)
    session.commit(message)


def packed_files(folder: Path, n: int = 2) -> list[Path]:
    """Files of a variable packed as int16 with scale_factor / add_offset / _FillValue."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n):
        time = np.arange(4 * i, 4 * i + 4)
        p = np.linspace(-5.0, 30.0, 4 * 6).reshape(4, 6) + i
        p[0, 0] = np.nan
        ds = xr.Dataset(
            {"p": (("time", "x"), p, {"units": "degC"})},
            coords={"time": ("time", time, {"units": "days since 2000-01-01"})},
        )
        path = folder / f"packed{i}.nc"
        ds.to_netcdf(
            path,
            engine="h5netcdf",
            encoding={
                "p": {
                    "dtype": "int16",
                    "scale_factor": 0.01,
                    "add_offset": 10.0,
                    "_FillValue": -32767,
                    "chunksizes": (2, 3),
                    "zlib": True,
                }
            },
        )
        paths.append(path)
    return paths


@pytest.mark.parametrize(
    ("kind", "options"),
    [
        ("aligned", {"steps": (4, 4, 4)}),
        ("ragged", {"steps": (5, 3, 4), "compress": False}),
        ("packed", None),
    ],
)
def test_written_repository_reads_like_open_mfdataset(tmp_path, kind, options):
    if options is None:
        files = packed_files(tmp_path / "data")
    else:
        files = daily_files(tmp_path / "data", **options)
    vds = zms.open_virtual_mfdataset([str(f) for f in files], combine="by_coords")
    repo = local_repository(tmp_path / "repo", zms.icechunk_containers(vds))
    write(vds, repo)
    got = open_icechunk(repo)
    xr.testing.assert_identical(got, expected(files))
    if kind == "ragged":  # the combined grid is rectilinear, and Icechunk stores it
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            stored = zarr.open_group(repo.readonly_session("main").store, mode="r")
        assert stored["t2m"].metadata.chunk_grid.to_dict()["name"] == "rectilinear"


def test_named_containers_get_relative_locations(tmp_path, monkeypatch):
    files = daily_files(tmp_path / "data", (4, 4))
    vds = zms.open_virtual_mfdataset([str(f) for f in files], combine="by_coords")
    repo = local_repository(tmp_path / "repo", zms.icechunk_containers(vds), named=True)
    given = set()
    original = ic.IcechunkStore.set_virtual_refs_arr

    def recording(self, array_path, chunk_grid_shape, locations, *args, **kwargs):
        given.update(locations)
        return original(self, array_path, chunk_grid_shape, locations, *args, **kwargs)

    monkeypatch.setattr(ic.IcechunkStore, "set_virtual_refs_arr", recording)
    write(vds, repo)
    assert given - {""} == {f"vcc://c0/{f.name}" for f in files}
    xr.testing.assert_identical(open_icechunk(repo), expected(files))
    assert zms.scan_icechunk(repo)["t2m"].manifest.paths == tuple(map(str, files))


def test_attributes_are_written_as_xarray_writes_them(tmp_path):
    files = packed_files(tmp_path / "data")
    vds = zms.open_virtual_mfdataset([str(f) for f in files], combine="by_coords")
    repo = local_repository(tmp_path / "repo", zms.icechunk_containers(vds))
    write(vds, repo)
    reference = tmp_path / "reference.zarr"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xr.open_mfdataset([str(f) for f in files], combine="by_coords").to_zarr(
            reference, zarr_format=3, consolidated=False
        )
        stored = zarr.open_group(repo.readonly_session("main").store, mode="r")
    assert stored.attrs.asdict() == json.loads((reference / "zarr.json").read_text())["attributes"]
    for name in ("p", "time"):
        want = json.loads((reference / name / "zarr.json").read_text())
        assert stored[name].attrs.asdict() == want["attributes"], name
        assert list(stored[name].metadata.dimension_names) == want["dimension_names"]
    assert stored["p"].attrs["scale_factor"] == 0.01


def test_virtual_references_go_in_bulk_one_call_per_checksum(tmp_path, monkeypatch):
    files = daily_files(tmp_path / "data", (4, 4, 4))
    for i, f in enumerate(files):  # three distinct modification times: three checksums
        os.utime(f, (1_700_000_000 + i * 10, 1_700_000_000 + i * 10))
    vds = zms.open_virtual_mfdataset([str(f) for f in files], combine="by_coords")
    repo = local_repository(tmp_path / "repo", zms.icechunk_containers(vds))
    calls = []
    original = ic.IcechunkStore.set_virtual_refs_arr

    def counting(self, array_path, chunk_grid_shape, locations, *args, **kwargs):
        calls.append((array_path, tuple(chunk_grid_shape), kwargs["checksum"]))
        return original(self, array_path, chunk_grid_shape, locations, *args, **kwargs)

    monkeypatch.setattr(ic.IcechunkStore, "set_virtual_refs_arr", counting)
    for one_per_chunk in ("set_virtual_ref", "set_virtual_ref_async"):  # never one call per chunk
        monkeypatch.setattr(ic.IcechunkStore, one_per_chunk, None)
    write(vds, repo)
    t2m = [c for c in calls if c[0] == "t2m"]
    assert len(t2m) == 3  # 24 references, one call per file (its checksum), each 2 chunk rows
    assert {c[1] for c in t2m} == {(2, 2, 2)}
    assert sorted(c[2].timestamp() for c in t2m) == [1_700_000_000 + i * 10 for i in range(3)]
    xr.testing.assert_identical(open_icechunk(repo), expected(files))


def test_files_sharing_a_checksum_share_a_call(tmp_path, monkeypatch):
    files = daily_files(tmp_path / "data", (4, 4, 4, 4))
    for i, f in enumerate(files):  # two modification times, two files each
        os.utime(f, (1_700_000_000 + i // 2, 1_700_000_000 + i // 2))
    vds = zms.open_virtual_mfdataset([str(f) for f in files], combine="by_coords")
    repo = local_repository(tmp_path / "repo", zms.icechunk_containers(vds))
    calls = []
    original = ic.IcechunkStore.set_virtual_refs_arr

    def counting(self, array_path, chunk_grid_shape, locations, *args, **kwargs):
        calls.append((array_path, set(locations), kwargs["checksum"].timestamp()))
        return original(self, array_path, chunk_grid_shape, locations, *args, **kwargs)

    monkeypatch.setattr(ic.IcechunkStore, "set_virtual_refs_arr", counting)
    write(vds, repo)
    urls = [location_of(str(f)) for f in files]
    assert sorted((c[2], sorted(c[1])) for c in calls if c[0] == "t2m") == [
        (1_700_000_000, urls[:2]),
        (1_700_000_001, urls[2:]),
    ]
    xr.testing.assert_identical(open_icechunk(repo), expected(files))


def test_reference_calls_overlap_on_a_few_threads(tmp_path, monkeypatch):
    """Icechunk builds a call's references holding the GIL and inserts them without it: the
    calls come from WORKERS threads, so one inserts while the next builds, at most WORKERS at
    a time."""
    files = daily_files(tmp_path / "data", (4, 4, 4))
    for f in files:  # one checksum: the calls are stretches of rows, not sources
        os.utime(f, (1_700_000_000, 1_700_000_000))
    vds = zms.open_virtual_mfdataset([str(f) for f in files], combine="by_coords")
    repo = local_repository(tmp_path / "repo", zms.icechunk_containers(vds))
    monkeypatch.setattr(icechunk_write, "CALL_REFERENCES", 4)  # one row of t2m's grid per call
    started, unfinished, most, threads = [], set(), 0, set()
    lock = threading.Lock()
    original = ic.IcechunkStore.set_virtual_refs_arr

    def tracking(self, array_path, chunk_grid_shape, *args, **kwargs):
        nonlocal most
        with lock:
            call = len(started)
            started.append((array_path, tuple(chunk_grid_shape), kwargs["arr_offset"]))
            unfinished.add(call)
            most = max(most, len(unfinished))
            threads.add(threading.get_ident())
        try:
            time.sleep(0.05)  # long enough for the other thread to start the next call
            return original(self, array_path, chunk_grid_shape, *args, **kwargs)
        finally:
            with lock:
                unfinished.discard(call)

    monkeypatch.setattr(ic.IcechunkStore, "set_virtual_refs_arr", tracking)
    write(vds, repo)
    assert started == [("t2m", (1, 2, 2), None if i == 0 else (i, 0, 0)) for i in range(6)]
    assert most == icechunk_write.WORKERS == len(threads) == 2
    xr.testing.assert_identical(open_icechunk(repo), expected(files))


def test_a_failed_call_stops_the_others_and_is_raised(tmp_path, monkeypatch):
    files = daily_files(tmp_path / "data", (4, 4, 4))
    vds = zms.open_virtual_mfdataset([str(f) for f in files], combine="by_coords")
    repo = local_repository(tmp_path / "repo", zms.icechunk_containers(vds))
    monkeypatch.setattr(icechunk_write, "CALL_REFERENCES", 4)
    calls = []

    def refusing(self, array_path, chunk_grid_shape, *args, **kwargs):
        calls.append(array_path)
        return [(0, 0, 0)]  # what Icechunk answers for a location outside its containers

    monkeypatch.setattr(ic.IcechunkStore, "set_virtual_refs_arr", refusing)
    session = repo.writable_session("main")
    with pytest.raises(ValueError, match="array 't2m': Icechunk refused 1 reference"):
        zms.to_icechunk(vds.virtualize.to_group(), session.store)
    assert 1 <= len(calls) <= icechunk_write.WORKERS  # no thread took another call


@pytest.mark.parametrize(("nfiles", "per_chunk_specs"), [(2, False), (4, True)])
def test_interleaved_sources_are_written_exactly(tmp_path, monkeypatch, nfiles, per_chunk_specs):
    """Sources alternating along the grid: boxes of rows with the others' chunks masked, or,
    when those boxes would cover the grid more than twice, one call with a spec per chunk."""
    files = daily_files(tmp_path / "data", (4,) * nfiles)
    for i, f in enumerate(files):
        os.utime(f, (1_700_000_000 + i, 1_700_000_000 + i))
    arrays = [zms.scan(str(f))["t2m"] for f in files]
    parts = [a[:2] for a in arrays] + [a[2:] for a in arrays]
    group = zms.ManifestGroup(arrays={"t2m": zms.concat(parts, axis=0)})
    repo = local_repository(tmp_path / "repo", zms.icechunk_containers(group))
    specs = []
    original = ic.IcechunkStore.set_virtual_refs

    def recording(self, array_path, chunks, *args, **kwargs):
        specs.extend(chunks)
        return original(self, array_path, chunks, *args, **kwargs)

    monkeypatch.setattr(ic.IcechunkStore, "set_virtual_refs", recording)
    write(group, repo)
    assert len(specs) == (2 * nfiles * 4 if per_chunk_specs else 0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = zarr.open_array(reopen(repo).readonly_session("main").store, path="t2m")[:]
    values = [xr.open_dataset(f).t2m.values for f in files]
    np.testing.assert_array_equal(
        got, np.concatenate([v[:2] for v in values] + [v[2:] for v in values])
    )


def test_sources_side_by_side_are_written_as_their_own_boxes(tmp_path, monkeypatch):
    """Sources along the last axis: each file's chunks are a box of its own (not the rows it
    spans, which are the whole grid for every file), one call each, no per-chunk specs."""
    files = daily_files(tmp_path / "data", (4, 4, 4))
    for i, f in enumerate(files):
        os.utime(f, (1_700_000_000 + i, 1_700_000_000 + i))
    arrays = [zms.scan(str(f))["t2m"] for f in files]
    group = zms.ManifestGroup(arrays={"t2m": zms.concat(arrays, axis=2)})
    repo = local_repository(tmp_path / "repo", zms.icechunk_containers(group))
    calls = []
    original = ic.IcechunkStore.set_virtual_refs_arr

    def recording(self, array_path, chunk_grid_shape, locations, *args, **kwargs):
        calls.append((tuple(chunk_grid_shape), kwargs["arr_offset"], set(locations)))
        return original(self, array_path, chunk_grid_shape, locations, *args, **kwargs)

    monkeypatch.setattr(ic.IcechunkStore, "set_virtual_refs_arr", recording)
    monkeypatch.setattr(ic.IcechunkStore, "set_virtual_refs", None)  # no spec per chunk
    write(group, repo)
    urls = [location_of(str(f)) for f in files]
    assert sorted(calls, key=lambda c: c[1] or (0, 0, 0)) == [
        ((2, 2, 2), None if i == 0 else (0, 0, 2 * i), {urls[i]}) for i in range(3)
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        got = zarr.open_array(reopen(repo).readonly_session("main").store, path="t2m")[:]
    values = [xr.open_dataset(f).t2m.values for f in files]
    np.testing.assert_array_equal(got, np.concatenate(values, axis=2))


def test_changed_source_is_refused_by_icechunk(tmp_path):
    files = daily_files(tmp_path / "data", (4, 4))
    vds = zms.open_virtual_mfdataset([str(f) for f in files], combine="by_coords")
    repo = local_repository(tmp_path / "repo", zms.icechunk_containers(vds))
    write(vds, repo)
    stat = files[1].stat()
    with open(files[1], "r+b") as f:  # rewritten later: its modification time moves on
        f.seek(stat.st_size - 4)
        f.write(b"\0\0\0\0")
    os.utime(files[1], (stat.st_atime + 10, stat.st_mtime + 10))
    with pytest.raises(Exception, match="checksum of the object owning the virtual chunk"):
        open_icechunk(repo)


def test_missing_container_is_refused_before_writing(tmp_path):
    files = daily_files(tmp_path / "data", (4,))
    vds = zms.open_virtual_dataset(str(files[0]))
    assert zms.icechunk_containers(vds) == [f"file://{tmp_path}/data/"]
    repo = local_repository(tmp_path / "repo", ["file:///somewhere/else/"])
    session = repo.writable_session("main")
    with pytest.raises(ValueError, match="declares no virtual chunk container") as e:
        vds.virtualize.to_icechunk(session.store)
    assert f"file://{tmp_path}/data/" in str(e.value)
    assert "Nothing was written" in str(e.value)
    assert not session.has_uncommitted_changes


def test_locations_are_percent_encoded_urls_and_scan_back_to_paths():
    for path in ("/data/a b%c?.nc", "s3://bucket/x#1.nc", "https://host/a%20b.nc"):
        assert path_of(location_of(path)) == path
    assert location_of("/data/a b.nc") == "file:///data/a%20b.nc"
    with pytest.raises(ValueError, match="relative"):
        location_of("data/a.nc")


def test_group_round_trips_through_icechunk(tmp_path):
    files = daily_files(tmp_path / "data", (4, 4))
    day1, day2 = (zms.open_virtual_dataset(str(f)).virtualize.to_group() for f in files)
    group = zms.ManifestGroup(groups={"day1": day1, "day2": day2}, attributes={"a": 1})
    repo = local_repository(tmp_path / "repo", zms.icechunk_containers(group))
    write(group, repo, group="archive")
    scanned = zms.scan_icechunk(repo, group="archive")
    assert scanned.equals(group)
    assert scanned["day1/time"].manifest.inline  # loaded coordinates came back inline
    refs = zms.to_kerchunk(scanned)  # and go on: to kerchunk, combined with new files, ...
    assert refs["refs"]["day2/t2m/0.0.0"][0] == str(files[1])


def test_scan_refuses_materialised_chunks_beyond_its_limit(tmp_path):
    repo = local_repository(tmp_path / "repo")
    session = repo.writable_session("main")
    xr.Dataset({"v": ("x", np.arange(1000.0))}).to_zarr(
        session.store, zarr_format=3, consolidated=False, encoding={"v": {"chunks": (100,)}}
    )
    session.commit("native chunks")
    small = zms.scan_icechunk(repo, max_materialised_bytes=10**6)
    assert len(small["v"].manifest.inline) == 10
    with pytest.raises(zms.UnsupportedDatasetError, match="max_materialised_bytes=100"):
        zms.scan_icechunk(repo, max_materialised_bytes=100)


@pytest.mark.parametrize("sources", ["s3", "local"])
def test_repository_on_s3(s3, tmp_path, sources):
    fs, bucket, server = s3
    files = daily_files(tmp_path / "data", (4, 4))
    urls = [str(f) for f in files]
    if sources == "s3":
        urls = []
        for f in files:
            fs.put(str(f), f"{bucket}/era/{f.name}")
            urls.append(f"s3://{bucket}/era/{f.name}")
    vds = zms.open_virtual_mfdataset(
        urls, combine="by_coords", storage_options=server.storage_options
    )
    containers = zms.icechunk_containers(vds)
    assert containers == ([f"s3://{bucket}/"] if sources == "s3" else [f"file://{tmp_path}/data/"])
    repo = s3_repository(server, bucket, "repo", containers)
    write(vds, repo)
    xr.testing.assert_identical(open_icechunk(repo), expected(files))
    assert zms.scan_icechunk(repo)["t2m"].manifest.paths == tuple(urls)
    if sources == "s3":
        fs.pipe(f"{bucket}/era/{files[0].name}", files[1].read_bytes())  # a new ETag
        with pytest.raises(Exception, match="checksum of the object owning the virtual chunk"):
            open_icechunk(repo)


def test_an_existing_group_is_kept_unless_replaced(tmp_path):
    files = daily_files(tmp_path / "data", (4, 4))
    day1, day2 = (zms.open_virtual_dataset(str(f)) for f in files)
    repo = local_repository(tmp_path / "repo", [f"file://{tmp_path}/data/"])
    write(day1, repo, group="era")
    session = repo.writable_session("main")
    with pytest.raises(FileExistsError, match="mode='w' to replace"):
        day2.virtualize.to_icechunk(session.store, group="era")
    assert not session.has_uncommitted_changes
    session = repo.writable_session("main")
    zms.to_icechunk(day2, session.store, group="era", mode="w")  # a dataset, through its accessor
    session.commit("day 2 instead")
    xr.testing.assert_identical(open_icechunk(repo, group="era"), expected(files[1:]))


def test_a_read_only_store_is_refused(tmp_path):
    files = daily_files(tmp_path / "data", (4,))
    repo = local_repository(tmp_path / "repo", [f"file://{tmp_path}/data/"])
    with pytest.raises(ValueError, match="read-only"):
        zms.to_icechunk(zms.scan(str(files[0])), repo.readonly_session("main").store)
    with pytest.raises(TypeError, match="Icechunk store"):
        zms.to_icechunk(zms.scan(str(files[0])), zarr.storage.MemoryStore())


def test_to_zarr_with_spec_icechunk_writes_the_same_references(tmp_path):
    files = daily_files(tmp_path / "data")
    vds = zms.open_virtual_mfdataset([str(f) for f in files], combine="by_coords")
    repo = local_repository(tmp_path / "repo", zms.icechunk_containers(vds))
    session = repo.writable_session("main")
    vds.virtualize.to_zarr(store=session.store, spec="icechunk")
    session.commit("seed spelling")
    xr.testing.assert_identical(open_icechunk(repo), expected(files))


def test_group_boxes_are_whole_rows_or_else_tight():
    """Boxes of whole rows where sources follow one another along the first axis; the
    tightest box per axis where whole rows would hold mostly other groups' chunks; an empty
    box for a group without chunks here (a source referenced by another array only)."""
    missing = np.iinfo(np.uint32).max
    lookup = np.array([0, 1, 2, -1], dtype=np.int32)  # path rows 0-2, then "no path"
    rows = np.array([[0, 0, 0], [0, missing, 1], [1, 1, 1]], dtype=np.uint32)
    found = group_boxes(rows, lookup, slack=2)
    assert found.boxes == [((0, 0), (2, 3)), ((1, 0), (3, 3)), ((0, 0), (0, 3))]
    assert found.counts.tolist() == [4, 4, 0]
    assert found.alone() == [False, False, True]
    side_by_side = np.array([[0, 0, 1, 1]] * 3, dtype=np.uint32)
    found = group_boxes(side_by_side, lookup, slack=1.5)
    assert found.boxes == [((0, 0), (3, 2)), ((0, 2), (3, 4)), ((0, 0), (0, 0))]
    assert found.alone() == [True, True, True]


@pytest.mark.parametrize(
    "layout",
    [
        [[0, 0, 0], [1, 1, 1], [2, 2, 2]],  # files in turn along the first axis
        [[0, 1, 2], [0, 1, 2], [0, 1, 2]],  # side by side
        [[0, 0, 1, 1], [0, 2, 2, 1], [3, 2, 2, 3]],  # boxes holding other files' chunks
        [[0, 1, 0, 1], [1, 0, 1, 0]],  # interleaved: a spec per chunk
        [[0, -1, 1], [-1, 1, 2]],  # missing chunks
    ],
)
def test_reference_calls_write_every_chunk_once_with_its_checksum(layout):
    """Whatever the calls (boxes of rows, tight boxes, masked boxes, specs), replayed into a
    grid they give every chunk its own location, offset, length and file's checksum once."""
    rows = np.array(layout)
    paths = [f"/data/f{i}.nc" for i in range(rows.max() + 1)]
    manifest = zms.ChunkManifest(
        paths=paths,
        path_index=np.where(rows < 0, np.iinfo(np.uint32).max, rows).astype(np.uint32),
        offsets=np.arange(rows.size, dtype=np.uint64).reshape(rows.shape) * 100,
        lengths=np.full(rows.shape, 7, dtype=np.uint64),
        fingerprints={
            p: zms.manifest.Fingerprint(size=1, mtime_ns=i * 10**9) for i, p in enumerate(paths)
        },
    )
    written: dict[tuple[int, ...], list] = {}

    class Store:
        def set_virtual_refs_arr(self, path, shape, locations, offsets, lengths, **kw):
            origin = kw["arr_offset"] or (0,) * len(shape)
            for flat, location in enumerate(locations):
                if location:
                    place = np.unravel_index(flat, shape)
                    coords = tuple(int(o + c) for o, c in zip(origin, place, strict=True))
                    entry = (location, int(offsets[flat]), int(lengths[flat]), kw["checksum"])
                    written.setdefault(coords, []).append(entry)

        def set_virtual_refs(self, path, specs, validate_containers):
            for s in specs:
                entry = (s.location, s.offset, s.length, s.last_updated_at_checksum)
                written.setdefault(tuple(s.index), []).append(entry)

    write = icechunk_write.ArrayWrite("a", manifest, (5, 0))
    urls = {p: location_of(p) for p in paths}
    for call in icechunk_write._reference_calls(Store(), write, urls):
        call.run()
    expected = {
        (5 + i, j): [
            (urls[paths[r]], (i * rows.shape[1] + j) * 100, 7, datetime.fromtimestamp(r, UTC))
        ]
        for (i, j), r in np.ndenumerate(rows)
        if r >= 0
    }
    assert written == expected


def test_a_modification_time_is_rounded_up_exactly():
    """Icechunk refuses a source modified after the checksum's second: a time a nanosecond
    past a whole second is the next second (a float division would round it down)."""
    second = 1_700_000_000
    fingerprint = zms.manifest.Fingerprint(size=1, mtime_ns=second * 10**9 + 1)
    assert checksum_of(fingerprint) == datetime.fromtimestamp(second + 1, UTC)
    whole = zms.manifest.Fingerprint(size=1, mtime_ns=second * 10**9)
    assert checksum_of(whole) == datetime.fromtimestamp(second, UTC)
