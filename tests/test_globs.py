"""Globs over object storage, expanded with one obstore listing: the same URLs as fsspec's glob,
on the S3, GCS and Azure emulators the tests start, without making an fsspec file system."""

from __future__ import annotations

import re
import socket

import fsspec
import pytest
from xarray_files import daily_files

import zarr_manifest_store as zms
from zarr_manifest_store.io import listing
from zarr_manifest_store.io.paths import in_scheme_of
from zarr_manifest_store.xarray.mfdataset import _expand_paths

KEYS = [
    "data/a.nc",
    "data/b.nc",
    "data/c.h5",
    "data/x1.nc",
    "data/x2.nc",
    "data/sub/d.nc",
    "data/sub/deep/e.nc",
    "data/store.zarr/zarr.json",
    "data/store.zarr/t/c/0",
    "data.nc",
    "data2/g.nc",
    "other/f.nc",
]
PATTERNS = [
    "data/*.nc",
    "data/?.nc",
    "data/x[0-9].nc",
    "data/[!ab]*.nc",
    "data/*",
    "data/*/",
    "data/*.zarr",
    "data/**/*.nc",
    "data/**",
    "data/sub/**/e.nc",
    "**/*.nc",
    "*.nc",
    "d*/*.nc",
    "data/sub/deep/*",
]


@pytest.fixture(params=["s3", "gcs", "azure"])
def bucket(request):
    fs, bucket, server = request.getfixturevalue(request.param)
    for key in KEYS:
        fs.pipe(f"{bucket}/{key}", key.encode())
    return server.scheme, bucket, server.storage_options


def fsspec_glob(url: str, options: dict) -> list[str]:
    fs, _ = fsspec.core.url_to_fs(url, **options)
    return sorted(in_scheme_of(url, fs.unstrip_protocol(p)) for p in fs.glob(url))


def test_globs_match_what_fsspec_matches(bucket, monkeypatch):
    scheme, name, options = bucket
    patterns = [p for p in PATTERNS if p not in QUIRKS.get(scheme, ())]
    want = {p: fsspec_glob(f"{scheme}://{name}/{p}", options) for p in patterns}
    monkeypatch.setattr(fsspec, "filesystem", None)  # the listing makes no fsspec file system
    for pattern in patterns:
        url = f"{scheme}://{name}/{pattern}"
        assert listing.glob_objects(url, options) == want[pattern], pattern
    assert want["data/*.zarr"] == [f"{scheme}://{name}/data/store.zarr"]  # folders match too


QUIRKS = {"gs": {"data/*/"}, "az": {"data/*/", "data/**"}}
"""Patterns where gcsfs or adlfs depart from fsspec's glob (which s3fs follows, and so does
the listing): a trailing ``/`` should match folders (they find none), and ``data/**`` the
folder itself (adlfs leaves it out)."""


def test_a_glob_matching_nothing_names_pattern_and_folder(s3):
    _, bucket, server = s3
    url = f"s3://{bucket}/era/*.nc"
    message = rf"no files match '{re.escape(url)}' \(listed s3://{bucket}/era/\)"
    with pytest.raises(FileNotFoundError, match=message):
        listing.glob_objects(url, server.storage_options)


def test_storage_options_are_honoured(s3):
    fs, bucket, server = s3
    fs.pipe(f"{bucket}/a.nc", b"a")
    url = f"s3://{bucket}/*.nc"
    closed = socket.create_server(("127.0.0.1", 0))  # an endpoint that answers nothing
    nowhere = f"http://127.0.0.1:{closed.getsockname()[1]}"
    closed.close()
    wrong = {**server.storage_options, "client_kwargs": {"endpoint_url": nowhere}}
    with pytest.raises(Exception, match=re.escape(nowhere.removeprefix("http://"))):
        listing.glob_objects(url, wrong)
    per_bucket = {f"s3://{bucket}/": server.storage_options, "s3://": wrong}
    assert listing.glob_objects(url, per_bucket) == [url.replace("*", "a")]


def test_other_protocols_are_left_to_fsspec():
    assert listing.glob_objects("memory://bucket/*.nc", None) is None
    assert listing.glob_objects("s3://bucket-*/a.nc", None) is None


def test_open_virtual_mfdataset_lists_a_bucket_without_fsspec(s3, tmp_path, monkeypatch):
    fs, bucket, server = s3
    files = daily_files(tmp_path, (2, 2))
    for f in files:
        fs.put(str(f), f"{bucket}/era/{f.name}")
    made = []
    original = fsspec.filesystem
    monkeypatch.setattr(fsspec, "filesystem", lambda protocol, **kw: made.append(protocol))
    monkeypatch.setattr(fsspec.core, "url_to_fs", lambda url, **kw: made.append(url))
    expanded = _expand_paths(f"s3://{bucket}/era/*.nc", server.storage_options)
    assert expanded == [f"s3://{bucket}/era/{f.name}" for f in files]
    assert made == []
    monkeypatch.setattr(fsspec, "filesystem", original)
    vds = zms.open_virtual_mfdataset(
        f"s3://{bucket}/era/*.nc", storage_options=server.storage_options
    )
    assert vds.sizes["time"] == 4
