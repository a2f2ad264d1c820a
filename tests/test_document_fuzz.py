"""A stored document is untrusted input: every malformed one is refused, cleanly.

Deterministic mutations of real documents (truncation, byte flips, every scalar
replaced by wrong types and extreme values, hostile paths), plus hypothesis.
Opening with ``load=True`` reads and validates every manifest; the only
acceptable outcomes are success or a ManifestError / PermissionError — never a
TypeError, KeyError, IndexError from deep inside, never a hang.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import struct
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import google_crc32c
import numpy as np
import pytest
import zarr
from document_samples import build_document
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import zarr_manifest_store as zms

REFUSALS = (zms.ManifestError, PermissionError)
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def small_blocks_document(folder: Path, encoding: str) -> Path:
    from zarr_manifest_store.document import columnar

    saved, columnar.BLOCK_REFERENCES = columnar.BLOCK_REFERENCES, 4  # several manifest blocks
    try:
        return build_document(folder, encoding)
    finally:
        columnar.BLOCK_REFERENCES = saved


@pytest.fixture(scope="module", params=["json", "columnar"])
def document(request, tmp_path_factory) -> Path:
    return small_blocks_document(tmp_path_factory.mktemp("fuzz"), request.param)


@pytest.fixture(scope="module")
def columnar_document(tmp_path_factory) -> Path:
    return small_blocks_document(tmp_path_factory.mktemp("fuzz"), "columnar")


def outcome(doc: Path) -> str:
    """``"ok"`` or ``"refused"``; anything else escapes and fails the test.

    Every manifest is loaded and validated, and every source path it names is put
    to the store's allow-list, as the first read of each would be.
    """
    start = time.perf_counter()
    try:
        store = zms.ManifestStore.open(doc, load=True)
        for _, node in store.root.walk():
            if isinstance(node, zms.ManifestArray):
                assert node.manifest.loaded
                for path in node.manifest.paths:
                    store.sources.check_allowed(path)
        result = "ok"
    except REFUSALS:
        result = "refused"
    assert time.perf_counter() - start < 5, "a malformed document must not take long to refuse"
    return result


class Mutate:
    """Replace one file of the document for the duration of a ``with`` block."""

    def __init__(self, file: Path, data: bytes) -> None:
        self.file, self.data = file, data

    def __enter__(self) -> None:
        self.original = self.file.read_bytes()
        self.file.write_bytes(self.data)

    def __exit__(self, *exc: object) -> None:
        self.file.write_bytes(self.original)


def document_files(doc: Path) -> list[Path]:
    return sorted(
        p for p in doc.rglob("*") if p.is_file() and "data" not in p.relative_to(doc).parts
    )


def read_files(doc: Path) -> list[Path]:
    """The files a reader opening with consolidated metadata actually reads."""
    return [
        p
        for p in document_files(doc)
        if p == doc / "zarr.json"
        or p.name == "manifest.json"
        or (p.parent.name == "manifest" and p.name == "zarr.json")
        or is_chunk(doc, p)
    ]


def is_chunk(doc: Path, file: Path) -> bool:
    """A chunk file of a columnar manifest array (``.../manifest/<column>/c/...``)."""
    parts = file.relative_to(doc).parts
    return "manifest" in parts and file.name != "zarr.json"


def test_the_unmutated_documents_open(document):
    assert outcome(document) == "ok"
    assert set(read_files(document)) <= set(document_files(document))
    assert len(read_files(document)) >= 3


def test_truncated_files_are_refused(document):
    for file in document_files(document):
        data = file.read_bytes()
        for cut in sorted({0, 1, len(data) // 2, len(data) - 1}):
            with Mutate(file, data[:cut]):
                result = outcome(document)
            if file in read_files(document):
                assert result == "refused", f"{file} cut at {cut}"


def test_every_flipped_byte_of_a_manifest_chunk_is_detected(columnar_document):
    document = columnar_document
    chunks = [p for p in read_files(document) if is_chunk(document, p) and p.name == "0"]
    assert len(chunks) >= 6  # the first chunk of every column of both arrays
    for file in chunks:
        data = file.read_bytes()
        for i in range(len(data)):
            flipped = bytearray(data)
            flipped[i] ^= 0xFF
            with Mutate(file, bytes(flipped)):
                assert outcome(document) == "refused", f"{file} byte {i}"


def test_flipped_bytes_in_json_files_never_crash(document):
    for file in document_files(document):
        if file.suffix != ".json" and file.name != "zarr.json":
            continue
        data = file.read_bytes()
        for i in range(0, len(data), max(1, len(data) // 15)):
            for value in (data[i] ^ 0xFF, ord('"')):
                flipped = bytearray(data)
                flipped[i] = value
                with Mutate(file, bytes(flipped)):
                    outcome(document)


WRONG = ["12", -1, 2**64, 2**63, 1.5, None, True, [], {}, "", "x" * 5000, float("nan")]
STRICT_INTEGERS = {
    "offset",
    "length",
    "size",
    "mtime_ns",
    "shape",
    "chunk_shape",
    "clevel",
    "typesize",
    "blocksize",
}


def leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from leaves(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from leaves(v, (*path, i))
    else:
        yield path, value


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = replaced(value[path[0]], path[1:], new)
    return copy


def test_every_scalar_replaced_by_wrong_types_and_extremes(document):
    for file in read_files(document):
        if file.name not in ("zarr.json", "manifest.json"):
            continue
        original = json.loads(file.read_text())
        for path, value in leaves(original):
            in_attributes = "attributes" in path and "paths" not in path and "sources" not in path
            for new in WRONG:
                if new is value or (isinstance(value, str) and new == ""):
                    continue
                text = json.dumps(replaced(original, path, new), allow_nan=True).encode()
                with Mutate(file, text):
                    result = outcome(document)
                names = [key for key in path if isinstance(key, str)]
                strict = (
                    isinstance(value, int)
                    and not isinstance(value, bool)
                    and not in_attributes
                    and names[-1] in STRICT_INTEGERS
                )
                if strict and new == "12":
                    assert result == "refused", f"{file}: {path} = '12' was coerced"


def test_removed_fields_and_files_are_refused(document):
    for file in read_files(document):
        if file.name not in ("zarr.json", "manifest.json"):
            continue
        original = json.loads(file.read_text())
        for key in original:
            with Mutate(file, json.dumps({k: v for k, v in original.items() if k != key}).encode()):
                outcome(document)
    for file in read_files(document):
        moved = file.with_name(file.name + ".moved")
        file.rename(moved)
        try:
            if file == document / "zarr.json":  # no document at all
                with pytest.raises(FileNotFoundError, match="no chunk-manifest document"):
                    outcome(document)
            else:
                assert outcome(document) == "refused", f"{file} removed"
        finally:
            moved.rename(file)


HOSTILE_PATHS = [
    "../escape.bin",
    "data/../../escape.bin",
    "%2e%2e/escape.bin",
    "%2E%2e%2fescape.bin",
    "data\\..\\..\\escape.bin",
    "/etc/passwd",
    "file:///etc/passwd",
    "s3://bucket/key",
    "http://169.254.169.254/latest/meta-data",
    "",
    "data//t.bin",
    "\x00",
    "data/t.bin\n",
]


def set_first_path(doc: Path, path: str) -> tuple[Path, bytes]:
    """The manifest file of array ``t`` with its first source path replaced by ``path``."""
    json_file = doc / "t" / "manifest.json"
    if json_file.exists():
        manifest = json.loads(json_file.read_text())
        manifest["0.0"]["path"] = path
        return json_file, json.dumps(manifest).encode()
    group_file = doc / "t" / "manifest" / "zarr.json"
    group = json.loads(group_file.read_text())
    group["attributes"]["paths"][0] = path
    group["attributes"]["sources"] = {}
    return group_file, json.dumps(group).encode()


@pytest.mark.parametrize("path", HOSTILE_PATHS)
def test_hostile_paths_are_refused(document, path):
    file, data = set_first_path(document, path)
    with Mutate(file, data):
        assert outcome(document) == "refused"


@FUZZ
@given(path=st.text(min_size=1, max_size=30))
def test_no_path_text_reaches_outside_the_document(document, path):
    file, data = set_first_path(document, path)
    with Mutate(file, data):
        try:
            store = zms.ManifestStore.open(document, load=True)
        except REFUSALS:
            return
    root = os.path.realpath(document)
    for _, node in store.root.walk():
        if isinstance(node, zms.ManifestArray):
            for resolved in node.manifest.paths:
                inside = os.path.realpath(resolved).startswith(root + os.sep)
                if not inside:  # then the store must refuse to read it
                    with pytest.raises(PermissionError):
                        store.sources.check_allowed(resolved)


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4)
    ),
    max_leaves=12,
)
entries = st.dictionaries(
    st.sampled_from(["0.0", "0.1", "2.4", "0", "9.9", "0.0.0", "a.b", "01.0"]),
    st.fixed_dictionaries(
        {},
        optional={
            "path": st.sampled_from(["data/t.bin", "data/c.bin", "../x"]) | st.text(max_size=5),
            "offset": st.integers(min_value=-5, max_value=2**65) | json_values,
            "length": st.integers(min_value=-5, max_value=2**65) | json_values,
            "data": st.sampled_from(["AAAA", "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "!!"])
            | json_values,
        },
    )
    | json_values,
    max_size=5,
)


@FUZZ
@given(content=entries | json_values)
def test_arbitrary_json_manifests(document, content):
    file = document / "t" / "manifest.json"
    if not file.exists():
        file = document / "t" / "manifest" / "zarr.json"
        group = json.loads(file.read_text())
        group["attributes"] = content
        content = group
    with Mutate(file, json.dumps(content).encode()):
        outcome(document)


@FUZZ
@given(
    config=st.dictionaries(st.sampled_from(["version", "encoding", "sources", "x"]), json_values)
)
def test_arbitrary_transformer_configurations(document, config):
    file = document / "zarr.json"
    root = json.loads(file.read_text())
    root["consolidated_metadata"]["metadata"]["t"]["storage_transformers"][0]["configuration"] = (
        config
    )
    with Mutate(file, json.dumps(root).encode()):
        outcome(document)


@FUZZ
@given(payload=st.binary(max_size=200), header=st.booleans())
def test_arbitrary_chunk_bytes_with_a_valid_checksum(columnar_document, payload, header):
    document = columnar_document
    file = document / "t" / "manifest" / "offset" / "c" / "0" / "0"
    if header:  # a blosc header announcing the right size, so decompression itself is reached
        original = file.read_bytes()
        payload = (
            original[:4]
            + original[4:8]
            + original[8:12]
            + struct.pack("<I", 16 + len(payload))
            + payload
        )
    data = payload + struct.pack("<I", google_crc32c.value(payload))
    with Mutate(file, data):
        outcome(document)


def test_a_huge_declared_grid_is_refused_before_anything_is_built(document):
    file = document / "zarr.json"
    root = json.loads(file.read_text())
    meta = root["consolidated_metadata"]["metadata"]["t"]
    for shape, grid in (
        ([2**62, 10], {"name": "regular", "configuration": {"chunk_shape": [1, 2]}}),
        (
            [10**9, 10],
            {
                "name": "rectilinear",
                "configuration": {"kind": "inline", "chunk_shapes": [[[1, 10**9]], 2]},
            },
        ),
    ):
        huge = replaced(
            replaced(root, ("consolidated_metadata", "metadata", "t", "shape"), shape),
            ("consolidated_metadata", "metadata", "t", "chunk_grid"),
            grid,
        )
        with (
            Mutate(file, json.dumps(huge).encode()),
            pytest.raises(zms.ManifestError, match="max_chunks"),
        ):
            zms.ManifestStore.open(document)
    assert meta  # the original is untouched


def test_deeply_nested_json_is_refused(document):
    file = document / "zarr.json"
    with Mutate(file, b"[" * 100_000 + b"]" * 100_000):
        assert outcome(document) == "refused"
    with Mutate(
        file,
        b'{"zarr_format": 3, "node_type": "group", "attributes": '
        + b"[" * 50_000
        + b"]" * 50_000
        + b"}",
    ):
        outcome(document)


def test_a_refused_document_never_serves_data(tmp_path):
    """After a refusal nothing is read: the error surfaces where zarr asks for the chunk."""
    doc = build_document(tmp_path, "columnar")
    chunk = doc / "t" / "manifest" / "offset" / "c" / "0" / "0"
    chunk.write_bytes(chunk.read_bytes()[:-1] + b"\x00")
    store = zms.ManifestStore.open(doc)
    group = zarr.open_group(store, mode="r")
    np.testing.assert_array_equal(group["sub/c"][:], np.arange(12))
    with pytest.raises(zms.ManifestError, match="crc32c checksum mismatch"):
        group["t"][:]
    assert math.isnan(group["t"].fill_value)
    shutil.rmtree(doc)
