"""A remote read is a plan: one request per random chunk, every chunk of a selection asked
for at once (concurrency per host, bounded), memory held within the read budget."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import zarr
from read_fixtures import (
    CHUNK_ROWS,
    ROWS,
    SlowHTTPServer,
    manifest_for,
    store_over,
    write_source,
)
from servers import RangeHTTPServer

import zarr_manifest_store as zms
from zarr_manifest_store.io.sources import Sources


@pytest.fixture
def slow_server(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    server = SlowHTTPServer(root).start()
    yield server
    server.stop()


def _served_source(server: RangeHTTPServer, tmp_path: Path) -> tuple[Path, str, np.ndarray]:
    path = tmp_path / "src.h5"
    data = write_source(path)
    shutil.copy(path, server.root / "src.h5")
    return path, f"{server.url}/src.h5", data


@pytest.mark.parametrize("kind", ["s3", "http"])
def test_random_chunk_of_a_fresh_store_is_one_request(kind, request, tmp_path):
    """A recorded fingerprint is checked on the data request itself (``If-Match``, and the
    size and ETag the range came with), not by a HEAD first: one chunk, one request."""
    path = tmp_path / "src.h5"
    data = write_source(path)
    if kind == "s3":
        fs, bucket, server = request.getfixturevalue("s3")
        url, options = f"s3://{bucket}/src.h5", server.storage_options
        fs.put(str(path), url)
        key = f"/{bucket}/src.h5"
    else:
        server = request.getfixturevalue("http_server")
        shutil.copy(path, server.root / "src.h5")
        url, options, key = f"{server.url}/src.h5", None, "/src.h5"
    fp = Sources(options).fingerprint(url)
    store = store_over(manifest_for(path, url, fp), storage_options=options)
    server.requests.clear()
    arr = zarr.open_group(store, mode="r")["v"]
    np.testing.assert_array_equal(arr[10:12], data[10:12])
    assert server.requests.count("GET", path=key) == 1
    assert server.requests.count("HEAD", path=key) == 0


def test_changed_http_source_is_refused_without_a_head(http_server, tmp_path):
    """HTTP ranges are not asked for with If-Match (weak ETags); the fingerprint the range
    was served with is compared instead, on the first request."""
    path, url, _ = _served_source(http_server, tmp_path)
    manifest = manifest_for(path, url, Sources().fingerprint(url))
    write_source(http_server.root / "src.h5", seed=3)  # same size, new ETag
    store = store_over(manifest, retries=0)
    http_server.requests.clear()
    with pytest.raises(zms.SourceChangedError, match=r"src\.h5' changed since it was scanned"):
        zarr.open_group(store, mode="r")["v"][10:12]
    assert http_server.requests.count("HEAD", path="/src.h5") == 0


def test_a_selection_is_asked_for_at_once_with_concurrency_per_host(slow_server, tmp_path):
    """Every chunk of a read goes to the store at once: with coalescing off, all 24 ranges
    are in flight together (more than zarr's batches of 10), up to ``max_concurrency``."""
    path, url, data = _served_source(slow_server, tmp_path)
    manifest = manifest_for(path, url, Sources().fingerprint(url))
    store = store_over(manifest, max_coalesced_bytes=1)
    np.testing.assert_array_equal(zarr.open_group(store, mode="r")["v"][:], data)
    # all 24 when the machine keeps up; more than a zarr batch of 10 whatever its load
    assert 10 < slow_server.most_in_flight <= ROWS // CHUNK_ROWS

    slow_server.most_in_flight = 0
    capped = store_over(manifest, max_coalesced_bytes=1, max_concurrency=4)
    np.testing.assert_array_equal(zarr.open_group(capped, mode="r")["v"][:], data)
    assert 2 <= slow_server.most_in_flight <= 4


def test_a_selection_larger_than_the_read_budget_streams_through_it(slow_server, tmp_path):
    """The stored bytes asked for at once stay within ``read_budget_bytes``; values equal."""
    path, url, data = _served_source(slow_server, tmp_path)
    manifest = manifest_for(path, url, Sources().fingerprint(url))
    budget = int(manifest.lengths.max()) * 6
    assert manifest.lengths.sum() > 3 * budget
    store = store_over(manifest, read_budget_bytes=budget)
    slow_server.requests.clear()
    np.testing.assert_array_equal(zarr.open_group(store, mode="r")["v"][:], data)
    assert 0 < slow_server.most_bytes_in_flight <= budget
    assert slow_server.requests.count("GET", path="/src.h5") >= 4  # a window after another

    slow_server.most_bytes_in_flight = 0
    whole = store_over(manifest)  # the default budget: one request for the whole file
    slow_server.requests.clear()
    np.testing.assert_array_equal(zarr.open_group(whole, mode="r")["v"][:], data)
    assert slow_server.requests.count("GET", path="/src.h5") == 1
    assert slow_server.most_bytes_in_flight > budget


def test_read_budget_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="read_budget_bytes must be a positive integer"):
        Sources(read_budget_bytes=0)
