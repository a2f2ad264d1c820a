"""Write the pass counts of both implementations into ``conformance/README.md``.

    python -m conformance.report

Runs the suite against this package (in process) and the JavaScript reader
(``node js/conformance-adapter.js``, built by ``make js``), and replaces the
table between the README's ``results`` markers. ``tests/test_js_reader.py``
checks that the committed table is what this writes.
"""

from __future__ import annotations

import re
from pathlib import Path

from conformance.runner import Result, run

README = Path(__file__).resolve().parent / "README.md"
IMPLEMENTATIONS = {
    "zarr-manifest-store (Python, zarr-python)": "zarr_manifest_store",
    "@zarr-manifest/store (JavaScript, zarrita.js)": "node js/conformance-adapter.js",
}
BEGIN, END = "<!-- results: begin (python -m conformance.report) -->", "<!-- results: end -->"


def table(results: dict[str, list[Result]]) -> str:
    """A Markdown table of the counts, and the cases each implementation did not pass."""
    lines = [
        "| implementation | passed | failed | unsupported | cases |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    notes = []
    for name, rows in results.items():
        passed = sum(r.passed for r in rows)
        failed = [r.case for r in rows if r.failed]
        unsupported = [r.case for r in rows if r.unsupported]
        lines.append(f"| {name} | {passed} | {len(failed)} | {len(unsupported)} | {len(rows)} |")
        for label, cases in (("fails", failed), ("refuses as unsupported", unsupported)):
            if cases:
                notes.append(f"- {name} {label}: {', '.join(f'`{c}`' for c in cases)}")
    return "\n".join(lines + (["", *notes] if notes else []))


def replace(readme: str, block: str) -> str:
    """``readme`` with the text between the markers replaced by ``block``."""
    pattern = re.compile(re.escape(BEGIN) + ".*?" + re.escape(END), re.DOTALL)
    assert pattern.search(readme), f"{README} has no {BEGIN} ... {END} markers"
    return pattern.sub(lambda _: f"{BEGIN}\n{block}\n{END}", readme)


def main() -> None:
    results = {name: run(command, jobs=2) for name, command in IMPLEMENTATIONS.items()}
    README.write_text(replace(README.read_text(), table(results)))
    print(table(results))


if __name__ == "__main__":
    main()
