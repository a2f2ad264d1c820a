"""The installed ``zarr-manifest`` console script, run as a user runs it: a separate process."""

from __future__ import annotations

import os
import pty
import subprocess
import sys
from pathlib import Path

import pytest

from zarr_manifest_store.cli.demo import write_archive

SCRIPT = Path(sys.executable).with_name("zarr-manifest")


def zarr_manifest(*argv: object, **options) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(SCRIPT), *map(str, argv)], capture_output=True, text=True, timeout=120, **options
    )


@pytest.fixture(scope="module")
def archive(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("console") / "archive"
    write_archive(folder, files=2)
    return folder


def test_the_console_script_is_installed():
    assert SCRIPT.exists(), f"{SCRIPT} is missing: pip install -e . registers it"
    result = zarr_manifest("--help")
    assert result.returncode == 0
    for command in ("scan", "info", "verify", "to-kerchunk", "demo"):
        assert command in result.stdout


def test_scan_info_verify_export_in_processes(archive, tmp_path):
    doc = tmp_path / "era.zarr"
    scan = zarr_manifest("scan", f"{archive}/*.nc", "-o", doc)
    assert (scan.returncode, scan.stderr) == (0, "")
    assert scan.stdout.startswith(f"scanned 2 files into {doc}: 5 arrays, 16 references, ")

    info = zarr_manifest("info", doc)
    assert (info.returncode, info.stderr) == (0, "")
    assert "├── t2m  float32 (time: 48, lat: 73, lon: 144)" in info.stdout

    verify = zarr_manifest("verify", doc)  # the sources lie outside the document's folder
    assert verify.returncode == 1
    assert verify.stdout.splitlines()[-1] == "2 sources checked (2 forbidden): 2 problems"


def test_errors_are_one_line_and_exit_2(tmp_path):
    result = zarr_manifest("info", tmp_path / "nothere.zarr")
    assert result.returncode == 2
    assert result.stdout == ""
    assert result.stderr.startswith("zarr-manifest: error: no chunk-manifest document at ")
    assert result.stderr.count("\n") == 1


def test_progress_bar_on_a_terminal(archive, tmp_path):
    controller, terminal = pty.openpty()
    try:
        process = subprocess.Popen(
            [str(SCRIPT), "scan", f"{archive}/*.nc", "-o", tmp_path / "tty.zarr"],
            stdout=subprocess.PIPE,
            stderr=terminal,
            text=True,
        )
        os.close(terminal)
        drawn = b""
        while True:
            try:
                data = os.read(controller, 4096)
            except OSError:  # the process closed the terminal
                break
            if not data:
                break
            drawn += data
        stdout, _ = process.communicate(timeout=120)
    finally:
        os.close(controller)
    assert process.returncode == 0
    assert b"scanning [" in drawn
    assert b"2/2 files" in drawn
    assert stdout.startswith("scanned 2 files into ")
