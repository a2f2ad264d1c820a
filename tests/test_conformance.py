"""The conformance suite: this package passes every case, and the suite can tell when it should not."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from conformance import generate, runner
from conformance.adapters import zarr_manifest_store as adapter

pytestmark = pytest.mark.filterwarnings("ignore::zarr.errors.UnstableSpecificationWarning")

ALL = runner.case_names()

KNOWN_FAILURES: dict[str, str] = {}
"""Cases this package fails since the specification became precise about them (see the README)."""


def test_the_suite_covers_what_the_issue_asks_for():
    assert len(ALL) >= 30
    expectations = [json.loads((runner.CASES / n / "case.json").read_text())["expect"] for n in ALL]
    errors = {e["error"] for e in expectations if "error" in e}
    assert errors == {"invalid-document", "forbidden-path", "missing-source", "source-changed"}
    assert sum("arrays" in e for e in expectations) >= 30
    for needed in (
        "dtype-",
        "missing-chunks-json",
        "missing-chunks-columnar",
        "inline-json",
        "inline-columnar",
        "relative-nested",
        "absolute-paths",
        "prior-art-",
        "forbidden-symlink",
    ):
        assert any(n.startswith(needed) for n in ALL), needed


def test_this_package_passes_every_case_but_the_known_failures():
    results = runner.run("zarr_manifest_store")
    failures = {r.case: r.detail for r in results if not r.passed}
    assert set(failures) == set(KNOWN_FAILURES), failures
    assert len(results) == len(ALL)


def test_the_command_protocol():
    command = f"{sys.executable} -W ignore -m conformance.adapters.zarr_manifest_store"
    adapt = runner.adapter_for(command)
    for name in ("dtype-vlen-string", "forbidden-dotdot", "root-array"):
        result = runner.run_case(name, adapt)
        assert result.passed, result.detail


def permissive(document, allow, scratch):
    """A careless implementation: it reads whatever the document points at."""
    return runner.python_adapter(adapter.__name__)(document, ["/"], scratch)


def zeros(document, allow, scratch):
    """A careless implementation: every chunk reads as zeros (an unknown transformer ignored)."""
    arrays, _ = runner.python_adapter(adapter.__name__)(document, allow, scratch)
    if arrays is None:
        return {}, None
    return {k: np.zeros_like(v) for k, v in arrays.items()}, None


def test_a_careless_implementation_fails_the_suite():
    assert not runner.run_case("forbidden-absolute-not-allowed", permissive).passed
    assert runner.run_case("absolute-paths", permissive).passed
    failed = [
        n
        for n in ("dtype-float", "inline-json", "invalid-checksum", "forbidden-dotdot")
        if not runner.run_case(n, zeros).passed
    ]
    assert failed == ["dtype-float", "inline-json", "invalid-checksum", "forbidden-dotdot"]


@pytest.mark.parametrize(
    ("expected", "actual", "problem"),
    [
        (np.array([1.0, np.nan]), np.array([1.0, np.nan]), None),
        (np.array([1.0, np.nan]), np.array([1.0, 0.0]), "different values"),
        (np.array([1, 2], "int32"), np.array([1, 2], "int64"), "dtype int64, expected int32"),
        (np.array([1, 2]), np.array([[1, 2]]), "shape (1, 2), expected (2,)"),
        (np.array(["a", "bc"]), np.array(["a", "bc"], dtype=object), None),
        (np.array(["a", "bc"]), np.array(["a", "b"], dtype=object), "different strings"),
        (np.array(["2020", "NaT"], "M8[s]"), np.array(["2020", "NaT"], "M8[s]"), None),
    ],
)
def test_comparison(expected, actual, problem):
    assert runner.compare(expected, actual) == problem


def test_the_committed_cases_are_what_the_generator_writes(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        names = generate.generate(tmp_path / "cases", tmp_path / "examples")
    assert sorted(names) == ALL
    for fresh, committed in (
        (tmp_path / "cases", runner.CASES),
        (tmp_path / "examples", generate.EXAMPLES),
    ):
        differences = _differences(fresh, committed)
        assert not differences, f"run `python -m conformance.generate`: {differences[:5]}"


def _differences(fresh: Path, committed: Path) -> list[str]:
    """Files that differ or exist on one side only (git keeps no empty folders, so folders don't count)."""
    files = {p.relative_to(fresh) for p in fresh.rglob("*") if p.is_file()}
    kept = {p.relative_to(committed) for p in committed.rglob("*") if p.is_file()}
    out = sorted(str(p) for p in files ^ kept)
    out += sorted(
        str(p) for p in files & kept if (fresh / p).read_bytes() != (committed / p).read_bytes()
    )
    return out
