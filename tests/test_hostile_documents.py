"""Hostile documents, the document side: what a document's own files and names can make a reader do.

Every file of a document is read only if what is opened is a regular file
inside the document folder, and only up to a named size; no name in a document
makes a reader fetch outside its folder, locally or over HTTP; nesting costs
O(size of the document); every refusal is a ManifestError (or PermissionError)
naming the file and the field. Anything that could hang or allocate runs in a
subprocess with a timeout and a capped address space.
"""

from __future__ import annotations

import json
import os
import posixpath
import resource
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from urllib.parse import unquote

import pytest
from document_samples import PROMPTLY, build_document, open_and_read

import zarr_manifest_store as zms
from zarr_manifest_store.document.location import MAX_METADATA_BYTES

REFUSALS = (zms.ManifestError, PermissionError)


def run_capped(code: str, *args: str, memory: int = 1 << 30, timeout: float = PROMPTLY):
    """Run Python ``code`` in a subprocess with its address space capped at ``memory`` bytes."""

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (memory, memory))

    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=cap,
    )


def first_chunk_file(doc: Path) -> Path:
    return next(p for p in sorted((doc / "t" / "manifest" / "offset").rglob("*")) if p.is_file())


def document_file(doc: Path, which: str) -> Path:
    """``zarr.json`` (the root's), ``manifest.json`` or ``chunk`` (a columnar manifest chunk)."""
    if which == "zarr.json":
        return doc / "zarr.json"
    if which == "manifest.json":
        return doc / "t" / "manifest.json"
    return first_chunk_file(doc)


def files_of(doc: Path) -> list[str]:
    names = ["zarr.json"]
    if (doc / "t" / "manifest.json").exists():
        names.append("manifest.json")
    else:
        names.append("chunk")
    return names


# ---------------------------------------------------------------------- 1. confinement


def test_the_unmodified_documents_read(document):
    arrays = open_and_read(document)
    assert arrays["t"].shape == (6, 10)
    assert arrays["sub/c"].shape == (12,)


def test_a_symlink_to_a_file_outside_the_folder_is_refused(document, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    for which in files_of(document):
        file = document_file(document, which)
        copy = outside / file.name
        shutil.copy(file, copy)  # the same bytes: only where they lie is wrong
        saved = file.with_name(file.name + ".saved")
        file.rename(saved)
        file.symlink_to(copy)
        try:
            with pytest.raises(PermissionError, match="outside the document folder"):
                open_and_read(document, load=True)
        finally:
            file.unlink()
            saved.rename(file)


def test_a_symlink_inside_the_folder_is_followed(json_document):
    manifest = json_document / "t" / "manifest.json"
    moved = json_document / "t" / "elsewhere.json"
    manifest.rename(moved)
    manifest.symlink_to("elsewhere.json")
    assert open_and_read(json_document)["t"].shape == (6, 10)


def test_a_subgroup_folder_linked_outside_is_refused(json_document, tmp_path):
    """Without consolidated metadata, the reader walks folders: a linked one leads outside."""
    root = json.loads((json_document / "zarr.json").read_text())
    del root["consolidated_metadata"]
    (json_document / "zarr.json").write_text(json.dumps(root))
    shutil.move(json_document / "sub", tmp_path / "sub")
    (json_document / "sub").symlink_to(tmp_path / "sub")
    with pytest.raises(PermissionError, match="outside the document folder"):
        zms.ManifestStore.open(json_document)


def test_a_file_swapped_for_a_link_between_check_and_open_is_refused(json_document, tmp_path):
    """What is opened is compared with what its real path names: a swap shows as a mismatch."""
    from zarr_manifest_store.document.location import Location

    location = Location(json_document)
    outside = tmp_path / "secret.json"
    outside.write_text("{}")
    manifest = json_document / "t" / "manifest.json"
    fd = os.open(outside, os.O_RDONLY)
    try:
        with pytest.raises(PermissionError, match="outside the document folder"):
            location._check_inside(str(manifest), os.fstat(fd), str(manifest))
    finally:
        os.close(fd)


@pytest.mark.parametrize("which", ["zarr.json", "manifest.json"])
def test_a_huge_sparse_file_is_refused_by_its_size_before_it_is_read(json_document, which):
    file = document_file(json_document, which)
    with open(file, "r+b") as f:
        f.truncate(10 * 2**30)  # 10 GB, sparse: nothing on disk
    result = run_capped(
        """
        import sys, zarr_manifest_store as zms
        try:
            zms.ManifestStore.open(sys.argv[1], load=True)
        except zms.ManifestError as e:
            print(e)
        """,
        str(json_document),
        memory=1 << 30,
    )
    assert result.returncode == 0, result.stderr
    assert f"max_metadata_bytes={MAX_METADATA_BYTES}" in result.stdout
    assert which in result.stdout
    assert "pass a larger max_metadata_bytes" in result.stdout


def test_max_metadata_bytes_is_configurable(json_document):
    size = (json_document / "zarr.json").stat().st_size
    with pytest.raises(zms.ManifestError, match=f"max_metadata_bytes={size - 1}"):
        zms.ManifestStore.open(json_document, max_metadata_bytes=size - 1)
    zms.ManifestStore.open(json_document, max_metadata_bytes=size, load=False)


def test_a_columnar_chunk_past_its_own_limit_is_refused_by_size(columnar_document):
    from zarr_manifest_store.document.columnar import MAX_CHUNK_BYTES

    with open(first_chunk_file(columnar_document), "r+b") as f:
        f.truncate(4 * MAX_CHUNK_BYTES)
    with pytest.raises(zms.ManifestError, match="past the limit on one manifest chunk"):
        zms.ManifestStore.open(columnar_document, load=True)


# ---------------------------------------------------------------------- 3. non-regular files


def replace_with(file: Path, kind: str) -> None:
    file.unlink()
    if kind == "fifo":
        os.mkfifo(file)
    elif kind == "directory":
        file.mkdir()
    elif kind == "device":
        file.symlink_to("/dev/zero")
    elif kind == "socket":
        os.mknod(file, 0o600 | stat.S_IFSOCK)


OPENERS = {
    "store": """
        store = zms.ManifestStore.open(sys.argv[1])
        group = zarr.open_group(store, mode="r")
        for _, a in [*group.arrays(), *group["sub"].arrays()]:
            a[...]
    """,
    "xarray": """
        xr.open_dataset(sys.argv[1], engine="zarr_manifest").load()
    """,
}


@pytest.mark.parametrize(
    ("kind", "opener"),
    [
        *((kind, "store") for kind in ("fifo", "directory", "device", "socket")),
        *((kind, "xarray") for kind in ("fifo", "device")),
    ],
)
def test_non_regular_document_files_are_refused_promptly(document, kind, opener):
    code = (
        "import sys, zarr, xarray as xr, zarr_manifest_store as zms\n"
        "try:\n"
        + textwrap.indent(textwrap.dedent(OPENERS[opener]), "    ")
        + "except (zms.ManifestError, PermissionError) as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    for which in files_of(document):
        file = document_file(document, which)
        saved = file.read_bytes()
        replace_with(file, kind)
        try:
            result = run_capped(code, str(document))
            assert result.returncode == 0, result.stderr
            assert result.stdout.startswith("ManifestError")
            assert file.name in result.stdout
            assert "regular file" in result.stdout or "folder" in result.stdout, result.stdout
        finally:
            if file.is_dir() and not file.is_symlink():
                file.rmdir()
            else:
                file.unlink()
            file.write_bytes(saved)


@pytest.mark.parametrize("command", ["info", "verify"])
def test_the_cli_refuses_a_fifo_manifest_promptly(json_document, tmp_path, command):
    manifest = json_document / "t" / "manifest.json"
    manifest.unlink()
    os.mkfifo(manifest)
    result = subprocess.run(
        [sys.executable, "-m", "zarr_manifest_store.cli", command, str(json_document)],
        capture_output=True,
        text=True,
        timeout=PROMPTLY,
    )
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1
    assert "manifest.json" in lines[0]
    assert "not a regular file" in lines[0]
    assert "Traceback" not in result.stderr
    assert "--debug" not in result.stderr


# ---------------------------------------------------------------------- 6. repeated member names


@pytest.mark.parametrize(
    ("which", "edit"),
    [
        (
            "zarr.json",
            lambda text: text.replace('"attributes": {', '"attributes": {"a": 1, "a": 2, ', 1),
        ),
        ("manifest.json", lambda text: text.replace('{"', '{"0.0": {"data": ""}, "', 1)),
        ("manifest.json", lambda text: text.replace('"offset"', '"offset": 0, "offset"', 1)),
    ],
)
def test_a_repeated_member_name_is_refused_in_every_json_file(json_document, which, edit):
    file = document_file(json_document, which)
    file.write_text(edit(file.read_text()))
    with pytest.raises(zms.ManifestError, match="is repeated in one object"):
        zms.ManifestStore.open(json_document, load=True)


def test_a_repeated_member_name_is_refused_in_a_columnar_group(columnar_document):
    file = columnar_document / "t" / "manifest" / "zarr.json"
    file.write_text(file.read_text().replace('"paths"', '"paths": [], "paths"', 1))
    with pytest.raises(zms.ManifestError, match="'paths' is repeated"):
        zms.ManifestStore.open(columnar_document, load=True)


# ---------------------------------------------------------------------- 2. node names


ESCAPING_NAMES = ["..", "%2e%2e", "%2E%2e", ".%2e", ".\t.", ".\n.", "a%2f..%2f..", "%2e%2e%2f"]


def escaping_document(doc: Path, name: str, server_root: Path) -> None:
    """Rename the group ``sub`` of ``doc`` to ``<name>/secret`` in its consolidated metadata,
    and put a valid copy of its array where that path would lead if a client decoded it."""
    root = json.loads((doc / "zarr.json").read_text())
    members = root["consolidated_metadata"]["metadata"]
    group = members.pop("sub")
    array = members.pop("sub/c")
    members.update({name: group, f"{name}/secret": group, f"{name}/secret/c": array})
    (doc / "zarr.json").write_text(json.dumps(root))
    bait = server_root / "secret" / "c"
    bait.mkdir(parents=True, exist_ok=True)
    shutil.copy(doc / "sub" / "c" / "manifest.json", bait / "manifest.json")


def requested_outside(server, folder: str) -> list[str]:
    """Request paths that, decoded and normalised as a server would, lie outside ``folder``."""
    seen = [posixpath.normpath(unquote(r.path)) for r in server.requests.entries]
    return [p for p in seen if not p.startswith(f"/{folder}/")]


@pytest.mark.parametrize("name", ESCAPING_NAMES)
def test_node_names_never_make_a_remote_document_fetch_outside_its_folder(
    http_server, tmp_path, name
):
    doc = build_document(http_server.root, "json")
    escaping_document(doc, name, http_server.root)
    http_server.requests.clear()
    with pytest.raises(REFUSALS):
        open_and_read(f"{http_server.url}/json.zarr", load=True)
    assert requested_outside(http_server, "json.zarr") == []


@pytest.mark.parametrize("name", ESCAPING_NAMES)
def test_node_names_that_would_leave_a_local_document_are_refused(json_document, name):
    escaping_document(json_document, name, json_document.parent)
    with pytest.raises(REFUSALS, match="node path"):
        zms.ManifestStore.open(json_document)


@pytest.mark.parametrize(
    "manifest", ["../../secret/c/manifest.json", "%2e%2e/%2e%2e/secret/c/manifest.json", ".\t./x"]
)
def test_the_prior_art_manifest_field_never_fetches_outside(http_server, manifest):
    doc = build_document(http_server.root, "json")
    escaping_document(doc, "fine", http_server.root)
    root = json.loads((doc / "zarr.json").read_text())
    array = root["consolidated_metadata"]["metadata"]["fine/secret/c"]
    array["storage_transformers"] = [
        {"name": "chunk-manifest-json", "configuration": {"manifest": manifest}}
    ]
    (doc / "zarr.json").write_text(json.dumps(root))
    http_server.requests.clear()
    with pytest.raises(REFUSALS):
        open_and_read(f"{http_server.url}/json.zarr", load=True)
    assert requested_outside(http_server, "json.zarr") == []


def test_a_node_path_deeper_than_max_depth_is_refused(json_document):
    from zarr_manifest_store.document.read import MAX_DEPTH

    root = json.loads((json_document / "zarr.json").read_text())
    members = root["consolidated_metadata"]["metadata"]
    group = {"zarr_format": 3, "node_type": "group", "attributes": {}}
    for depth in range(1, MAX_DEPTH + 2):
        members["/".join(["g"] * depth)] = group
    (json_document / "zarr.json").write_text(json.dumps(root))
    with pytest.raises(zms.ManifestError, match=f"MAX_DEPTH={MAX_DEPTH}"):
        zms.ManifestStore.open(json_document)


# ---------------------------------------------------------------------- 4. nesting


def tiny_array() -> zms.ManifestArray:
    from tests.helpers import array_metadata

    manifest = zms.ChunkManifest.from_dict(
        {"0": {"path": "/x", "offset": 0, "length": 4}}, shape=(1,)
    )
    return zms.ManifestArray(metadata=array_metadata((1,), (1,)), manifest=manifest)


def nested(depth: int, attributes: dict | None = None) -> zms.ManifestGroup:
    group = zms.ManifestGroup(arrays={"a": tiny_array()}, attributes=attributes)
    for level in reversed(range(depth)):
        group = zms.ManifestGroup(groups={f"g{level}": group})
    return group


def served(store: zms.ManifestStore, key: str) -> bytes:
    import asyncio

    from zarr.core.buffer import default_buffer_prototype

    return asyncio.run(store.get(key, default_buffer_prototype())).to_bytes()


def test_served_metadata_costs_the_size_of_the_hierarchy_not_its_depth_times():
    """A big attribute deep down is served once in the root document, not once per ancestor,
    and no subgroup's document is built before it is asked for."""
    import tracemalloc

    big = "x" * 2**21
    store = zms.ManifestStore(nested(200, {"big": big}))
    tracemalloc.start()
    try:
        root = served(store, "zarr.json")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert root.count(big.encode()) == 1
    assert len(root) < 3 * 2**20
    assert peak < 20 * 2**20  # was 400 MB: every ancestor's document repeated the attribute
    deepest = "/".join(f"g{level}" for level in range(200))
    doc = json.loads(served(store, f"{deepest}/zarr.json"))
    assert doc["attributes"] == {"big": big}
    assert list(doc["consolidated_metadata"]["metadata"]) == ["a"]
    middle = json.loads(served(store, "g0/g1/zarr.json"))
    assert len(middle["consolidated_metadata"]["metadata"]) == 199


def test_opening_a_nested_store_takes_time_in_proportion_to_its_size():
    import time

    import zarr

    store = zms.ManifestStore(nested(800))
    start = time.perf_counter()
    group = zarr.open_group(store, mode="r")
    elapsed = time.perf_counter() - start
    assert list(group) == ["g0"]
    assert elapsed < 5  # was 13 s: 200 MB of documents built before the first key


def test_no_depth_of_nesting_exhausts_the_stack():
    """(zarr's own parsing of consolidated metadata recurses; a document is refused past
    MAX_DEPTH levels before it gets there.)"""
    import pickle

    deep = nested(3 * sys.getrecursionlimit())
    paths = [path for path, _ in deep.walk()]
    assert len(paths) == 3 * sys.getrecursionlimit() + 1
    assert deep["/".join(paths[-1:])] is not None
    assert pickle.loads(pickle.dumps(deep)).equals(deep)
    assert deep == nested(3 * sys.getrecursionlimit())
    assert deep != nested(3 * sys.getrecursionlimit(), {"k": 1})
    store = zms.ManifestStore(deep)
    assert pickle.loads(pickle.dumps(store)) == store
    assert json.loads(served(store, f"{paths[-2]}/zarr.json"))["node_type"] == "group"


def test_a_pickled_group_keeps_its_member_order():
    import pickle

    group = zms.ManifestGroup(
        arrays={"z": tiny_array(), "a": tiny_array()},
        groups={"m": nested(2), "b": zms.ManifestGroup(attributes={"k": [1]})},
        attributes={"t": "x"},
    )
    copy = pickle.loads(pickle.dumps(group))
    assert [p for p, _ in copy.walk()] == [p for p, _ in group.walk()]
    assert copy.equals(group)
