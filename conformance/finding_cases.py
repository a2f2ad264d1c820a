"""Refusals the specification was silent or unclear about until a second reader was written."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from conformance.case import CHANGED, FORBIDDEN, INVALID, Case, Cases
from conformance.refusal_cases import config, refused, relative


def syntax_findings() -> Cases:
    """Numbers, keys and paths that parse but are malformed."""
    yield (
        "invalid-exponent-offset",
        "an offset written with an exponent (1.9e1): not an integer",
        refused(
            INVALID,
            "json",
            lambda case: case.text("a/manifest.json", '"offset":19', '"offset":1.9e1'),
        ),
    )
    yield (
        "invalid-duplicate-key",
        "a chunk key written twice in manifest.json (JSON parsers differ on which wins)",
        refused(
            INVALID,
            "json",
            lambda case: case.text(
                "a/manifest.json", "{", '{"0.0":{"path":"data/a.bin","offset":0,"length":19},'
            ),
        ),
    )
    yield (
        "invalid-backslash",
        "a relative path with a backslash (malformed, not an escape)",
        refused(INVALID, "json", relative("data\\a.bin")),
    )
    yield (
        "invalid-empty-segment",
        "a relative path with an empty segment (malformed, not an escape)",
        refused(INVALID, "json", relative("data//a.bin")),
    )


def path_findings() -> Cases:
    """Absolute paths that reach past an allowed prefix: by '..', a partial segment, a symbolic link."""

    def secret(case: Case) -> Path:
        """A copy of the source outside the document and outside the allowed prefix."""
        (case.dir / "outside").mkdir(exist_ok=True)
        shutil.copy(case.data("a.bin"), case.dir / "secret.bin")
        case.allow.append(f"{case.dir}/outside/")
        return case.dir / "secret.bin"

    def absolute_dotdot(case: Case) -> None:
        secret(case)
        path = f"{case.dir}/outside/../secret.bin"
        case.json("a/manifest.json", lambda m: m["0.0"].update(path=path))

    yield (
        "forbidden-absolute-dotdot",
        "an absolute path that climbs out of an allowed prefix with '..'",
        refused(FORBIDDEN, "json", absolute_dotdot),
    )

    def partial_segment(case: Case) -> None:
        (case.dir / "outside-not-allowed").mkdir()
        shutil.copy(case.data("a.bin"), case.dir / "outside-not-allowed" / "a.bin")
        case.allow.append(f"{case.dir}/outside")
        path = f"{case.dir}/outside-not-allowed/a.bin"
        case.json("a/manifest.json", lambda m: m["0.0"].update(path=path))

    yield (
        "forbidden-allow-partial-segment",
        "an allowed prefix matches whole path segments ('/x/outside' does not allow '/x/outside-not-allowed/')",
        refused(FORBIDDEN, "json", partial_segment),
    )

    def absolute_symlink(case: Case) -> None:
        secret(case)
        os.symlink("../secret.bin", case.dir / "outside" / "link.bin")
        path = f"{case.dir}/outside/link.bin"
        case.json("a/manifest.json", lambda m: m["0.0"].update(path=path))

    yield (
        "forbidden-absolute-symlink",
        "an absolute path under an allowed prefix that is a symbolic link out of it",
        refused(FORBIDDEN, "json", absolute_symlink),
    )


def fingerprint_findings() -> Cases:
    """Fingerprints that do not fit the sources or the path table."""

    def unused_fingerprint(case: Case) -> None:
        case.array_json(
            "a",
            lambda meta: meta["storage_transformers"][0]["configuration"]["sources"].update(
                {"data/other.bin": {"size": 10}}
            ),
        )

    yield (
        "invalid-fingerprint-unused",
        "a fingerprint for a path no reference uses (JSON encoding)",
        refused(INVALID, "json", unused_fingerprint),
    )

    def fingerprint_not_in_table(case: Case) -> None:
        case.json(
            "a/manifest/zarr.json",
            lambda g: g["attributes"]["sources"].update({"data/other.bin": {"size": 10}}),
        )

    yield (
        "invalid-fingerprint-not-in-table",
        "a fingerprint for a path not in the path table (columnar encoding)",
        refused(INVALID, "columnar", fingerprint_not_in_table),
    )

    def grown(case: Case) -> None:
        with case.data("a.bin").open("ab") as f:
            f.write(b"appended since the scan")

    yield (
        "changed-source-size",
        "a source whose size is no longer the recorded one",
        refused(CHANGED, "json", grown),
    )

    def truncated(case: Case) -> None:
        config(sources={})(case)
        file = case.data("a.bin")
        file.write_bytes(file.read_bytes()[:-5])

    yield (
        "changed-source-truncated",
        "a source (without fingerprint) shorter than the end of a reference",
        refused(CHANGED, "json", truncated),
    )
