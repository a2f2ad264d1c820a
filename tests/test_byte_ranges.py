"""Property tests: every byte request reads exactly the slice zarr's contract describes."""

from __future__ import annotations

import asyncio
from pathlib import Path

from helpers import array_metadata
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from zarr.abc.store import OffsetByteRequest, RangeByteRequest, SuffixByteRequest
from zarr.core.buffer import default_buffer_prototype

from zarr_manifest_store import ChunkManifest, ManifestArray, ManifestStore

PROTO = default_buffer_prototype()
sizes = st.integers(min_value=0, max_value=64)
byte_requests = st.one_of(
    st.none(),
    st.tuples(sizes, sizes).map(lambda t: RangeByteRequest(min(t), max(t))),
    sizes.map(OffsetByteRequest),
    sizes.map(SuffixByteRequest),
)


def expected_slice(data: bytes, request) -> bytes:
    """The slice of ``data`` a request asks for, clamped to the value like HTTP ranges."""
    if request is None:
        return data
    if isinstance(request, RangeByteRequest):
        return data[request.start : request.end]
    if isinstance(request, OffsetByteRequest):
        return data[request.offset :]
    return data[len(data) - min(request.suffix, len(data)) :]


def store_over(
    tmp: Path, prefix: bytes, chunk: bytes, suffix: bytes, inline: bytes
) -> ManifestStore:
    src = tmp / "source.bin"
    src.write_bytes(prefix + chunk + suffix)
    manifest = ChunkManifest.from_dict(
        {
            "0": {"path": str(src), "offset": len(prefix), "length": len(chunk)},
            "1": {"data": inline},
        }
    )
    return ManifestStore(
        ManifestArray(metadata=array_metadata((2,), (1,), "uint8"), manifest=manifest)
    )


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    prefix=st.binary(max_size=20),
    chunk=st.binary(max_size=40),
    suffix=st.binary(max_size=20),
    inline=st.binary(max_size=40),
    requests=st.lists(
        st.tuples(st.sampled_from(["c/0", "c/1", "zarr.json"]), byte_requests), max_size=6
    ),
)
def test_every_request_reads_exactly_its_slice(tmp_path, prefix, chunk, suffix, inline, requests):
    store = store_over(tmp_path, prefix, chunk, suffix, inline)
    doc = store.get_sync("zarr.json").to_bytes()
    values = {"c/0": chunk, "c/1": inline, "zarr.json": doc}

    async def check():
        for key, request in requests:
            expected = expected_slice(values[key], request)
            got = await store.get(key, PROTO, request)
            assert got.to_bytes() == expected, (key, request)
            assert store.get_sync(key, byte_range=request).to_bytes() == expected
        partial = await store.get_partial_values(PROTO, requests)
        assert [b.to_bytes() for b in partial] == [
            expected_slice(values[k], r) for k, r in requests
        ]
        assert await store.getsize("c/0") == len(chunk)

    asyncio.run(check())
    store.close()
