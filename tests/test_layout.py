"""The package's layout as docs/concepts.md describes it: every module sits in one row of the
"Where things live" table, imports (also inside functions, and the modules a deferred scanner
names) reach only its own row or earlier ones, there are no import cycles, and nothing before
``xarray/`` imports xarray."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

import zarr_manifest_store

PACKAGE = Path(zarr_manifest_store.__file__).parent
CONCEPTS = PACKAGE.parent / "docs" / "concepts.md"
DEFERRED = r"zarr_manifest_store(\.\w+)+:\w+"
"""A ``Deferred`` scanner's ``"module:function"``: an import, made on first use."""


def table_rows() -> list[list[str]]:
    """The module names of each row of the table, in order (``io/`` -> ``io``)."""
    text = CONCEPTS.read_text(encoding="utf-8").split("## Where things live", 1)[1]
    rows = [line for line in text.split("\n## ", 1)[0].splitlines() if line.startswith("| `")]
    return [
        [
            name.removesuffix(".py").removesuffix("/")
            for name in re.findall(r"`([^`]+)`", row.split("|")[1])
        ]
        for row in rows
    ]


def modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE).with_suffix("").parts
        found[".".join(p for p in parts if p != "__init__")] = path
    return found


def imports(path: Path) -> set[str]:
    """The package's modules ``path`` imports, anywhere in the file."""
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.Constant) and re.fullmatch(DEFERRED, str(node.value)):
            names = [node.value.partition(":")[0]]  # a scanner imported on first use
        else:
            continue
        out.update(
            n.removeprefix("zarr_manifest_store.")
            for n in names
            if n.startswith("zarr_manifest_store.")
        )
    known = modules()
    return {n for n in out if n in known} | {
        n.rsplit(".", 1)[0] for n in out if n not in known and n.rsplit(".", 1)[0] in known
    }


def row_of(module: str, rows: list[list[str]]) -> int:
    """The table row of ``module``: ``_zarr`` below every row, the package itself above."""
    if module == "_zarr":
        return -1
    if module == "":
        return len(rows)
    top = module.split(".")[0]
    for i, names in enumerate(rows):
        if top in names:
            return i
    raise AssertionError(f"zarr_manifest_store.{module} is in no row of docs/concepts.md's table")


def test_every_module_is_in_the_table_and_imports_only_earlier_rows():
    rows = table_rows()
    assert rows, "docs/concepts.md has no 'Where things live' table"
    for module, path in modules().items():
        mine = row_of(module, rows)
        for target in imports(path):
            assert row_of(target, rows) <= mine, (
                f"{path.relative_to(PACKAGE)} imports {target}, listed after it in docs/concepts.md"
            )


def test_no_import_cycles():
    graph = {m: imports(p) - {m} for m, p in modules().items()}
    done: set[str] = set()

    def visit(module: str, trail: list[str]) -> None:
        if module in trail:
            raise AssertionError(" -> ".join([*trail[trail.index(module) :], module]))
        if module in done:
            return
        for target in graph.get(module, ()):
            if not (
                module == "" or module.startswith(target + ".")
            ):  # a package runs its own __init__
                visit(target, [*trail, module])
        done.add(module)

    for module in graph:
        visit(module, [])


@pytest.mark.parametrize("module", ["manifest", "io", "array", "document", "store", "scan", "ops"])
def test_nothing_before_the_xarray_layer_imports_xarray(module):
    for path in [*PACKAGE.joinpath(module).rglob("*.py"), PACKAGE / f"{module}.py"]:
        if path.exists():
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                names = (
                    [node.module or ""]
                    if isinstance(node, ast.ImportFrom)
                    else [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else []
                )
                assert not any(n == "xarray" or n.startswith("xarray.") for n in names), path
