"""How the differential fuzzer classes a view that differs from the reference engine's for a
reason that is not the scan's (benchmarks/fuzz_verdicts.py, issue #18), each on a file written
here: the engines disagree and one of them, corrected as the rule says, agrees with the scan
(``engines-differ``), or the reference misreads it (``reference-misreads``)."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import fuzz_files
import h5netcdf
import numpy as np
import pytest

from benchmarks import fuzz_verdicts, fuzz_views
from benchmarks.real_files import check


def _records(path: Path, variable: str) -> tuple[dict, dict, dict]:
    """The view record of ``variable`` in the root group as checked, then as reclassified, and
    the check's result."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = check.check_file(str(path))
        (before,) = [r for r in result["views"] if r.get("variable") == variable][:1]
        after = [r for r in fuzz_verdicts.reclassified(result, str(path)) if r is not before]
    (after,) = [r for r in after if r.get("variable") == variable][:1]
    return before, after, result


TWO_UNLIMITED_SCRIPT = """
import sys, netCDF4, numpy as np
with netCDF4.Dataset(sys.argv[1], "w") as nc:
    if sys.argv[2] == "nofill":
        nc.set_fill_off()
    nc.createDimension("a", None)
    nc.createDimension("b", None)
    nc.createVariable("o", "u8", ("a", "b"))[:3, :3] = np.arange(9).reshape(3, 3)
    nc.createVariable("v", "u8", ("a", "b"), chunksizes=(1, 5))[0, :3] = [7, 8, 9]
"""


def _two_unlimited(tmp_path: Path, mode: str) -> Path:
    path = tmp_path / f"two_unlimited_{mode}.nc"
    subprocess.run([sys.executable, "-c", TWO_UNLIMITED_SCRIPT, str(path), mode], check=True)
    return path


def test_h5netcdfs_padding_of_a_nofill_variable_is_the_engines_difference(tmp_path):
    path = _two_unlimited(tmp_path, "nofill")
    before, after, result = _records(path, "v")
    assert before["class"] == "mismatch"  # h5netcdf pads with 0
    assert before["engine"] == "h5netcdf"
    assert after["class"] == "engines-differ"  # netCDF-C (when it reads it right), or:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        padded = fuzz_verdicts._padded_classes(str(path), before, result)
    assert padded["v"] == "equal"  # h5netcdf's view padded as netCDF-C pads


def test_netcdf_c_misreads_a_variable_short_on_its_first_of_two_unlimited_dimensions(tmp_path):
    import netCDF4

    path = _two_unlimited(tmp_path, "fill")
    with netCDF4.Dataset(path) as nc:
        nc["v"].set_auto_maskandscale(False)
        padding = nc["v"][:][1:]  # read with the data: not all netCDF's fill, as alone
        assert padding.tolist() != [[netCDF4.default_fillvals["u8"]] * 3] * 2
    record = {"group": "", "variable": "v", "engine": "netcdf4"}
    assert fuzz_verdicts.padded_inside(str(path), record)
    assert not fuzz_verdicts.padded_inside(str(path), {**record, "variable": "o"})


def test_xarrays_unsigned_fill_of_a_big_endian_variable_is_the_references_misreading(tmp_path):
    path = tmp_path / "unsigned.nc"
    with h5netcdf.File(path, "w") as f:
        f.dimensions = {"x": 3}
        u = f.create_variable("u", ("x",), ">i4", data=np.array([-5, 1, 2]), fillvalue=-5)
        u.attrs["_Unsigned"] = "true"
    before, after, _ = _records(path, "u")
    assert before["class"] == "mismatch"  # xarray masks nothing; the scan masks the fill
    assert "nan where 4294967291.0 was expected" in before["reason"]
    assert (after["class"], after["reason"]) == (
        "reference-misreads",
        f"{fuzz_verdicts.BIG_ENDIAN_UNSIGNED}; {before['reason']}",
    )


CHAR_SCRIPT = """
import sys, netCDF4, numpy as np
with netCDF4.Dataset(sys.argv[1], "w") as nc:
    nc.createDimension("x", 3)
    nc.createVariable("x", "f8", ("x",))[:] = [0.0, 1.0, 2.0]  # 'x' is no character dimension
    c = nc.createVariable("c", "S1", ("x",))
    c[:] = np.array([b"a", b"z", b"b"], "S1")
    c.missing_value = "z"  # netCDF4-python gives it back as text
"""


def test_a_char_missing_value_netcdf4_reads_as_text_is_the_engines_difference(tmp_path):
    path = tmp_path / "chars.nc"
    subprocess.run([sys.executable, "-c", CHAR_SCRIPT, str(path)], check=True)
    record = {"group": "", "variable": "c", "engine": "netcdf4"}
    assert fuzz_verdicts.char_unmasked(str(path), record)  # the scan masks b"z" as h5netcdf
    assert not fuzz_verdicts.char_unmasked(str(path), {**record, "variable": "x"})


def test_an_h5py_file_never_asks_for_compact_data_over_hdf5s_limit(tmp_path):
    fuzz_files.build(82, tmp_path / "h5py-82.h5", "h5py")  # 160,000 values drawn compact


@pytest.mark.parametrize("seed", [871, 984])
def test_seeds_whose_mismatches_only_the_padded_view_explains(tmp_path, seed):
    """netCDF4 files with NC_NOFILL variables that h5netcdf gives in their stored shape (984: a
    time variable netCDF-C pads to undecodable times) or beside refused ones (871)."""
    record = fuzz_views.check_seed(seed, "netcdf4", tmp_path)
    assert not record["problems"]
    assert record["counts"]["view:engines-differ"] > 0
