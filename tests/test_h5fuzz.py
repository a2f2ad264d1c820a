"""The HDF5 fuzzer on a fixed set of seeds: every dataset of each generated file reads exactly
as h5py reads it, or is refused alone with a warning naming it (and ``on_unsupported="raise"``
names the same objects); see ``benchmarks/fuzz_hdf5.py``, which runs thousands of seeds.

The seeds were chosen so that together they cover every feature the generator draws
(tests/h5fuzz_files.py) at least twice; a failure prints the seed, the failing records and
the file's features, and ``benchmarks/fuzz_hdf5.py --seeds N:N+1 --keep DIR`` keeps its file.
"""

from __future__ import annotations

import importlib

import pytest

fuzz = importlib.import_module("benchmarks.fuzz_hdf5")

SEEDS = [26, 34, 60, 70, 90, 111, 137, 208, 240, 270, 278, 309]
SEEDS += [485, 489, 649, 714, 917, 949, 1051, 1125, 1133, 1156, 1277, 1418]


@pytest.mark.filterwarnings("ignore")
@pytest.mark.parametrize("seed", SEEDS)
def test_every_dataset_is_exact_or_refused_alone(seed, tmp_path):
    result = fuzz.run_seed(seed, tmp_path)
    classes = {r["class"] for r in result["records"]}
    assert "exact" in classes, result  # a file that checks nothing tests nothing
    failures = fuzz.failures(result)
    assert not failures, f"seed {seed}: {failures}\nfeatures: {result['features']}"


def test_the_checker_tells_a_wrong_value_from_an_exact_one(tmp_path, monkeypatch):
    """The check is not vacuous: a scan that serves a changed value is reported as wrong."""
    real_scan = fuzz.zms.scan

    def scan_one_value_early(path, **kwargs):
        group = real_scan(path, **kwargs)
        array = group["target"]
        shifted = array.manifest.replace(offsets=array.manifest.offsets - 4)  # one int32 early
        arrays = {
            **group.arrays,
            "target": fuzz.zms.ManifestArray(metadata=array.metadata, manifest=shifted),
        }
        return fuzz.zms.ManifestGroup(arrays, group.groups, group.attributes)

    monkeypatch.setattr(fuzz.zms, "scan", scan_one_value_early)
    result = fuzz.run_seed(SEEDS[0], tmp_path)
    wrong = [r for r in result["records"] if r["class"] == "wrong"]
    assert [r["name"] for r in wrong] == ["target"], result["records"]
