"""Which read patterns start read-ahead: reading on through a file does, random reads rarely
do (each block a random read starts is a large request it waits for, mostly wasted)."""

from __future__ import annotations

import asyncio
from concurrent.futures import Future

import numpy as np

from zarr_manifest_store.io.readahead import ReadAhead
from zarr_manifest_store.manifest import ChunkManifest

FILES, CHUNKS, SIZE = 24, 24, 1000  # the latency benchmark's archive: 24 files of 24 chunks


def _reader() -> tuple[ReadAhead, list[tuple[str, int, int]]]:
    """A read-ahead over FILES remote files of CHUNKS chunks each, and the blocks it fetches."""
    fetched: list[tuple[str, int, int]] = []

    def fetch(path: str, start: int, stop: int) -> Future[bytes]:
        fetched.append((path, start, stop))
        future: Future[bytes] = Future()
        future.set_result(bytes(stop - start))
        return future

    ahead = ReadAhead(
        fetch, lambda path: True, budget_bytes=1 << 30, max_gap_bytes=0, max_block_bytes=1 << 20
    )
    ahead.add_chunks(
        ChunkManifest(
            paths=[f"s3://b/f{f}.nc" for f in range(FILES)],
            path_index=np.repeat(np.arange(FILES), CHUNKS).reshape(FILES * CHUNKS, 1),
            offsets=np.tile(np.arange(CHUNKS) * SIZE, FILES).reshape(FILES * CHUNKS, 1),
            lengths=np.full((FILES * CHUNKS, 1), SIZE),
        )
    )
    return ahead, fetched


def _read(ahead: ReadAhead, chunks: list[int]) -> int:
    """Read each chunk (index in the archive) alone, in turn; how many had no block."""

    async def reads() -> int:
        plain = 0
        for c in chunks:
            data, _ = await ahead.read(f"s3://b/f{c // CHUNKS}.nc", c % CHUNKS * SIZE, SIZE)
            plain += data is None
        return plain

    return asyncio.run(reads())


def test_random_reads_rarely_start_a_block():
    ahead, fetched = _reader()
    chunks = np.random.default_rng(1).integers(0, FILES * CHUNKS, 2000).tolist()
    _read(ahead, chunks)
    # 46 of 2,000 do; 174 did when any read among the next 8 chunks of the previous one
    # in its file, with up to 8 reads of other files between, counted as reading on
    assert len(fetched) <= len(chunks) // 25


def test_reading_on_starts_blocks_onwards_and_backwards():
    ahead, fetched = _reader()
    assert _read(ahead, list(range(CHUNKS))) == 1  # the first chunk alone, then one block
    assert fetched == [("s3://b/f0.nc", SIZE, CHUNKS * SIZE)]
    last = 2 * CHUNKS - 1
    assert _read(ahead, list(range(last, CHUNKS - 1, -1))) == 1  # dask's last-to-first order
    assert fetched[1] == ("s3://b/f1.nc", 0, (CHUNKS - 1) * SIZE)


def test_reads_of_two_threads_out_of_step_still_start_blocks():
    ahead, fetched = _reader()
    order = [0, 2, 1, 3]  # two workers' reads of a file, one of them a read behind
    assert _read(ahead, order) < len(order)
    assert fetched
