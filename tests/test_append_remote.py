"""Appending to documents on object storage (S3, GCS, Azure emulators): read like
open_mfdataset; a held lock, an interleaved append and a competing root refused cleanly."""

from __future__ import annotations

import hashlib
import json

import pytest
import xarray as xr
from append_cases import first_combined
from test_append import expected
from xarray_files import daily_files

import zarr_manifest_store as zms
from zarr_manifest_store.cli import main
from zarr_manifest_store.document import append as append_module
from zarr_manifest_store.document.commit import LOCK_FILE, ChangedDocumentError

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(params=["s3", "gcs", "azure"])
def bucket(request):
    """(fs, bucket, server) on one emulator, with a fresh bucket."""
    return request.getfixturevalue(request.param)


def remote_document(bucket, tmp_path, steps=(4, 4, 4)):
    """Local daily files, the first written as a document in the bucket: (url, options, files)."""
    _, name, server = bucket
    files = daily_files(tmp_path / "data", steps)
    url = f"{server.scheme}://{name}/doc.zarr"
    first_combined(files).virtualize.to_zarr(url, storage_options=server.storage_options)
    return url, server.storage_options, files


def opened(url, options, tmp_path) -> xr.Dataset:
    return xr.open_dataset(
        url, engine="zarr_manifest", storage_options=options, allow=[str(tmp_path)]
    ).load()


def snapshot(bucket) -> dict[str, str]:
    """Every object of the bucket by key, as a digest of its bytes."""
    fs, name, _ = bucket
    fs.invalidate_cache()
    return {k: hashlib.sha256(fs.cat_file(k)).hexdigest() for k in sorted(fs.find(name))}


def append(url, options, file, **kwargs) -> None:
    ds = zms.open_virtual_dataset(str(file))
    ds.virtualize.to_zarr(url, mode="a", append_dim="time", storage_options=options, **kwargs)


def test_daily_appends_to_object_storage_read_like_open_mfdataset(bucket, tmp_path):
    url, options, files = remote_document(bucket, tmp_path)
    before = zms.ManifestStore.open(url, storage_options=options, allow=[str(tmp_path)])
    for file in files[1:]:
        append(url, options, file)
    xr.testing.assert_identical(opened(url, options, tmp_path), expected(files))
    old = xr.open_zarr(before, consolidated=False).load().drop_encoding()
    xr.testing.assert_identical(old, expected(files[:1]).drop_encoding())
    fs, name, _ = bucket
    assert not fs.exists(f"{name}/doc.zarr/{LOCK_FILE}")
    stored = json.loads(fs.cat_file(f"{name}/doc.zarr/t2m/zarr.json"))
    assert len(stored["storage_transformers"][0]["configuration"]["parts"]) == 3


def test_a_held_lock_refuses_an_append_and_leaves_the_document(bucket, tmp_path):
    url, options, files = remote_document(bucket, tmp_path)
    fs, name, _ = bucket
    fs.pipe_file(f"{name}/doc.zarr/{LOCK_FILE}", b"pid 1 on elsewhere since 2026-01-01\n")
    before = snapshot(bucket)
    with pytest.raises(FileExistsError, match="another append to it is in progress") as e:
        append(url, options, files[1])
    assert "pid 1 on elsewhere" in str(e.value)
    assert f"{url}/{LOCK_FILE}" in str(e.value)
    assert snapshot(bucket) == before
    fs.rm_file(f"{name}/doc.zarr/{LOCK_FILE}")
    append(url, options, files[1])
    xr.testing.assert_identical(opened(url, options, tmp_path), expected(files[:2]))


def test_an_append_started_while_another_writes_fails_and_the_first_wins(
    bucket, tmp_path, monkeypatch
):
    """The second append starts while the first has written its parts, before its commit."""
    url, options, files = remote_document(bucket, tmp_path)
    original, refusals = append_module.commit_root, []

    def interleaved(*args, **kwargs):
        try:
            append(url, options, files[2])
        except FileExistsError as e:
            refusals.append(str(e))
        original(*args, **kwargs)

    monkeypatch.setattr(append_module, "commit_root", interleaved)
    append(url, options, files[1])
    (refusal,) = refusals
    assert "another append to it is in progress" in refusal
    assert "retry" in refusal
    xr.testing.assert_identical(opened(url, options, tmp_path), expected(files[:2]))


def test_a_root_replaced_behind_the_lock_fails_the_commit_and_is_kept(
    bucket, tmp_path, monkeypatch
):
    """A writer that ignores the lock replaces the root between the append's read and its
    commit: the append fails naming the document, and neither the competitor's root nor the
    arrays' metadata is overwritten."""
    url, options, files = remote_document(bucket, tmp_path)
    fs, name, _ = bucket
    root = f"{name}/doc.zarr/zarr.json"
    competing = json.loads(fs.cat_file(root))
    competing["attributes"]["written_by"] = "another writer"
    original = append_module.commit_root

    def competed(*args, **kwargs):
        fs.pipe_file(root, json.dumps(competing).encode())
        original(*args, **kwargs)

    monkeypatch.setattr(append_module, "commit_root", competed)
    arrays = {k: v for k, v in snapshot(bucket).items() if k.endswith("/zarr.json")}
    with pytest.raises(ChangedDocumentError, match="changed while this writer held the lock") as e:
        append(url, options, files[1])
    assert url in str(e.value)
    after = snapshot(bucket)
    assert json.loads(fs.cat_file(root)) == competing
    assert {k: after[k] for k in arrays if not k.endswith("doc.zarr/zarr.json")} == {
        k: v for k, v in arrays.items() if not k.endswith("doc.zarr/zarr.json")
    }
    assert not fs.exists(f"{name}/doc.zarr/{LOCK_FILE}")
    ds = opened(url, options, tmp_path)
    assert ds.attrs["written_by"] == "another writer"
    xr.testing.assert_identical(
        ds.drop_attrs(deep=False), expected(files[:1]).drop_attrs(deep=False)
    )


def test_the_command_line_appends_to_a_document_on_s3(s3, tmp_path, capsys):
    url, options, files = remote_document(s3, tmp_path)
    prefix = url.rsplit("/", 1)[0] + "/"
    arguments = ["--storage-options", json.dumps({prefix: options})]
    paths = [str(f) for f in files[1:]]
    assert main(["scan", *paths, "--append-to", url, *arguments]) == 0
    assert "appended 2 files to" in capsys.readouterr().out
    xr.testing.assert_identical(opened(url, options, tmp_path), expected(files))
    assert main(["scan", paths[-1], "--append-to", url, *arguments]) == 2
    assert "does not continue" in capsys.readouterr().err
