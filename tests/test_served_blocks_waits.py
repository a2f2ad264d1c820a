"""Record variables reading the same records at once (served_blocks): one reads them, the
others wait for that read and cut their chunk from the records it keeps; a read that fails,
is cancelled or (blocking) outlasts ``deadline`` leaves each waiter to read for itself, and
a cancelled waiter does not cancel the read it waits for."""

from __future__ import annotations

import asyncio
import threading

import numpy as np
import pytest
from test_served_rows import _radar, unmapped  # noqa: F401 - a fixture

import zarr_manifest_store as zms

READERS = ("phase", "gates")


class Gated:
    """A store's sources whose reads of the records wait for ``open`` (and fail if ``fail``),
    counting the reads."""

    def __init__(self, sources, fail: bool = False) -> None:
        self.sources, self.fail = sources, fail
        self.reads = 0
        self.started, self.open = threading.Event(), threading.Event()
        self.options = sources.options

    def read_mapped(self, *args):
        return self.sources.read_mapped(*args)

    def read_sync(self, path, start, span):
        self.reads += 1
        if self.reads == 1:
            self.started.set()
            self.open.wait(10)
            if self.fail:
                raise OSError("the first read fails")
        return self.sources.read_sync(path, start, span)

    async def read(self, path, start, span):
        self.reads += 1
        if self.reads == 1:
            self.started.set()
            while not self.open.is_set():
                await asyncio.sleep(0.001)
            if self.fail:
                raise OSError("the first read fails")
        return await self.sources.read(path, start, span)


@pytest.fixture
def radar(tmp_path, unmapped):  # noqa: F811 - the fixture imported
    """A store of a netCDF-3 file read without a memory map, and served chunk 0 of two of its
    record variables as a store that reads them one at a time gives them."""
    path = tmp_path / "radar.nc"
    _radar(path, 300)
    group = zms.scan(str(path))
    expected = {}
    for name in READERS:
        store = zms.ManifestStore(group)
        served = store._served[name]
        expected[name] = _out(served)
        assert served.blocks.chunk_into_sync(store._sources, served, 0, expected[name])
    store = zms.ManifestStore(group)
    return store, expected


def _out(served) -> np.ndarray:
    return np.zeros((served.factor, len(served.fill_row)), served.served_dtype)


async def _second_waits(gated, first, second, cancel=None):
    """Run ``first`` until its read is held at the gate, then ``second``, which must wait for
    that read rather than read; ``cancel`` (``"first"`` or ``"second"``) is cancelled while
    the read is held; then the gate opens: both outcomes (values or exceptions)."""
    one = asyncio.create_task(first)
    await asyncio.to_thread(gated.started.wait, 10)
    two = asyncio.create_task(second)
    await asyncio.sleep(0.05)
    assert not two.done()  # waiting for the read under way, not reading
    if cancel is not None:
        (one if cancel == "first" else two).cancel()
        await asyncio.sleep(0.05)
    gated.open.set()
    return await asyncio.gather(one, two, return_exceptions=True)


async def _cut(store, sources, name):
    served = store._served[name]
    out = _out(served)
    assert await served.blocks.chunk_into(sources, served, 0, out)
    return out


def test_a_waiter_cuts_its_chunk_from_the_records_another_read(radar):
    store, expected = radar
    gated = Gated(store._sources)
    both = _second_waits(gated, _cut(store, gated, "phase"), _cut(store, gated, "gates"))
    phase, gates = asyncio.run(both)
    np.testing.assert_array_equal(phase, expected["phase"])
    np.testing.assert_array_equal(gates, expected["gates"])
    assert gated.reads == 1
    assert store._served["phase"].blocks.held_bytes > 0  # kept for the other record variables


@pytest.mark.parametrize("ending", ["fails", "is cancelled"])
def test_a_waiter_reads_for_itself_when_the_read_it_waits_for_ends_without_records(radar, ending):
    store, expected = radar
    gated = Gated(store._sources, fail=ending == "fails")
    cancel = "first" if ending == "is cancelled" else None
    both = _second_waits(gated, _cut(store, gated, "phase"), _cut(store, gated, "gates"), cancel)
    first, gates = asyncio.run(both)
    assert isinstance(first, OSError if ending == "fails" else asyncio.CancelledError)
    np.testing.assert_array_equal(gates, expected["gates"])
    assert gated.reads == 2


def test_a_cancelled_waiter_leaves_the_read_it_waits_for_to_end_and_be_kept(radar):
    store, expected = radar
    gated = Gated(store._sources)
    both = _second_waits(gated, _cut(store, gated, "phase"), _cut(store, gated, "gates"), "second")
    phase, second = asyncio.run(both)
    assert isinstance(second, asyncio.CancelledError)
    np.testing.assert_array_equal(phase, expected["phase"])
    blocks = store._served["phase"].blocks
    assert blocks.held_bytes > 0  # kept for the member yet to cut its own
    gates = _out(store._served["gates"])
    assert blocks.chunk_into_sync(gated, store._served["gates"], 0, gates)
    np.testing.assert_array_equal(gates, expected["gates"])
    assert gated.reads == 1  # cut from the records kept


@pytest.mark.parametrize("fail", [False, True])
def test_a_blocking_waiter_waits_within_the_deadline_then_reads_for_itself(radar, fail):
    store, expected = radar
    gated = Gated(store._sources, fail=fail)
    gated.options = {**store._sources.options, "deadline": 0.2}
    results = {}

    def cut(name):
        served = store._served[name]
        out = _out(served)
        try:
            assert served.blocks.chunk_into_sync(gated, served, 0, out)
            results[name] = out
        except OSError as error:
            results[name] = error

    first = threading.Thread(target=cut, args=("phase",))
    first.start()
    assert gated.started.wait(10)
    cut("gates")  # waits 0.2 s for the first read, then reads the records itself
    gated.open.set()
    first.join(10)
    np.testing.assert_array_equal(results["gates"], expected["gates"])
    assert gated.reads == 2
    if fail:
        assert isinstance(results["phase"], OSError)
    else:
        np.testing.assert_array_equal(results["phase"], expected["phase"])


@pytest.mark.parametrize("fail", [False, True])
def test_a_block_being_read_for_one_array_is_waited_for_by_another(radar, fail):
    """Rows read through blocks (arrays not cut as a family): a second array waits for the
    block being read for the first, and takes its rows from it; if that read fails, it reads
    its own rows."""
    store, _ = radar
    gated = Gated(store._sources, fail=fail)
    path = store._served["phase"].array.manifest.paths[0]
    blocks = store._served["phase"].blocks
    with open(path.removeprefix("file://"), "rb") as f:
        whole = f.read()

    first = blocks.read(gated, "phase", path, 1000, 100, 1)
    first, second = asyncio.run(
        _second_waits(gated, first, blocks.read(gated, "gates", path, 5000, 200, 1))
    )
    assert bytes(second) == whole[5000:5200]
    if fail:
        assert isinstance(first, OSError)
        assert gated.reads == 2
    else:
        assert bytes(first) == whole[1000:1100]
        assert gated.reads == 1
