"""The chunk-manifest document: source paths, write modes, fingerprints, versions and prior
art, documents in object storage and over HTTP."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from document_samples import ENCODINGS, read_all, sample_group, t2m_data

import zarr_manifest_store as zms
from conformance.build import source_array
from zarr_manifest_store.io.allow import AllowList

# ---------------------------------------------------------------------- paths


def test_sources_inside_the_document_are_relative_and_move_with_it(tmp_path):
    g, expected = sample_group(tmp_path / "doc.zarr" / "data")
    zms.write_manifest(g, tmp_path / "doc.zarr")
    manifest = json.loads((tmp_path / "doc.zarr/t2m/manifest.json").read_text())
    assert manifest["0.0"]["path"] == "data/t2m.bin"

    shutil.move(tmp_path / "doc.zarr", tmp_path / "moved.zarr")
    store = zms.ManifestStore.open(tmp_path / "moved.zarr")  # nothing to allow: all inside
    got = read_all(store, expected)
    np.testing.assert_array_equal(got["sub/codes"], expected["sub/codes"])
    assert store.root["t2m"].manifest.paths == (str(tmp_path / "moved.zarr/data/t2m.bin"),)


def test_path_modes(tmp_path):
    inside, _ = sample_group(tmp_path / "doc.zarr" / "data")
    zms.write_manifest(inside, tmp_path / "doc.zarr", paths="absolute")
    manifest = json.loads((tmp_path / "doc.zarr/t2m/manifest.json").read_text())
    assert manifest["0.0"]["path"] == str((tmp_path / "doc.zarr/data/t2m.bin").resolve())

    outside, _ = sample_group(tmp_path / "data")
    with pytest.raises(ValueError, match=r"t2m\.bin' lies outside the document folder"):
        zms.write_manifest(outside, tmp_path / "other.zarr", paths="relative")
    with pytest.raises(ValueError, match="paths must be"):
        zms.write_manifest(outside, tmp_path / "other.zarr", paths="posix")


def test_relative_paths_given_in_memory_are_relative_to_the_working_directory(
    tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    a = source_array(tmp_path / "a.bin", np.arange(4.0), chunks=(2,), written_as="a.bin")
    zms.write_manifest(zms.ManifestGroup(arrays={"a": a}), "out.zarr", paths="absolute")
    manifest = json.loads((tmp_path / "out.zarr/a/manifest.json").read_text())
    assert manifest["0"]["path"] == str(tmp_path / "a.bin")


def test_absolute_sources_need_an_allowed_prefix(tmp_path):
    g, expected = sample_group(tmp_path / "data")
    zms.write_manifest(g, tmp_path / "out.zarr")

    store = zms.ManifestStore.open(tmp_path / "out.zarr")
    with pytest.raises(PermissionError) as info:
        zarr.open_group(store, mode="r")["t2m"][:]
    message = str(info.value)
    assert str((tmp_path / "data" / "t2m.bin").resolve()) in message  # the source
    assert str(tmp_path / "out.zarr") in message  # what is allowed: the document's folder
    assert "allow=[" in message  # and how to allow more
    assert re.search(r"chunk 't2m/c/\d/\d'", message)  # and which chunk was being read

    with pytest.raises(PermissionError):
        read_all(
            zms.ManifestStore.open(tmp_path / "out.zarr", allow=[str(tmp_path / "elsewhere")]),
            ["t2m"],
        )
    allowed = zms.ManifestStore.open(tmp_path / "out.zarr", allow=[str(tmp_path / "data")])
    np.testing.assert_array_equal(read_all(allowed, ["t2m"])["t2m"], expected["t2m"])
    one = zms.ManifestStore.open(tmp_path / "out.zarr", allow=tmp_path / "data")  # not a list
    assert one.sources.allow == (str(tmp_path / "out.zarr"), str(tmp_path / "data"))
    listed = zms.ManifestStore.open(tmp_path / "out.zarr", allow=AllowList([tmp_path / "data"]))
    assert listed.sources.allow == one.sources.allow
    np.testing.assert_array_equal(read_all(listed, ["t2m"])["t2m"], expected["t2m"])


def write_with_path(tmp_path: Path, path: str, encoding: str = "json") -> Path:
    """A one-chunk document whose single reference is rewritten to ``path``."""
    doc = tmp_path / "doc.zarr"
    a = source_array(doc / "data" / "a.bin", np.arange(4.0), chunks=(4,), fingerprint=False)
    zms.write_manifest(zms.ManifestGroup(arrays={"a": a}), doc, encoding=encoding)
    if encoding == "json":
        file = doc / "a/manifest.json"
        manifest = json.loads(file.read_text())
        manifest["0"]["path"] = path
        file.write_text(json.dumps(manifest))
    else:
        file = doc / "a/manifest/zarr.json"
        group = json.loads(file.read_text())
        group["attributes"]["paths"] = [path]
        file.write_text(json.dumps(group))
    return doc


@pytest.mark.parametrize("encoding", ENCODINGS)
@pytest.mark.parametrize(
    "path",
    [
        "../outside.bin",
        "data/../../outside.bin",
        "%2e%2e/outside.bin",
        "data/%2E%2E/%2e%2e/x",
        "a/%2f/b",
        "./data/a.bin",
    ],
)
def test_relative_paths_cannot_leave_the_document(tmp_path, path, encoding):
    (tmp_path / "outside.bin").write_bytes(bytes(64))
    doc = write_with_path(tmp_path, path, encoding)
    store = zms.ManifestStore.open(doc, allow=[str(tmp_path)])  # even with the parent allowed
    with pytest.raises(PermissionError, match="leave the document folder"):
        zarr.open_group(store, mode="r")["a"][:]


@pytest.mark.parametrize("path", ["a\\b.bin", "data//a.bin", "data/a.bin/", "da\x00ta/a.bin"])
def test_malformed_relative_paths_are_manifest_errors(tmp_path, path):
    doc = write_with_path(tmp_path, path)
    with pytest.raises(zms.ManifestError, match="relative path"):
        zms.ManifestStore.open(doc, load=True)


def test_a_symlink_cannot_lead_a_relative_path_out(tmp_path):
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "a.bin").write_bytes(np.arange(4.0).tobytes())
    doc = write_with_path(tmp_path, "link/a.bin")
    os.symlink(tmp_path / "secret", doc / "link")
    store = zms.ManifestStore.open(doc, allow=[str(tmp_path / "secret")])
    with pytest.raises(PermissionError, match="resolves outside the document folder"):
        zarr.open_group(store, mode="r")["a"][:]


@pytest.mark.parametrize("path", ["/etc/passwd", "file:///etc/passwd", "s3://other-bucket/x.nc"])
def test_absolute_hostile_paths_are_refused(tmp_path, path):
    doc = write_with_path(tmp_path, path)
    store = zms.ManifestStore.open(doc, allow=[str(tmp_path)])
    with pytest.raises(PermissionError, match=r"outside the allowed prefixes.*allow=\["):
        zarr.open_group(store, mode="r")["a"][:]


# ---------------------------------------------------------------------- modes


def test_mode_w_minus_refuses_and_w_replaces_keeping_other_files(tmp_path):
    doc = tmp_path / "doc.zarr"
    g, expected = sample_group(doc / "data")
    zms.write_manifest(g, doc, encoding="columnar")
    with pytest.raises(FileExistsError, match="mode='w'"):
        zms.write_manifest(g, doc)

    only_sub = zms.ManifestGroup(groups={"sub": g["sub"]})
    zms.write_manifest(only_sub, doc, mode="w", encoding="json")

    assert not (doc / "t2m").exists() or not any((doc / "t2m").rglob("*.json"))
    assert (doc / "data/t2m.bin").is_file()  # sources kept in the folder are left alone
    store = zms.ManifestStore.open(doc)
    assert list(store.root) == ["sub"]
    np.testing.assert_array_equal(
        read_all(store, ["sub/codes"])["sub/codes"], expected["sub/codes"]
    )


def test_writing_into_a_folder_that_holds_only_sources_is_fine(tmp_path):
    g, expected = sample_group(tmp_path / "doc.zarr" / "data")
    zms.write_manifest(g, tmp_path / "doc.zarr")  # mode "w-": the folder exists, but no document
    store = zms.ManifestStore.open(tmp_path / "doc.zarr")
    np.testing.assert_array_equal(read_all(store, ["t2m"])["t2m"], expected["t2m"])


# ---------------------------------------------------------------------- fingerprints


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_fingerprints_round_trip_keyed_by_resolved_path(tmp_path, encoding):
    doc = tmp_path / "doc.zarr"
    a = source_array(doc / "data" / "a.bin", np.arange(8.0), chunks=(4,))
    fp = zms.manifest.Fingerprint(
        size=(doc / "data" / "a.bin").stat().st_size, mtime_ns=123, etag="abc"
    )
    a = a.with_manifest(
        zms.ChunkManifest(
            paths=a.manifest.paths,
            path_index=a.manifest.path_index,
            offsets=a.manifest.offsets,
            lengths=a.manifest.lengths,
            fingerprints={a.manifest.paths[0]: fp},
        )
    )
    zms.write_manifest(zms.ManifestGroup(arrays={"a": a}), doc, encoding=encoding)

    manifest = zms.ManifestStore.open(doc).root["a"].manifest
    assert dict(manifest.fingerprints) == {str(doc / "data/a.bin"): fp}
    assert not manifest.loaded  # fingerprints come without loading the manifest
    assert dict(manifest.load().fingerprints) == {str(doc / "data/a.bin"): fp}


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_a_reference_past_the_recorded_size_is_refused(tmp_path, encoding):
    doc = tmp_path / "doc.zarr"
    a = source_array(doc / "data" / "a.bin", np.arange(8.0), chunks=(4,))
    size = (doc / "data" / "a.bin").stat().st_size
    bad = zms.ChunkManifest(
        paths=a.manifest.paths,
        path_index=a.manifest.path_index,
        offsets=a.manifest.offsets,
        lengths=a.manifest.lengths,
        fingerprints={a.manifest.paths[0]: zms.manifest.Fingerprint(size=size - 1)},
    )
    zms.write_manifest(
        zms.ManifestGroup(arrays={"a": a.with_manifest(bad)}), doc, encoding=encoding
    )
    store = zms.ManifestStore.open(doc)
    with pytest.raises(
        zms.ManifestError, match=rf"chunk '1': offset \+ length = {size} lies past the end"
    ):
        zarr.open_group(store, mode="r")["a"][:]


# ---------------------------------------------------------------------- versions and prior art


def edit_transformer(doc: Path, array: str, **changes) -> None:
    """Change the transformer configuration in both the array's zarr.json and the root's copy."""
    for file, keys in (
        (doc / array / "zarr.json", []),
        (doc / "zarr.json", ["consolidated_metadata", "metadata", array]),
    ):
        document = json.loads(file.read_text())
        node = document
        for key in keys:
            node = node[key]
        node["storage_transformers"][0]["configuration"].update(changes)
        file.write_text(json.dumps(document))


def test_newer_minor_versions_are_read_and_unknown_fields_ignored(tmp_path):
    g, expected = sample_group(tmp_path / "doc.zarr" / "data")
    zms.write_manifest(g, tmp_path / "doc.zarr")
    edit_transformer(tmp_path / "doc.zarr", "t2m", version="1.7", compression_hint="none")
    np.testing.assert_array_equal(
        read_all(zms.ManifestStore.open(tmp_path / "doc.zarr"), ["t2m"])["t2m"], expected["t2m"]
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"version": "2.0"}, "version '2.0' is not supported"),
        ({"version": "1"}, r"\]\.storage_transformers\[0\].configuration.version: Expected"),
        ({"encoding": "parquet"}, r"configuration.encoding: Invalid enum value 'parquet'"),
        ({"version": 1.0}, r"version: Expected `str`, got `float`"),
    ],
)
def test_unknown_versions_and_encodings_are_refused(tmp_path, change, message):
    g, _ = sample_group(tmp_path / "doc.zarr" / "data")
    zms.write_manifest(g, tmp_path / "doc.zarr")
    edit_transformer(tmp_path / "doc.zarr", "t2m", **change)
    with pytest.raises(zms.ManifestError, match=message) as info:
        zms.ManifestStore.open(tmp_path / "doc.zarr")
    assert "doc.zarr/zarr.json: field consolidated_metadata.metadata['t2m']" in str(info.value)


def test_prior_art_chunk_manifest_json_documents_are_read(tmp_path):
    """As VirtualiZarr's early ``dataset_to_zarr`` wrote them: no consolidated metadata."""
    doc = tmp_path / "prior.zarr"
    a = source_array(
        tmp_path / "data" / "t.bin", t2m_data(), chunks=(4, 5), dimension_names=["y", "x"]
    )
    doc.mkdir()
    (doc / "zarr.json").write_text(
        json.dumps({"zarr_format": 3, "node_type": "group", "attributes": {"a": 1}})
    )
    meta = a.metadata.to_dict()
    meta["storage_transformers"] = [
        {"name": "chunk-manifest-json", "configuration": {"manifest": "./manifest.json"}}
    ]
    (doc / "t2m").mkdir()
    (doc / "t2m" / "zarr.json").write_text(json.dumps(meta))
    (doc / "t2m" / "manifest.json").write_text(json.dumps(a.manifest.to_dict()))

    store = zms.ManifestStore.open(doc, allow=[str(tmp_path / "data")])
    assert store.root.attributes == {"a": 1}
    np.testing.assert_array_equal(read_all(store, ["t2m"])["t2m"], t2m_data())


# ---------------------------------------------------------------------- remote documents


def test_a_document_on_s3_opens_in_one_request_and_reads_lazily(s3, tmp_path):
    fs, bucket, server = s3
    g, expected = sample_group(tmp_path / "data")
    # sources on S3 too: upload them and point the manifests there
    for local in (tmp_path / "data").rglob("*.bin"):
        fs.put_file(str(local), f"{bucket}/data/{local.relative_to(tmp_path / 'data')}")
    prefix = str((tmp_path / "data").resolve())
    moved = zms.ManifestGroup(
        arrays={
            "t2m": g["t2m"].with_manifest(
                g["t2m"].manifest.rename_paths(lambda p: p.replace(prefix, f"s3://{bucket}/data"))
            )
        },
        attributes=g.attributes,
    )
    url = f"s3://{bucket}/doc.zarr"
    zms.write_manifest(moved, url, storage_options=server.storage_options, encoding="columnar")
    assert fs.exists(f"{bucket}/doc.zarr/t2m/manifest/offset/c/0/0")

    server.requests.clear()
    store = zms.ManifestStore.open(
        url, storage_options=server.storage_options, allow=[f"s3://{bucket}/data/"]
    )
    # one GET of the root zarr.json (s3fs adds a HEAD to size it), no listing, no manifest
    assert server.requests.count("GET") == 1
    assert server.requests.count("GET", "/doc.zarr/zarr.json") == 1
    assert server.requests.count() == server.requests.count(path_contains="/doc.zarr/zarr.json")
    group = zarr.open_group(store, mode="r")
    np.testing.assert_array_equal(group["t2m"][:4, :5], expected["t2m"][:4, :5])
    # the manifest group, the block of its 3 columns, and the inline bytes of chunk (0, 1)
    assert server.requests.count("GET", "/doc.zarr/t2m/manifest/") == 5
    np.testing.assert_array_equal(group["t2m"][:], expected["t2m"])


def test_a_document_over_http_opens_without_listing(http_server, tmp_path):
    doc = http_server.root / "doc.zarr"
    g, expected = sample_group(doc / "data")
    zms.write_manifest(g, doc)
    url = f"{http_server.url}/doc.zarr"
    store = zms.ManifestStore.open(url, storage_options={"skip_instance_cache": True})
    assert store.root["t2m"].manifest.paths[0] == f"{url}/data/t2m.bin"
    np.testing.assert_array_equal(read_all(store, ["t2m"])["t2m"], expected["t2m"])
