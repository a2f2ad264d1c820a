"""The conformance adapter of zarr-manifest-store, in process or as a command.

In process: the runner calls :func:`read` and :func:`category`. As a command
(the protocol other implementations follow):

    python -m conformance.adapters.zarr_manifest_store DOCUMENT OUTPUT [--allow PREFIX]...
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import zarr

import zarr_manifest_store as zms

CATEGORIES = (
    (zms.ManifestError, "invalid-document"),
    (PermissionError, "forbidden-path"),
    (FileNotFoundError, "missing-source"),
    (zms.SourceChangedError, "source-changed"),
)


def read(document: str, allow: list[str]) -> dict[str, np.ndarray]:
    """Every array of the document, by path (``""`` for a root array), read in full."""
    store = zms.ManifestStore.open(document, allow=allow)
    with zarr.config.set({"array.rectilinear_chunks": True}):
        node = zarr.open(store, mode="r")
        if isinstance(node, zarr.Array):
            return {"": node[...]}
        return {
            path: member[...]
            for path, member in node.members(max_depth=None)
            if isinstance(member, zarr.Array)
        }


def category(error: BaseException) -> str | None:
    """The refusal category of an error, or None if it is not a refusal."""
    for kind, name in CATEGORIES:
        if isinstance(error, kind):
            return name
    return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("document")
    parser.add_argument("output", type=Path)
    parser.add_argument("--allow", action="append", default=[])
    args = parser.parse_args()
    args.output.mkdir(parents=True, exist_ok=True)
    try:
        arrays = read(args.document, args.allow)
    except Exception as e:
        found = category(e)
        if found is None:
            raise
        result = {"error": found, "message": str(e)}
    else:
        files = {}
        for i, (path, values) in enumerate(sorted(arrays.items())):
            values = np.asarray(values)
            if values.dtype.kind in "OT":  # variable-length text or bytes: fixed-width in .npy
                kind = bytes if values.size and isinstance(values.flat[0], bytes) else str
                values = np.array([kind(v) for v in values.ravel()], dtype=kind).reshape(
                    values.shape
                )
            files[path] = f"array{i}.npy"
            np.save(args.output / files[path], values, allow_pickle=False)
        result = {"arrays": files}
    (args.output / "result.json").write_text(json.dumps(result))


if __name__ == "__main__":
    main()
