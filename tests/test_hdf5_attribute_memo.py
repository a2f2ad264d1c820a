"""Attributes read from their messages are converted to JSON once per file and array dtype
(issue #18: the variables of a file repeat the same attributes), and each array still gets
attributes of its own."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from test_hdf5_headers import assert_same_scan, described_from_headers

import zarr_manifest_store as zms
from zarr_manifest_store.scan.hdf5 import attributes

COUNT = 40
SHARED = ("units", "valid_range", "_FillValue", "missing_value", "flag_values")
"""Attributes every dataset of the file has with the same bytes."""


def _make(path: Path, libver: str) -> None:
    """``COUNT`` datasets, float32 and float64 in turn, with the same attributes besides a
    ``long_name`` of their own."""
    with h5py.File(path, "w", libver=libver) as f:
        for i in range(COUNT):
            d = f.create_dataset(f"v{i}", data=np.arange(4.0), dtype="f4" if i % 2 else "f8")
            d.attrs["units"] = np.bytes_(b"K")
            d.attrs["valid_range"] = np.array([0, 400], "f4")
            d.attrs["_FillValue"] = np.float32(-1)
            d.attrs["missing_value"] = np.float32(-2)
            d.attrs["flag_values"] = np.array([1, 2, 3], "i1")
            d.attrs["long_name"] = np.bytes_(f"variable {i}".encode())


def _counted_conversions(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the attributes converted to JSON from now on (the memo's misses)."""
    converted = attributes._json_attribute
    calls: list[str] = []

    def counted(attrs, name, dtype):  # type: ignore[no-untyped-def]
        calls.append(name)
        return converted(attrs, name, dtype)

    monkeypatch.setattr(attributes, "_json_attribute", counted)
    return calls


@pytest.mark.parametrize("libver", ["earliest", "latest"])
def test_repeated_attributes_are_converted_once_per_file_and_dtype(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, libver: str
) -> None:
    path = tmp_path / "repeated.h5"
    _make(path, libver)
    assert len(described_from_headers(path)) == COUNT
    calls = _counted_conversions(monkeypatch)
    group = zms.scan(str(path))
    assert sorted(calls) == sorted(["long_name"] * COUNT + [*SHARED] * 2)  # two dtypes
    for i in range(COUNT):
        found = group.arrays[f"v{i}"].metadata.attributes
        assert found["long_name"] == f"variable {i}"
        assert found["valid_range"] == [0.0, 400.0]
        assert found["flag_values"] == [1, 2, 3]
    monkeypatch.undo()
    assert_same_scan(path)  # equal to the scan through h5py


def test_arrays_of_a_file_hold_lists_of_their_own(tmp_path: Path) -> None:
    path = tmp_path / "repeated.h5"
    _make(path, "latest")
    group = zms.scan(str(path))
    first, second = (group.arrays[n].metadata.attributes for n in ("v0", "v2"))
    assert first["valid_range"] == second["valid_range"]
    first["valid_range"].append(1000.0)
    assert second["valid_range"] == [0.0, 400.0]


@pytest.mark.parametrize("libver", ["earliest", "latest"])
def test_variable_length_text_is_converted_once_per_distinct_string(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, libver: str
) -> None:
    """h5py and h5netcdf write text as variable-length strings: each message holds the address
    of its own copy in the global heap, so the memo keys it by the strings themselves; a scalar
    ASCII string is its own JSON, read without a conversion."""
    path = tmp_path / "text.h5"
    text = h5py.string_dtype()
    with h5py.File(path, "w", libver=libver) as f:
        for i in range(COUNT):
            d = f.create_dataset(f"v{i}", data=np.arange(4.0))
            d.attrs.create("units", "K", dtype=text)
            d.attrs.create("flags", ["a", "b" if i % 2 else "c"], dtype=text)
            d.attrs.create("long_name", f"variable {i}", dtype=text)
            d.attrs.create("history", "x" * 2000, dtype=text)  # past MEMO_BYTES: not kept
    assert len(described_from_headers(path)) == COUNT
    calls = _counted_conversions(monkeypatch)
    group = zms.scan(str(path))
    assert sorted(calls) == ["flags"] * 2
    for i in range(COUNT):
        found = group.arrays[f"v{i}"].metadata.attributes
        assert found["units"] == "K"
        assert found["flags"] == ["a", "b" if i % 2 else "c"]
        assert found["long_name"] == f"variable {i}"
        assert found["history"] == "x" * 2000
    monkeypatch.undo()
    assert_same_scan(path)


@pytest.mark.parametrize("libver", ["earliest", "latest"])
def test_text_read_straight_is_what_h5py_reads(tmp_path: Path, libver: str) -> None:
    """Variable-length strings read straight from the global heap (a scalar of one ASCII
    string) and those that are not (empty, non-ASCII, a one-string array, ASCII or UTF-8
    character sets, a ``_FillValue``) give what h5py gives, JSON and warnings alike."""
    path = tmp_path / "text.h5"
    ascii_text = h5py.string_dtype("ascii")
    with h5py.File(path, "w", libver=libver) as f:
        for i in range(4):
            d = f.create_dataset(f"v{i}", data=np.arange(4.0))
            d.attrs.create("plain", f"text {i}", dtype=h5py.string_dtype())
            d.attrs.create("ascii", f"a{i}", dtype=ascii_text)
            d.attrs.create("empty", "", dtype=h5py.string_dtype())
            d.attrs.create("accented", f"é{i}", dtype=h5py.string_dtype())
            d.attrs.create("one", [f"x{i}"], dtype=h5py.string_dtype())
            text = f.create_dataset(f"s{i}", data=np.array([b"ab", b"c"], "S4"))
            text.attrs.create("_FillValue", "fill", dtype=h5py.string_dtype())
    assert len(described_from_headers(path)) == 8
    group = zms.scan(str(path))
    for i in range(4):
        found = group.arrays[f"v{i}"].metadata.attributes
        assert found["plain"] == f"text {i}"
        assert found["ascii"] == f"a{i}"
        assert found["accented"] == f"é{i}"
    assert_same_scan(path)
