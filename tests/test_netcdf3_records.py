"""netCDF-3 record variables read through zarr's output (issue #18, ``chunks=None``): a served
chunk zarr takes from its start is written straight into place, never made for zarr to copy;
the records one read keeps are released once every variable cut its own; files of a single
record variable (records not padded) and of records of odd sizes read exactly."""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr
import zarr
from scipy.io import netcdf_file

import zarr_manifest_store as zms
from tests.test_served_rows import _check_views, _radar, unmapped  # noqa: F401
from zarr_manifest_store import served_rows
from zarr_manifest_store.store import ManifestStore


@pytest.fixture
def small_span(monkeypatch):
    """Served chunks of 16 KiB of the file, so that a few hundred records make several."""
    monkeypatch.setattr(served_rows, "ROW_SPAN_BYTES", 16 << 10)


def _chunk_gets(monkeypatch) -> list[str]:
    """The keys of every chunk the store hands over as bytes (``get`` or ``get_sync``)."""
    keys: list[str] = []
    get, get_sync = ManifestStore.get, ManifestStore.get_sync

    async def counted(self, key, prototype=None, byte_range=None):
        keys.append(key)
        return await get(self, key, prototype, byte_range)

    def counted_sync(self, key, *, prototype=None, byte_range=None):
        keys.append(key)
        return get_sync(self, key, prototype=prototype, byte_range=byte_range)

    monkeypatch.setattr(ManifestStore, "get", counted)
    monkeypatch.setattr(ManifestStore, "get_sync", counted_sync)
    return keys


RECORD_VARIABLES = ("time", "azimuth", "transition", "ray_label", "reflectivity", "gates", "phase")


@pytest.mark.parametrize("chunks", [{}, None])
def test_record_chunks_are_written_straight_into_zarrs_output(
    tmp_path, monkeypatch, small_span, chunks
):
    """Every served chunk of every record variable, the last partial one too, is cut from
    the file's bytes into zarr's output: none is handed over as bytes for zarr to copy."""
    path = tmp_path / "radar.nc"
    _radar(path, 333)
    store = zms.ManifestStore(zms.scan(str(path)))
    rows = zarr.open_group(store, mode="r")["phase"].chunks[0]
    assert 333 // rows > 2  # several chunks
    assert 333 % rows  # the last one partial
    keys = _chunk_gets(monkeypatch)
    loaded = xr.open_zarr(store, chunks=chunks, mask_and_scale=False).load()
    with xr.open_dataset(path, engine="scipy", mask_and_scale=False) as expected:
        xr.testing.assert_identical(loaded, expected.load())
    handed = {k for k in keys if k.split("/")[0] in RECORD_VARIABLES}
    assert handed <= {"time/c/0", f"time/c/{333 // rows}"}  # xarray's look at the first and last
    assert store._served["phase"].blocks.held_bytes == 0


def test_parts_of_chunks_are_handed_over_and_exact(tmp_path, monkeypatch, small_span):
    """A selection zarr does not take from a chunk's start, or not across its other axes,
    goes through ``get``: the same values."""
    path = tmp_path / "radar.nc"
    _radar(path, 333)
    group = zarr.open_group(zms.ManifestStore(zms.scan(str(path))), mode="r")
    keys = _chunk_gets(monkeypatch)
    with netcdf_file(path, mmap=False) as f:
        for name in ("reflectivity", "phase", "ray_label"):
            expected = f.variables[name].data
            np.testing.assert_array_equal(group[name][5:300, 1:3], expected[5:300, 1:3])
            np.testing.assert_array_equal(group[name][::7], expected[::7])
            np.testing.assert_array_equal(group[name][17], expected[17])
    assert keys


@pytest.mark.usefixtures("unmapped")
def test_reading_one_record_variable_keeps_its_records_within_the_budget(tmp_path, small_span):
    """Where a file is read, not mapped: reading one variable keeps the records it read for
    the others (at most ``read_ahead_bytes``); reading the rest releases them."""
    path = tmp_path / "radar.nc"
    _radar(path, 333)
    with netcdf_file(path, mmap=False) as f:
        section = f._recsize * 333
    group = zms.scan(str(path))
    for budget in (section, section // 3):
        store = zms.ManifestStore(group, read_ahead_bytes=budget)
        opened = zarr.open_group(store, mode="r")
        np.testing.assert_array_equal(opened["time"][:], np.arange(333.0))
        assert 0 < store._served["time"].blocks.held_bytes <= budget
        for name in RECORD_VARIABLES:
            opened[name][:]
        assert store._served["time"].blocks.held_bytes == 0


def _one_record_variable(path, dtype: str, width: int | None, records: int) -> None:
    """A file whose only record variable is of ``dtype`` (``width`` values a record): netCDF-3
    does not pad its records, so odd sizes lie back to back."""
    rng = np.random.default_rng(len(dtype) + (width or 0))
    with netcdf_file(path, "w", version=2) as f:
        f.createDimension("time", None)
        dims: tuple[str, ...] = ("time",)
        shape: tuple[int, ...] = (records,)
        if width is not None:
            f.createDimension("x", width)
            dims, shape = ("time", "x"), (records, width)
        f.createDimension("two", 2)
        f.createVariable("fixed", "i2", ("two",))[:] = [7, 8]
        v = f.createVariable("v", dtype, dims)
        if dtype == "c":
            v[:records] = rng.choice(np.array(list(b"abc"), "S1"), shape)
        else:
            info = np.iinfo(dtype) if dtype[0] == "i" else None
            v[:records] = (
                rng.integers(info.min, info.max, shape, dtype=dtype)
                if info
                else rng.random(shape).astype(dtype)
            )


@pytest.mark.parametrize(
    ("dtype", "width"), [("i1", None), ("c", 3), ("i2", 3), ("i1", 5), ("f8", None), ("i2", None)]
)
def test_a_file_of_one_record_variable_is_exact(tmp_path, small_span, dtype, width):
    path = tmp_path / "one.nc"
    _one_record_variable(path, dtype, width, 4001)
    store = zms.ManifestStore(zms.scan(str(path)))
    group = zarr.open_group(store, mode="r")
    assert group["v"].chunks[0] > 1  # served in chunks of many records
    with netcdf_file(path, mmap=False) as f:
        expected = f.variables["v"].data
        np.testing.assert_array_equal(group["v"][:], expected)
        np.testing.assert_array_equal(group["v"][3990:], expected[3990:])
    _check_views(path, store)


def test_records_of_odd_sizes_padded_to_four_bytes_are_exact(tmp_path, small_span):
    """Record variables of 1, 3 and 5 bytes a record, each padded to four bytes within the
    record, beside an 8-byte one."""
    path = tmp_path / "odd.nc"
    rng = np.random.default_rng(5)
    records = 777
    with netcdf_file(path, "w", version=2) as f:
        f.createDimension("time", None)
        f.createDimension("three", 3)
        f.createDimension("five", 5)
        f.createVariable("flag", "i1", ("time",))[:records] = rng.integers(
            -128, 127, records, dtype="i1"
        )
        f.createVariable("code", "c", ("time", "three"))[:records] = rng.choice(
            np.array(list(b"xyz"), "S1"), (records, 3)
        )
        f.createVariable("small", "i1", ("time", "five"))[:records] = rng.integers(
            -128, 127, (records, 5), dtype="i1"
        )
        f.createVariable("pair", "i2", ("time", "three"))[:records] = rng.integers(
            -999, 999, (records, 3), dtype="i2"
        )
        f.createVariable("t", "f8", ("time",))[:records] = np.arange(records) / 3
    store = zms.ManifestStore(zms.scan(str(path)))
    group = zarr.open_group(store, mode="r")
    with netcdf_file(path, mmap=False) as f:
        for name in ("flag", "code", "small", "pair", "t"):
            assert group[name].chunks[0] > 1, name
            np.testing.assert_array_equal(group[name][:], f.variables[name].data, err_msg=name)
    _check_views(path, store)


def test_points_and_orthogonal_selections_of_record_variables_are_exact(tmp_path, small_span):
    """Selections zarr places point by point or index by index are not written in place."""
    path = tmp_path / "radar.nc"
    _radar(path, 333)
    group = zarr.open_group(zms.ManifestStore(zms.scan(str(path))), mode="r")
    rows, columns = np.array([0, 5, 140, 332]), np.array([1, 3, 3, 0])
    with netcdf_file(path, mmap=False) as f:
        for name in ("reflectivity", "phase", "ray_label"):
            expected = f.variables[name].data
            np.testing.assert_array_equal(
                group[name].vindex[rows, columns], expected[rows, columns]
            )
            np.testing.assert_array_equal(group[name].oindex[rows, :], expected[rows, :])
            np.testing.assert_array_equal(group[name].oindex[:, [0, 2]], expected[:, [0, 2]])
        np.testing.assert_array_equal(group["time"].vindex[rows], f.variables["time"].data[rows])


def test_a_record_section_within_16_mib_is_served_in_one_chunk_a_variable(tmp_path):
    """zarr's and dask's cost per chunk is most of what reading small records costs: every
    record variable of a file whose records span at most ``ROW_SPAN_BYTES`` (16 MiB) is one
    chunk (the document keeps one per record)."""
    path = tmp_path / "radar.nc"
    _radar(path, 15_000)
    assert 8 << 20 < path.stat().st_size < served_rows.ROW_SPAN_BYTES
    group = zms.scan(str(path))
    opened = zarr.open_group(ManifestStore(group), mode="r")
    for name in RECORD_VARIABLES:
        assert group[name].metadata.chunk_grid.chunk_shape[0] == 1
        assert opened[name].chunks[0] == 15_000, name
