"""Generate the conformance cases (``conformance/cases/``) and the spec examples (``spec/examples/``).

    python -m conformance.generate

Every case is a folder: ``document/`` (the chunk-manifest document, its small
source files under ``document/data/`` when paths are relative), ``outside/``
(sources reached through absolute paths), ``expected/*.npy`` and ``case.json``.
Absolute paths are written with the token ``@CASE@`` for the case folder, which
the runner replaces after copying the case. Expected values come from the data
the sources were made from, never from reading the document back.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np
import zarr

import zarr_manifest_store as zms
from conformance.build import HEADER, encode_chunks, source_array
from zarr_manifest_store.document import columnar

HERE = Path(__file__).resolve().parent
CASES = HERE / "cases"
EXAMPLES = HERE.parent / "spec" / "examples"
TOKEN = "@CASE@"

INVALID, FORBIDDEN, MISSING = "invalid-document", "forbidden-path", "missing-source"
CHANGED = "source-changed"


class Case:
    """One case being built in a scratch folder."""

    def __init__(self, root: Path, name: str, description: str) -> None:
        self.name, self.description = name, description
        self.dir = (root / name).resolve()
        self.doc = self.dir / "document"
        self.allow: list[str] = []
        self.arrays: dict[str, np.ndarray] = {}
        self.error: str | None = None

    def data(self, name: str) -> Path:
        """A source file inside the document folder (written with a relative path)."""
        return self.doc / "data" / name

    def outside(self, name: str) -> Path:
        """A source file outside the document folder (written with an absolute path)."""
        return self.dir / "outside" / name

    def write(self, root: zms.ManifestGroup | zms.ManifestArray, **options: Any) -> None:
        zms.write_manifest(root, self.doc, **options)

    def expect(self, **arrays: np.ndarray) -> None:
        self.arrays.update({k.replace("__", "/"): v for k, v in arrays.items()})

    def text(self, key: str, old: str, new: str) -> None:
        """Replace ``old`` (which must be there) by ``new`` in the text of the document's file ``key``."""
        file = self.doc / key
        content = file.read_text()
        assert old in content, (key, old)
        file.write_text(content.replace(old, new, 1))

    def json(self, key: str, edit: Callable[[Any], Any]) -> None:
        """Edit the JSON file ``key`` of the document (``edit`` may change it in place)."""
        file = self.doc / key
        value = json.loads(file.read_text())
        changed = edit(value)
        file.write_text(json.dumps(value if changed is None else changed, indent=1))

    def array_json(self, path: str, edit: Callable[[dict[str, Any]], Any]) -> None:
        """Edit an array's metadata in its own zarr.json and in the root's consolidated copy."""
        self.json(f"{path}/zarr.json", edit)
        self.json("zarr.json", lambda root: edit(root["consolidated_metadata"]["metadata"][path]))

    def finish(self, destination: Path) -> None:
        prefix = str(self.dir)
        for file in self.dir.rglob("*.json"):
            file.write_text(file.read_text().replace(prefix, TOKEN))
        expected = {}
        for path, values in self.arrays.items():
            name = f"expected/{path or 'root'}.npy"
            (self.dir / name).parent.mkdir(parents=True, exist_ok=True)
            np.save(self.dir / name, values, allow_pickle=False)
            expected[path] = name
        case = {
            "description": self.description,
            "allow": [a.replace(prefix, TOKEN) for a in self.allow],
            "expect": {"error": self.error} if self.error else {"arrays": expected},
        }
        (self.dir / "case.json").write_text(json.dumps(case, indent=2) + "\n")
        shutil.copytree(self.dir, destination / self.name, symlinks=True)


@contextmanager
def block_references(n: int) -> Iterator[None]:
    """Columnar manifests chunked in blocks of ``n`` references (to exercise several blocks)."""
    saved, columnar.BLOCK_REFERENCES = columnar.BLOCK_REFERENCES, n
    try:
        yield
    finally:
        columnar.BLOCK_REFERENCES = saved


def group(**arrays: zms.ManifestArray) -> zms.ManifestGroup:
    return zms.ManifestGroup(arrays={k.replace("__", "/"): v for k, v in arrays.items()})


def filled(data: np.ndarray, chunks: tuple[int, ...], missing: set, fill: Any) -> np.ndarray:
    """``data`` with the chunks in ``missing`` replaced by the fill value, as a reader must give."""
    out = data.copy()
    for coords in missing:
        out[tuple(slice(c * n, (c + 1) * n) for c, n in zip(coords, chunks, strict=True))] = fill
    return out


RNG = np.random.default_rng(20261128)


# ---------------------------------------------------------------------- valid documents


def dtype_cases() -> Iterator[tuple[str, str, Callable[[Case], None]]]:
    def simple(arrays: dict[str, np.ndarray], chunks: tuple[int, ...], **options: Any):
        def build(case: Case) -> None:
            made = {
                name: source_array(case.data(f"{name}.bin"), values, chunks=chunks, **options)
                for name, values in arrays.items()
            }
            case.write(group(**made))
            case.expect(**arrays)

        return build

    yield "dtype-bool", "bool", simple({"flags": RNG.random((5, 4)) > 0.5}, (2, 3))
    yield (
        "dtype-int",
        "signed integers of every width, extremes included",
        simple(
            {
                f"i{w}": np.array(
                    [np.iinfo(f"int{w}").min, -1, 0, 1, np.iinfo(f"int{w}").max, 7], f"int{w}"
                )
                for w in (8, 16, 32, 64)
            },
            (4,),
        ),
    )
    yield (
        "dtype-uint",
        "unsigned integers of every width, extremes included",
        simple(
            {
                f"u{w}": np.array([0, 1, 2, np.iinfo(f"uint{w}").max, 5], f"uint{w}")
                for w in (8, 16, 32, 64)
            },
            (2,),
        ),
    )
    floats = np.array([0.0, -0.0, 1.5, np.nan, np.inf, -np.inf, 1e-30, 3.0])
    yield (
        "dtype-float",
        "float16/32/64 with NaN, infinities and negative zero",
        simple({f"f{w}": floats.astype(f"float{w}") for w in (16, 32, 64)}, (3,)),
    )
    complex_values = np.array([1 + 2j, -0.5j, np.nan + 1j, np.inf, 0])
    yield (
        "dtype-complex",
        "complex64 and complex128",
        simple({f"c{w}": complex_values.astype(f"complex{w}") for w in (64, 128)}, (2,)),
    )

    def datetimes(case: Case) -> None:
        times = np.array(["2020-01-01T00", "NaT", "1969-12-31T23:59:59", "2262-04-11"], "M8[s]")
        spans = np.array([0, -1000, 86_400_000, 5], "m8[ms]")
        case.write(
            group(
                time=source_array(case.data("time.bin"), times, chunks=(3,)),
                span=source_array(case.data("span.bin"), spans, chunks=(3,)),
            )
        )
        case.expect(time=times, span=spans)

    yield "dtype-datetime", "numpy.datetime64 (with NaT) and numpy.timedelta64", datetimes

    def text(case: Case) -> None:
        utf32 = np.array(["", "a", "héllo", "日本語!"], dtype="U6")
        raw = np.array([b"", b"ab", b"abcdef", b"\x00x"], dtype="S6")
        case.write(
            group(
                utf32=source_array(case.data("u.bin"), utf32, chunks=(3,)),
                bytes=source_array(case.data("s.bin"), raw, chunks=(3,)),
            )
        )
        case.expect(utf32=utf32, bytes=raw)

    yield "dtype-fixed-text", "fixed_length_utf32 and null_terminated_bytes", text

    def strings(case: Case) -> None:
        values = np.array(["", "one", "two words", "ünïcödé", "a" * 40, "x"], dtype=object)
        case.write(group(names=source_array(case.data("v.bin"), values, chunks=(4,), dtype=str)))
        case.expect(names=values.astype("U40"))

    yield "dtype-vlen-string", "variable-length UTF-8 strings (vlen-utf8)", strings

    def vlen_bytes(case: Case) -> None:
        from zarr.core.dtype import VariableLengthBytes

        values = np.array([b"", b"ab", b"\x00\xff", b"xyz" * 5, b"\x01"], dtype=object)
        made = source_array(case.data("b.bin"), values, chunks=(3,), dtype=VariableLengthBytes())
        case.write(group(blobs=made))
        case.expect(blobs=values.astype("S15"))

    yield "dtype-vlen-bytes", "variable-length bytes (vlen-bytes)", vlen_bytes

    def raw_bytes(case: Case) -> None:
        values = np.frombuffer(bytes(range(48)), dtype="V6")
        case.write(group(raw=source_array(case.data("r.bin"), values, chunks=(3,))))
        case.expect(raw=values)

    yield "dtype-raw-bytes", "raw bytes (numpy void)", raw_bytes

    def structured(case: Case) -> None:
        dtype = np.dtype([("id", "<i4"), ("value", "<f8"), ("ok", "?")])
        values = np.array([(1, 0.5, True), (2, np.nan, False), (3, -1.0, True)], dtype=dtype)
        case.write(group(records=source_array(case.data("rec.bin"), values, chunks=(2,))))
        case.expect(records=values)

    yield "dtype-structured", "a structured data type", structured


def codec_cases() -> Iterator[tuple[str, str, Callable[[Case], None]]]:
    data = RNG.normal(size=(7, 9)).astype("float32")

    def with_codecs(**options: Any) -> Callable[[Case], None]:
        def build(case: Case) -> None:
            case.write(group(v=source_array(case.data("v.bin"), data, chunks=(3, 4), **options)))
            case.expect(v=data)

        return build

    yield (
        "big-endian",
        "the bytes codec with big-endian data",
        with_codecs(serializer=zarr.codecs.BytesCodec(endian="big"), compressors=None),
    )
    yield "codec-gzip", "gzip", with_codecs(compressors=zarr.codecs.GzipCodec(level=5))
    yield "codec-zstd", "zstd", with_codecs(compressors=zarr.codecs.ZstdCodec(level=3))
    yield (
        "codec-blosc-crc32c",
        "blosc with bit shuffle, then crc32c",
        with_codecs(
            compressors=[
                zarr.codecs.BloscCodec(cname="lz4", shuffle="bitshuffle"),
                zarr.codecs.Crc32cCodec(),
            ]
        ),
    )
    yield (
        "codec-transpose",
        "a transpose codec (column-major chunks)",
        with_codecs(filters=[zarr.codecs.TransposeCodec(order=(1, 0))], compressors=None),
    )
    from zarr.codecs.numcodecs import Shuffle, Zlib

    yield (
        "codec-hdf5-shuffle-zlib",
        "HDF5's shuffle + deflate, as numcodecs.shuffle and numcodecs.zlib",
        with_codecs(compressors=[Shuffle(elementsize=4), Zlib(level=4)]),
    )


def layout_cases() -> Iterator[tuple[str, str, Callable[[Case], None]]]:
    data = np.arange(80, dtype="int32").reshape(8, 10)
    chunks = (3, 4)

    def missing(encoding: str) -> Callable[[Case], None]:
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

    def inline(encoding: str) -> Callable[[Case], None]:
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

    def absolute(url: bool) -> Callable[[Case], None]:
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


def prior_art_cases() -> Iterator[tuple[str, str, Callable[[Case], None]]]:
    data = RNG.normal(size=(6, 8)).astype("float64")

    def prior(manifest_name: str, nested: bool) -> Callable[[Case], None]:
        def build(case: Case) -> None:
            made = source_array(case.outside("p.bin"), data, chunks=(3, 4), written_as=None)
            files = {"zarr.json": {"zarr_format": 3, "node_type": "group", "attributes": {}}}
            where = "sub/p" if nested else "p"
            if nested:
                files["sub/zarr.json"] = {"zarr_format": 3, "node_type": "group", "attributes": {}}
            meta = made.metadata.to_dict()
            meta["storage_transformers"] = [
                {"name": "chunk-manifest-json", "configuration": {"manifest": manifest_name}}
            ]
            files[f"{where}/zarr.json"] = meta
            entries = {
                k: {"path": f"file://{v['path']}", "offset": v["offset"], "length": v["length"]}
                for k, v in made.manifest.to_dict().items()
            }
            files[f"{where}/{manifest_name.removeprefix('./')}"] = entries
            for key, value in files.items():
                (case.doc / key).parent.mkdir(parents=True, exist_ok=True)
                (case.doc / key).write_text(json.dumps(value, indent=1))
            case.allow.append(f"file://{case.dir}/outside/")
            case.expect(**{where.replace("/", "__"): data})

        return build

    yield (
        "prior-art-chunk-manifest-json",
        "VirtualiZarr's early chunk-manifest-json: no consolidated metadata, file:// URLs",
        prior("./manifest.json", nested=True),
    )
    yield (
        "prior-art-manifest-location",
        "chunk-manifest-json with a manifest under another name",
        prior("refs.json", nested=False),
    )


# ---------------------------------------------------------------------- refusals


def invalid_cases() -> Iterator[tuple[str, str, Callable[[Case], None]]]:
    data = np.arange(24, dtype="float32").reshape(4, 6)

    def base(case: Case, encoding: str = "json", **options: Any) -> None:
        made = source_array(case.data("a.bin"), data, chunks=(2, 3), **options)
        case.write(group(a=made), encoding=encoding)

    def refused(category: str, encoding: str, mutate: Callable[[Case], None], **options: Any):
        def build(case: Case) -> None:
            base(case, encoding, **options)
            mutate(case)
            case.error = category

        return build

    def truncate(key: str, keep: float = 0.5) -> Callable[[Case], None]:
        def mutate(case: Case) -> None:
            file = case.doc / key
            text = file.read_bytes()
            file.write_bytes(text[: int(len(text) * keep)])

        return mutate

    def entry(**changes: Any) -> Callable[[Case], None]:
        return lambda case: case.json("a/manifest.json", lambda m: m["0.0"].update(changes))

    def config(**changes: Any) -> Callable[[Case], None]:
        def mutate(case: Case) -> None:
            case.array_json(
                "a", lambda meta: meta["storage_transformers"][0]["configuration"].update(changes)
            )

        return mutate

    yield (
        "invalid-truncated-root",
        "a truncated root zarr.json",
        refused(INVALID, "json", truncate("zarr.json")),
    )
    yield (
        "invalid-truncated-manifest",
        "a truncated manifest.json",
        refused(INVALID, "json", truncate("a/manifest.json", 0.7)),
    )
    yield (
        "invalid-string-offset",
        'an offset written as the string "12"',
        refused(INVALID, "json", entry(offset="12")),
    )
    yield (
        "invalid-float-length",
        "a length written as 16.0",
        refused(INVALID, "json", entry(length=16.0)),
    )
    yield "invalid-negative-offset", "a negative offset", refused(INVALID, "json", entry(offset=-4))
    yield (
        "invalid-offset-overflow",
        "offset + length past 2^63 - 1",
        refused(INVALID, "json", entry(offset=2**63 - 8, length=100)),
    )

    def past_size(case: Case) -> None:
        size = case.data("a.bin").stat().st_size
        case.json("a/manifest.json", lambda m: m["1.1"].update(offset=size - 4))

    yield (
        "invalid-past-recorded-size",
        "a reference past its source's recorded size",
        refused(INVALID, "json", past_size),
    )
    yield (
        "invalid-unknown-encoding",
        'the encoding "parquet"',
        refused(INVALID, "json", config(encoding="parquet")),
    )
    yield "invalid-major-version", "version 2.0", refused(INVALID, "json", config(version="2.0"))

    def in_parts(**changes: Any) -> Callable[[Case], None]:
        """The array's manifest as the one part of a manifest in parts (section 2.1)."""

        def edit(meta: dict[str, Any]) -> None:
            configuration = meta["storage_transformers"][0]["configuration"]
            part = {"manifest": "manifest.json", "encoding": "json", "extent": 2, **changes}
            if "sources" in configuration:
                part["sources"] = configuration.pop("sources")
            configuration.update(version="1.1", encoding="parts", axis=0, parts=[part])

        return lambda case: case.array_json("a", edit)

    def one_part(case: Case) -> None:
        base(case)
        in_parts()(case)
        case.expect(a=data)

    yield "parts-one-part", "a manifest in parts holding one part", one_part
    yield (
        "invalid-parts-short",
        "manifest parts that give fewer chunks than the grid has",
        refused(INVALID, "json", in_parts(used=1)),
    )
    yield (
        "invalid-parts-used",
        "a part that gives more chunks than it holds",
        refused(INVALID, "json", in_parts(used=3)),
    )

    def two_parts_one_manifest(case: Case) -> None:
        part = {"manifest": "manifest.json", "encoding": "json", "extent": 2, "used": 1}
        in_parts(used=1)(case)
        case.array_json(
            "a", lambda m: m["storage_transformers"][0]["configuration"]["parts"].append(part)
        )

    yield (
        "invalid-parts-same-manifest",
        "two parts that name one manifest",
        refused(INVALID, "json", two_parts_one_manifest),
    )
    yield (
        "forbidden-part-location",
        "a part whose manifest is named with '..'",
        refused(FORBIDDEN, "json", in_parts(manifest="../a/manifest.json")),
    )

    def unknown_transformer(case: Case) -> None:
        case.array_json(
            "a", lambda meta: meta["storage_transformers"][0].update(name="chunk-manifest-v9")
        )

    yield (
        "invalid-unknown-transformer",
        "an unknown storage transformer name",
        refused(INVALID, "json", unknown_transformer),
    )

    def two_transformers(case: Case) -> None:
        case.array_json(
            "a",
            lambda meta: meta["storage_transformers"].append(
                {"name": "other", "configuration": {}}
            ),
        )

    yield (
        "invalid-two-transformers",
        "a second storage transformer",
        refused(INVALID, "json", two_transformers),
    )

    def missing_manifest(case: Case) -> None:
        os.remove(case.doc / "a" / "manifest.json")

    yield (
        "invalid-missing-manifest",
        "a JSON manifest that is not there",
        refused(INVALID, "json", missing_manifest),
    )
    yield (
        "invalid-zarr-metadata",
        "array metadata zarr rejects (an unknown data type)",
        refused(
            INVALID,
            "json",
            lambda case: case.array_json("a", lambda m: m.update(data_type="float99")),
        ),
    )
    yield (
        "invalid-chunk-key-outside-grid",
        "a manifest key outside the chunk grid",
        refused(
            INVALID,
            "json",
            lambda case: case.json("a/manifest.json", lambda m: m.update({"5.0": m["0.0"]})),
        ),
    )
    yield (
        "invalid-noncanonical-key",
        'a manifest key with a leading zero ("01.0")',
        refused(
            INVALID,
            "json",
            lambda case: case.json("a/manifest.json", lambda m: m.update({"01.0": m.pop("1.0")})),
        ),
    )
    yield (
        "invalid-bad-base64",
        "inline data that is not base64",
        refused(
            INVALID,
            "json",
            lambda case: case.json("a/manifest.json", lambda m: m.update({"0.0": {"data": "%%%"}})),
        ),
    )

    def huge(case: Case) -> None:
        case.array_json("a", lambda m: m.update(shape=[2**62, 6]))

    yield "invalid-huge-grid", "a chunk grid of 2^61 x 2 chunks", refused(INVALID, "json", huge)

    def flip(case: Case) -> None:
        file = case.doc / "a" / "manifest" / "offset" / "c" / "0" / "0"
        raw = bytearray(file.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        file.write_bytes(bytes(raw))

    yield (
        "invalid-checksum",
        "one flipped bit in a columnar manifest chunk",
        refused(INVALID, "columnar", flip),
    )

    def drop_chunk(case: Case) -> None:
        os.remove(case.doc / "a" / "manifest" / "length" / "c" / "0" / "0")

    yield (
        "invalid-missing-column-chunk",
        "a columnar manifest chunk that is not there",
        refused(INVALID, "columnar", drop_chunk),
    )

    def short_table(case: Case) -> None:
        case.json("a/manifest/zarr.json", lambda g: g["attributes"].update(paths=[], sources={}))

    yield (
        "invalid-path-index-outside-table",
        "path_index values past the end of the path table",
        refused(INVALID, "columnar", short_table),
    )

    def wrong_shape(case: Case) -> None:
        case.json(
            "a/manifest/zarr.json",
            lambda g: g["consolidated_metadata"]["metadata"]["offset"].update(shape=[2, 3]),
        )

    yield (
        "invalid-column-shape",
        "a column shaped unlike the chunk grid",
        refused(INVALID, "columnar", wrong_shape),
    )

    def inline_past_end(case: Case) -> None:
        group_meta = json.loads((case.doc / "a/manifest/zarr.json").read_text())
        chunks = group_meta["consolidated_metadata"]["metadata"]["inline"]["chunk_grid"]
        size = group_meta["consolidated_metadata"]["metadata"]["inline"]["shape"][0]
        assert chunks["configuration"]["chunk_shape"] == [size]
        # make the inline array shorter than the inline chunk it holds
        case.json(
            "a/manifest/zarr.json",
            lambda g: g["consolidated_metadata"]["metadata"]["inline"].update(shape=[size - 1]),
        )

    yield (
        "invalid-inline-past-end",
        "an inline range past the end of the inline array",
        refused(INVALID, "columnar", inline_past_end, inline={(0, 0)}),
    )

    def relative(path: str) -> Callable[[Case], None]:
        def mutate(case: Case) -> None:
            (case.dir / "outside.bin").write_bytes(case.data("a.bin").read_bytes())
            case.json("a/manifest.json", lambda m: m["0.0"].update(path=path))

        return mutate

    yield (
        "forbidden-dotdot",
        "a relative path climbing out with '..'",
        refused(FORBIDDEN, "json", relative("../outside.bin")),
    )
    yield (
        "forbidden-percent-encoded",
        "a relative path climbing out with percent-encoded dots",
        refused(FORBIDDEN, "json", relative("%2e%2e/outside.bin")),
    )

    def symlink(case: Case) -> None:
        relative("link/outside.bin")(case)
        os.symlink("..", case.doc / "link")

    yield (
        "forbidden-symlink",
        "a relative path leaving through a symbolic link",
        refused(FORBIDDEN, "json", symlink),
    )

    def not_allowed(case: Case) -> None:
        case.outside("a.bin").parent.mkdir(parents=True)
        shutil.copy(case.data("a.bin"), case.outside("a.bin"))
        case.json("a/manifest.json", lambda m: m["0.0"].update(path=str(case.outside("a.bin"))))

    yield (
        "forbidden-absolute-not-allowed",
        "an absolute path outside the document, not allowed",
        refused(FORBIDDEN, "json", not_allowed),
    )
    yield (
        "forbidden-etc-passwd",
        "an absolute path to /etc/passwd",
        refused(FORBIDDEN, "json", relative("/etc/passwd")),
    )

    def prior_escape(case: Case) -> None:
        case.array_json(
            "a",
            lambda meta: meta.update(
                storage_transformers=[
                    {
                        "name": "chunk-manifest-json",
                        "configuration": {"manifest": "../../manifest.json"},
                    }
                ]
            ),
        )

    yield (
        "forbidden-prior-art-manifest-location",
        "a prior-art manifest location outside the array's folder",
        refused(FORBIDDEN, "json", prior_escape),
    )

    def deleted(case: Case) -> None:
        os.remove(case.data("a.bin"))

    yield "missing-source", "a source file that is not there", refused(MISSING, "json", deleted)
    yield from spec_findings(base, refused, relative, config)
    yield from node_path_cases(refused)


def node_path_cases(
    refused: Callable[..., Callable[[Case], None]],
) -> Iterator[tuple[str, str, Callable[[Case], None]]]:
    """Node paths are relative paths too (section 4.2): none leaves the document folder."""

    def moved(*names: str, folders: bool = True) -> Callable[[Case], None]:
        """Array ``a`` moved below the groups ``names`` in the consolidated metadata, and (with
        ``folders``) its files too."""

        def mutate(case: Case) -> None:
            group = {"zarr_format": 3, "node_type": "group", "attributes": {}}
            members = {"/".join(names[: i + 1]): group for i in range(len(names))}
            if folders:
                case.doc.joinpath(*names).mkdir(parents=True)
                shutil.move(case.doc / "a", case.doc.joinpath(*names, "a"))
                for path in members:
                    (case.doc / path / "zarr.json").write_text(json.dumps(group))

            def edit(root: dict[str, Any]) -> None:
                metadata = root["consolidated_metadata"]["metadata"]
                members["/".join(names) + "/a"] = metadata.pop("a")
                metadata.update(members)

            case.json("zarr.json", edit)

        return mutate

    yield (
        "forbidden-node-name-encoded-dots",
        "a node named '%2e%2e' (percent-encoded dots: over HTTP, its files lie outside)",
        refused(FORBIDDEN, "json", moved("%2e%2e")),
    )
    yield (
        "invalid-node-name-control-character",
        "a node whose name holds a control character",
        refused(INVALID, "json", moved("a\tb", folders=False)),
    )
    yield (
        "invalid-node-path-too-deep",
        "a node path of 33 names, deeper than readers bound a hierarchy (32)",
        refused(INVALID, "json", moved(*[f"g{i}" for i in range(32)])),
    )


def spec_findings(
    base: Callable[..., None],
    refused: Callable[..., Callable[[Case], None]],
    relative: Callable[[str], Callable[[Case], None]],
    config: Callable[..., Callable[[Case], None]],
) -> Iterator[tuple[str, str, Callable[[Case], None]]]:
    """Refusals the specification was silent or unclear about until a second reader was written."""
    yield (
        "invalid-exponent-offset",
        "an offset written with an exponent (1.9e1): not an integer",
        refused(
            INVALID,
            "json",
            lambda case: case.text("a/manifest.json", '"offset":19', '"offset":1.9e1'),
        ),
    )
    yield (
        "invalid-duplicate-key",
        "a chunk key written twice in manifest.json (JSON parsers differ on which wins)",
        refused(
            INVALID,
            "json",
            lambda case: case.text(
                "a/manifest.json", "{", '{"0.0":{"path":"data/a.bin","offset":0,"length":19},'
            ),
        ),
    )
    yield (
        "invalid-backslash",
        "a relative path with a backslash (malformed, not an escape)",
        refused(INVALID, "json", relative("data\\a.bin")),
    )
    yield (
        "invalid-empty-segment",
        "a relative path with an empty segment (malformed, not an escape)",
        refused(INVALID, "json", relative("data//a.bin")),
    )

    def secret(case: Case) -> Path:
        """A copy of the source outside the document and outside the allowed prefix."""
        (case.dir / "outside").mkdir(exist_ok=True)
        shutil.copy(case.data("a.bin"), case.dir / "secret.bin")
        case.allow.append(f"{case.dir}/outside/")
        return case.dir / "secret.bin"

    def absolute_dotdot(case: Case) -> None:
        secret(case)
        path = f"{case.dir}/outside/../secret.bin"
        case.json("a/manifest.json", lambda m: m["0.0"].update(path=path))

    yield (
        "forbidden-absolute-dotdot",
        "an absolute path that climbs out of an allowed prefix with '..'",
        refused(FORBIDDEN, "json", absolute_dotdot),
    )

    def partial_segment(case: Case) -> None:
        (case.dir / "outside-not-allowed").mkdir()
        shutil.copy(case.data("a.bin"), case.dir / "outside-not-allowed" / "a.bin")
        case.allow.append(f"{case.dir}/outside")
        path = f"{case.dir}/outside-not-allowed/a.bin"
        case.json("a/manifest.json", lambda m: m["0.0"].update(path=path))

    yield (
        "forbidden-allow-partial-segment",
        "an allowed prefix matches whole path segments ('/x/outside' does not allow '/x/outside-not-allowed/')",
        refused(FORBIDDEN, "json", partial_segment),
    )

    def absolute_symlink(case: Case) -> None:
        secret(case)
        os.symlink("../secret.bin", case.dir / "outside" / "link.bin")
        path = f"{case.dir}/outside/link.bin"
        case.json("a/manifest.json", lambda m: m["0.0"].update(path=path))

    yield (
        "forbidden-absolute-symlink",
        "an absolute path under an allowed prefix that is a symbolic link out of it",
        refused(FORBIDDEN, "json", absolute_symlink),
    )

    def unused_fingerprint(case: Case) -> None:
        case.array_json(
            "a",
            lambda meta: meta["storage_transformers"][0]["configuration"]["sources"].update(
                {"data/other.bin": {"size": 10}}
            ),
        )

    yield (
        "invalid-fingerprint-unused",
        "a fingerprint for a path no reference uses (JSON encoding)",
        refused(INVALID, "json", unused_fingerprint),
    )

    def fingerprint_not_in_table(case: Case) -> None:
        case.json(
            "a/manifest/zarr.json",
            lambda g: g["attributes"]["sources"].update({"data/other.bin": {"size": 10}}),
        )

    yield (
        "invalid-fingerprint-not-in-table",
        "a fingerprint for a path not in the path table (columnar encoding)",
        refused(INVALID, "columnar", fingerprint_not_in_table),
    )

    def grown(case: Case) -> None:
        with case.data("a.bin").open("ab") as f:
            f.write(b"appended since the scan")

    yield (
        "changed-source-size",
        "a source whose size is no longer the recorded one",
        refused(CHANGED, "json", grown),
    )

    def truncated(case: Case) -> None:
        config(sources={})(case)
        file = case.data("a.bin")
        file.write_bytes(file.read_bytes()[:-5])

    yield (
        "changed-source-truncated",
        "a source (without fingerprint) shorter than the end of a reference",
        refused(CHANGED, "json", truncated),
    )


def example_documents(root: Path) -> None:
    """Two small documents for the spec: one per encoding, sources inside, every kind of chunk."""
    data = np.arange(12, dtype="int16").reshape(3, 4)
    for encoding in ("json", "columnar"):
        doc = root / f"{encoding}.zarr"
        made = source_array(
            doc / "data" / "t.bin",
            data,
            chunks=(2, 2),
            missing={(1, 1)},
            inline={(0, 1)},
            fill_value=-1,
            dimension_names=["y", "x"],
            attributes={"units": "K"},
        )
        g = zms.ManifestGroup(arrays={"t": made}, attributes={"title": f"{encoding} example"})
        zms.write_manifest(g, doc, encoding=encoding)


def append_cases() -> Iterator[tuple[str, str, Callable[[Case], None]]]:
    """Documents grown by ``append_manifest`` (spec section 2.1): still ordinary documents."""

    def appended(encoding: str) -> Callable[[Case], None]:
        def build(case: Case) -> None:
            days = [np.arange(24, dtype="int32").reshape(4, 6) + 100 * d for d in range(5)]
            times = [np.arange(4, dtype="int64") + 4 * d for d in range(5)]

            def part(d: int) -> zms.ManifestGroup:
                values = source_array(
                    case.data(f"day{d}.bin"),
                    days[d],
                    chunks=(2, 3),
                    inline={(1, 1)} if d == 3 else (),
                    dimension_names=["time", "x"],
                )
                time = source_array(
                    case.data(f"time{d}.bin"), times[d], chunks=(4,), dimension_names=["time"]
                )
                return group(v=values, time=time)

            case.write(part(0), encoding=encoding)
            for d in range(1, 5):
                zms.append_manifest(part(d), case.doc, append_dim="time")
            case.expect(v=np.concatenate(days), time=np.concatenate(times))

        return build

    def replaced(encoding: str) -> Callable[[Case], None]:
        def build(case: Case) -> None:
            days = [np.arange(24, dtype="int32").reshape(4, 6) + 100 * d for d in range(4)]
            times = [np.arange(4, dtype="int64") + 4 * d for d in range(3)] + [np.arange(10, 14)]

            def part(d: int, name: str) -> zms.ManifestGroup:
                values = source_array(
                    case.data(f"{name}.bin"), days[d], chunks=(2, 3), dimension_names=["time", "x"]
                )
                time = source_array(
                    case.data(f"{name}-time.bin"), times[d], chunks=(2,), dimension_names=["time"]
                )
                return group(v=values, time=time)

            case.write(part(0, "day0"), encoding=encoding)
            zms.append_manifest(part(1, "day1"), case.doc, append_dim="time")
            zms.append_manifest(part(2, "day2"), case.doc, append_dim="time")
            redelivered = part(3, "day2-again")  # times 10..13: replaces the last half of day 2
            zms.append_manifest(redelivered, case.doc, append_dim="time", on_overlap="replace")
            case.expect(
                v=np.concatenate([*days[:2], days[2][:2], days[3]]),
                time=np.concatenate([*times[:2], times[2][:2], times[3]]),
            )

        return build

    yield (
        "appended-json",
        "a document grown by four appends (JSON manifest parts)",
        appended("json"),
    )
    yield (
        "appended-columnar",
        "a document grown by four appends (columnar manifest parts, inline chunks among them)",
        appended("columnar"),
    )
    yield (
        "appended-replaced-json",
        "an append that replaced the last chunks (a part gives fewer chunks than it holds)",
        replaced("json"),
    )
    yield (
        "appended-replaced-columnar",
        "an append that replaced the last chunks, columnar manifest parts",
        replaced("columnar"),
    )


def all_cases() -> Iterator[tuple[str, str, Callable[[Case], None]]]:
    for family in (
        dtype_cases,
        codec_cases,
        layout_cases,
        append_cases,
        prior_art_cases,
        invalid_cases,
    ):
        yield from family()


def generate(cases: Path = CASES, examples: Path = EXAMPLES) -> list[str]:
    """Write every case under ``cases`` and the examples under ``examples``; return the names."""
    names = []
    with tempfile.TemporaryDirectory() as scratch:
        built = Path(scratch) / "cases"
        built.mkdir()
        for name, description, build in all_cases():
            case = Case(Path(scratch) / "work", name, description)
            build(case)
            case.finish(built)
            names.append(name)
        example_documents(Path(scratch) / "examples")
        for target, source in ((cases, built), (examples, Path(scratch) / "examples")):
            shutil.rmtree(target, ignore_errors=True)
            shutil.copytree(source, target, symlinks=True)
    return names


if __name__ == "__main__":
    written = generate()
    print(f"{len(written)} cases in {CASES}; examples in {EXAMPLES}")
