"""The codec pipeline of ManifestStore arrays: chosen per store, local chunks read in threads."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import zlib

import numpy as np
import pytest
import zarr
from read_fixtures import count_calls, local_store, manifest_for, store_over, write_source
from zarr.codecs import BytesCodec
from zarr.codecs.numcodecs import Zlib
from zarr.core.array_spec import ArrayConfig, ArraySpec
from zarr.core.buffer import default_buffer_prototype
from zarr.core.dtype import Float32

from zarr_manifest_store import pipeline
from zarr_manifest_store.guards import ChunkRefused, guard_codecs
from zarr_manifest_store.io.sources import Sources
from zarr_manifest_store.pipeline import ManifestCodecPipeline


def pipeline_of(array: zarr.Array) -> object:
    return array._async_array.codec_pipeline


def test_local_chunks_are_read_and_decoded_through_the_synchronous_path(tmp_path, monkeypatch):
    store, data, _ = local_store(tmp_path)
    async_reads = count_calls(monkeypatch, Sources, "read")
    sync_reads = count_calls(monkeypatch, Sources, "read_sync")
    arr = zarr.open_group(store, mode="r")["v"]
    assert isinstance(pipeline_of(arr), ManifestCodecPipeline)
    np.testing.assert_array_equal(arr[:], data)
    np.testing.assert_array_equal(arr[7:19, 5:6], data[7:19, 5:6])
    assert not async_reads  # every chunk through get_sync, in zarr's thread pool
    assert len(sync_reads) == 24 + 7  # the whole array, then rows 6 to 19


def test_many_local_chunks_go_to_the_pool_in_runs_of_neighbours(tmp_path, monkeypatch):
    store, data, _ = local_store(tmp_path)
    runs: list[list[object]] = []
    pool_of = pipeline.fused_read_pool

    class Recording:
        def __init__(self, workers: int) -> None:
            self.pool = pool_of(workers)

        def map(self, fn, items):
            items = list(items)
            runs.extend(items)
            return self.pool.map(fn, items)

    monkeypatch.setattr(pipeline, "fused_read_pool", Recording)
    with zarr.config.set({"codec_pipeline.max_workers": 2}):
        np.testing.assert_array_equal(zarr.open_group(store, mode="r")["v"][:], data)
    assert sum(map(len, runs)) == 24  # every chunk once
    assert len(runs) == 12  # 2 workers: runs of 2, not a task a chunk
    keys = [item[0].path for run in runs for item in run]
    assert keys == sorted(keys, key=lambda k: [int(i) for i in k.rsplit("/c/", 1)[1].split("/")])


def test_remote_chunks_are_fetched_together(http_server, monkeypatch):
    data = write_source(http_server.root / "src.h5")
    url = f"{http_server.url}/src.h5"
    store = store_over(manifest_for(http_server.root / "src.h5", url=url))
    sync_reads = count_calls(monkeypatch, Sources, "read_sync")
    np.testing.assert_array_equal(zarr.open_group(store, mode="r")["v"][:], data)
    assert not sync_reads  # no blocking request per worker: gathered, then coalesced
    assert http_server.requests.count("GET", "/src.h5") <= 24 / 2


def run_fresh(code: str) -> str:
    """Run ``code`` in a fresh interpreter (zarr's pipeline setting is process-wide)."""
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


def test_other_stores_keep_zarrs_default_pipeline_and_a_users_choice_wins():
    out = run_fresh(
        """
        import zarr
        import zarr_manifest_store as zms

        store = zms.ManifestStore(zms.ManifestGroup())
        memory = zarr.create_array(zarr.storage.MemoryStore(), shape=(4,), chunks=(2,), dtype="i4")
        memory[:] = 7
        print(type(memory._async_array.codec_pipeline).__name__, memory[:].tolist())
        """
    )
    assert out == "BatchedCodecPipeline [7, 7, 7, 7]"
    out = run_fresh(
        """
        import zarr
        import zarr_manifest_store as zms

        metadata = zarr.create_array({}, shape=(2,), chunks=(2,), dtype="i1").metadata
        manifest = zms.ChunkManifest.from_dict({}, shape=(1,))
        array = zms.ManifestArray(metadata=metadata, manifest=manifest)
        store = zms.ManifestStore(zms.ManifestGroup(arrays={"a": array}))
        default = "zarr.core.codec_pipeline.BatchedCodecPipeline"
        with zarr.config.set({"codec_pipeline.path": default}):
            chosen = zarr.open_group(store, mode="r")["a"]
        print(type(chosen._async_array.codec_pipeline).__name__)
        print(type(zarr.open_group(store, mode="r")["a"]._async_array.codec_pipeline).__name__)
        """
    )
    assert out.split() == ["BatchedCodecPipeline", "ManifestCodecPipeline"]


def test_zlib_chunks_inflate_up_to_their_decoded_size_and_no_further():
    """Output up to the chunk's size inflates (a shorter one fails later, in the bytes codec);
    a stream inflating past it is refused there (issue 17: decompression bombs)."""
    proto = default_buffer_prototype()
    spec = ArraySpec(
        shape=(10, 10),
        dtype=Float32(),
        fill_value=0.0,
        config=ArrayConfig.from_dict({}),
        prototype=proto,
    )
    _, codec = guard_codecs([BytesCodec(), Zlib(level=1)])
    for size in (0, 1, 399, 400, 401, 100_000):
        raw = np.random.default_rng(size).integers(0, 4, size, dtype=np.uint8).tobytes()
        encoded = proto.buffer.from_bytes(zlib.compress(raw, 1))
        if size <= 400:
            assert codec._decode_sync(encoded, spec).to_bytes() == raw
        else:
            with pytest.raises(ChunkRefused, match="inflates past 400 bytes"):
                codec._decode_sync(encoded, spec)


def test_a_single_small_chunk_is_decoded_without_a_thread_hop(tmp_path, monkeypatch):
    store, data, _ = local_store(tmp_path)
    arr = zarr.open_group(store, mode="r")["v"]
    np.testing.assert_array_equal(arr[:], data)  # the file is now in the page cache
    hops = count_calls(monkeypatch, pipeline.asyncio, "to_thread")
    np.testing.assert_array_equal(arr[4:6], data[4:6])
    np.testing.assert_array_equal(arr[7, 3:9], data[7, 3:9])
    assert not hops
    monkeypatch.setattr(pipeline, "DECODE_AT_ONCE_BYTES", 10)  # every chunk counts as big
    np.testing.assert_array_equal(arr[4:6], data[4:6])
    assert len(hops) == 1  # decoded in a thread


def test_a_single_remote_chunk_is_fetched_through_the_store(http_server, monkeypatch):
    data = write_source(http_server.root / "src.h5")
    url = f"{http_server.url}/src.h5"
    store = store_over(manifest_for(http_server.root / "src.h5", url=url))
    sync_reads = count_calls(monkeypatch, Sources, "read_sync")
    np.testing.assert_array_equal(zarr.open_group(store, mode="r")["v"][10:12], data[10:12])
    assert not sync_reads
