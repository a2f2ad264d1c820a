"""spec/: the JSON Schemas are valid, and agree with what the writer writes and the reader refuses."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from conformance.runner import CASES

SPEC = Path(__file__).resolve().parent.parent / "spec"
SCHEMAS = {p.name: json.loads(p.read_text()) for p in (SPEC / "schema").glob("*.schema.json")}
REGISTRY = Registry().with_resources(
    (schema["$id"], Resource.from_contents(schema)) for schema in SCHEMAS.values()
)


def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(SCHEMAS[name], registry=REGISTRY)


def errors(name: str, instance: object) -> list[str]:
    return [e.message for e in validator(name).iter_errors(instance)]


def documents() -> list[Path]:
    """Every document of this extension among the examples and the valid conformance cases."""
    found = sorted(SPEC.glob("examples/*.zarr"))
    for case in sorted(CASES.iterdir()):
        expect = json.loads((case / "case.json").read_text())["expect"]
        if "arrays" in expect and not case.name.startswith(("prior-art", "newer-minor")):
            found.append(case / "document")
    return found


def check_document(doc: Path) -> list[str]:
    """Schema errors of every file of ``doc``, prefixed with the file."""
    problems = []
    root = json.loads((doc / "zarr.json").read_text())
    arrays = (
        {"": root}
        if root["node_type"] == "array"
        else {
            path: meta
            for path, meta in root["consolidated_metadata"]["metadata"].items()
            if meta["node_type"] == "array"
        }
    )
    for path, meta in arrays.items():
        folder = doc / path
        problems += [f"{path}/zarr.json: {e}" for e in errors("array.schema.json", meta)]
        for manifest in manifests(folder, meta):
            problems += check_manifest(manifest, f"{path}/{manifest.relative_to(folder)}")
    return problems


def manifests(folder: Path, meta: dict) -> list[Path]:
    """The manifests of an array: its one manifest, or each of its parts'."""
    config = meta["storage_transformers"][0]["configuration"]
    if config["encoding"] == "parts":
        return [folder / part["manifest"] for part in config["parts"]]
    json_manifest = folder / "manifest.json"
    return [json_manifest if json_manifest.exists() else folder / "manifest"]


def check_manifest(manifest: Path, where: str) -> list[str]:
    """Schema errors of one manifest: a JSON file, or a columnar group and its columns."""
    if manifest.is_file():
        return [
            f"{where}: {e}"
            for e in errors("manifest-json.schema.json", json.loads(manifest.read_text()))
        ]
    group = json.loads((manifest / "zarr.json").read_text())
    problems = [f"{where}: {e}" for e in errors("columnar-group.schema.json", group)]
    for column in group["consolidated_metadata"]["metadata"]:
        own = json.loads((manifest / column / "zarr.json").read_text())
        problems += [f"{where}/{column}: {e}" for e in errors("columnar-array.schema.json", own)]
    return problems


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_schemas_are_valid_json_schema(name):
    Draft202012Validator.check_schema(SCHEMAS[name])


def test_examples_and_conformance_documents_follow_the_schemas():
    docs = documents()
    assert len(docs) >= 30
    problems = [f"{doc}: {p}" for doc in docs for p in check_document(doc)]
    assert not problems, "\n".join(problems[:10])


@pytest.mark.parametrize(
    "case",
    [
        "invalid-string-offset",
        "invalid-negative-offset",
        "invalid-bad-base64",
        "invalid-noncanonical-key",
        "invalid-unknown-encoding",
        "invalid-two-transformers",
    ],
)
def test_the_schemas_reject_malformed_documents(case):
    """Wire-level faults are schema errors. The rest only a reader sees: sizes, shapes, paths,
    sums past 2^63 - 1, and ``16.0`` for an integer (JSON Schema counts it as one)."""
    assert check_document(CASES / case / "document")


def test_the_spec_names_every_schema():
    text = (SPEC / "chunk-manifest.md").read_text()
    assert "schema/columnar-array.schema.json" in text
    for name in SCHEMAS:
        assert (SPEC / "schema" / name).is_file()
