"""Formats load on first use: importing the package imports no format's libraries, and the
codecs of formats zarr lacks are found by zarr itself, through the package's entry points.

Each case runs in a fresh interpreter, since what it checks is what a process has imported.
"""

from __future__ import annotations

import importlib
import inspect
import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import zarr_manifest_store as zms
from zarr_manifest_store.scan import REGISTRY, Deferred

DEFERRED = ("fits", "tiff", "grib", "dmrpp", "zarr")
LIBRARIES = ("astropy", "tifffile", "pyproj", "imagecodecs", "eccodes")
CODECS = {
    "zarr_manifest_store.tiff_segment": "TiffSegmentCodec",
    "zarr_manifest_store.fits_rice_1": "RiceCodec",
    "zarr_manifest_store.grib": "GribCodec",
}


def loaded_in_fresh_process(code: str, watched: list[str]) -> list[str]:
    """Which of ``watched`` modules a new interpreter has imported once it ran ``code``."""
    script = "\n".join(
        [
            "import json, sys",
            textwrap.dedent(code),
            f"print(json.dumps([m for m in {watched!r} if m in sys.modules]))",
        ]
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    return json.loads(done.stdout.strip().splitlines()[-1])


def scanners() -> list[str]:
    return [f"zarr_manifest_store.scan.{name}.scanner" for name in DEFERRED]


def test_importing_the_package_imports_no_scanner_of_those_formats_nor_their_libraries():
    watched = [*LIBRARIES, *scanners(), "zarr_manifest_store.format_codecs.tiff"]
    assert loaded_in_fresh_process("import zarr_manifest_store", watched) == []


def test_identifying_a_file_imports_no_scanner(tmp_path):
    path = tmp_path / "image.fits"
    path.write_bytes(b"SIMPLE  =                    T".ljust(2880, b" "))
    code = "import zarr_manifest_store as zms; assert zms.scan.__module__; print(zms.scan)\n"
    code += f"from zarr_manifest_store.scan import sniff; assert sniff({str(path)!r}) == 'fits'"
    assert loaded_in_fresh_process(code, [*LIBRARIES, *scanners()]) == []


def test_a_scanner_is_imported_with_its_library_when_first_asked_for():
    code = "import zarr_manifest_store as zms; zms.scan_fits"
    loaded = loaded_in_fresh_process(code, ["astropy", "zarr_manifest_store.scan.fits.scanner"])
    assert loaded == ["astropy", "zarr_manifest_store.scan.fits.scanner"]


@pytest.mark.parametrize("name", DEFERRED)
def test_deferred_scanners_are_the_functions_with_their_signatures(name):
    fmt = REGISTRY[name]
    assert isinstance(fmt.scan, Deferred)
    function = getattr(zms, f"scan_{name}")
    assert fmt.scan.function is function
    assert fmt.scan.__name__ == function.__name__ == f"scan_{name}"
    assert inspect.signature(fmt.scan) == inspect.signature(function)
    assert {"storage_options", "drop_variables"} <= fmt.options
    assert function.__doc__


def test_an_unknown_name_is_still_an_attribute_error():
    with pytest.raises(AttributeError, match=r"'zarr_manifest_store' has no attribute 'scan_x'"):
        zms.scan_x  # noqa: B018
    scan_package = importlib.import_module("zarr_manifest_store.scan")
    with pytest.raises(AttributeError, match=r"'zarr_manifest_store.scan' has no attribute 'x'"):
        scan_package.x  # noqa: B018


def test_a_deferred_scanner_names_the_option_it_does_not_take(tmp_path):
    path = tmp_path / "image.fits"
    path.write_bytes(b"SIMPLE  =                    T".ljust(2880, b" "))
    with pytest.raises(TypeError, match=r"scan_fits\(\) \(the fits scanner\) takes no option 'x'"):
        zms.scan(path, x=1)


def test_plain_zarr_finds_the_format_codecs_through_entry_points():
    code = f"""
        from zarr.registry import get_codec_class
        names = {{name: get_codec_class(name).__name__ for name in {list(CODECS)!r}}}
        print(json.dumps(names))
    """
    script = "import json\n" + textwrap.dedent(code)
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True
    )
    assert json.loads(done.stdout.strip().splitlines()[-1]) == CODECS


def test_a_deferred_scanner_reads_its_file(tmp_path):
    astropy = pytest.importorskip("astropy.io.fits")
    path = tmp_path / "image.fits"
    astropy.PrimaryHDU(np.arange(6, dtype=">i2").reshape(2, 3)).writeto(path)
    assert zms.scan(path)["PRIMARY"].shape == (2, 3)
