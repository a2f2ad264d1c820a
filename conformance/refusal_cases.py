"""Documents every reader must refuse, each with its category (``case.json``'s ``error``)."""

from __future__ import annotations

import json
import os
import shutil
from typing import Any

import numpy as np

from conformance.build import source_array
from conformance.case import FORBIDDEN, INVALID, MISSING, Build, Case, Cases, group

DATA = np.arange(24, dtype="float32").reshape(4, 6)
"""The array every refused document holds, ``a``, before it is broken."""


def base(case: Case, encoding: str = "json", **options: Any) -> None:
    """Write the valid document that a refusal then breaks."""
    made = source_array(case.data("a.bin"), DATA, chunks=(2, 3), **options)
    case.write(group(a=made), encoding=encoding)


def refused(category: str, encoding: str, mutate: Build, **options: Any) -> Build:
    """A case: the valid document, broken by ``mutate``, that readers refuse as ``category``."""

    def build(case: Case) -> None:
        base(case, encoding, **options)
        mutate(case)
        case.error = category

    return build


def truncate(key: str, keep: float = 0.5) -> Build:
    """Cut the document's file ``key`` to the fraction ``keep`` of its bytes."""

    def mutate(case: Case) -> None:
        file = case.doc / key
        text = file.read_bytes()
        file.write_bytes(text[: int(len(text) * keep)])

    return mutate


def entry(**changes: Any) -> Build:
    """Change the manifest entry of chunk ``0.0``."""
    return lambda case: case.json("a/manifest.json", lambda m: m["0.0"].update(changes))


def config(**changes: Any) -> Build:
    """Change the configuration of the array's storage transformer."""

    def mutate(case: Case) -> None:
        case.array_json(
            "a", lambda meta: meta["storage_transformers"][0]["configuration"].update(changes)
        )

    return mutate


def relative(path: str) -> Build:
    """Point chunk ``0.0`` at ``path`` (a copy of its source lies just outside the document)."""

    def mutate(case: Case) -> None:
        (case.dir / "outside.bin").write_bytes(case.data("a.bin").read_bytes())
        case.json("a/manifest.json", lambda m: m["0.0"].update(path=path))

    return mutate


def entry_refusals() -> Cases:
    """Broken manifests and entries: truncated files, bad numbers, versions."""
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


def part_refusals() -> Cases:
    """Manifests in parts that do not add up."""

    def in_parts(**changes: Any) -> Build:
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
        case.expect(a=DATA)

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


def metadata_refusals() -> Cases:
    """Storage transformers, manifests and chunk keys that are not as the spec says."""

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


def columnar_refusals() -> Cases:
    """Columnar manifests whose tables do not hold together."""

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


def path_refusals() -> Cases:
    """Paths that leave the document or the allowed prefixes, and absent sources."""
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


def node_path_cases() -> Cases:
    """Node paths are relative paths too (section 4.2): none leaves the document folder."""

    def moved(*names: str, folders: bool = True) -> Build:
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
