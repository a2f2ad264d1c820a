"""``make demo`` / ``zarr-manifest demo``: what a new user sees first."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

from zarr_manifest_store.cli import main


def test_demo_scans_reopens_and_times_a_sample_archive(capsys):
    assert main(["demo", "--files", "3"]) == 0
    out = capsys.readouterr().out
    assert "1. Wrote a sample archive of 3 netCDF-4 files" in out
    assert "24 chunk references; the coordinates time, lat, lon loaded" in out
    assert "Dimensions:  (time: 72, lat: 73, lon: 144)" in out
    assert re.search(r"xr\.open_mfdataset\(3 files, engine=\"h5netcdf\"\) +\d+\.\d ms", out)
    assert re.search(
        r"xr\.open_dataset\(\"demo\.zarr\", engine=\"zarr_manifest\"\) +\d+\.\d ms +\(\d+x faster\)",
        out,
    )
    assert "Values identical to xr.open_mfdataset's: yes (t2m, tp, time, lat, lon)" in out
    # the temporary folder is gone afterwards
    folder = re.search(r"^   (/\S+)/archive/era_2026-01-01\.nc", out, re.M).group(1)
    assert not Path(folder).exists()


def test_make_demo_keeps_its_files_when_asked(tmp_path, capsys):
    """``make demo`` runs ``python -m zarr_manifest_store.cli demo``: the same command, in a process."""
    kept = tmp_path / "kept"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "zarr_manifest_store.cli",
            "demo",
            "--files",
            "2",
            "--keep",
            str(kept),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "Values identical to xr.open_mfdataset's: yes" in result.stdout
    assert f"zarr-manifest info {kept}/demo.zarr" in result.stdout
    assert sorted(p.name for p in (kept / "archive").iterdir()) == [
        "era_2026-01-01.nc",
        "era_2026-01-02.nc",
    ]
    assert main(["info", str(kept / "demo.zarr")]) == 0
    assert "16 references to 2 source files" in capsys.readouterr().out

    assert main(["demo", "--keep", str(kept)]) == 2
    assert capsys.readouterr().err == (
        f"zarr-manifest: error: {kept} is not empty: the demo keeps its files in a new or empty "
        "folder\n"
    )
