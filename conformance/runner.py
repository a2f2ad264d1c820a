"""Run the conformance cases against an implementation, through its adapter.

Each case is copied to a scratch folder, ``@CASE@`` in its JSON files replaced
by that folder's absolute path, and handed to the adapter; the arrays it reads
are compared with ``expected/*.npy`` (dtype, shape, every value, NaN equal to
NaN), or its refusal with the expected error category. A valid document
refused as ``unsupported`` (a Zarr data type, codec or chunk grid the reader
lacks) is counted apart: neither passed nor failed.
"""

from __future__ import annotations

import importlib
import json
import shlex
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

CASES = Path(__file__).resolve().parent / "cases"
TOKEN = "@CASE@"
Outcome = tuple[dict[str, np.ndarray] | None, str | None]
"""What an adapter reports: the arrays it read, or the category of its refusal."""


class Adapter(Protocol):
    def __call__(self, document: Path, allow: list[str], scratch: Path) -> Outcome: ...


UNSUPPORTED = "unsupported"
"""The category of a refusal of a valid document for a Zarr feature the reader lacks (section 9)."""


@dataclass
class Result:
    case: str
    passed: bool
    detail: str = ""
    unsupported: bool = False
    """The reader refused a valid document as ``unsupported``: neither passed nor failed."""

    @property
    def outcome(self) -> str:
        return "PASS" if self.passed else "UNSUPPORTED" if self.unsupported else "FAIL"

    @property
    def failed(self) -> bool:
        return not (self.passed or self.unsupported)


def python_adapter(module_name: str) -> Adapter:
    """An in-process adapter: a module with ``read(document, allow)`` and ``category(error)``."""
    module = importlib.import_module(module_name)

    def run(document: Path, allow: list[str], scratch: Path) -> Outcome:
        try:
            return module.read(str(document), allow), None
        except Exception as e:
            found = module.category(e)
            if found is None:
                raise
            return None, found

    return run


class CommandAdapter:
    """An adapter run as ``COMMAND DOCUMENT OUTPUT [--allow PREFIX]...`` (see the README)."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __call__(self, document: Path, allow: list[str], scratch: Path) -> Outcome:
        output = scratch / "output"
        args = [*shlex.split(self.command), str(document), str(output)]
        for prefix in allow:
            args += ["--allow", prefix]
        done = subprocess.run(args, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            raise RuntimeError(f"the adapter exited with {done.returncode}: {done.stderr[-2000:]}")
        result = json.loads((output / "result.json").read_text())
        if "error" in result:
            return None, result["error"]
        return {
            path: np.load(output / name, allow_pickle=False)
            for path, name in result["arrays"].items()
        }, None


def command_adapter(command: str) -> Adapter:
    """An adapter run as a command (any language)."""
    return CommandAdapter(command)


def adapter_for(implementation: str) -> Adapter:
    """``conformance.adapters.<name>``, any importable adapter module, or else a command line."""
    if " " not in implementation and "/" not in implementation:
        for name in (f"conformance.adapters.{implementation}", implementation):
            try:
                importlib.import_module(name)
            except ModuleNotFoundError:
                continue
            return python_adapter(name)
    return command_adapter(implementation)


def case_names(cases: Path = CASES) -> list[str]:
    return sorted(p.parent.name for p in cases.glob("*/case.json"))


def run_case(name: str, adapter: Adapter, cases: Path = CASES) -> Result:
    with tempfile.TemporaryDirectory() as scratch_dir:
        scratch = Path(scratch_dir)
        folder = (scratch / name).resolve()
        shutil.copytree(cases / name, folder, symlinks=True)
        for file in folder.rglob("*.json"):
            file.write_text(file.read_text().replace(TOKEN, str(folder)))
        case = json.loads((folder / "case.json").read_text())
        try:
            arrays, refusal = adapter(folder / "document", case["allow"], scratch)
        except Exception as e:
            return Result(name, False, f"crashed: {type(e).__name__}: {e}")
        return _judge(name, case["expect"], arrays, refusal, folder)


def _judge(
    name: str,
    expect: dict[str, Any],
    arrays: dict[str, np.ndarray] | None,
    refusal: str | None,
    folder: Path,
) -> Result:
    if "error" in expect:
        if refusal == expect["error"]:
            return Result(name, True)
        got = f"refused as {refusal!r}" if refusal else "read the document"
        return Result(name, False, f"expected the refusal {expect['error']!r}, {got}")
    if arrays is None and refusal == UNSUPPORTED:
        return Result(name, False, "refused as unsupported", unsupported=True)
    if arrays is None:
        return Result(name, False, f"refused ({refusal!r}) a valid document")
    expected = {
        path: np.load(folder / file, allow_pickle=False) for path, file in expect["arrays"].items()
    }
    if set(arrays) != set(expected):
        return Result(name, False, f"arrays {sorted(arrays)}, expected {sorted(expected)}")
    for path, values in expected.items():
        problem = compare(values, np.asarray(arrays[path]))
        if problem:
            return Result(name, False, f"array {path!r}: {problem}")
    return Result(name, True)


def compare(expected: np.ndarray, actual: np.ndarray) -> str | None:
    """Why ``actual`` differs from ``expected``, or None if it is the same array."""
    if actual.shape != expected.shape:
        return f"shape {actual.shape}, expected {expected.shape}"
    if expected.dtype.kind in "US" and actual.dtype.kind in "OT":  # variable-length text, bytes
        same = actual.ravel().tolist() == expected.ravel().tolist()
        return None if same else "different strings"
    if actual.dtype != expected.dtype:
        return f"dtype {actual.dtype}, expected {expected.dtype}"
    if expected.dtype.kind in "fcmM":
        same = np.array_equal(actual, expected, equal_nan=True)
    else:  # bool, integers, bytes, structured: bit for bit
        same = np.ascontiguousarray(actual).tobytes() == np.ascontiguousarray(expected).tobytes()
    return None if same else "different values"


def run(
    implementation: str, selected: Callable[[str], bool] = lambda _: True, jobs: int = 1
) -> list[Result]:
    """Run the selected cases; ``jobs`` cases at a time for an adapter command (one in process)."""
    adapter = adapter_for(implementation)
    names = [name for name in case_names() if selected(name)]
    if jobs <= 1 or not isinstance(adapter, CommandAdapter):
        return [run_case(name, adapter) for name in names]
    with ThreadPoolExecutor(jobs) as pool:
        return list(pool.map(lambda name: run_case(name, adapter), names))
