"""Hostile chunks and codec settings (issue 17, items 6, 7, the vlen count of 8, and 10).

Each attack is a small document whose chunk bytes lie in a header a C decoder
trusts, inflate far past the chunk's size, or declare more items than the chunk
holds. It is read in a child interpreter whose address space is capped: the
child must end normally (no signal death) with a ``ManifestError`` naming the
array and the chunk key. Codec settings of the wrong type or range are refused
when the document is opened, naming the file and the field.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from hostile_chunks import (
    ATTACKS,
    BLOSC,
    BYTES,
    DATA,
    N,
    sharded_bomb_document,
    vlen_count_lie,
    vlen_zlib_document,
    write_document,
)

import zarr_manifest_store as zms
from zarr_manifest_store.array import parse_array_metadata
from zarr_manifest_store.codecs import decode_chunk, encode_chunk
from zarr_manifest_store.errors import ManifestError

pytestmark = pytest.mark.filterwarnings("ignore::zarr.errors.UnstableSpecificationWarning")

ADDRESS_SPACE = 3 << 30
"""The child's address-space cap: a bomb that escaped fails, it does not take the machine."""

CHILD = """
import json, os, resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
import warnings
import zarr
import zarr_manifest_store as zms
from zarr_manifest_store.codecs import decode_chunk
warnings.simplefilter("ignore")


def read(folder, how, allow):
    array = zarr.open_group(zms.ManifestStore.open(folder, allow=[allow]), mode="r")["a"]
    if how == "whole":
        array[...]
    elif how == "one":
        array[:1]
    elif how == "decode_chunk":
        raw = open(os.path.join(os.path.dirname(folder), "chunk.bin"), "rb").read()
        decode_chunk(array.metadata, raw, array.metadata.chunks)


for job in json.loads(sys.argv[1]):
    try:
        with zarr.config.set(job["settings"]):
            read(job["folder"], job["how"], job["allow"])
        print("READ", flush=True)
    except zms.ManifestError as e:
        print("REFUSED", str(e).replace(chr(10), " "), flush=True)
    except BaseException as e:
        print("OTHER", type(e).__name__, str(e)[:300].replace(chr(10), " "), flush=True)
"""


def read_in_child(jobs: list[dict[str, Any]]) -> list[str]:
    """What a capped child prints reading each job's document (``folder``, ``how``: 'whole',
    'one' or 'decode_chunk', ``allow``, zarr ``settings``): one line per job.

    A job that kills the child (a signal) gets that death as its line, and so do those after it.
    """
    done = subprocess.run(
        [sys.executable, "-c", CHILD.format(cap=ADDRESS_SPACE), json.dumps(jobs)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    lines = done.stdout.splitlines()
    death = f"DIED (exit status {done.returncode}) {done.stderr[-500:]}"
    return lines + [death] * (len(jobs) - len(lines))


def job(folder: Path, how: str = "whole", settings: dict | None = None) -> dict[str, Any]:
    return {
        "folder": str(folder),
        "how": how,
        "allow": str(folder.parent),
        "settings": settings or {},
    }


SINGLE = (
    "blosc: uncompressed copy past the chunk",
    "numcodecs.zlib: bomb",
    "zstd: run-length bomb without a content size",
)
VLEN = [("string", "vlen-utf8"), ("bytes", "vlen-bytes")]
VLEN_COUNTS = [2**28, N + 1, N - 1]
LIMIT = "zarr_manifest_store.max_unsized_chunk_bytes"


@pytest.fixture(scope="module")
def outputs(tmp_path_factory: pytest.TempPathFactory) -> dict[tuple[Any, ...], str]:
    """Every local attack below, read by one capped child: what it printed, by attack."""
    root = tmp_path_factory.mktemp("attacks")
    jobs: dict[tuple[Any, ...], dict[str, Any]] = {}
    for i, (name, (codecs, make)) in enumerate(ATTACKS.items()):
        folder = write_document(root / f"attack{i}", codecs, make())
        jobs["whole", name] = job(folder)
        for how in ("one", "decode_chunk") if name in SINGLE else ():
            jobs[how, name] = job(folder, how)
    for data_type, codec in VLEN:
        for count in VLEN_COUNTS:
            folder = root / f"vlen-{codec}-{count}"
            lie = vlen_count_lie(count)
            jobs["vlen", codec, count] = job(
                write_document(folder, [{"name": codec}], lie, data_type=data_type)
            )
    strings = vlen_zlib_document(root / "strings")
    for limit in (1 << 20, 8 << 20):
        jobs["vlen limit", limit] = job(strings, settings={LIMIT: limit})
    jobs["sharded"] = job(sharded_bomb_document(root / "sharded"))
    return dict(zip(jobs, read_in_child(list(jobs.values())), strict=True))


def assert_refused(output: str, chunk: str = "chunk 'c/") -> None:
    """A ``ManifestError`` that names the array 'a' and a chunk key."""
    assert output.startswith("REFUSED array 'a', "), output
    assert chunk in output, output


@pytest.mark.parametrize("attack", sorted(ATTACKS))
def test_every_codec_refuses_a_hostile_chunk_with_an_error_naming_it(attack, outputs):
    assert_refused(outputs["whole", attack])


@pytest.mark.parametrize("attack", SINGLE)
def test_single_chunk_reads_and_decode_chunk_are_guarded(attack, outputs):
    assert_refused(outputs["one", attack], "chunk 'c/0'")
    assert outputs["decode_chunk", attack].startswith("REFUSED "), outputs["decode_chunk", attack]


def test_remote_chunks_are_guarded(http_server, tmp_path):
    jobs = []
    for i, attack in enumerate(
        ["blosc: 2 GiB decoded size", "numcodecs.gzip: bomb of many members"]
    ):
        codecs, make = ATTACKS[attack]
        (http_server.root / f"chunk{i}.bin").write_bytes(make())
        url = f"{http_server.url}/chunk{i}.bin"
        folder = write_document(tmp_path / f"doc{i}", codecs, make(), source=url)
        jobs.append({**job(folder), "allow": f"{http_server.url}/"})
    for output in read_in_child(jobs):
        assert_refused(output)


@pytest.mark.parametrize("codec", [codec for _, codec in VLEN])
@pytest.mark.parametrize("count", VLEN_COUNTS)
def test_a_vlen_item_count_must_be_the_chunks(codec, count, outputs):
    assert_refused(outputs["vlen", codec, count])
    assert f"declares {count} items" in outputs["vlen", codec, count]


def test_a_vlen_chunk_inflates_no_further_than_the_named_limit(outputs):
    assert_refused(outputs["vlen limit", 1 << 20])
    assert f"{LIMIT}={1 << 20}" in outputs["vlen limit", 1 << 20]
    assert outputs["vlen limit", 8 << 20] == "READ"


def test_a_sharded_array_guards_its_inner_chunks(outputs):
    assert outputs["sharded"].startswith("REFUSED "), outputs["sharded"]
    assert "inflates past 2048 bytes" in outputs["sharded"]


CODEC_SETTINGS = [
    ({"name": "numcodecs.shuffle", "configuration": {"elementsize": "12"}}, "elementsize"),
    ({"name": "numcodecs.shuffle", "configuration": {"elementsize": 0}}, "elementsize"),
    ({"name": "numcodecs.shuffle", "configuration": {"elementsize": 3}}, "elementsize"),
    ({"name": "numcodecs.zlib", "configuration": {"level": "1"}}, "level"),
    ({"name": "numcodecs.zlib", "configuration": {"level": 10}}, "level"),
    ({"name": "numcodecs.gzip", "configuration": {"level": -3}}, "level"),
    ({"name": "numcodecs.bz2", "configuration": {"level": 0}}, "level"),
    ({"name": "numcodecs.zstd", "configuration": {"level": 1.5}}, "level"),
    ({"name": "numcodecs.zstd", "configuration": {"checksum": "yes"}}, "checksum"),
    ({"name": "numcodecs.lz4", "configuration": {"acceleration": "fast"}}, "acceleration"),
    ({"name": "numcodecs.lzma", "configuration": {"format": 9}}, "format"),
    ({"name": "numcodecs.lzma", "configuration": {"filters": "x"}}, "filters"),
    ({"name": "numcodecs.blosc", "configuration": {"cname": "nope"}}, "cname"),
    ({"name": "numcodecs.blosc", "configuration": {"clevel": -1}}, "clevel"),
    ({"name": "numcodecs.blosc", "configuration": {"shuffle": "shuffle"}}, "shuffle"),
    ({"name": "numcodecs.blosc", "configuration": {"typesize": 0}}, "typesize"),
    ({"name": "numcodecs.crc32", "configuration": {"location": "middle"}}, "location"),
    ({"name": "numcodecs.zlib", "configuration": {"level": 1, "window": 9}}, "window"),
    ({**BLOSC, "configuration": {**BLOSC["configuration"], "clevel": -1}}, "clevel"),
    ({**BLOSC, "configuration": {**BLOSC["configuration"], "blocksize": -1}}, "blocksize"),
]
ARRAY_CODEC_SETTINGS = [
    ({"name": "numcodecs.delta", "configuration": {"dtype": "(1000000000,)f8"}}, "dtype"),
    ({"name": "numcodecs.delta", "configuration": {"dtype": "<f4", "astype": "object"}}, "astype"),
    (
        {
            "name": "numcodecs.fixedscaleoffset",
            "configuration": {"offset": "0", "scale": 1, "dtype": "<f4"},
        },
        "offset",
    ),
    (
        {
            "name": "numcodecs.fixedscaleoffset",
            "configuration": {"offset": 0, "scale": 1, "dtype": "U9"},
        },
        "dtype",
    ),
    ({"name": "numcodecs.quantize", "configuration": {"digits": -1, "dtype": "<f4"}}, "digits"),
    ({"name": "numcodecs.bitround", "configuration": {"keepbits": "3"}}, "keepbits"),
    (
        {
            "name": "numcodecs.astype",
            "configuration": {"encode_dtype": "V8", "decode_dtype": "<f4"},
        },
        "encode_dtype",
    ),
]


def patched_codecs(document: Path, codecs: list[Any]) -> None:
    """Replace the codecs of every array metadata of ``document``'s ``zarr.json`` files."""

    def patch(node: Any) -> Any:
        if isinstance(node, dict):
            if node.get("node_type") == "array" and "codecs" in node:
                node["codecs"] = codecs
            return {k: patch(v) for k, v in node.items()}
        return [patch(v) for v in node] if isinstance(node, list) else node

    for path in document.rglob("zarr.json"):
        path.write_text(json.dumps(patch(json.loads(path.read_text()))))


@pytest.mark.parametrize(
    ("codecs", "key"),
    [([BYTES, codec], key) for codec, key in CODEC_SETTINGS]
    + [([codec, BYTES], key) for codec, key in ARRAY_CODEC_SETTINGS],
    ids=lambda v: json.dumps(v) if isinstance(v, list) else v,
)
def test_codec_settings_are_checked_when_the_document_opens(codecs, key, tmp_path):
    folder = write_document(tmp_path, [BYTES], DATA.tobytes())
    patched_codecs(folder, codecs)
    with pytest.raises(
        ManifestError, match=rf"zarr\.json: field .*codecs\[\d\]\.configuration\.{key}: "
    ):
        zms.ManifestStore.open(folder, allow=[str(tmp_path)])


def test_settings_as_zarr_and_the_scanners_write_them_open_and_read(tmp_path):
    codecs = [
        {"name": "numcodecs.delta", "configuration": {"dtype": "<f4", "astype": "<f4"}},
        BYTES,
        {"name": "numcodecs.shuffle", "configuration": {"elementsize": 4}},
        {"name": "numcodecs.zlib", "configuration": {"level": 6}},
        {"name": "numcodecs.fletcher32", "configuration": {}},
    ]
    metadata = parse_array_metadata(
        {
            "shape": [N],
            "data_type": "float32",
            "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [N]}},
            "chunk_key_encoding": {"name": "default"},
            "fill_value": 0,
            "codecs": codecs,
        }
    )
    chunk = encode_chunk(metadata, (N,), DATA)
    folder = write_document(tmp_path, codecs, chunk)
    store = zms.ManifestStore.open(folder, allow=[str(tmp_path)])
    np.testing.assert_array_equal(zarr.open_group(store, mode="r")["a"][:N], DATA)
    np.testing.assert_array_equal(decode_chunk(metadata, chunk, (N,)), DATA)


FUZZ = """
import resource, sys
resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
import struct, warnings
import numpy as np
import numcodecs
import zarr_manifest_store as zms
from zarr_manifest_store.array import parse_array_metadata
from zarr_manifest_store.codecs import decode_chunk
warnings.simplefilter("ignore")
rng = np.random.default_rng(17)
data = np.cumsum(rng.normal(size={n})).astype("<f4")
compressors = {{
    "blosc": (numcodecs.Blosc("lz4", 5, 1), {{"name": "blosc", "configuration": {{"cname": "lz4",
        "clevel": 5, "shuffle": "shuffle", "typesize": 4, "blocksize": 0}}}}),
    "blosc-zstd": (numcodecs.Blosc("zstd", 5, 2, blocksize=1024), {{"name": "numcodecs.blosc", "configuration": {{}}}}),
    "lz4": (numcodecs.LZ4(), {{"name": "numcodecs.lz4", "configuration": {{}}}}),
    "zstd": (numcodecs.Zstd(1), {{"name": "numcodecs.zstd", "configuration": {{}}}}),
}}
counts = {{"decoded": 0, "refused": 0}}
for name, (compressor, codec) in compressors.items():
    metadata = parse_array_metadata({{"shape": [{n}], "data_type": "float32",
        "chunk_grid": {{"name": "regular", "configuration": {{"chunk_shape": [{n}]}}}},
        "chunk_key_encoding": {{"name": "default"}}, "fill_value": 0,
        "codecs": [{{"name": "bytes", "configuration": {{"endian": "little"}}}}, codec]}})
    valid = compressor.encode(data)
    for trial in range({trials}):
        chunk = bytearray(valid)
        for _ in range(rng.integers(1, 6)):  # a few bytes, mostly in the headers
            at = rng.integers(0, min(len(chunk), 64) if rng.random() < 0.7 else len(chunk))
            chunk[at] = rng.integers(0, 256)
        if name.startswith("blosc") and rng.random() < 0.5:
            struct.pack_into("<I", chunk, 12, len(chunk))  # a compressed size that holds
        try:
            decode_chunk(metadata, bytes(chunk), ({n},))
            counts["decoded"] += 1
        except zms.ManifestError:
            counts["refused"] += 1
        except BaseException as e:
            print(name, "OTHER", type(e).__name__, e)
            sys.exit(1)
print(counts)
"""


def test_mutated_headers_decode_or_are_refused_never_crash():
    """Random bytes changed in valid blosc, lz4 and zstd chunks (headers mostly): each chunk
    decodes or is refused with a ManifestError, and the interpreter survives all of them."""
    code = FUZZ.format(cap=ADDRESS_SPACE, n=N, trials=250)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, f"{done.stdout[-1000:]} {done.stderr[-2000:]}"
    assert "'refused'" in done.stdout
