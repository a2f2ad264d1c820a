"""Transient remote failures are retried with backoff, a bounded number of times; then they name
the source and the chunk. Injected by the test HTTP server: 500s, resets, short bodies, stalls."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
import zarr
from read_fixtures import manifest_for, store_over, write_source
from zarr.core.buffer import default_buffer_prototype

import zarr_manifest_store as zms
from zarr_manifest_store.io.sources import Sources

PROTO = default_buffer_prototype()


@pytest.fixture
def served(http_server, tmp_path):
    """The test dataset served over HTTP: (server, url, local copy, values)."""
    path = tmp_path / "src.h5"
    data = write_source(path)
    shutil.copy(path, http_server.root / "src.h5")
    return http_server, f"{http_server.url}/src.h5", path, data


def gets(server) -> int:
    return server.requests.count("GET", "/src.h5")


@pytest.mark.parametrize("fault", ["500", "reset", "short", "stall"])
def test_transient_failures_are_retried(served, fault):
    server, url, path, data = served
    server.stall_seconds = 1.0
    store = store_over(manifest_for(path, url), verify="never", timeout=0.3)
    server.inject("src.h5", [fault, fault])
    server.requests.clear()
    assert (
        store.get_sync("v/c/5/0").to_bytes() == path.read_bytes()[slice(*_range(store, "v/c/5/0"))]
    )
    assert gets(server) == 3  # two failures, then the answer

    server.inject("src.h5", [fault])
    np.testing.assert_array_equal(zarr.open_group(store, mode="r")["v"][:], data)


def _range(store: zms.ManifestStore, key: str) -> tuple[int, int]:
    ref = store._lookup(key)
    return ref.offset, ref.offset + ref.length


def test_persistent_failure_gives_up_naming_source_and_chunk(served):
    server, url, path, _ = served
    store = store_over(manifest_for(path, url), verify="never", retries=2)
    server.inject("src.h5", ["500"] * 10)
    server.requests.clear()
    started = time.monotonic()
    with pytest.raises(
        OSError, match=r"src\.h5' failed after 3 attempt\(s\).*500.*chunk 'v/c/3/0'"
    ):
        store.get_sync("v/c/3/0")
    assert gets(server) == 3
    assert time.monotonic() - started >= 0.1 * 0.5 + 0.2 * 0.5  # backed off between attempts


def test_missing_object_is_not_retried(served):
    server, url, path, _ = served
    (server.root / "src.h5").unlink()
    store = store_over(manifest_for(path, url), verify="never")
    server.requests.clear()
    with pytest.raises(FileNotFoundError, match=r"src\.h5.*chunk 'v/c/0/0'"):
        store.get_sync("v/c/0/0")
    assert gets(server) == 1


def test_changed_content_is_refused(served):
    server, url, path, data = served
    fp = Sources().fingerprint(url)
    store = store_over(manifest_for(path, url, fp))
    np.testing.assert_array_equal(zarr.open_group(store, mode="r")["v"][:], data)
    write_source(server.root / "src.h5", seed=9)  # new content behind the same URL
    with pytest.raises(zms.SourceChangedError, match=r"src\.h5' changed.*ETag.*chunk 'v/c/"):
        zarr.open_group(store, mode="r")["v"][:]  # checked on first use, then served anew
    fresh = store_over(manifest_for(path, url, fp))
    with pytest.raises(zms.SourceChangedError, match=r"src\.h5' changed since it was scanned"):
        zarr.open_group(fresh, mode="r")["v"][:]
    assert [s.status for s in fresh.verify().sources] == ["changed"]


def test_truncated_object_raises_instead_of_filling(served):
    server, url, path, _ = served
    served_file = server.root / "src.h5"
    served_file.write_bytes(served_file.read_bytes()[:-500])
    store = store_over(manifest_for(path, url), verify="never", retries=1)
    with pytest.raises(zms.SourceChangedError, match=r"src\.h5.*too short.*chunk 'v/c/23/0'"):
        store.get_sync("v/c/23/0")
    with pytest.raises(zms.SourceChangedError, match="too short"):
        zarr.open_group(store, mode="r")["v"][:]
    report = store.verify()
    assert [s.status for s in report.sources] == ["truncated"]


def test_a_stalling_server_costs_a_read_its_deadline_not_every_retry(served):
    server, url, path, _ = served
    server.stall_seconds = 5.0
    store = store_over(manifest_for(path, url), verify="never", timeout=0.4, deadline=1.0)
    server.inject("src.h5", ["stall"] * 10)
    started = time.monotonic()
    with pytest.raises(OSError, match=r"deadline=1 s in all.*chunk 'v/c/3/0'"):
        store.get_sync("v/c/3/0")
    assert time.monotonic() - started < 2.5  # 5 attempts of 0.4 s would take 2 s + backoff
    with pytest.raises(ValueError, match="deadline must be a positive number"):
        store_over(manifest_for(path, url), deadline=0)
