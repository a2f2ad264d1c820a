"""Documents every reader must read: how references, chunk grids, paths and hierarchies are laid out."""

from __future__ import annotations

from typing import Any

import numpy as np
import zarr

import zarr_manifest_store as zms
from conformance.build import HEADER, encode_chunks, source_array
from conformance.case import RNG, Build, Case, Cases, block_references, filled, group

DATA = np.arange(80, dtype="int32").reshape(8, 10)
CHUNKS = (3, 4)
"""The array most layout cases store, and its chunk shape."""


def reference_cases() -> Cases:
    """Missing, inline and shared chunks, relative and absolute paths."""
    data, chunks = DATA, CHUNKS

    def missing(encoding: str) -> Build:
        def build(case: Case) -> None:
            gone = {(0, 1), (2, 2), (1, 0)}
            made = source_array(
                case.data("m.bin"), data, chunks=chunks, missing=gone, fill_value=-7
            )
            case.write(group(m=made), encoding=encoding)
            case.expect(m=filled(data, chunks, gone, -7))

        return build

    yield "missing-chunks-json", "missing chunks read as the fill value (JSON)", missing("json")
    yield (
        "missing-chunks-columnar",
        "missing chunks read as the fill value (columnar)",
        missing("columnar"),
    )

    def all_missing(case: Case) -> None:
        every = set(np.ndindex(3, 3))
        made = source_array(case.data("e.bin"), data, chunks=chunks, missing=every, fill_value=5)
        case.write(
            group(json=made, columnar=made), encoding={"json": "json", "columnar": "columnar"}
        )
        case.expect(json=np.full(data.shape, 5, "int32"), columnar=np.full(data.shape, 5, "int32"))

    yield "all-missing", "arrays without a single reference", all_missing

    def inline(encoding: str) -> Build:
        def build(case: Case) -> None:
            kept = {(0, 0), (2, 1), (1, 2)}
            made = source_array(case.data("i.bin"), data, chunks=chunks, inline=kept)
            case.write(group(i=made), encoding=encoding)
            case.expect(i=data)

        return build

    yield "inline-json", "inline chunks, base64 in manifest.json", inline("json")
    yield "inline-columnar", "inline chunks in the columnar inline array", inline("columnar")

    def nested_sources(case: Case) -> None:
        a = source_array(case.data("deep/er/a.bin"), data, chunks=chunks)
        b = source_array(case.data("b.bin"), data * 2, chunks=chunks)
        case.write(group(a=a, b=b))
        case.expect(a=data, b=data * 2)

    yield "relative-nested", "relative paths into nested folders of the document", nested_sources

    def absolute(url: bool) -> Build:
        def build(case: Case) -> None:
            path = case.outside("abs.bin")
            written = f"file://{path}" if url else None
            made = source_array(path, data, chunks=chunks, written_as=written)
            case.write(group(a=made))
            case.allow.append(f"{case.dir}/outside/")
            case.expect(a=data)

        return build

    yield "absolute-paths", "absolute paths under an allowed prefix", absolute(url=False)
    yield "file-url-paths", "file:// URLs under an allowed prefix", absolute(url=True)

    def file_url_under_path(case: Case) -> None:
        absolute(url=True)(case)
        case.allow[:] = [f"{case.dir}/outside"]

    yield (
        "file-url-under-path-prefix",
        "file:// URLs under an allowed prefix written as a plain path without a final slash",
        file_url_under_path,
    )


def grid_cases() -> Cases:
    """Chunk grids: several manifest blocks, three dimensions, scalars, empty arrays, edges."""

    def blocks(case: Case) -> None:
        big = np.arange(23 * 17, dtype="float64").reshape(23, 17)
        gone = {(0, 3), (7, 0)}
        made = source_array(case.data("b.bin"), big, chunks=(2, 3), missing=gone, inline={(5, 5)})
        with block_references(7):
            case.write(group(b=made), encoding="columnar")
        case.expect(b=filled(big, (2, 3), gone, 0.0))

    yield "columnar-multi-block", "a columnar manifest of several blocks with edge blocks", blocks

    def three_d(case: Case) -> None:
        cube = RNG.integers(0, 1000, size=(5, 6, 7)).astype("uint16")
        made = source_array(case.data("c.bin"), cube, chunks=(2, 2, 3))
        with block_references(10):
            case.write(group(cube=made), encoding="columnar")
        case.expect(cube=cube)

    yield "columnar-3d", "a three-dimensional chunk grid, columnar", three_d

    def scalars(case: Case) -> None:
        value = np.array(2.5, dtype="float64")
        made = source_array(case.data("s.bin"), value, chunks=())
        case.write(
            group(json=made, columnar=made), encoding={"json": "json", "columnar": "columnar"}
        )
        case.expect(json=value, columnar=value)

    yield "scalar-0d", "0-dimensional arrays (chunk key '0')", scalars

    def empty(case: Case) -> None:
        nothing = np.zeros((0, 4), dtype="int16")
        made = source_array(case.data("e.bin"), nothing, chunks=(2, 2))
        case.write(
            group(json=made, columnar=made), encoding={"json": "json", "columnar": "columnar"}
        )
        case.expect(json=nothing, columnar=nothing)

    yield "empty-array", "arrays with a zero-length dimension", empty

    def edges(case: Case) -> None:
        odd = RNG.normal(size=(10, 11)).astype("float32")
        case.write(group(o=source_array(case.data("o.bin"), odd, chunks=(4, 3))))
        case.expect(o=odd)

    yield "edge-chunks", "a shape that is not a multiple of the chunk shape", edges


def key_cases() -> Cases:
    """Chunk keys and grids beyond the default: v2 keys, rectilinear grids."""
    data, chunks = DATA, CHUNKS

    def v2_keys(case: Case) -> None:
        made = source_array(
            case.data("k.bin"),
            data,
            chunks=chunks,
            chunk_key_encoding={"name": "v2", "separator": "."},
        )
        case.write(group(k=made))
        case.expect(k=data)

    yield "v2-chunk-key-encoding", "an array with the v2 chunk key encoding", v2_keys

    def rectilinear(case: Case) -> None:
        values = RNG.integers(-100, 100, size=(5, 6)).astype("int16")
        rows, columns = [3, 2], [4, 2]
        paths = np.full((2, 2), str(case.data("r.bin")), dtype=object)
        offsets, lengths = np.zeros((2, 2), np.uint64), np.zeros((2, 2), np.uint64)
        blob = bytearray(HEADER)
        for i, j in np.ndindex(2, 2):
            block = values[sum(rows[:i]) :][: rows[i], sum(columns[:j]) :][:, : columns[j]]
            metadata, encoded = encode_chunks(block, chunks=block.shape)
            offsets[i, j], lengths[i, j] = len(blob), len(encoded[(0, 0)])
            blob += encoded[(0, 0)]
        case.data("r.bin").parent.mkdir(parents=True)
        case.data("r.bin").write_bytes(bytes(blob))
        metadata.update(
            shape=[5, 6],
            chunk_grid={
                "name": "rectilinear",
                "configuration": {"kind": "inline", "chunk_shapes": [rows, columns]},
            },
        )
        manifest = zms.ChunkManifest.from_arrays(
            paths=paths.astype(str), offsets=offsets, lengths=lengths
        )
        with zarr.config.set({"array.rectilinear_chunks": True}):
            case.write(group(r=zms.ManifestArray(metadata=metadata, manifest=manifest)))
        case.expect(r=values)

    yield "rectilinear-grid", "a rectilinear chunk grid (chunks of unequal sizes)", rectilinear


def hierarchy_cases() -> Cases:
    """Nested groups, an array at the root, chunks sharing bytes."""
    data, chunks = DATA, CHUNKS

    def nested_groups(case: Case) -> None:
        a = source_array(case.data("a.bin"), data, chunks=chunks, attributes={"nan": float("nan")})
        leaf = zms.ManifestGroup(arrays={"a": a}, attributes={"depth": 3, "inf": float("inf")})
        middle = zms.ManifestGroup(groups={"leaf": leaf}, attributes={"depth": 2})
        top = zms.ManifestGroup(
            arrays={"a": a}, groups={"middle": middle, "empty": zms.ManifestGroup()}
        )
        case.write(top)
        case.expect(a=data, middle__leaf__a=data)

    yield (
        "nested-groups",
        "groups three levels deep, attributes with NaN and Infinity",
        nested_groups,
    )

    def root_array(case: Case) -> None:
        case.write(source_array(case.data("r.bin"), data, chunks=chunks))
        case.expect(**{"": data})

    yield "root-array", "a document whose root is an array", root_array

    def shared(case: Case) -> None:
        made = source_array(case.data("s.bin"), data, chunks=chunks)
        m = made.manifest
        offsets, lengths = m.offsets.copy(), m.lengths.copy()
        offsets[2, 1], lengths[2, 1] = offsets[0, 0], lengths[0, 0]  # the same bytes twice
        twice = zms.ChunkManifest(
            paths=m.paths, path_index=m.path_index, offsets=offsets, lengths=lengths
        )
        case.write(group(s=made.with_manifest(twice)))
        expected = data.copy()
        expected[6:8, 4:8] = data[0:2, 0:4]
        case.expect(s=expected)

    yield "shared-byte-ranges", "two chunks referencing the same bytes", shared


def source_cases() -> Cases:
    """Many sources, odd path characters, a newer minor version."""
    data, chunks = DATA, CHUNKS

    def many_sources(case: Case) -> None:
        pieces = [
            source_array(case.data(f"part{i:02d}.bin"), data[i : i + 1], chunks=(1, 10))
            for i in range(8)
        ]
        rows = [p.manifest for p in pieces]
        table = [m.paths[0] for m in rows]
        manifest = zms.ChunkManifest(
            paths=table,
            path_index=np.arange(8, dtype=np.uint32).reshape(8, 1),
            offsets=np.array([m.offsets[0, 0] for m in rows]).reshape(8, 1),
            lengths=np.array([m.lengths[0, 0] for m in rows]).reshape(8, 1),
            fingerprints={t: m.fingerprints[t] for t, m in zip(table, rows, strict=True)},
        )
        meta = {**pieces[0].metadata.to_dict(), "shape": [8, 10]}
        made = zms.ManifestArray(metadata=meta, manifest=manifest)
        case.write(
            group(json=made, columnar=made), encoding={"json": "json", "columnar": "columnar"}
        )
        case.expect(json=data, columnar=data)

    yield "many-sources", "one source file per chunk", many_sources

    def unicode(case: Case) -> None:
        made = source_array(case.data("données été/relevé 1%.bin"), data, chunks=chunks)
        case.write(group(u=made))
        case.expect(u=data)

    yield "unicode-paths", "paths with spaces, accents and a percent sign", unicode

    def newer_minor(case: Case) -> None:
        made = source_array(case.data("n.bin"), data, chunks=chunks)
        case.write(group(n=made), encoding="json")

        def config(meta: dict[str, Any]) -> None:
            meta["storage_transformers"][0]["configuration"].update(
                version="1.9", future_option={"x": 1}
            )

        case.array_json("n", config)
        case.json("n/manifest.json", lambda m: m["0.0"].update(checksum="crc32c:00000000"))
        case.expect(n=data)

    yield (
        "newer-minor-version",
        "version 1.9 with unknown fields, which readers ignore",
        newer_minor,
    )
