"""The JavaScript reader (js/, a zarrita.js store) against the conformance suite.

`make js` builds it (npm ci, tsc); these tests fail, rather than skip, when it
is not built, so that `make test` cannot pass without it.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import h5py
import numpy as np
import pytest

import zarr_manifest_store as zms
from conformance import report, runner

ROOT = Path(__file__).resolve().parents[1]
ADAPTER = "node js/conformance-adapter.js"
UNSUPPORTED = {"dtype-complex", "dtype-raw-bytes", "dtype-structured", "rectilinear-grid"}
"""Valid documents zarrita.js cannot represent (no complex, raw, struct type; no rectilinear grid)."""

pytestmark = [
    pytest.mark.xdist_group("js"),
    pytest.mark.filterwarnings("ignore::zarr.errors.UnstableSpecificationWarning"),
]


@pytest.fixture(scope="module")
def js_results(monkeypatch_module) -> list[runner.Result]:
    if shutil.which("node") is None:
        pytest.fail("node is required: the JavaScript reader is part of the test suite")
    if not (ROOT / "js" / "dist" / "conformance" / "adapter.js").exists():
        pytest.fail("the JavaScript reader is not built: run `make js`")
    monkeypatch_module.chdir(ROOT)
    return runner.run(ADAPTER, jobs=2)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as patch:
        yield patch


def test_the_javascript_reader_passes_every_case_it_supports(js_results):
    failures = [f"{r.case}: {r.detail}" for r in js_results if r.failed]
    assert not failures, "\n".join(failures)
    assert {r.case for r in js_results if r.unsupported} == UNSUPPORTED
    assert len(js_results) == len(runner.case_names())


def test_the_javascript_reader_passes_what_the_issue_requires(js_results):
    passed = {r.case for r in js_results if r.passed}
    required = [
        n
        for n in runner.case_names()
        if n.startswith(("codec-", "invalid-", "forbidden-", "missing-", "changed-", "columnar-"))
        or n
        in {
            "big-endian",
            "dtype-bool",
            "dtype-int",
            "dtype-uint",
            "dtype-float",
            "dtype-fixed-text",
            "missing-chunks-json",
            "missing-chunks-columnar",
            "inline-json",
            "inline-columnar",
            "nested-groups",
        }
    ]
    assert not [n for n in required if n not in passed]


def test_the_readme_reports_both_implementations(js_results):
    python = runner.run("zarr_manifest_store")
    names = list(report.IMPLEMENTATIONS)
    expected = report.replace(
        report.README.read_text(), report.table(dict(zip(names, [python, js_results], strict=True)))
    )
    assert report.README.read_text() == expected, "run `python -m conformance.report`"


def test_a_codec_zarrita_lacks_is_refused_as_unsupported(js_results, tmp_path):
    """HDF5's LZF filter (the package's own codec): refused as unsupported, not crashed on."""
    path = tmp_path / "lzf.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("a", data=np.arange(100) // 8, chunks=(50,), compression="lzf")
    zms.write_manifest(zms.scan(path), tmp_path / "doc.zarr")
    adapter = runner.command_adapter(ADAPTER)
    assert adapter(tmp_path / "doc.zarr", [str(tmp_path)], tmp_path) == (None, "unsupported")
