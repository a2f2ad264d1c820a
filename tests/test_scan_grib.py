"""GRIB2 files written with ecCodes, scanned, and read back equal to cfgrib's reading of them."""

from __future__ import annotations

import multiprocessing
import warnings
from collections.abc import Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr
import zarr

import zarr_manifest_store as zms
from zarr_manifest_store.cli import main

eccodes = pytest.importorskip("eccodes")
pytest.importorskip("cfgrib")

LEVELS = (1000, 850, 500)
STEPS = (0, 6, 12)


def write_grib(
    path: Path,
    fields: Iterable[Mapping[str, Any]],
    *,
    sample: str = "GRIB2",
    packing: str = "grid_simple",
    padding: int = 0,
) -> Path:
    """A GRIB2 file of one message per field: ecCodes keys to set, and optionally ``values``
    (NaN where a point is missing: written with a bitmap)."""
    template = eccodes.codes_grib_new_from_samples(sample)
    try:
        with open(path, "wb") as f:
            for i, keys in enumerate(fields):
                handle = eccodes.codes_clone(template)
                try:
                    _write_one(handle, dict(keys), packing, i, f)
                finally:
                    eccodes.codes_release(handle)
                f.write(bytes(padding))
    finally:
        eccodes.codes_release(template)
    return path


def write_grib_apart(path: Path, fields: list[dict[str, Any]], packing: str) -> Path:
    """:func:`write_grib` in a fresh interpreter: in a test process that has loaded other
    image codecs (imagecodecs, which decodes zlib chunks here), ecCodes' PNG encoder now
    and then fails with "Decoding invalid" while writing the file. It still does, rarely, in
    a fresh one ("libpng error: Failed to write PNG data"), so a failed write is tried again
    (the fixture's writer failing, not the scan under test)."""
    spawn = multiprocessing.get_context("spawn")
    for _ in range(WRITE_ATTEMPTS - 1):
        with ProcessPoolExecutor(1, mp_context=spawn) as pool:
            try:
                return pool.submit(write_grib, path, fields, packing=packing).result()
            except eccodes.DecodingError:
                continue
    with ProcessPoolExecutor(1, mp_context=spawn) as pool:
        return pool.submit(write_grib, path, fields, packing=packing).result()


WRITE_ATTEMPTS = 3


def _write_one(handle: Any, keys: dict[str, Any], packing: str, i: int, f: Any) -> None:
    values = keys.pop("values", None)
    for key, value in keys.items():
        eccodes.codes_set(handle, key, value)
    eccodes.codes_set(handle, "bitsPerValue", 16)
    eccodes.codes_set(handle, "packingType", packing)
    n = eccodes.codes_get(handle, "numberOfValues")
    if values is None:
        values = np.random.default_rng(i).uniform(200, 300, n).round(2)
    values = np.asarray(values, dtype=np.float64)
    if np.isnan(values).any():
        eccodes.codes_set(handle, "bitmapPresent", 1)
        eccodes.codes_set(handle, "missingValue", 9999.0)
        values = np.where(np.isnan(values), 9999.0, values)
    eccodes.codes_set_values(handle, values)
    eccodes.codes_write(handle, f)


def levels_file(path: Path, **options: Any) -> Path:
    """t and u on three pressure levels at three steps, two reference times."""
    fields = [
        {"shortName": name, "typeOfLevel": "isobaricInhPa", "level": level, "dataDate": date,
         "dataTime": 1200, "step": step}
        for date in (20240101, 20240102)
        for step in STEPS
        for level in LEVELS
        for name in ("t", "u")
    ]  # fmt: skip
    return write_grib(path, fields, **options)


def cfgrib(path: Path, **filter_by_keys: Any) -> xr.Dataset:
    """cfgrib's reading of ``path`` (one hypercube), without its timestamped history."""
    kwargs = {"indexpath": "", "filter_by_keys": filter_by_keys}
    ds = xr.open_dataset(path, engine="cfgrib", backend_kwargs=kwargs).load()
    ds.attrs.pop("history")
    return ds


def read(group: zms.ManifestGroup) -> xr.Dataset:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return xr.open_zarr(zms.ManifestStore(group), consolidated=False).load()


def assert_as_cfgrib(group: zms.ManifestGroup, path: Path, **filter_by_keys: Any) -> xr.Dataset:
    ds, expected = read(group), cfgrib(path, **filter_by_keys)
    xr.testing.assert_identical(ds, expected)
    for name, var in ds.variables.items():
        assert var.dtype == expected[name].dtype, name
    return ds


@pytest.fixture(scope="module")
def levels(tmp_path_factory) -> Path:
    return levels_file(tmp_path_factory.mktemp("grib") / "levels.grib2")


def test_levels_steps_and_times_read_as_cfgrib_reads_them(levels):
    g = zms.scan_grib(levels)
    ds = assert_as_cfgrib(g, levels)
    assert ds.t.dims == ("time", "step", "isobaricInhPa", "latitude", "longitude")
    assert list(ds.isobaricInhPa.values) == [1000, 850, 500]
    assert ds.valid_time.dims == ("time", "step")
    t = g["t"]
    assert t.manifest.shape == (2, 3, 3, 1, 1)
    assert t.manifest.nchunks == 18
    assert list(t.metadata.to_dict()["codecs"]) == [{"name": "zarr_manifest_store.grib"}]


def test_each_message_is_a_chunk_of_its_own_bytes(levels):
    g = zms.scan_grib(levels)
    data = levels.read_bytes()
    offsets = sorted(int(o) for a in ("t", "u") for o in g[a].manifest.offsets.ravel())
    assert len(offsets) == 36
    for offset in offsets:
        assert data[offset : offset + 4] == b"GRIB"
    ends = sorted(
        int(o + n)
        for a in ("t", "u")
        for o, n in zip(g[a].manifest.offsets.ravel(), g[a].manifest.lengths.ravel(), strict=True)
    )
    assert ends[-1] == len(data)
    assert all(data[e - 4 : e] == b"7777" for e in ends)


@pytest.mark.parametrize(
    "packing",
    ["grid_simple", "grid_complex", "grid_complex_spatial_differencing", "grid_jpeg",
     "grid_png", "grid_ccsds", "grid_ieee"],
)  # fmt: skip
def test_packings_decode_as_cfgrib_decodes_them(tmp_path, packing):
    smooth = np.sin(np.linspace(0, 6, 496)) * 20 + 280
    path = write_grib_apart(
        tmp_path / f"{packing}.grib2",
        [{"shortName": "2t", "typeOfLevel": "heightAboveGround", "level": 2, "step": s,
          "values": smooth + s} for s in STEPS],
        packing=packing,
    )  # fmt: skip
    ds = assert_as_cfgrib(zms.scan_grib(path), path)
    assert ds.t2m.dims == ("step", "latitude", "longitude")


def test_missing_points_of_a_bitmap_are_nan(tmp_path):
    values = np.linspace(250, 300, 496)
    values[::7] = np.nan
    path = write_grib(tmp_path / "bitmap.grib2", [{"shortName": "sst", "values": values}])
    ds = assert_as_cfgrib(zms.scan_grib(path), path)
    assert int(ds.sst.isnull().sum()) == len(values[::7])


def test_a_message_missing_from_the_hypercube_is_a_missing_chunk_of_nan(tmp_path):
    fields = [
        {"shortName": "t", "typeOfLevel": "isobaricInhPa", "level": level, "step": step}
        for step in STEPS
        for level in LEVELS
        if (step, level) != (6, 850)
    ]
    path = write_grib(tmp_path / "holes.grib2", fields)
    g = zms.scan_grib(path)
    assert g["t"].manifest.nchunks == 8
    ds = assert_as_cfgrib(g, path)
    assert ds.t.sel(step=np.timedelta64(6, "h"), isobaricInhPa=850).isnull().all()
    assert ds.t.notnull().sum() == 8 * 496


def test_regular_gaussian_grids_read_as_cfgrib_reads_them(tmp_path):
    path = write_grib(
        tmp_path / "gauss.grib2",
        [{"shortName": "t", "level": level} for level in LEVELS],
        sample="regular_gg_pl_grib2",
    )
    ds = assert_as_cfgrib(zms.scan_grib(path), path)
    assert ds.sizes == {"isobaricInhPa": 3, "latitude": 64, "longitude": 128}


def test_ensemble_members_are_a_number_dimension(tmp_path):
    fields = [
        {"productDefinitionTemplateNumber": 1, "shortName": "t", "typeOfLevel": "isobaricInhPa",
         "level": 500, "perturbationNumber": member, "numberOfForecastsInEnsemble": 4,
         "step": step}
        for member in range(4)
        for step in STEPS
    ]  # fmt: skip
    path = write_grib(tmp_path / "ens.grib2", fields)
    ds = assert_as_cfgrib(zms.scan_grib(path), path)
    assert ds.t.dims == ("number", "step", "latitude", "longitude")


def test_accumulations_read_with_their_end_steps(tmp_path):
    fields = [{"shortName": "tp", "stepType": "accum", "stepRange": f"0-{s}"} for s in (6, 12, 24)]
    path = write_grib(tmp_path / "accum.grib2", fields)
    ds = assert_as_cfgrib(zms.scan_grib(path), path)
    assert ds.tp.attrs["GRIB_stepType"] == "accum"
    assert list(ds.step.values.astype("timedelta64[h]").astype(int)) == [6, 12, 24]


def test_several_hypercubes_are_groups_named_by_level_and_step_type(tmp_path):
    fields = [
        *({"shortName": "t", "typeOfLevel": "isobaricInhPa", "level": lev} for lev in LEVELS),
        {"shortName": "2t", "typeOfLevel": "heightAboveGround", "level": 2},
        {"shortName": "sp", "typeOfLevel": "surface"},
        {"shortName": "tp", "typeOfLevel": "surface", "stepType": "accum", "stepRange": "0-6"},
    ]
    path = write_grib(tmp_path / "mixed.grib2", fields)
    g = zms.scan_grib(path)
    assert sorted(g.groups) == [
        "heightAboveGround_instant",
        "isobaricInhPa_instant",
        "surface_accum",
        "surface_instant",
    ]
    for name, cube in g.groups.items():
        level_type, step_type = name.split("_")
        assert_as_cfgrib(cube, path, typeOfLevel=level_type, stepType=step_type)
    one = zms.scan_grib(path, group="surface_accum")
    assert list(one.arrays)[-1] == "tp"
    with pytest.raises(ValueError, match=r"no hypercube 'nowhere'.*surface_accum"):
        zms.scan_grib(path, group="nowhere")


def test_variables_on_other_levels_of_one_type_are_another_group(tmp_path):
    fields = [
        *({"shortName": "t", "typeOfLevel": "isobaricInhPa", "level": lev} for lev in LEVELS),
        *({"shortName": "u", "typeOfLevel": "isobaricInhPa", "level": lev} for lev in (850, 500)),
    ]
    path = write_grib(tmp_path / "uneven.grib2", fields)
    g = zms.scan_grib(path)
    assert sorted(g.groups) == ["isobaricInhPa_instant", "isobaricInhPa_instant_2"]
    assert_as_cfgrib(g["isobaricInhPa_instant"], path, shortName="t")
    assert_as_cfgrib(g["isobaricInhPa_instant_2"], path, shortName="u")


def test_padding_between_messages_is_skipped(tmp_path):
    path = levels_file(tmp_path / "padded.grib2", padding=120)
    assert_as_cfgrib(zms.scan_grib(path), path)


def test_drop_variables_leaves_them_out(levels):
    g = zms.scan_grib(levels, drop_variables=["u"])
    assert "u" not in g.arrays
    assert "t" in g.arrays


def test_grib1_is_refused_naming_the_edition(tmp_path):
    path = write_grib(tmp_path / "old.grib", [{"shortName": "t"}], sample="GRIB1")
    with pytest.raises(zms.UnsupportedDatasetError, match=r"GRIB edition 1.*only GRIB2"):
        zms.scan(path)


def test_unsupported_grids_are_refused_or_skipped_naming_the_variable(tmp_path):
    path = tmp_path / "reduced.grib2"
    with open(path, "wb") as f:
        for sample, name in (("reduced_gg_pl_grib2", "t"), ("GRIB2", "sp")):
            handle = eccodes.codes_grib_new_from_samples(sample)
            eccodes.codes_set(handle, "shortName", name)
            eccodes.codes_write(handle, f)
            eccodes.codes_release(handle)
    with pytest.raises(
        zms.UnsupportedDatasetError, match=r"'t' \(on isobaricInhPa levels\).*reduced_gg"
    ):
        zms.scan_grib(path)
    with pytest.warns(UserWarning, match=r"left out dataset 't': \(on isobaricInhPa levels\)"):
        g = zms.scan_grib(path, on_unsupported="skip")
    assert "sp" in g.arrays
    assert "t" not in g.arrays


def test_a_truncated_file_is_refused_naming_the_message(levels, tmp_path):
    cut = tmp_path / "cut.grib2"
    data = levels.read_bytes()
    cut.write_bytes(data[: len(data) - 100])
    with pytest.raises(zms.UnsupportedDatasetError, match=r"cut.grib2.*at byte \d+.*runs past"):
        zms.scan_grib(cut)


def test_scan_open_virtual_dataset_and_mfdataset_read_grib(levels, tmp_path):
    assert zms.scan(levels).equals(zms.scan_grib(levels))
    expected = cfgrib(levels)
    ds = zms.open_virtual_dataset(levels, loadable_variables=[])
    assert set(ds.data_vars) == {"t", "u"}
    xr.testing.assert_identical(ds.virtualize.to_store() and read(zms.scan_grib(levels)), expected)
    second = levels_file(tmp_path / "levels-2.grib2")
    mf = zms.open_virtual_mfdataset([levels, second], combine="nested", concat_dim="run")
    assert mf.t.shape == (2, 2, 3, 3, 31, 16)


def test_the_document_and_the_cli_keep_grib_arrays(levels, tmp_path, capsys):
    out = tmp_path / "levels.zarr"
    assert main(["scan", str(levels), "-o", str(out)]) == 0, capsys.readouterr().err
    store = zms.ManifestStore.open(out, allow=[str(levels.parent)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = xr.open_zarr(store, consolidated=False).load()
    xr.testing.assert_identical(ds, cfgrib(levels))
    assert zarr.open_group(store, mode="r")["t"].dtype == np.float32


def test_kerchunk_export_is_refused_naming_the_codec(levels, tmp_path):
    with pytest.raises(zms.UnsupportedDatasetError, match=r"zarr_manifest_store\.grib"):
        zms.to_kerchunk(zms.scan_grib(levels), tmp_path / "refs.json")


def test_a_file_that_only_starts_like_grib_is_refused_naming_the_byte(tmp_path):
    path = tmp_path / "mystery.dat"
    path.write_bytes(b"GRIB\x00\x00")
    with pytest.raises(
        zms.UnsupportedDatasetError, match=r"mystery.dat.*at byte 0.*cut short: 6 bytes"
    ):
        zms.scan(path)
    empty = tmp_path / "empty.grib2"
    empty.write_bytes(b"\x00" * 5000)
    with pytest.raises(zms.UnsupportedDatasetError, match=r"empty\.grib2' holds no GRIB message"):
        zms.scan_grib(empty)
