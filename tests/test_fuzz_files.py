"""Generated files that combine netCDF-4 / HDF5 / netCDF-3 features, checked as the real-file
corpus is (issue #18): every dataset exact against h5py / scipy or refused alone with a
warning, and every group's view equal to ``xr.open_dataset`` or refused.

The files come from tests/fuzz_files.py; ``benchmarks/fuzz_views.py --seeds 0:2000`` runs
thousands of seeds the same way. A failure names the seed, the writer and the features.
"""

from __future__ import annotations

import fuzz_files
import pytest

from benchmarks import fuzz_views

SEEDS = {
    "netcdf4": (2, 9, 34),
    "nc3": (0, 16, 35),
    "h5netcdf": (0, 1, 3),
    "h5py": (2, 5, 8),
    "scipy": (0, 6, 7),
}
"""A few seeds per writer, each combining many features (see ``features`` in a failure)."""


@pytest.mark.parametrize(
    ("kind", "seed"), [(kind, seed) for kind, seeds in SEEDS.items() for seed in seeds]
)
def test_generated_file_is_exact_or_refused_and_its_views_equal(tmp_path, kind, seed):
    record = fuzz_views.check_seed(seed, kind, tmp_path)
    assert not record["problems"], (
        f"seed {seed} ({kind}), features {record['features']}:\n" + "\n".join(record["problems"])
    )
    counts = record["counts"]
    assert counts.get("dataset:exact", 0) + counts.get("view:equal", 0) > 0, counts


COVERED = {
    "nested-group", "parent-dim", "nested-unlimited", "ragged-unlimited", "nofill", "fill-off",
    "never-written", "partial", "layout:compact", "layout:contiguous", "szip", "zstd",
    "zstd_plugin", "blosc_plugin", "fletcher32", "shuffle", "big-endian", "type:enum",
    "type:vlen", "type:compound", "nested-compound", "compound-string", "type:opaque",
    "type:char", "type:str", "type:fixed_str", "packed", "_Unsigned", "valid_range",
    "missing_value", "char-missing_value", "bad-time-units", "calendar", "bounds",
    "coordinates-attribute", "dim-named-variable", "attr:empty", "attr:nan", "attr:texts",
    "name:odd", "scalar", "format:NETCDF3_CLASSIC", "format:NETCDF3_64BIT_OFFSET",
    "format:NETCDF3_64BIT_DATA", "format:1", "format:2",
}  # fmt: skip
"""Features the seeds above must combine between them (issue #18's list)."""


def test_the_seeds_combine_the_features_of_the_issue():
    drawn = set().union(
        *(fuzz_files.Plan(seed, kind).features for kind, seeds in SEEDS.items() for seed in seeds)
    )
    assert not COVERED - drawn
