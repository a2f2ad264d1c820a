"""Hostile documents that declare far more than their bytes hold: memory stays in proportion.

Each document here is under 100 kB, yet declares a grid of 2^27 chunks, an inline array of
2 GiB, manifest blocks of 2^23 references or a dimension coordinate of 2^28 elements. Every
attack runs in a subprocess whose address space is capped, so that a regression fails (a
MemoryError) instead of eating the machine; the peak resident memory must stay far below the
cap, and a refusal must be a ManifestError / ValueError naming the limit that refused it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zarr
from numcodecs import Zstd

import zarr_manifest_store as zms

CAP = 3 * 2**30
"""The child's address space (thread stacks and allocator arenas reserve much of it)."""
PEAK = 600 * 2**20
"""The acceptance bar: a document under 100 kB costs less than this at peak."""
CHILD = textwrap.dedent(
    """
    import json, resource, sys, traceback
    resource.setrlimit(resource.RLIMIT_AS, ({cap}, {cap}))
    outcome = {{"error": None}}
    try:
        import numpy as np, zarr, zarr_manifest_store as zms
        from zarr_manifest_store.cli import main
        doc, operation = sys.argv[1], sys.argv[2]
        options = json.loads(sys.argv[3])
        {body}
    except BaseException as e:  # the parent judges the outcome
        outcome["error"] = f"{{type(e).__name__}}: {{e}}"
        outcome["trace"] = traceback.format_exc()[-2000:]
    # VmHWM: this process's own peak (ru_maxrss would start from the parent's, across exec)
    status = open("/proc/self/status").read().split("VmHWM:")[1]
    outcome["peak"] = int(status.split()[0]) * 1024
    print(json.dumps(outcome))
    """
)
OPERATIONS = """
if operation == "read":
    store = zms.ManifestStore.open(doc, **options)
    outcome["value"] = zarr.open_array(store, path="v", mode="r")[5].tolist()
elif operation == "read-inline":
    store = zms.ManifestStore.open(doc, **options)
    outcome["value"] = zarr.open_array(store, path="v", mode="r")[4:8].tolist()
elif operation == "verify":
    outcome["value"] = zms.ManifestStore.open(doc, **options).verify().ok
elif operation == "info":
    outcome["value"] = main(["info", doc])
elif operation == "summarize":
    from zarr_manifest_store.summary import summarize
    outcome["value"] = summarize(zms.ManifestStore.open(doc, **options)).references
elif operation == "load":
    zms.ManifestStore.open(doc, load=True, **options)
    outcome["value"] = "loaded"
elif operation == "xarray":
    import xarray as xr
    ds = xr.open_dataset(doc, engine="zarr_manifest", **options)
    outcome["value"] = dict(ds.sizes)
elif operation == "virtual":
    outcome["value"] = dict(zms.open_virtual_dataset(doc, **options).sizes)
elif operation == "from_dict":
    m = zms.ChunkManifest.from_dict({"99999999.1": {"path": "/a", "offset": 0, "length": 4}})
    outcome["value"] = [m.nchunks, list(m.shape)]
    m.path_index
"""


def attack(doc: Path | str, operation: str, **options: Any) -> dict[str, Any]:
    """Run ``operation`` on ``doc`` in a capped subprocess; its outcome and peak memory."""
    body = textwrap.indent(OPERATIONS, " " * 4).strip()
    script = CHILD.format(cap=CAP, body=body)
    done = subprocess.run(
        [sys.executable, "-c", script, str(doc), operation, json.dumps(options)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=Path(doc).parent if isinstance(doc, Path) else None,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    outcome = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcome["peak"] < PEAK, (operation, outcome["peak"] / 2**20, outcome)
    return outcome


def refused(outcome: dict[str, Any], limit: str) -> None:
    """The attack was refused by a ManifestError / ValueError naming ``limit`` and its remedy."""
    error = outcome["error"] or ""
    assert error.startswith(("ManifestError", "ValueError")), outcome
    assert f"{limit}=" in error, error
    assert "larger" in error, error


# ---------------------------------------------------------------------- documents


def _array_metadata(
    shape: list[int], chunks: list[int], dims: list[str], encoding: str, dtype: str = "float32"
) -> dict[str, Any]:
    return {
        "zarr_format": 3,
        "node_type": "array",
        "shape": shape,
        "data_type": dtype,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": chunks}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0,
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
        "attributes": {},
        "dimension_names": dims,
        "storage_transformers": [
            {"name": "chunk-manifest", "configuration": {"version": "1.0", "encoding": encoding}}
        ],
        "chunk_manifest": {"must_understand": True},
    }


def _document(folder: Path, arrays: dict[str, dict[str, Any]]) -> Path:
    folder.mkdir(parents=True)
    root = {
        "zarr_format": 3,
        "node_type": "group",
        "attributes": {},
        "consolidated_metadata": {"kind": "inline", "must_understand": False, "metadata": arrays},
    }
    (folder / "zarr.json").write_text(json.dumps(root))
    for name, meta in arrays.items():
        (folder / name).mkdir()
        (folder / name / "zarr.json").write_text(json.dumps(meta))
    return folder


def _size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def source(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("src") / "values.bin"
    path.write_bytes(np.arange(64, dtype="<f4").tobytes())
    return path


@pytest.fixture(scope="module")
def huge_json_grid(tmp_path_factory, source) -> Path:
    """A JSON manifest of two entries in a grid of 2^27 chunks (1.6 kB -> 4.4 GB before)."""
    meta = _array_metadata([2**27], [1], ["t"], "json")
    doc = _document(tmp_path_factory.mktemp("json") / "doc.zarr", {"v": meta})
    entries = {
        "5": {"path": str(source), "offset": 20, "length": 4},
        "134217727": {"path": str(source), "offset": 0, "length": 4},
    }
    (doc / "v" / "manifest.json").write_text(json.dumps(entries))
    assert _size(doc) < 100_000
    return doc


def _column(name: str, shape: int, chunk: int, dtype: str, fill: int) -> dict[str, Any]:
    return {
        "zarr_format": 3,
        "node_type": "array",
        "shape": [shape],
        "data_type": dtype,
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": [chunk]}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": fill,
        "codecs": [
            {"name": "bytes", "configuration": {"endian": "little"}},
            {"name": "zstd", "configuration": {"level": 19, "checksum": False}},
            {"name": "crc32c"},
        ],
        "attributes": {},
    }


def _chunk_file(values: np.ndarray) -> bytes:
    data = Zstd(level=19).encode(np.ascontiguousarray(values))
    import google_crc32c

    return data + google_crc32c.value(data).to_bytes(4, "little")


def _columnar(
    folder: Path,
    source: Path,
    grid: int,
    block: int,
    columns: dict[str, np.ndarray],
    inline: tuple[int, int] | None = None,
) -> Path:
    """A columnar document of one array ``v`` (float32, chunks of 4 elements, ``grid`` chunks)
    whose three columns repeat the one block given; ``inline`` = (length, chunk) of an
    ``inline`` array of zeros but for its first 16 bytes."""
    meta = _array_metadata([4 * grid], [4], ["t"], "columnar")
    doc = _document(folder, {"v": meta})
    group = doc / "v" / "manifest"
    dtypes = {"path_index": "uint32", "offset": "uint64", "length": "uint32"}
    fills = {"path_index": 0xFFFFFFFF, "offset": 0, "length": 0}
    metadata = {n: _column(n, grid, block, dtypes[n], fills[n]) for n in dtypes}
    if inline is not None:
        metadata["inline"] = _column("inline", inline[0], inline[1], "uint8", 0)
    for name, meta in metadata.items():
        (group / name / "c").mkdir(parents=True)
        (group / name / "zarr.json").write_text(json.dumps(meta))
    for name in dtypes:
        data = _chunk_file(columns[name].astype(dtypes[name]))
        for b in range(grid // block):
            (group / name / "c" / str(b)).write_bytes(data)
    if inline is not None:
        length, chunk = inline
        zeros = np.zeros(chunk, dtype=np.uint8)
        first = zeros.copy()
        first[:16] = np.arange(4, 8, dtype="<f4").view(np.uint8)
        (group / "inline" / "c" / "0").write_bytes(_chunk_file(first))
        rest = _chunk_file(zeros)
        for b in range(1, length // chunk):
            (group / "inline" / "c" / str(b)).write_bytes(rest)
    attributes = {"paths": [str(source)], "sources": {}}
    (group / "zarr.json").write_text(
        json.dumps(
            {
                "zarr_format": 3,
                "node_type": "group",
                "attributes": attributes,
                "consolidated_metadata": {
                    "kind": "inline",
                    "must_understand": False,
                    "metadata": metadata,
                },
            }
        )
    )
    assert _size(doc) < 100_000, _size(doc)
    return doc


@pytest.fixture(scope="module")
def huge_blocks(tmp_path_factory, source) -> Path:
    """A columnar manifest of 2^26 references in 8 blocks of 2^23, every one present
    (80 kB of zstd frames; 1 GiB as a grid)."""
    n = 2**23
    columns = {
        "path_index": np.zeros(n),
        "offset": np.full(n, 16),
        "length": np.full(n, 16),
    }
    return _columnar(tmp_path_factory.mktemp("blocks") / "doc.zarr", source, 2**26, n, columns)


@pytest.fixture(scope="module")
def inline_bomb(tmp_path_factory, source) -> Path:
    """A 16-byte inline chunk in an inline array declared 2 GiB long (32 chunks of 64 MiB)."""
    n = 2**17
    index = np.full(n, 0xFFFFFFFF)
    index[1] = 0xFFFFFFFE  # chunk 1 is inline: bytes 0..16 of the inline array
    columns = {"path_index": index, "offset": np.zeros(n), "length": np.zeros(n)}
    columns["length"][1] = 16
    folder = tmp_path_factory.mktemp("inline") / "doc.zarr"
    return _columnar(folder, source, n, n, columns, inline=(2**31, 2**26))


@pytest.fixture(scope="module")
def huge_coordinate(tmp_path_factory) -> Path:
    """A dimension coordinate of 2^28 float64 elements, every chunk missing (2 GiB of fill)."""
    meta = _array_metadata([2**28], [2**20], ["t"], "json", dtype="float64")
    doc = _document(tmp_path_factory.mktemp("coord") / "doc.zarr", {"t": meta})
    (doc / "t" / "manifest.json").write_text("{}")
    return doc


@pytest.fixture(scope="module")
def huge_coordinate_references(tmp_path_factory) -> Path:
    """Kerchunk references declaring a coordinate of 2^28 float64 elements and no chunk."""
    zarray = {
        "shape": [2**28],
        "chunks": [2**20],
        "dtype": "<f8",
        "compressor": None,
        "filters": None,
        "fill_value": 0.0,
        "order": "C",
        "zarr_format": 2,
    }
    refs = {
        ".zgroup": json.dumps({"zarr_format": 2}),
        "t/.zarray": json.dumps(zarray),
        "t/.zattrs": json.dumps({"_ARRAY_DIMENSIONS": ["t"]}),
    }
    path = tmp_path_factory.mktemp("refs") / "refs.json"
    path.write_text(json.dumps({"version": 1, "refs": refs}))
    return path


# ---------------------------------------------------------------------- attacks


def allowing(source: Path) -> dict[str, Any]:
    return {"allow": [str(source.parent)]}


@pytest.mark.parametrize("operation", ["read", "verify", "info", "summarize", "load"])
def test_a_huge_sparse_grid_costs_its_entries(huge_json_grid, source, operation):
    outcome = attack(huge_json_grid, operation, **({} if operation == "info" else allowing(source)))
    assert outcome["error"] is None, outcome
    expected = {"read": 5.0, "verify": True, "info": 0, "summarize": 2, "load": "loaded"}
    assert outcome["value"] == expected[operation]


def test_from_dict_is_sparse_and_densifying_is_refused_by_name(tmp_path):
    outcome = attack(tmp_path / "unused", "from_dict")
    assert outcome["value"] == [1, [100_000_000, 2]]
    refused(outcome, "max_dense_chunks")


@pytest.mark.parametrize("operation", ["read", "verify", "info", "summarize"])
def test_huge_manifest_blocks_are_read_one_at_a_time(huge_blocks, source, operation):
    outcome = attack(huge_blocks, operation, **({} if operation == "info" else allowing(source)))
    assert outcome["error"] is None, outcome
    expected = {"read": 5.0, "verify": True, "info": 0, "summarize": 2**26}
    assert outcome["value"] == expected[operation]


def test_loading_too_many_references_whole_is_refused_by_name(huge_blocks, source):
    refused(attack(huge_blocks, "load", **allowing(source)), "max_dense_chunks")


def test_one_inline_chunk_reads_only_its_part_of_the_inline_array(inline_bomb, source):
    outcome = attack(inline_bomb, "read-inline", **allowing(source))
    assert outcome["error"] is None, outcome
    assert outcome["value"] == [4.0, 5.0, 6.0, 7.0]


def test_inline_bytes_beyond_the_limit_are_refused_by_name(inline_bomb):
    refused(attack(inline_bomb, "read-inline", max_inline_bytes=2**20), "max_inline_bytes")


def test_a_huge_dimension_coordinate_is_refused_by_name(huge_coordinate):
    refused(attack(huge_coordinate, "xarray"), "max_index_elements")


def test_a_virtual_dataset_does_not_load_a_huge_coordinate(huge_coordinate_references):
    refused(attack(huge_coordinate_references, "virtual"), "max_index_elements")
    outcome = attack(huge_coordinate_references, "virtual", loadable_variables=[])
    assert outcome["value"] == {"t": 2**28}


def test_the_index_limit_is_a_keyword_of_open(huge_coordinate):
    with pytest.raises(zms.ManifestError, match="max_index_elements=16,777,216"):
        zms.ManifestStore.open(huge_coordinate)
    store = zms.ManifestStore.open(huge_coordinate, max_index_elements=2**28)
    assert store.root["t"].shape == (2**28,)


def test_a_sparse_document_keeps_its_chunks_in_order(huge_json_grid, source):
    store = zms.ManifestStore.open(huge_json_grid, allow=[str(source.parent)])
    manifest = store.root["v"].manifest
    assert [c for c, _ in manifest.items()] == [(5,), (2**27 - 1,)]
    assert manifest.sparse
    assert manifest.nchunks == 2
    assert store.verify().ok


def test_the_limits_are_named_where_they_refuse(source):
    manifest = zms.ChunkManifest.from_dict(
        {"9999.9999": {"path": str(source), "offset": 0, "length": 4}}
    )
    assert manifest.sparse
    with pytest.raises(ValueError, match="max_dense_chunks=16,777,216"):
        manifest.take([[9999], [9999]])
    turned = manifest.expand_dims(0).transpose([2, 0, 1]).squeeze(1)
    assert turned.sparse
    assert turned.get((9999, 9999)) == manifest.get((9999, 9999))
    with pytest.raises(ValueError, match="max_dense_chunks=1,000"):
        turned.densify(max_chunks=1000)


def test_densifying_within_the_limit_keeps_every_chunk(source):
    entries = {"999.999": {"path": str(source), "offset": 0, "length": 4}, "0.1": {"data": b"x"}}
    manifest = zms.ChunkManifest.from_dict(entries)
    assert manifest.sparse
    dense = manifest.densify(max_chunks=10**6)
    assert not dense.sparse
    assert dense == manifest
    assert manifest.take([[999, 0], [999, 1]]).to_dict() == {
        "0.0": entries["999.999"],
        "1.1": entries["0.1"],
    }


def test_a_manifest_too_large_to_hold_whole_is_read_block_by_block(tmp_path, monkeypatch):
    from conformance.build import source_array
    from zarr_manifest_store.document import columnar, lazy

    values = np.arange(40, dtype="float32")
    array = source_array(tmp_path / "src" / "v.bin", values, chunks=(1,))
    monkeypatch.setattr(columnar, "BLOCK_REFERENCES", 1)  # one reference a block
    group = zms.ManifestGroup(arrays={"v": array})
    zms.write_manifest(group, tmp_path / "doc.zarr", encoding="columnar")
    store = zms.ManifestStore.open(tmp_path / "doc.zarr", allow=[str(tmp_path)], max_dense_chunks=8)
    manifest = store.root["v"].manifest
    read = zarr.open_array(store, path="v", mode="r")
    assert [float(read[i]) for i in range(40)] == values.tolist()
    assert not manifest.loaded  # past the cache's blocks, the oldest go instead
    assert len(manifest._blocks) <= lazy.MAX_CACHED_BLOCKS
    with pytest.raises(zms.ManifestError, match="max_dense_chunks=8"):
        manifest.load()
