"""netCDF-3 record variables served in chunks of many records (issue #18): every variable equal
to scipy's (char, packed, the last partial chunk, appended records), the record section read
once for all record variables, the blocks held within ``read_ahead_bytes``, and rows of any
layout joined exactly."""

from __future__ import annotations

import errno
import mmap
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import xarray as xr
import zarr
from scipy.io import netcdf_file

import zarr_manifest_store as zms
from zarr_manifest_store import served_rows
from zarr_manifest_store.io import local
from zarr_manifest_store.io.sources import Sources
from zarr_manifest_store.served_blocks import BLOCK_BYTES

GATES = 40


def _radar(path, records: int, start: int = 0, mode: str = "w") -> None:
    """Record variables of every netCDF-3 type (char, packed int16 with a fill value, int8,
    int32, float32, float64) beside non-record ones; ``mode="a"`` appends records."""
    rng = np.random.default_rng(start)
    with netcdf_file(path, mode, version=2) as f:
        if mode == "w":
            f.createDimension("time", None)
            f.createDimension("range", GATES)
            f.createDimension("string_length", 8)
            f.createVariable("range", "f4", ("range",))[:] = np.arange(GATES, dtype="f4")
            name = f.createVariable("instrument_name", "c", ("string_length",))
            name[:] = np.array(list(b"XSAPR2\0\0"), "S1")
            f.createVariable("time", "f8", ("time",)).units = "seconds since 2026-01-01"
            f.createVariable("azimuth", "f4", ("time",))
            f.createVariable("transition", "i1", ("time",))
            f.createVariable("ray_label", "c", ("time", "string_length"))
            z = f.createVariable("reflectivity", "i2", ("time", "range"))
            z.scale_factor, z._FillValue = np.float32(0.5), np.int16(-32768)
            f.createVariable("gates", "i4", ("time", "range"))
            f.createVariable("phase", "f8", ("time", "range"))
        v = f.variables
        rows = slice(start, start + records)
        v["time"][rows] = np.arange(start, start + records, dtype="f8")
        v["azimuth"][rows] = rng.random(records, dtype="f4") * 360
        v["transition"][rows] = rng.integers(-100, 100, records, dtype="i1")
        labels = [list(f"ray{i:05d}".encode()) for i in range(start, start + records)]
        v["ray_label"][rows] = np.array(labels, "S1")
        z = rng.integers(-3000, 3000, (records, GATES), dtype="i2")
        z[::7, ::5] = -32768
        v["reflectivity"][rows] = z
        v["gates"][rows] = rng.integers(-(2**31), 2**31 - 1, (records, GATES), dtype="i4")
        v["phase"][rows] = rng.random((records, GATES))


def _scipy(path, **options) -> xr.Dataset:
    with xr.open_dataset(path, engine="scipy", **options) as ds:
        return ds.load()


def _check_views(path, store: zms.ManifestStore) -> None:
    """Every variable as scipy gives it: as stored exactly, and decoded (packed values
    decode to float64 here, float32 with scipy: close)."""
    for chunks in ({}, None):
        raw = xr.open_zarr(store, chunks=chunks, mask_and_scale=False).load()
        xr.testing.assert_identical(raw, _scipy(path, mask_and_scale=False))
        xr.testing.assert_allclose(xr.open_zarr(store, chunks=chunks).load(), _scipy(path))


@pytest.fixture
def small_span(monkeypatch):
    """Served chunks of 16 KiB of the file, so that a few hundred records make several."""
    monkeypatch.setattr(served_rows, "ROW_SPAN_BYTES", 16 << 10)


@pytest.fixture
def unmapped(monkeypatch):
    """Local files read as where no memory map can be had (no address space left): into
    buffers, through the blocks and records the store keeps."""

    def no_map(*args, **kwargs):
        raise OSError(errno.ENOMEM, "Cannot allocate memory")

    monkeypatch.setattr(local, "mmap", SimpleNamespace(mmap=no_map, PROT_READ=mmap.PROT_READ))


def test_every_variable_equals_scipy_with_a_last_partial_chunk(tmp_path, small_span):
    path = tmp_path / "radar.nc"
    _radar(path, 333)
    store = zms.ManifestStore(zms.scan(str(path)))
    group = zarr.open_group(store, mode="r")
    record_variables = ("time", "azimuth", "transition", "ray_label", "reflectivity", "phase")
    rows = {group[name].chunks[0] for name in record_variables}
    assert len(rows) == 1  # every record variable is served in chunks of the same records
    (rows,) = rows
    assert 1 < rows < 333  # several chunks
    assert 333 % rows  # the last one partial
    with netcdf_file(path, mmap=False) as f:
        for name, variable in f.variables.items():
            np.testing.assert_array_equal(group[name][:], variable.data, err_msg=name)
            if name in record_variables:
                np.testing.assert_array_equal(group[name][330:], variable.data[330:])
    _check_views(path, store)


def test_records_appended_later_are_read_with_the_new_record_count(tmp_path, small_span):
    path = tmp_path / "grown.nc"
    _radar(path, 200)
    before = zms.scan(str(path))
    _radar(path, 141, start=200, mode="a")
    after = zms.ManifestStore(zms.scan(str(path)))
    assert zarr.open_group(after, mode="r")["phase"].shape == (341, GATES)
    _check_views(path, after)
    with pytest.raises(zms.SourceChangedError):  # the scan before the append is stale
        xr.open_zarr(zms.ManifestStore(before), chunks=None).load()


def test_records_of_two_files_joined_are_exact(tmp_path, small_span):
    first, second = tmp_path / "a.nc", tmp_path / "b.nc"
    _radar(first, 150)
    _radar(second, 97, start=150)
    a, b = zms.scan(str(first)), zms.scan(str(second))
    arrays = {
        name: np.concatenate([a[name], b[name]], axis=0)
        for name in ("time", "azimuth", "ray_label", "reflectivity", "phase")
    }
    store = zms.ManifestStore(zms.ManifestGroup(arrays=arrays))
    group = zarr.open_group(store, mode="r")
    assert 1 < group["phase"].chunks[0] < 247
    with netcdf_file(first, mmap=False) as f, netcdf_file(second, mmap=False) as g:
        for name in arrays:
            expected = np.concatenate([f.variables[name].data, g.variables[name].data])
            np.testing.assert_array_equal(group[name][:], expected, err_msg=name)
            np.testing.assert_array_equal(group[name][140:160], expected[140:160])


def _count_reads(monkeypatch) -> list[int]:
    """The lengths of every read of a source, synchronous or not."""
    lengths: list[int] = []
    read, read_sync = Sources.read, Sources.read_sync

    async def counted(self, path, offset, length):
        lengths.append(length)
        return await read(self, path, offset, length)

    def counted_sync(self, path, offset, length):
        lengths.append(length)
        return read_sync(self, path, offset, length)

    monkeypatch.setattr(Sources, "read", counted)
    monkeypatch.setattr(Sources, "read_sync", counted_sync)
    return lengths


@pytest.mark.parametrize("chunks", [{}, None])
def test_the_record_section_is_read_once_for_every_record_variable(
    tmp_path, monkeypatch, unmapped, chunks
):
    path = tmp_path / "radar.nc"
    _radar(path, 4000)  # about 2.3 MB: several blocks
    size = path.stat().st_size
    assert size > 2 * BLOCK_BYTES
    store = zms.ManifestStore(zms.scan(str(path)))
    lengths = _count_reads(monkeypatch)
    xr.testing.assert_allclose(xr.open_zarr(store, chunks=chunks).load(), _scipy(path))
    assert sum(lengths) < 1.1 * size  # seven record variables: the file read once, not seven times
    blocks = store._served["phase"].blocks
    assert blocks.held_bytes == 0  # every row taken: nothing kept


def test_blocks_are_kept_within_read_ahead_bytes_or_not_at_all(tmp_path, monkeypatch, unmapped):
    path = tmp_path / "radar.nc"
    _radar(path, 4000)
    size = path.stat().st_size
    group = zms.scan(str(path))
    lengths = _count_reads(monkeypatch)

    store = zms.ManifestStore(group, read_ahead_bytes=size)
    np.testing.assert_array_equal(zarr.open_group(store, mode="r")["phase"][:], _raw(path, "phase"))
    held = store._served["phase"].blocks.held_bytes
    assert 0 < held <= size  # the records read, kept for the other variables within the budget
    lengths.clear()
    np.testing.assert_array_equal(zarr.open_group(store, mode="r")["gates"][:], _raw(path, "gates"))
    assert not lengths  # cut from the records kept

    store = zms.ManifestStore(group, read_ahead_bytes=BLOCK_BYTES)  # less than a chunk's records
    np.testing.assert_array_equal(zarr.open_group(store, mode="r")["phase"][:], _raw(path, "phase"))
    assert store._served["phase"].blocks.held_bytes == 0  # not kept

    for options in ({"read_ahead_bytes": 0}, {"verify": "always"}):
        lengths.clear()
        store = zms.ManifestStore(group, **options)
        xr.testing.assert_allclose(xr.open_zarr(store, chunks=None).load(), _scipy(path))
        assert store._served["phase"].blocks.held_bytes == 0
        assert sum(lengths) > 5 * size  # each record variable reads the record section itself


def _raw(path, name: str) -> np.ndarray:
    with netcdf_file(path, mmap=False) as f:
        return f.variables[name].data.copy()


def _layout(rng: np.random.Generator, rows: int, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Where each of ``rows`` rows lies (file 0 or 1, offset): runs of evenly spaced rows of
    random strides and gaps, rows out of order, rows of the other file."""
    files, offsets, end = [], [], [0, 0]
    while len(offsets) < rows:
        file = int(rng.integers(0, 2))
        count = int(rng.integers(1, 40))
        stride = size + int(rng.choice([0, 0, 3, 100, 5000, 1 << 21]))
        start = end[file] + int(rng.integers(0, 3)) * size
        run = start + stride * np.arange(count)
        if rng.random() < 0.2:
            run = run[::-1]
        files.extend([file] * count)
        offsets.extend(run.tolist())
        end[file] = int(run.max()) + size
    return np.array(files[:rows]), np.array(offsets[:rows])


@pytest.mark.parametrize("seed", range(6))
def test_rows_of_any_layout_are_joined_exactly(tmp_path, monkeypatch, seed):
    """Random layouts, missing and inline rows, blocks and reads of random sizes."""
    rng = np.random.default_rng(seed)
    monkeypatch.setattr(served_rows, "ROW_SPAN_BYTES", int(rng.choice([4096, 65536, 1 << 20])))
    rows, width = 300, int(rng.choice([1, 3, 16]))
    size = width * 8
    files, offsets = _layout(rng, rows, size)
    values = rng.random((rows, width)).astype(">f8")
    paths = [tmp_path / "a.bin", tmp_path / "b.bin"]
    for i, path in enumerate(paths):
        mine = files == i
        raw = bytearray(int((offsets[mine] + size).max()) if mine.any() else 0)
        for offset, row in zip(offsets[mine], values[mine], strict=True):
            raw[offset : offset + size] = row.tobytes()
        path.write_bytes(bytes(raw))
    grid = np.array([str(paths[i]) for i in files], dtype=object).reshape(rows, 1)
    missing = rng.random(rows) < 0.05
    grid[missing] = ""
    manifest = zms.ChunkManifest.from_arrays(
        paths=grid,
        offsets=offsets.reshape(rows, 1),
        lengths=np.where(missing, 0, size).reshape(rows, 1),
    )
    inline = {(int(i), 0): values[i].tobytes() for i in rng.choice(rows, 4, replace=False)}
    manifest = manifest.with_inline(inline)
    metadata = {
        "shape": [rows, width],
        "data_type": "float64",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1, width]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": -1.0,
        "codecs": [{"name": "bytes", "configuration": {"endian": "big"}}],
        "dimension_names": ["row", "column"],
    }
    array = zms.ManifestArray(metadata=metadata, manifest=manifest)
    expected = values.astype("<f8")
    expected[missing] = -1.0
    for i in inline:
        expected[i[0]] = values[i[0]]
    options = {
        "max_gap_bytes": int(rng.choice([0, 64, 1 << 20])),
        "max_coalesced_bytes": int(rng.choice([256, 4096, 16 << 20])),
    }
    twin = zms.ManifestArray(metadata=metadata, manifest=manifest)  # shares the files' blocks
    store = zms.ManifestStore(zms.ManifestGroup(arrays={"v": array, "w": twin}), **options)
    group = zarr.open_group(store, mode="r")
    assert group["v"].chunks[0] > 1
    np.testing.assert_array_equal(group["v"][:], expected)
    np.testing.assert_array_equal(group["w"][17:250], expected[17:250])
    np.testing.assert_array_equal(xr.open_zarr(store).v.values, expected)


def test_record_numbers_are_served_in_the_machine_byte_order(tmp_path, small_span):
    """Big-endian rows are swapped in the copy that joins them, so zarr takes the served chunk
    as it is; the document keeps the stored order, and the values are unchanged."""
    path = tmp_path / "radar.nc"
    _radar(path, 333)
    scanned = zms.scan(str(path))
    store = zms.ManifestStore(scanned)
    group = zarr.open_group(store, mode="r")
    for name in ("time", "azimuth", "reflectivity", "gates", "phase"):
        (codec,) = group[name].metadata.codecs
        assert codec.endian == sys.byteorder, name
        assert scanned[name].metadata.codecs[0].endian == "big"  # the document as scanned
        chunk = zarr.core.buffer.default_buffer_prototype()
        raw = store.get_sync(f"{name}/c/1" + "/0" * (group[name].ndim - 1), prototype=chunk)
        rows = group[name].chunks[0]
        served = np.frombuffer(raw.to_bytes(), group[name].dtype).reshape(
            -1, *group[name].shape[1:]
        )
        np.testing.assert_array_equal(served, _raw(path, name)[rows : 2 * rows], err_msg=name)
    for name in ("transition", "ray_label"):  # single bytes: served as stored
        assert group[name].metadata.codecs == scanned[name].metadata.codecs
    _check_views(path, store)


@pytest.mark.parametrize("chunks", [{}, None])
def test_a_served_chunk_of_every_record_variable_is_cut_from_one_read(
    tmp_path, monkeypatch, small_span, unmapped, chunks
):
    """The records a served chunk spans are read once, in one range, and every record
    variable's chunk is cut from them; nothing is kept once every variable took its own."""
    path = tmp_path / "radar.nc"
    _radar(path, 333)
    store = zms.ManifestStore(zms.scan(str(path)))
    rows = zarr.open_group(store, mode="r")["phase"].chunks[0]
    served = -(-333 // rows)
    with netcdf_file(path, mmap=False) as f:
        record = f._recsize
    lengths = _count_reads(monkeypatch)
    xr.testing.assert_allclose(xr.open_zarr(store, chunks=chunks).load(), _scipy(path))
    records = [n for n in lengths if n > 2 * GATES * 8]  # not the non-record variables
    assert len(records) == served  # one read per served chunk, for all seven variables
    assert sum(records) < 334 * record
    assert store._served["phase"].blocks.held_bytes == 0


@pytest.mark.parametrize("chunks", [{}, None])
def test_record_variables_of_a_remote_file_are_cut_from_one_request_a_chunk(
    tmp_path, http_server, small_span, chunks
):
    """Over HTTP (the store's asynchronous reads): the same values, at most one range request
    per served chunk for every record variable (read-ahead may join them)."""
    path = http_server.root / "radar.nc"
    _radar(path, 333)
    store = zms.ManifestStore(zms.scan(f"{http_server.url}/radar.nc"))
    served = -(-333 // zarr.open_group(store, mode="r")["phase"].chunks[0])
    http_server.requests.clear()
    actual = xr.open_zarr(store, chunks=chunks, mask_and_scale=False).load()
    xr.testing.assert_identical(actual, _scipy(path, mask_and_scale=False))
    ranged = [r for r in http_server.requests.entries if r.method == "GET" and r.range]
    assert len(ranged) <= served + 2  # + the two non-record variables
    assert store._served["phase"].blocks.held_bytes == 0


def test_records_past_the_header_record_count_are_not_read(tmp_path, small_span):
    """A file whose header counts fewer records than it holds (a writer stopped before
    updating the count) reads as scipy reads it: the counted records only."""
    path = tmp_path / "radar.nc"
    _radar(path, 333)
    raw = bytearray(path.read_bytes())
    assert int.from_bytes(raw[4:8], "big") == 333
    raw[4:8] = (250).to_bytes(4, "big")
    path.write_bytes(bytes(raw))
    store = zms.ManifestStore(zms.scan(str(path)))
    group = zarr.open_group(store, mode="r")
    assert group["phase"].shape == (250, GATES)
    assert 250 % group["phase"].chunks[0]  # the last served chunk partial
    with netcdf_file(path, mmap=False) as f:
        for name, variable in f.variables.items():
            np.testing.assert_array_equal(group[name][:], variable.data, err_msg=name)
    _check_views(path, store)


def test_an_inline_row_of_the_wrong_length_is_refused_naming_it(tmp_path):
    rows = 100
    path = tmp_path / "raw.bin"
    path.write_bytes(np.arange(rows * 4, dtype=">f4").tobytes())
    manifest = zms.ChunkManifest.from_arrays(
        paths=np.full((rows, 1), str(path)),
        offsets=(np.arange(rows) * 16).reshape(rows, 1),
        lengths=np.full((rows, 1), 16),
    ).with_inline({(9, 0): b"\0" * 12})
    metadata = {
        "shape": [rows, 4],
        "data_type": "float32",
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [1, 4]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": -1.0,
        "codecs": [{"name": "bytes", "configuration": {"endian": "big"}}],
        "dimension_names": ["y", "x"],
    }
    array = zms.ManifestArray(metadata=metadata, manifest=manifest)
    store = zms.ManifestStore(zms.ManifestGroup(arrays={"v": array}))
    with pytest.raises(zms.ManifestError, match=r"array 'v', chunk 9 .*inline chunk is 12 bytes"):
        zarr.open_group(store, mode="r")["v"][:]
