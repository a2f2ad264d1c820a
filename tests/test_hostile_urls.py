"""Hostile remote URLs: every trick that makes a client request something other than what the
allow-list compared is refused, and nothing outside an allowed prefix is ever requested."""

from __future__ import annotations

import posixpath
from pathlib import Path
from urllib.parse import unquote

import pytest
import yarl
import zarr
from hypothesis import given
from hypothesis import strategies as st
from read_fixtures import manifest_for, store_over, write_source
from servers import RangeHTTPServer

import zarr_manifest_store as zms
from zarr_manifest_store.io.allow import AllowList
from zarr_manifest_store.io.sources import Sources
from zarr_manifest_store.io.urls import request_url

SECRET = b"SECRET-BYTES-OUTSIDE-THE-PREFIX"


def http_attacks(public: str, other: str) -> list[str]:
    """URLs that try to reach outside ``public`` (``http://host:port/public``) on its own
    server, or on ``other`` (``host:port`` of a second server)."""
    first = public.rsplit("/public", 1)[0]
    authority = first.partition("://")[2]
    dots = [".\t.", ".\n.", ".\r.", "\t..", "..\t", ".\x00.", "%2e%2e", "%2E%2E", ".%2E", "%2e."]
    dots += ["..%00", "%252e%252e", "..;", ".;", "..%3b", "..%3B;x", "../.", ".", ".."]
    return [
        *(f"{public}/{d}/private.txt" for d in dots),
        f"{public}/..%2fprivate.txt",
        f"{public}/..%2Fprivate.txt",
        f"{public}/..%5cprivate.txt",
        f"{public}\\..\\private.txt",
        f"{public}/..\\private.txt",
        f"{public}//../private.txt",
        f"{public}/a/../../private.txt",
        f"{public}/.%2E/private.txt?x=1",  # a query: read through fsspec, not obstore
        f"{public}/%2e%2e/private.txt#fragment",
        f" {public}/../private.txt",
        f"{public}/../private.txt ",
        f"http://{authority}%2Fpublic%2F@{other}/secret.txt",
        f"http://{authority}%2fpublic%2f@{other}/secret.txt",
        f"http://{authority}/public/@{other}/../../secret.txt",
        f"http://user:pw@{authority}/public/a.txt",
        f"http://{authority}@{other}/public/a.txt",
        f"http://{authority}\\@{other}/public/a.txt",
        f"http://{other}#@{authority}/public/a.txt",
        f"http://{authority}\t/public/../private.txt",
        f"HTTP://{authority}/public/%2E%2E/private.txt",
    ]


@pytest.fixture
def two_servers(tmp_path: Path):
    """One server with ``public/`` (allowed) and ``private.txt`` beside it; another server."""
    first, second = tmp_path / "first", tmp_path / "second"
    (first / "public").mkdir(parents=True)
    (first / "public" / "a.txt").write_bytes(b"public bytes")
    (first / "public" / "a b.txt").write_bytes(b"spaced bytes")
    (first / "public" / "café.txt").write_bytes(b"accented bytes")
    (first / "private.txt").write_bytes(SECRET)
    second.mkdir()
    (second / "secret.txt").write_bytes(SECRET)
    (second / "public").mkdir()
    (second / "public" / "a.txt").write_bytes(SECRET)
    servers = [RangeHTTPServer(first).start(), RangeHTTPServer(second).start()]
    yield servers
    for server in servers:
        server.stop()


def requested_paths(server: RangeHTTPServer) -> list[str]:
    """Each path the server was asked for, as a server that decodes and resolves it sees it."""
    return [posixpath.normpath(unquote(r.path)) for r in server.requests.entries]


@pytest.mark.parametrize("verify", ["first-use", "never"])
def test_no_trick_reads_outside_an_allowed_http_prefix(two_servers, verify):
    first, second = two_servers
    public = f"{first.url}/public"
    sources = Sources(allow=[public + "/"], verify=verify)
    for url in http_attacks(public, second.url.partition("://")[2]):
        with pytest.raises(PermissionError, match=r"refused|outside the allowed") as refused:
            sources.read_sync(url, 0, len(SECRET))
        assert repr(url) in str(refused.value)
    assert all(p.startswith("/public/") for p in requested_paths(first))
    assert second.requests.entries == []


async def test_no_trick_reads_outside_an_allowed_prefix_through_a_store(two_servers, tmp_path):
    first, second = two_servers
    write_source(tmp_path / "v.h5")
    public = f"{first.url}/public"
    for url in http_attacks(public, second.url.partition("://")[2]):
        store = store_over(manifest_for(tmp_path / "v.h5", url=url), allow=[public + "/"])
        with pytest.raises(PermissionError):
            zarr.open_group(store, mode="r")["v"][:]
    assert all(p.startswith("/public/") for p in requested_paths(first))
    assert second.requests.entries == []


def test_harmless_differences_are_normalised_to_what_is_requested(two_servers):
    first, _ = two_servers
    host, port = first.url.partition("://")[2].split(":")
    sources = Sources(allow=[f"HTTP://{host.upper() if host.isalpha() else host}:{port}/public/"])
    for url, body, sent in [
        (f"http://{host}:{port}/public/a.txt", b"public bytes", "/public/a.txt"),
        (f"HTTP://{host}:0{port}/public/a.txt", b"public bytes", "/public/a.txt"),
        (f"http://{host}:{port}/public/a%20b.txt", b"spaced bytes", "/public/a%20b.txt"),
        (f"http://{host}:{port}/public/a b.txt", b"spaced bytes", "/public/a%20b.txt"),
        (f"http://{host}:{port}/public/café.txt", b"accented bytes", "/public/caf%C3%A9.txt"),
        (f"http://{host}:{port}/public/caf%c3%a9.txt", b"accented bytes", "/public/caf%C3%A9.txt"),
    ]:
        first.requests.clear()
        assert bytes(sources.read_sync(url, 0, len(body))) == body, url
        assert {r.path for r in first.requests.entries if r.method == "GET"} == {sent}, url
        assert request_url(url).endswith(sent)


@pytest.mark.parametrize(
    ("url", "normalised"),
    [
        ("HTTP://Example.ORG:80/a/b.nc", "http://example.org/a/b.nc"),
        ("https://example.org:443/a/b.nc", "https://example.org/a/b.nc"),
        ("https://example.org:8443/a/b.nc", "https://example.org:8443/a/b.nc"),
        ("https://example.org/a/b%7e%41.nc", "https://example.org/a/b~A.nc"),
        ("https://example.org/a/x%25y.nc", "https://example.org/a/x%25y.nc"),
        ("https://example.org/a/b.nc?q=1 2", "https://example.org/a/b.nc?q=1%202"),
        ("https://example.org/a/b.nc#part", "https://example.org/a/b.nc"),
        ("https://[::1]:8080/a", "https://[::1]:8080/a"),
        ("S3://bucket/archive/f.nc", "s3://bucket/archive/f.nc"),
        ("s3://Bucket/Archive/f.nc", "s3://Bucket/Archive/f.nc"),  # bucket names are exact
        (
            "az://box@acct.blob.core.windows.net/a/f.nc",
            "az://box@acct.blob.core.windows.net/a/f.nc",
        ),
        ("memory://x/y.bin", "memory://x/y.bin"),
    ],
)
def test_request_url_normalises_harmless_spellings(url, normalised):
    assert request_url(url) == normalised


@pytest.mark.parametrize("scheme", ["s3", "gs", "az", "abfs", "memory"])
@pytest.mark.parametrize(
    "key",
    [
        "archive/../other/f.nc",
        "archive/./f.nc",
        "archive/%2e%2e/other/f.nc",
        "archive/.%2E/other/f.nc",
        "archive/..%2fother/f.nc",
        "archive/.\t./other/f.nc",
        "archive/..\n/f.nc",
        "archive/f.nc\x00.txt",
        "archive\\..\\other\\f.nc",
        "archive//f.nc",
        "archive/..;/other/f.nc",
    ],
)
def test_object_store_keys_that_leave_their_prefix_are_refused(scheme, key):
    allow = AllowList([f"{scheme}://bucket/archive/"])
    with pytest.raises(PermissionError, match="refused"):
        allow.check(f"{scheme}://bucket/{key}")
    with pytest.raises(PermissionError, match="refused"):
        Sources().check_allowed(f"{scheme}://bucket/{key}")  # even when everything is allowed


@pytest.mark.parametrize(
    "url",
    [
        "s3://user@bucket/archive/f.nc",
        "gs://a:b@bucket/archive/f.nc",
        "az://box@acct@evil/archive/f.nc",
        "https://example.org:99999/archive/f.nc",
        "https://exa%6dple.org/archive/f.nc",
        "https://example.org./archive/f.nc",
        "https://ex ample.org/archive/f.nc",
        "https://éxample.org/archive/f.nc",
        "https://example.org/archive/%ff.nc",  # not UTF-8
    ],
)
def test_authorities_and_encodings_a_client_reads_differently_are_refused(url):
    with pytest.raises(PermissionError, match="refused"):
        request_url(url)


def test_an_allowed_prefix_that_is_itself_a_trick_is_refused_naming_it():
    with pytest.raises(ValueError, match=r"allowed prefix 'https://u@example\.org/'"):
        AllowList(["https://u@example.org/"])


SEGMENT = st.text(st.characters(codec="utf-8", exclude_characters="/?#"), max_size=6)


@given(st.lists(SEGMENT, min_size=1, max_size=4), st.booleans())
def test_what_is_requested_never_leaves_the_prefix_it_was_compared_with(segments, query):
    """Whatever the segments, a URL that passes is requested (as obstore, and as fsspec's
    yarl sends it) under the prefix it was compared with, with the same decoded path."""
    url = "http://example.org/public/" + "/".join(segments) + ("?x=1" if query else "")
    try:
        normalised = request_url(url)
    except PermissionError:
        return
    assert AllowList(["http://example.org/public/"]).permits(url)
    sent = yarl.URL(normalised)  # fsspec's HTTP client (aiohttp) parses it with yarl
    assert sent.host == "example.org"
    assert sent.port == 80
    assert sent.path.startswith("/public/")
    assert posixpath.normpath(sent.path) == sent.path.rstrip("/") or sent.path.endswith("/")
    assert unquote(normalised.split("?")[0]).removeprefix("http://example.org") == sent.path


def test_a_file_url_names_a_local_file_only_without_a_host(tmp_path):
    (tmp_path / "a.bin").write_bytes(b"local")
    sources = Sources(allow=[str(tmp_path)])
    assert bytes(sources.read_sync(f"file://{tmp_path}/a.bin", 0, 5)) == b"local"
    assert bytes(sources.read_sync(f"file://localhost{tmp_path}/a.bin", 0, 5)) == b"local"
    with pytest.raises(PermissionError, match="empty host"):
        sources.read_sync(f"file://evil.example.org{tmp_path}/a.bin", 0, 5)


def test_no_object_key_trick_reaches_an_object_store(s3):
    fs, bucket, server = s3
    fs.pipe({f"{bucket}/archive/a.bin": b"archive bytes", f"{bucket}/other/secret.bin": SECRET})
    server.requests.clear()
    sources = Sources(storage_options=server.storage_options, allow=[f"s3://{bucket}/archive/"])
    assert bytes(sources.read_sync(f"s3://{bucket}/archive/a.bin", 0, 7)) == b"archive"
    for key in ["../other/secret.bin", "%2e%2e/other/secret.bin", ".\t./other/secret.bin"]:
        for url in (f"s3://{bucket}/archive/{key}", f"S3://{bucket}/archive/{key}"):
            with pytest.raises(PermissionError, match="refused"):
                sources.read_sync(url, 0, len(SECRET))
    assert not [r.path for r in server.requests.entries if "other" in r.path]


@pytest.mark.parametrize("start", [6, 20])  # a short answer, a range wholly past the end (416)
def test_an_object_shorter_than_a_reference_has_changed(http_server, start):
    (http_server.root / "a.bin").write_bytes(b"0123456789")
    sources = Sources(retries=0)
    with pytest.raises(zms.SourceChangedError, match=r"a\.bin.*too short"):
        sources.read_sync(f"{http_server.url}/a.bin", start, 8)


def test_a_signed_url_keeps_its_encoded_query():
    url = (
        "https://bucket.s3.amazonaws.com/archive/f.nc?X-Amz-Algorithm=AWS4-HMAC-SHA256"
        "&X-Amz-Credential=AKIA%2F20260101%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Signature=ab12"
    )
    assert request_url(url) == url
    assert AllowList(["https://bucket.s3.amazonaws.com/archive/"]).permits(url)
