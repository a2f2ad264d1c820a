"""What every conformance case is built with: :class:`Case` (a case being written in a scratch
folder), the outcome categories, and small helpers shared by the families of cases."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

import zarr_manifest_store as zms
from zarr_manifest_store.document import columnar

TOKEN = "@CASE@"

INVALID, FORBIDDEN, MISSING = "invalid-document", "forbidden-path", "missing-source"
CHANGED = "source-changed"
"""The categories of a refusal (``case.json``'s ``"error"``)."""

Build = Callable[["Case"], None]
Cases = Iterator[tuple[str, str, Build]]
"""A family of cases: each one's name, description and the function that builds it."""


class Case:
    """One case being built in a scratch folder."""

    def __init__(self, root: Path, name: str, description: str) -> None:
        self.name, self.description = name, description
        self.dir = (root / name).resolve()
        self.doc = self.dir / "document"
        self.allow: list[str] = []
        self.arrays: dict[str, np.ndarray] = {}
        self.error: str | None = None

    def data(self, name: str) -> Path:
        """A source file inside the document folder (written with a relative path)."""
        return self.doc / "data" / name

    def outside(self, name: str) -> Path:
        """A source file outside the document folder (written with an absolute path)."""
        return self.dir / "outside" / name

    def write(self, root: zms.ManifestGroup | zms.ManifestArray, **options: Any) -> None:
        zms.write_manifest(root, self.doc, **options)

    def expect(self, **arrays: np.ndarray) -> None:
        self.arrays.update({k.replace("__", "/"): v for k, v in arrays.items()})

    def text(self, key: str, old: str, new: str) -> None:
        """Replace ``old`` (which must be there) by ``new`` in the text of the document's file ``key``."""
        file = self.doc / key
        content = file.read_text()
        assert old in content, (key, old)
        file.write_text(content.replace(old, new, 1))

    def json(self, key: str, edit: Callable[[Any], Any]) -> None:
        """Edit the JSON file ``key`` of the document (``edit`` may change it in place)."""
        file = self.doc / key
        value = json.loads(file.read_text())
        changed = edit(value)
        file.write_text(json.dumps(value if changed is None else changed, indent=1))

    def array_json(self, path: str, edit: Callable[[dict[str, Any]], Any]) -> None:
        """Edit an array's metadata in its own zarr.json and in the root's consolidated copy."""
        self.json(f"{path}/zarr.json", edit)
        self.json("zarr.json", lambda root: edit(root["consolidated_metadata"]["metadata"][path]))

    def finish(self, destination: Path) -> None:
        prefix = str(self.dir)
        for file in self.dir.rglob("*.json"):
            file.write_text(file.read_text().replace(prefix, TOKEN))
        expected = {}
        for path, values in self.arrays.items():
            name = f"expected/{path or 'root'}.npy"
            (self.dir / name).parent.mkdir(parents=True, exist_ok=True)
            np.save(self.dir / name, values, allow_pickle=False)
            expected[path] = name
        case = {
            "description": self.description,
            "allow": [a.replace(prefix, TOKEN) for a in self.allow],
            "expect": {"error": self.error} if self.error else {"arrays": expected},
        }
        (self.dir / "case.json").write_text(json.dumps(case, indent=2) + "\n")
        shutil.copytree(self.dir, destination / self.name, symlinks=True)


@contextmanager
def block_references(n: int) -> Iterator[None]:
    """Columnar manifests chunked in blocks of ``n`` references (to exercise several blocks)."""
    saved, columnar.BLOCK_REFERENCES = columnar.BLOCK_REFERENCES, n
    try:
        yield
    finally:
        columnar.BLOCK_REFERENCES = saved


def group(**arrays: zms.ManifestArray) -> zms.ManifestGroup:
    """A group of ``arrays``, a double underscore in a name standing for a slash."""
    return zms.ManifestGroup(arrays={k.replace("__", "/"): v for k, v in arrays.items()})


def filled(data: np.ndarray, chunks: tuple[int, ...], missing: set, fill: Any) -> np.ndarray:
    """``data`` with the chunks in ``missing`` replaced by the fill value, as a reader must give."""
    out = data.copy()
    for coords in missing:
        out[tuple(slice(c * n, (c + 1) * n) for c, n in zip(coords, chunks, strict=True))] = fill
    return out


RNG = np.random.default_rng(20261128)
"""The one random stream of every family: the cases are built in one order
(``conformance.generate.FAMILIES``), so each draws the same values every time."""
