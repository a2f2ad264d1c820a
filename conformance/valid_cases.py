"""Documents every reader must read: data types, codecs, prior-art forms and appended documents."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import zarr

import zarr_manifest_store as zms
from conformance.build import source_array
from conformance.case import RNG, Build, Case, Cases, group


def _simple(arrays: dict[str, np.ndarray], chunks: tuple[int, ...], **options: Any):
    """A case of ``arrays``, each one source file of chunks ``chunks``."""

    def build(case: Case) -> None:
        made = {
            name: source_array(case.data(f"{name}.bin"), values, chunks=chunks, **options)
            for name, values in arrays.items()
        }
        case.write(group(**made))
        case.expect(**arrays)

    return build


def number_cases() -> Cases:
    """Booleans, integers, floats and complex numbers, extremes included."""
    yield "dtype-bool", "bool", _simple({"flags": RNG.random((5, 4)) > 0.5}, (2, 3))
    yield (
        "dtype-int",
        "signed integers of every width, extremes included",
        _simple(
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
        _simple(
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
        _simple({f"f{w}": floats.astype(f"float{w}") for w in (16, 32, 64)}, (3,)),
    )
    complex_values = np.array([1 + 2j, -0.5j, np.nan + 1j, np.inf, 0])
    yield (
        "dtype-complex",
        "complex64 and complex128",
        _simple({f"c{w}": complex_values.astype(f"complex{w}") for w in (64, 128)}, (2,)),
    )


def text_cases() -> Cases:
    """Dates and times, text, bytes and records."""

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


def codec_cases() -> Cases:
    """Each codec chain a reader must decode."""
    data = RNG.normal(size=(7, 9)).astype("float32")

    def with_codecs(**options: Any) -> Build:
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


def prior_art_cases() -> Cases:
    data = RNG.normal(size=(6, 8)).astype("float64")

    def prior(manifest_name: str, nested: bool) -> Build:
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


def append_cases() -> Cases:
    """Documents grown by ``append_manifest`` (spec section 2.1): still ordinary documents."""

    def appended(encoding: str) -> Build:
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

    def replaced(encoding: str) -> Build:
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
