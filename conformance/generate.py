"""Generate the conformance cases (``conformance/cases/``) and the spec examples (``spec/examples/``).

    python -m conformance.generate

Every case is a folder: ``document/`` (the chunk-manifest document, its small
source files under ``document/data/`` when paths are relative), ``outside/``
(sources reached through absolute paths), ``expected/*.npy`` and ``case.json``.
Absolute paths are written with the token ``@CASE@`` for the case folder, which
the runner replaces after copying the case. Expected values come from the data
the sources were made from, never from reading the document back.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np

import zarr_manifest_store as zms
from conformance import finding_cases, layout_cases, refusal_cases, valid_cases
from conformance.build import source_array
from conformance.case import Case, Cases

HERE = Path(__file__).resolve().parent
CASES = HERE / "cases"
EXAMPLES = HERE.parent / "spec" / "examples"

FAMILIES = (
    valid_cases.number_cases,
    valid_cases.text_cases,
    valid_cases.codec_cases,
    layout_cases.reference_cases,
    layout_cases.grid_cases,
    layout_cases.key_cases,
    layout_cases.hierarchy_cases,
    layout_cases.source_cases,
    valid_cases.append_cases,
    valid_cases.prior_art_cases,
    refusal_cases.entry_refusals,
    refusal_cases.part_refusals,
    refusal_cases.metadata_refusals,
    refusal_cases.columnar_refusals,
    refusal_cases.path_refusals,
    finding_cases.syntax_findings,
    finding_cases.path_findings,
    finding_cases.fingerprint_findings,
    refusal_cases.node_path_cases,
)
"""Every family of cases, in the order they are built (their random draws depend on it)."""


def example_documents(root: Path) -> None:
    """Two small documents for the spec: one per encoding, sources inside, every kind of chunk."""
    data = np.arange(12, dtype="int16").reshape(3, 4)
    for encoding in ("json", "columnar"):
        doc = root / f"{encoding}.zarr"
        made = source_array(
            doc / "data" / "t.bin",
            data,
            chunks=(2, 2),
            missing={(1, 1)},
            inline={(0, 1)},
            fill_value=-1,
            dimension_names=["y", "x"],
            attributes={"units": "K"},
        )
        g = zms.ManifestGroup(arrays={"t": made}, attributes={"title": f"{encoding} example"})
        zms.write_manifest(g, doc, encoding=encoding)


def all_cases() -> Cases:
    for family in FAMILIES:
        yield from family()


def generate(cases: Path = CASES, examples: Path = EXAMPLES) -> list[str]:
    """Write every case under ``cases`` and the examples under ``examples``; return the names."""
    names = []
    with tempfile.TemporaryDirectory() as scratch:
        built = Path(scratch) / "cases"
        built.mkdir()
        for name, description, build in all_cases():
            case = Case(Path(scratch) / "work", name, description)
            build(case)
            case.finish(built)
            names.append(name)
        example_documents(Path(scratch) / "examples")
        for target, source in ((cases, built), (examples, Path(scratch) / "examples")):
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(source, target, symlinks=True)
    return names


if __name__ == "__main__":
    written = generate()
    print(f"{len(written)} cases in {CASES}; examples in {EXAMPLES}")
