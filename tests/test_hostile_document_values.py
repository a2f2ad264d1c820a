"""Hostile documents, the values side: bad values are ManifestErrors naming the file and the
field, and no mutation of a document's JSON lets anything else escape a reader.

Mutations run through hypothesis over both encodings (``json``, ``columnar``); anything that
could hang runs in a subprocess with a timeout.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from document_samples import PROMPTLY, build_document, open_and_read
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zarr_manifest_store as zms

FUZZ = settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# ---------------------------------------------------------------------- 5. error types


def edit_json(file: Path, edit) -> None:
    value = json.loads(file.read_text())
    edit(value)
    file.write_text(json.dumps(value))


def first_entry(manifest: dict) -> dict:
    return manifest[next(iter(manifest))]


def no_fingerprints(root: dict) -> None:
    for meta in root["consolidated_metadata"]["metadata"].values():
        for transformer in meta.get("storage_transformers", []):
            transformer["configuration"].pop("sources", None)


BAD_JSON_DOCUMENTS = {
    "NUL in an absolute path": (
        "manifest.json",
        lambda m: first_entry(m).update(path="/tmp/a\0b"),
        "contains a NUL character",
    ),
    "NUL in a relative path": (
        "manifest.json",
        lambda m: first_entry(m).update(path="data/a\0b"),
        "contains a NUL character",
    ),
    "NUL in a node name": (
        "zarr.json",
        lambda r: r["consolidated_metadata"]["metadata"].update({"a\0": {}}),
        "contains a NUL character",
    ),
    "a lone surrogate in a node name": (
        "zarr.json",
        lambda r: r["consolidated_metadata"]["metadata"].update({"\ud800": {}}),
        "lone surrogate",
    ),
    "deeply nested attributes": (
        "zarr.json",
        lambda r: r.update(attributes={"x": json.loads("[" * 900 + "]" * 900)}),
        "MAX_JSON_DEPTH=128",
    ),
    "deeply nested array attributes": (
        "zarr.json",
        lambda r: r["consolidated_metadata"]["metadata"]["sub/c"].update(
            attributes={"x": json.loads("[" * 990 + "]" * 990)}
        ),
        "MAX_JSON_DEPTH=128",
    ),
}


def spoiled(doc: Path, case: str) -> tuple[Path, str]:
    """Apply the edit of ``case`` to ``doc``: the file edited, and the problem its error names."""
    which, edit, problem = BAD_JSON_DOCUMENTS[case]
    file = doc / "zarr.json" if which == "zarr.json" else doc / "sub/c/manifest.json"
    edit_json(file, edit)
    return file, problem


@pytest.mark.parametrize("case", sorted(BAD_JSON_DOCUMENTS))
def test_bad_values_are_manifest_errors_naming_file_and_field(json_document, case):
    file, problem = spoiled(json_document, case)
    with pytest.raises(zms.ManifestError, match=problem) as refused:
        open_and_read(json_document)
    assert str(file) in str(refused.value)


def test_a_lone_surrogate_in_a_columnar_path_table_is_a_manifest_error(columnar_document):
    file = columnar_document / "t" / "manifest" / "zarr.json"
    edit_json(file, lambda g: g["attributes"]["paths"].__setitem__(0, "data/\ud800"))
    with pytest.raises(zms.ManifestError, match=f"{file}: .*lone surrogate"):
        open_and_read(columnar_document)


@pytest.mark.parametrize(
    "case",
    ["NUL in an absolute path", "a lone surrogate in a node name", "deeply nested attributes"],
)
def test_the_cli_prints_one_line_naming_the_file(json_document, case):
    file, problem = spoiled(json_document, case)
    for command in ("info", "verify"):
        result = subprocess.run(
            [sys.executable, "-m", "zarr_manifest_store.cli", command, str(json_document)],
            capture_output=True,
            text=True,
            timeout=PROMPTLY,
        )
        assert result.returncode == 2, result
        assert len(result.stderr.strip().splitlines()) == 1, result.stderr
        assert str(file) in result.stderr
        assert problem in result.stderr
        assert "--debug" not in result.stderr


# ---------------------------------------------------------------------- fuzz: only refusals escape

ESCAPES_ALLOWED = (zms.ManifestError, PermissionError, zms.SourceChangedError, OSError)

hostile_text = st.text(
    alphabet=st.sampled_from(["a", ".", "/", "%", "2", "e", "\0", "\t", "\ud800", "\udfff", "é"]),
    max_size=12,
)
hostile_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.sampled_from([2**62, 2**63 - 1, -1, 0, 1]),
    st.floats(allow_nan=True, allow_infinity=True),
    hostile_text,
)
hostile_values = st.recursive(
    hostile_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(hostile_text, inner, max_size=3)
    ),
    max_leaves=8,
) | st.integers(min_value=1, max_value=300).map(lambda n: json.loads("[" * n + "]" * n))


def json_leaves(value, path=()):
    """Every place in ``value`` (a leaf, or a container to replace whole), codecs left out:
    their configuration is validated by the codecs module."""
    yield path
    if isinstance(value, dict) and "codecs" not in path:
        for k, v in value.items():
            yield from json_leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from json_leaves(v, (*path, i))


def replace_at(value, path, new):
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = replace_at(value[path[0]], path[1:], new)
    return copy


def read_small_arrays(doc: Path) -> None:
    """Open ``doc`` and read each array whose chunks and whole are small (a mutated shape can
    make an array legitimately huge: what reading that costs is not the document's fault)."""
    import zarr

    store = zms.ManifestStore.open(doc)
    group = zarr.open_group(store, mode="r")
    todo = [group]
    while todo:
        node = todo.pop()
        for _, member in node.members():
            if isinstance(member, zarr.Group):
                todo.append(member)
            elif member.nbytes <= 2**24 and np.prod(member.chunks) * member.dtype.itemsize <= 2**24:
                member[...]


@FUZZ
@given(data=st.data(), new=hostile_values)
def test_mutated_documents_only_ever_raise_refusals(document, data, new):
    files = [document / "zarr.json", *sorted(document.glob("*/manifest/zarr.json"))]
    files += sorted(document.glob("*/manifest.json")) + sorted(document.glob("*/*/manifest.json"))
    file = data.draw(st.sampled_from(files))
    original = file.read_bytes()
    value = json.loads(original)
    path = data.draw(st.sampled_from(list(json_leaves(value))))
    try:
        file.write_text(json.dumps(replace_at(value, path, new), allow_nan=True))
        with contextlib.suppress(ESCAPES_ALLOWED):
            read_small_arrays(document)
    finally:
        file.write_bytes(original)


@pytest.mark.parametrize("encoding", ["json", "columnar"])
def test_a_remote_document_reads_within_its_limits(http_server, encoding):
    doc = build_document(http_server.root, encoding)
    url = f"{http_server.url}/{doc.name}"
    arrays = open_and_read(url, load=True)
    assert arrays["t"].shape == (6, 10)
    size = (doc / "zarr.json").stat().st_size
    with pytest.raises(zms.ManifestError, match=f"max_metadata_bytes={size - 1}"):
        zms.ManifestStore.open(url, max_metadata_bytes=size - 1)
    ranges = [r.range for r in http_server.requests.entries if r.path.endswith("zarr.json")]
    assert ranges
    assert all(r is not None for r in ranges)  # never asked for more than the limit
