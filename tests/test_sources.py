"""Sources: byte ranges of local and fsspec files, the allow-list, fingerprints."""

from __future__ import annotations

import os

import pytest

from zarr_manifest_store.io.allow import AllowList
from zarr_manifest_store.io.obstore_options import store_arguments
from zarr_manifest_store.io.paths import in_scheme_of
from zarr_manifest_store.io.sources import Sources
from zarr_manifest_store.manifest import Fingerprint


@pytest.fixture
def tree(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.bin").write_bytes(b"0123456789")
    secret = tmp_path / "secret"
    secret.mkdir()
    (secret / "key.bin").write_bytes(b"SECRET")
    os.symlink(secret / "key.bin", data / "link.bin")
    return tmp_path


def test_reads_local_ranges_and_file_urls(tree):
    sources = Sources()
    path = tree / "data" / "a.bin"
    assert sources.read_sync(str(path), 2, 3) == b"234"
    assert sources.read_sync(path.as_uri(), 5, 5) == b"56789"
    with pytest.raises(OSError, match=r"too short: bytes 8\.\.12"):
        sources.read_sync(str(path), 8, 4)
    with pytest.raises(FileNotFoundError, match=r"nope\.bin"):
        sources.read_sync(str(tree / "nope.bin"), 0, 1)
    sources.close()


def test_allow_list_refuses_paths_outside_and_disguised_escapes(tree):
    sources = Sources(allow=[str(tree / "data")])
    assert sources.read_sync(str(tree / "data" / "a.bin"), 0, 1) == b"0"
    for path in (
        tree / "secret" / "key.bin",
        tree / "data" / ".." / "secret" / "key.bin",
        tree / "data" / "link.bin",  # a symlink pointing out of the allowed folder
        tree / "data-other" / "x.bin",
    ):
        with pytest.raises(PermissionError, match=r"outside the allowed prefixes.*allow=\["):
            sources.read_sync(str(path), 0, 1)


def test_allow_list_for_urls():
    sources = Sources(allow=["s3://bucket/archive/"])
    sources.check_allowed("s3://bucket/archive/2020/f.nc")
    for url in (
        "s3://bucket/other/f.nc",
        "s3://bucket/archive/../other/f.nc",
        "s3://bucket/archive/%2e%2e/other/f.nc",
        "s3://bucket/archive-2/f.nc",
        "/bucket/archive/f.nc",
    ):
        with pytest.raises(PermissionError):
            sources.check_allowed(url)


def test_fingerprint_of_local_and_memory_files(tree):
    import fsspec

    path = tree / "data" / "a.bin"
    st = path.stat()
    assert Sources().fingerprint(str(path)) == Fingerprint(size=10, mtime_ns=st.st_mtime_ns)
    fsspec.filesystem("memory").pipe("/zms-fp/x.bin", b"abc")
    fp = Sources().fingerprint("memory://zms-fp/x.bin")
    assert fp.size == 3
    assert fp.mtime_ns is not None


def test_a_single_allowed_prefix_may_be_given_as_a_string(tree):
    sources = Sources(allow=str(tree / "data"))
    assert bytes(sources.read_sync(str(tree / "data" / "a.bin"), 0, 1)) == b"0"
    folder = str(tree / "secret") + "/"
    with pytest.raises(
        PermissionError, match=f"allow its folder: allow=\\[\\.\\.\\., '{folder}'\\]"
    ):
        sources.read_sync(str(tree / "secret" / "key.bin"), 0, 1)


def test_gcs_server_errors_are_transient_and_client_errors_are_not():
    from gcsfs.retry import HttpError

    from zarr_manifest_store.io.remote import _transient

    assert _transient(HttpError({"code": 503, "message": "backend error"}))
    assert _transient(HttpError({"code": 429, "message": "rate limited"}))
    assert not _transient(HttpError({"code": 403, "message": "forbidden"}))


def test_azure_errors_are_transient_by_status_and_kind():
    from azure.core.exceptions import HttpResponseError, ServiceRequestError

    from zarr_manifest_store.io.remote import _named, _transient

    def failed(status: int) -> HttpResponseError:
        error = HttpResponseError(message=f"status {status}")
        error.status_code = status
        return error

    assert _transient(failed(503))
    assert _transient(failed(429))
    assert not _transient(failed(403))
    assert _transient(ServiceRequestError("could not connect"))
    assert isinstance(_named(failed(403), "az://c/x.nc"), PermissionError)
    assert isinstance(_named(failed(404), "az://c/x.nc"), FileNotFoundError)


def test_urls_keep_the_scheme_they_were_given_in():
    assert in_scheme_of("az://c/*.nc", "abfs://c/a.nc") == "az://c/a.nc"
    assert in_scheme_of("https://h/x/*.nc", "https://h/x/a.nc") == "https://h/x/a.nc"


def test_one_allow_list_object_answers_for_every_reader(tree):
    allow = AllowList([str(tree / "data"), "s3://bucket/archive/"])
    assert allow.permits(str(tree / "data" / "a.bin"))
    assert not allow.permits(str(tree / "data" / "link.bin"))  # resolves outside
    assert allow.permits("s3://bucket/archive/f.nc")
    assert not allow.permits("s3://bucket/archive/%2e%2e/x.nc")
    with pytest.raises(PermissionError, match=r"secret.*outside the allowed prefixes"):
        allow.check(str(tree / "secret" / "key.bin"))
    assert AllowList(None).everything
    assert AllowList(None).permits("/anything")
    assert AllowList.of(allow) is allow
    assert AllowList.of(str(tree)) == AllowList([str(tree)])
    wider = allow.with_prefixes(str(tree / "secret"))
    assert wider.permits(str(tree / "secret" / "key.bin"))
    assert not allow.permits(str(tree / "secret" / "key.bin"))  # unchanged
    assert AllowList(None).with_prefixes("/x").everything
    sources = Sources(allow=allow)
    assert sources.allow_list is allow
    assert sources.allow == allow.prefixes
    assert bytes(sources.read_sync(str(tree / "data" / "a.bin"), 1, 2)) == b"12"


def test_fsspec_storage_options_are_translated_for_obstore():
    s3_options = {
        "key": "K",
        "secret": "S",
        "token": "T",
        "client_kwargs": {"endpoint_url": "http://127.0.0.1:9/", "region_name": "eu-west-1"},
        "skip_instance_cache": True,
    }
    name, s3 = store_arguments("s3", "s3://bkt/a/b.nc", s3_options, timeout=7)
    assert name == "S3Store"
    assert (s3["bucket"], s3["access_key_id"], s3["secret_access_key"]) == ("bkt", "K", "S")
    assert (s3["session_token"], s3["endpoint"], s3["region"]) == (
        "T",
        "http://127.0.0.1:9",
        "eu-west-1",
    )
    assert s3["client_options"]["allow_http"]
    assert s3["retry_config"] == {"max_retries": 0}
    assert s3["client_options"]["timeout"].total_seconds() == 7
    assert store_arguments("s3", "s3://bkt/k", {"anon": True}, timeout=1)[1]["skip_signature"]

    _, gcs = store_arguments(
        "gcs", "gs://g/k", {"token": "anon", "endpoint_url": "http://127.0.0.1:8"}, timeout=1
    )
    assert (gcs["bucket"], gcs["skip_signature"], gcs["base_url"]) == (
        "g",
        True,
        "http://127.0.0.1:8",
    )

    connection = "AccountName=acct;AccountKey=a2V5;BlobEndpoint=http://127.0.0.1:7/acct;"
    _, az = store_arguments("azure", "az://box/k", {"connection_string": connection}, timeout=1)
    assert (az["container_name"], az["account_name"], az["account_key"]) == ("box", "acct", "a2V5")
    assert az["endpoint"] == "http://127.0.0.1:7/acct"
    assert az["client_options"]["allow_http"]

    _, http = store_arguments(
        "http", "https://h.example/x/y.nc", {"headers": {"A": "b"}}, timeout=1
    )
    assert http["url"] == "https://h.example"
    assert http["client_options"]["default_headers"] == {"A": "b"}
    assert not http["client_options"]["allow_http"]


def test_options_obstore_cannot_take_are_refused_by_name():
    with pytest.raises(ValueError, match=r"\['config_kwargs', 'version_aware'\].*S3Store"):
        store_arguments("s3", "s3://b/k", {"config_kwargs": {}, "version_aware": True}, timeout=1)
    with pytest.raises(ValueError, match=r"\['client_kwargs'\].*HTTPStore"):
        store_arguments("http", "http://h/k", {"client_kwargs": {"auth": "x"}}, timeout=1)
    with pytest.raises(ValueError, match="'bogus'"):
        Sources({"bogus": 1}).read_sync("s3://b/k.nc", 0, 1)
