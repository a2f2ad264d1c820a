"""Property tests: reading a virtual concatenation equals concatenating the reads.

Each example writes small HDF5 files (ragged lengths, compressed or not, some
chunks never written, one chunk inline), combines their ManifestArrays with
NumPy, and reads the result back through ManifestStore.
"""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from test_concat import h5_array, read, sources_gone, with_inline

import zarr_manifest_store as zms

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


@st.composite
def layouts(draw: st.DrawFn, *, stacking: bool = False) -> dict[str, Any]:
    """Shapes, chunks and encodings of 1-4 arrays to combine along ``axis``."""
    ndim = draw(st.integers(1, 3))
    axis = draw(st.integers(0, ndim if stacking else ndim - 1))
    chunks = [draw(st.integers(1, 3)) for _ in range(ndim)]
    shape = [draw(st.integers(c, c + 4)) for c in chunks]
    count = draw(st.integers(1, 4))
    inputs = []
    for _ in range(count):
        own_shape, own_chunks = list(shape), list(chunks)
        if not stacking:
            own_shape[axis] = draw(st.integers(chunks[axis], chunks[axis] + 5))
            if draw(st.integers(0, 3)) == 0:  # now and then a chunk size of its own
                own_chunks[axis] = draw(st.integers(1, own_shape[axis]))
        inputs.append(
            {
                "shape": tuple(own_shape),
                "chunks": tuple(own_chunks),
                "partial": draw(st.booleans()),
                "inline": draw(st.booleans()),
            }
        )
    return {
        "axis": axis,
        "inputs": inputs,
        "dtype": draw(st.sampled_from(["f4", "f8", "i2", "u1"])),
        "compress": draw(st.booleans()),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def build(
    tmp_path: Path, layout: dict[str, Any]
) -> tuple[list[zms.ManifestArray], list[np.ndarray]]:
    """Write each input's file and return the ManifestArrays and what they read as."""
    rng = np.random.default_rng(layout["seed"])
    folder = tmp_path / uuid.uuid4().hex
    folder.mkdir()
    arrays, expected = [], []
    for i, spec in enumerate(layout["inputs"]):
        data = (rng.random(spec["shape"]) * 100).astype(layout["dtype"])
        # a partial write leaves the chunks past the first ones unallocated: they read as fill
        written = np.s_[: spec["chunks"][0]] if spec["partial"] else ...
        array, values = h5_array(
            folder / f"{i}.h5",
            data,
            spec["chunks"],
            compress=layout["compress"],
            written=written,
            fill=7,
        )
        if spec["inline"]:
            array = with_inline(array, next(c for c, _ in array.manifest.items()))
        arrays.append(array)
        expected.append(values)
    return arrays, expected


def must_decode_edges(arrays: list[zms.ManifestArray], axis: int, compress: bool) -> bool:
    """Whether an input followed by others ends in a partial chunk that cannot be shortened."""
    for a in arrays[:-1]:
        sizes = a.chunk_sizes
        ragged = sum(sizes[axis]) != a.shape[axis]
        strided = any(e != 1 for k in range(axis) for e in sizes[k])
        if ragged and (compress or strided):
            return True
    return False


@SETTINGS
@given(layout=layouts(), data=st.data())
def test_reading_a_concatenation_equals_concatenating_the_reads(tmp_path, layout, data):
    arrays, expected = build(tmp_path, layout)
    axis = layout["axis"]
    want = np.concatenate(expected, axis=axis)
    try:
        with sources_gone(*arrays):  # no data is read to combine references
            combined = np.concatenate(arrays, axis=axis)
    except zms.UnsupportedDatasetError:
        assert must_decode_edges(arrays, axis, layout["compress"])
        combined = zms.concat(arrays, axis=axis, edge_chunks="inline")
        event("edge chunks decoded and stored inline")
    event(f"{combined.metadata.chunk_grid.to_dict()['name']} chunk grid")
    assert combined.shape == want.shape
    np.testing.assert_array_equal(read(combined), want)

    # any chunk-aligned slice of the result reads as the same slice of the values
    bounds = np.cumsum((0, *combined.chunk_sizes[axis]))
    start = data.draw(st.sampled_from([int(b) for b in bounds if b < want.shape[axis]]))
    stop = data.draw(st.integers(start + 1, want.shape[axis]))
    key = (slice(None),) * axis + (slice(start, stop),)
    np.testing.assert_array_equal(read(combined[key]), want[key])


@SETTINGS
@given(layout=layouts(stacking=True))
def test_reading_a_stack_equals_stacking_the_reads(tmp_path, layout):
    arrays, expected = build(tmp_path, layout)
    with sources_gone(*arrays):
        stacked = np.stack(arrays, axis=layout["axis"])
    want = np.stack(expected, axis=layout["axis"])
    np.testing.assert_array_equal(read(stacked), want)
    # and the stack's new axis indexes back to each input
    picked = stacked[(slice(None),) * layout["axis"] + (-1,)]
    np.testing.assert_array_equal(read(picked), expected[-1])


@pytest.mark.parametrize("compress", [False, True])
def test_leap_year_daily_files_concatenate_exactly(tmp_path, compress):
    """365 / 366 daily steps chunked by 10: every file ends in a partial chunk."""
    rng = np.random.default_rng(1)
    parts = [
        h5_array(
            tmp_path / f"{year}.h5",
            rng.random((n, 2, 3), dtype="f4"),
            (10, 2, 3),
            compress=compress,
        )
        for year, n in [(2023, 365), (2024, 366), (2025, 365)]
    ]
    arrays = [a for a, _ in parts]
    combined = zms.concat(arrays, edge_chunks="inline") if compress else np.concatenate(arrays)
    assert combined.chunk_sizes[0][35:38] == (10, 5, 10)
    assert len(combined.manifest.inline) == (2 if compress else 0)
    np.testing.assert_array_equal(read(combined), np.concatenate([e for _, e in parts]))
