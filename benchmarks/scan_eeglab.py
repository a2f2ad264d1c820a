"""Scanning pymatreader's EEGLAB file (15,038 datasets, issue #18) against h5py's visit of it.

The file (``test_epochs_onefile_h5.set`` of pymatreader 1.3.2's published sdist) is
downloaded once into the samples cache (see tests/samples.py). Times, in CPU seconds of
this process (best of ``--repeat``, interleaved): h5py visiting every object and reading
each dataset's storage info, ``zms.scan``, and the same scan reading every dataset through
h5py (``read_headers=False``). Target: the scan at most 2x the visit.

    .venv/bin/python benchmarks/scan_eeglab.py [--repeat 3]
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]
from samples import Pin, sample  # noqa: E402
from scan_many_datasets import h5py_walk  # noqa: E402

import zarr_manifest_store as zms  # noqa: E402
from zarr_manifest_store.scan.hdf5 import scan_file  # noqa: E402

PYMATREADER = Pin(
    "pymatreader",
    "1.3.2",
    "pymatreader-1.3.2.tar.gz",
    "8850b52d735df75b120b6ae5c5f80c92e07d8c163ed653c814d7b904fac7afc5",
)
MEMBER = "pymatreader-1.3.2/tests/test_data/test_epochs_onefile_h5.set"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    path = sample(PYMATREADER, MEMBER)
    runs = {
        "h5py visit + storage info": lambda: h5py_walk(path, attributes=False),
        "zms.scan": lambda: zms.scan(str(path), on_unsupported="skip"),
        "zms.scan, every dataset through h5py": lambda: scan_file(
            str(path), read_headers=False, on_unsupported="skip"
        ),
    }
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeat):
        for name, run in runs.items():
            start = time.process_time()
            run()
            times[name].append(time.process_time() - start)
    visit = min(times["h5py visit + storage info"])
    print(f"{MEMBER.rsplit('/', 1)[-1]}: CPU seconds, best of {args.repeat}")
    for name, spent in times.items():
        print(f"  {name:40s} {min(spent):6.2f} s  ({min(spent) / visit:.2f}x the visit)")
    ratio = min(times["zms.scan"]) / visit
    print(f"target: zms.scan <= 2x the visit: {'met' if ratio <= 2 else 'NOT met'} ({ratio:.2f}x)")


if __name__ == "__main__":
    main()
