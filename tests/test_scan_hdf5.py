"""scan_hdf5 over the generated corpus: every dataset reads back bitwise identical to h5py
through ManifestStore (or is refused with its reason), and the xarray view equals h5netcdf's."""

from __future__ import annotations

import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import xarray as xr
import zarr
from hdf5_corpus import CASES, Case

import zarr_manifest_store as zms
from zarr_manifest_store.manifest import INLINE

pytestmark = pytest.mark.filterwarnings("ignore::zarr.errors.UnstableSpecificationWarning")


def scan_case(case: Case, tmp_path: Path) -> tuple[Path, zms.ManifestGroup, dict[str, str]]:
    path = tmp_path / f"{case.name}.h5"
    case.build(path)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        group = zms.scan_hdf5(path, on_unsupported="skip", **case.options)
    left_out = {}
    for w in caught:
        text = str(w.message)
        if "left out dataset" in text:
            name = text.split("left out dataset ")[1].split("'")[1]
            left_out[name] = text
    return path, group, left_out


def h5py_values(ds: h5py.Dataset) -> np.ndarray:
    """What the scanned array must read as: UTF-8 text as str, ASCII text as its bytes
    (the array's ``_Encoding`` attribute says how to decode them)."""
    info = h5py.check_string_dtype(ds.dtype)
    if info and ds.dtype.kind == "O" and info.encoding == "utf-8":
        return ds.asstr()[()]
    return ds[()]


def assert_bitwise_equal(actual: np.ndarray, expected: np.ndarray, name: str) -> None:
    assert actual.shape == expected.shape, name
    if expected.dtype.kind == "O":
        assert actual.tolist() == expected.tolist(), name
        return
    if expected.dtype.names:  # Zarr's structs are packed and little-endian: field by field
        assert actual.dtype.names == expected.dtype.names, (name, actual.dtype)
        for field in expected.dtype.names:
            assert_bitwise_equal(actual[field], expected[field], f"{name}.{field}")
        return
    little = expected.dtype.newbyteorder("<") if expected.dtype.itemsize > 1 else expected.dtype
    assert actual.dtype == little or actual.dtype == expected.dtype, (name, actual.dtype)
    assert (
        np.ascontiguousarray(actual.astype(little)).tobytes()
        == np.ascontiguousarray(expected.astype(little)).tobytes()
    ), name


def datasets(path: Path) -> dict[str, h5py.Dataset]:
    found: dict[str, str] = {}

    def visit(name: str, obj: object) -> None:
        if isinstance(obj, h5py.Dataset):
            nc_name = obj.attrs.get("NAME", b"")
            if not (isinstance(nc_name, bytes) and b"not a netCDF variable" in nc_name):
                found[name] = name

    with h5py.File(path) as f:
        f.visititems(visit)
    return found


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_every_dataset_reads_back_exactly(case: Case, tmp_path: Path) -> None:
    path, group, left_out = scan_case(case, tmp_path)
    assert set(left_out) == set(case.refused)
    for name, words in case.refused.items():
        assert words in left_out[name]
    root = zarr.open_group(zms.ManifestStore(group), mode="r")
    expected_names = set(datasets(path)) - set(case.refused)
    scanned = {p for p, node in group.walk() if isinstance(node, zms.ManifestArray)}
    assert scanned == expected_names
    with h5py.File(path) as f:
        for name in sorted(expected_names):
            assert_bitwise_equal(root[name][...], h5py_values(f[name]), name)
    for name in case.inline:
        assert (group[name].manifest.path_index == INLINE).any(), name
    for name, node in group.walk():
        if isinstance(node, zms.ManifestArray) and name not in case.inline:
            assert not node.manifest.inline, f"{name} was materialised"


@pytest.mark.parametrize("case", [c for c in CASES if c.xarray], ids=lambda c: c.name)
def test_xarray_view_equals_h5netcdf(case: Case, tmp_path: Path) -> None:
    path, group, _ = scan_case(case, tmp_path)
    store = zms.ManifestStore(group)
    paths = [""] + [p for p, node in group.walk() if isinstance(node, zms.ManifestGroup)]
    for sub in paths:
        kwargs = {"group": sub} if sub else {}
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            expected = xr.open_dataset(path, engine="h5netcdf", phony_dims="access", **kwargs)
            actual = xr.open_zarr(store, consolidated=False, **kwargs)
            expected, actual = expected.load(), actual.load()
        prefix = f"{sub}/" if sub else ""
        refused = [n[len(prefix) :] for n in case.refused if n.startswith(prefix)]
        expected = expected.drop_vars([n for n in refused if "/" not in n])
        assert_cf_equal(actual, expected)


def assert_cf_equal(actual: xr.Dataset, expected: xr.Dataset) -> None:
    """Equal as xarray decodes them.

    Packed data decodes in float64 through Zarr (JSON attributes have no float32), so its
    values are compared at float32 precision; strings come back as StringDType.
    """
    assert actual.attrs.keys() == expected.attrs.keys()
    xr.testing.assert_identical(
        xr.Dataset(attrs=actual.attrs), xr.Dataset(attrs=_as_python(expected.attrs))
    )
    assert set(actual.variables) == set(expected.variables)
    assert set(actual.coords) == set(expected.coords)
    for name, var in expected.variables.items():
        got = actual.variables[name]
        assert got.dims == var.dims, name
        assert _as_python(got.attrs) == _as_python(var.attrs) or _nan_equal(got.attrs, var.attrs), (
            name
        )
        if "scale_factor" in var.encoding or "add_offset" in var.encoding:
            np.testing.assert_allclose(got.values, var.values, rtol=1e-6, equal_nan=True)
        elif var.dtype.kind in "OU" and got.dtype.kind == "T":
            # zarr-python reads Zarr's "string" type as numpy's StringDType
            assert got.values.tolist() == var.values.tolist(), name
        else:
            assert got.dtype == var.dtype, name
            xr.testing.assert_identical(got, var)


def _as_python(attrs: dict) -> dict:
    out = {}
    for k, v in attrs.items():
        if isinstance(v, np.ndarray):
            v = v.tolist()
        elif isinstance(v, np.generic):
            v = v.item()
        elif isinstance(v, bytes):
            v = v.decode()
        out[k] = v
    return out


def _nan_equal(a: dict, b: dict) -> bool:
    a, b = _as_python(a), _as_python(b)
    return a.keys() == b.keys() and all(
        np.array_equal(np.asarray(a[k]), np.asarray(b[k]), equal_nan=True) for k in a
    )


@pytest.mark.parametrize(
    ("shape", "chunks"),
    [
        ((7,), (3,)),  # one chunked axis
        ((5, 6), (2, 4)),  # two
        ((4, 1, 6), (3, 1, 4)),  # two, an axis of one chunk between them
        ((3, 5, 6), (2, 2, 4)),  # three
        ((3, 4, 5, 6), (2, 3, 2, 4)),  # four: the loop over the axes
        ((2, 3, 2, 3, 2), (1, 2, 1, 2, 1)),  # five
        ((4, 4), (4, 4)),  # none: a single chunk
    ],
)
def test_every_chunk_is_filed_where_hdf5_keeps_it(tmp_path: Path, shape, chunks) -> None:
    """Grids of any number of chunked axes, chunks written in random order, some never."""
    path = tmp_path / "grid.h5"
    rng = np.random.default_rng(len(shape))
    grid = tuple(-(-n // c) for n, c in zip(shape, chunks, strict=True))
    cells = [np.unravel_index(i, grid) for i in rng.permutation(int(np.prod(grid)))]
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("v", shape=shape, chunks=chunks, dtype="i4", compression="gzip")
        for cell in cells[: max(1, len(cells) * 2 // 3)]:
            region = tuple(slice(i * c, (i + 1) * c) for i, c in zip(cell, chunks, strict=True))
            ds[region] = rng.integers(1, 100, size=ds[region].shape)
    manifest = zms.scan_hdf5(path)["v"].manifest
    with h5py.File(path) as f:
        dsid = f["v"].id
        for cell in np.ndindex(*grid):
            info = dsid.get_chunk_info_by_coord(
                tuple(i * c for i, c in zip(cell, chunks, strict=True))
            )
            ref = manifest.get(cell)
            if info.byte_offset is None:
                assert ref is None, cell
            else:
                assert (ref.offset, ref.length) == (info.byte_offset, info.size), cell
