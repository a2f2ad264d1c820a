"""The chunk-manifest document's wire format: msgspec types and strict decoding.

Every JSON file of a document is decoded here into typed values, strictly (a
string where a number belongs is an error, never coerced). Any problem becomes
a :class:`~zarr_manifest_store.ManifestError` naming the file and the field.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
from msgspec import UNSET, Meta, Struct, UnsetType

from zarr_manifest_store.errors import ManifestError
from zarr_manifest_store.manifest import MAX_END, Fingerprint

EXTENSION = "chunk-manifest"
"""The storage transformer name this package writes and reads."""
PRIOR_ART = "chunk-manifest-json"
"""The storage transformer name of earlier prototypes (VirtualiZarr, zarrs); read only."""
VERSION = (1, 1)
"""The extension version this package knows; readers accept any 1.x and refuse other majors.
Writers declare the lowest version an array needs: 1.0, or 1.1 for a manifest in parts."""
PARTS_VERSION = (1, 1)
"""The version that added manifests in parts (the ``parts`` encoding)."""

GUARD = "chunk_manifest"
"""A must-understand top-level field of every array's ``zarr.json``: readers that ignore
unknown storage transformers (zarr-python, through groups) refuse it instead of
returning fill values."""

JSON_MANIFEST = "manifest.json"
"""Where the JSON encoding keeps an array's manifest, relative to the array's folder."""
COLUMNAR_MANIFEST = "manifest"
"""Where the columnar encoding keeps an array's manifest group, relative to the array's folder."""
COLUMNS = ("path_index", "offset", "length")
"""The grid-shaped arrays of a columnar manifest, in the order they are read."""
PARTS_FOLDER = "parts"
"""Where appends keep the new parts of an array's manifest, relative to the array's folder."""
MAX_PARTS = 2**16
"""How many parts one array's manifest may have (fixed by the specification): a document
cannot make a reader open more manifest files than this for one array."""
INLINE_COLUMN = "inline"
"""The columnar manifest's optional ``uint8`` array holding inline chunks' bytes."""

MAX_JSON_DEPTH = 128
"""How deeply a document's JSON values may nest: deeper ones are refused before parsing, so
that no parser or serialiser runs out of stack on them."""
_ESCAPE = re.compile(rb"\\.", re.DOTALL)
_NOT_STRUCTURE = bytes(c for c in range(256) if c not in b'"[]{}')
_STEP = np.zeros(256, dtype=np.int8)
_STEP[list(b"[{")], _STEP[list(b"]}")] = 1, -1
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")

ByteCount = Annotated[int, Meta(ge=0, le=MAX_END)]
Int64 = Annotated[int, Meta(ge=-(2**63), le=2**63 - 1)]
NonEmpty = Annotated[str, Meta(min_length=1)]
Version = Annotated[str, Meta(pattern=r"^[0-9]{1,9}\.[0-9]{1,9}$")]


class SourceFingerprint(Struct, omit_defaults=True):
    """What a source looked like when it was scanned; an absent field is not checked."""

    size: ByteCount | None = None
    mtime_ns: Int64 | None = None
    etag: str | None = None

    def to_fingerprint(self) -> Fingerprint:
        return Fingerprint(size=self.size, mtime_ns=self.mtime_ns, etag=self.etag)

    @classmethod
    def of(cls, fingerprint: Fingerprint) -> SourceFingerprint:
        return cls(size=fingerprint.size, mtime_ns=fingerprint.mtime_ns, etag=fingerprint.etag)


class ManifestPart(Struct, omit_defaults=True):
    """One part of a manifest in parts: a JSON or columnar manifest of a run of chunks along
    the parts' axis, ``extent`` chunks long, of which the first ``used`` belong to the array
    (the rest were replaced by a later part)."""

    manifest: NonEmpty  # relative to the array's folder
    encoding: Literal["json", "columnar"]
    extent: Annotated[int, Meta(ge=1, le=MAX_END)]
    used: Annotated[int, Meta(ge=1, le=MAX_END)] | None = None
    sources: dict[NonEmpty, SourceFingerprint] = {}  # the JSON encoding's fingerprints

    @property
    def rows(self) -> int:
        """How many chunks along the axis this part gives the array."""
        return self.extent if self.used is None else self.used


class TransformerConfig(Struct, omit_defaults=True):
    """The configuration of the ``chunk-manifest`` storage transformer."""

    version: Version
    encoding: Literal["json", "columnar", "parts"]
    sources: dict[NonEmpty, SourceFingerprint] = {}  # the JSON encoding's fingerprints
    axis: Annotated[int, Meta(ge=0)] | None = None  # the parts encoding's
    parts: list[ManifestPart] | None = None


class PriorArtConfig(Struct):
    """The configuration of the prior-art ``chunk-manifest-json`` storage transformer."""

    manifest: NonEmpty


class Transformer(Struct):
    name: str
    configuration: dict[str, Any] = {}


class JsonEntry(Struct, omit_defaults=True):
    """One chunk of a JSON manifest: a reference (path, offset, length) or inline base64 data.

    Absent fields are UNSET (an explicit ``null`` is a type error, not an absent field).
    """

    path: NonEmpty | UnsetType = UNSET
    offset: ByteCount | UnsetType = UNSET
    length: ByteCount | UnsetType = UNSET
    data: str | UnsetType = UNSET


class ColumnarAttributes(Struct, omit_defaults=True):
    """The attributes of a columnar manifest group: its path table and fingerprints."""

    paths: list[NonEmpty]
    sources: dict[NonEmpty, SourceFingerprint] = {}


class NamedConfig(Struct):
    name: str
    configuration: dict[str, Any] = {}


class RegularGrid(Struct):
    chunk_shape: list[Annotated[int, Meta(ge=1, le=MAX_END)]]


class BytesConfig(Struct):
    endian: Literal["little", "big"] = "little"


class BloscConfig(Struct):
    cname: Literal["blosclz", "lz4", "lz4hc", "snappy", "zlib", "zstd"]
    clevel: Annotated[int, Meta(ge=0, le=9)]
    shuffle: Literal["noshuffle", "shuffle", "bitshuffle"]
    typesize: Annotated[int, Meta(ge=1, le=255)] | None = None
    blocksize: Annotated[int, Meta(ge=0)] = 0


class ZstdConfig(Struct):
    level: Annotated[int, Meta(ge=-131072, le=22)] = 0
    checksum: bool = False


class GzipConfig(Struct):
    level: Annotated[int, Meta(ge=0, le=9)] = 6


class EmptyConfig(Struct):
    pass


CODEC_CONFIGS: dict[str, type[Struct]] = {
    "bytes": BytesConfig,
    "blosc": BloscConfig,
    "zstd": ZstdConfig,
    "gzip": GzipConfig,
    "crc32c": EmptyConfig,
}
"""The codecs a columnar manifest array may use, and their configurations."""


class ColumnArray(Struct):
    """The ``zarr.json`` of one array of a columnar manifest (a restricted Zarr v3 profile)."""

    zarr_format: Literal[3]
    node_type: Literal["array"]
    shape: list[ByteCount]
    data_type: Literal["uint8", "uint32", "uint64"]
    chunk_grid: NamedConfig
    chunk_key_encoding: NamedConfig
    fill_value: int
    codecs: list[NamedConfig]
    storage_transformers: list[Any] = []


class ColumnarGroup(Struct):
    """The ``zarr.json`` of a columnar manifest group, its arrays' metadata consolidated."""

    zarr_format: Literal[3]
    node_type: Literal["group"]
    attributes: ColumnarAttributes
    consolidated_metadata: ColumnarConsolidated


class ColumnarConsolidated(Struct):
    kind: Literal["inline"]
    metadata: dict[str, dict[str, Any]]
    must_understand: bool = False


class NodeHeader(Struct):
    """The fields of any ``zarr.json`` this reader needs before zarr parses the rest."""

    zarr_format: Literal[3]
    node_type: Literal["group", "array"]


class GroupNode(Struct):
    zarr_format: Literal[3]
    node_type: Literal["group"]
    attributes: dict[str, Any] = {}
    consolidated_metadata: Consolidated | None = None


class Consolidated(Struct):
    kind: Literal["inline"]
    metadata: dict[str, dict[str, Any]]
    must_understand: bool = False


class ArrayHeader(Struct):
    """What the reader checks of an array's ``zarr.json`` before handing it to zarr."""

    shape: list[ByteCount]
    chunk_grid: NamedConfig
    storage_transformers: list[Transformer] = []


class RectilinearGrid(Struct):
    """Per dimension: a regular step, or explicit sizes and ``[size, count]`` runs.

    The runs are checked by the reader (msgspec 0.22 corrupts memory converting a
    union of a constrained int and a tuple, so the types here stay plain).
    """

    chunk_shapes: list[int | list[int | list[int]]]
    kind: str = "inline"

    def extents(self, where: str, at: str) -> list[int]:
        """The number of chunks along each dimension; ManifestError for a malformed entry."""
        out = []
        for axis, spec in enumerate(self.chunk_shapes):
            field = join(at, f"chunk_shapes[{axis}]")
            if isinstance(spec, int):
                if spec < 1:
                    raise ManifestError(f"{where}: field {field}: a step must be positive")
                out.append(-1)  # a regular step: the count follows from the shape
                continue
            count = 0
            for item in spec:
                size_and_count = [item, 1] if isinstance(item, int) else item
                if len(size_and_count) != 2 or min(size_and_count) < 0:
                    raise ManifestError(
                        f"{where}: field {field}: entries are sizes or [size, count] pairs, "
                        f"got {item!r}"
                    )
                count += size_and_count[1]
            out.append(count)
        return out


def version_text(version: tuple[int, int] = (1, 0)) -> str:
    """A version as it appears in documents (``"1.0"``)."""
    return ".".join(map(str, version))


def parse_version(text: str, where: str) -> tuple[int, int]:
    """``"1.0"`` -> ``(1, 0)``; a major version this reader does not know is refused."""
    major, minor = (int(p) for p in text.split("."))
    if major != VERSION[0]:
        raise ManifestError(
            f"{where}: chunk-manifest version {text!r} is not supported; this reader understands "
            f"version {VERSION[0]}.x (upgrade zarr-manifest-store to read this document)"
        )
    return major, minor


def loads(data: bytes, where: str) -> Any:
    """Parse a metadata JSON file; NaN and Infinity literals (as zarr writes attributes) allowed.

    Refused: text that is not UTF-8, values nested deeper than MAX_JSON_DEPTH
    (checked before parsing), and a member name repeated in one object
    (parsers differ on which wins).
    """
    _check_depth(data, where)
    try:
        value = json.loads(data.decode("utf-8"))
    except (ValueError, RecursionError) as e:  # JSONDecodeError and UnicodeDecodeError included
        raise ManifestError(f"{where}: not valid JSON: {_short(e)}") from None
    _check_unique_members(data, value, where)
    if _SURROGATE_ESCAPE.search(data):
        try:
            json.dumps(value, ensure_ascii=False, allow_nan=True).encode("utf-8")
        except UnicodeEncodeError:  # a lone surrogate: json.loads joins the pairs
            raise ManifestError(
                f"{where}: a string holds a lone surrogate escape (such as "
                f"\\ud800), which is not Unicode text"
            ) from None
    return value


def _check_depth(data: bytes, where: str) -> None:
    """Refuse JSON nested deeper than MAX_JSON_DEPTH, counting brackets outside strings.

    Escapes are dropped first (an escaped quote ends no string), then everything but
    quotes and brackets; a bracket lies outside strings where the quotes before it are even.
    """
    text = _ESCAPE.sub(b"", data) if b"\\" in data else data
    codes = np.frombuffer(text.translate(None, _NOT_STRUCTURE), dtype=np.uint8)
    quotes = codes == ord('"')
    outside = (np.cumsum(quotes, dtype=np.int64) & 1) == 0
    steps = _STEP[codes] * outside
    if codes.size and int(np.cumsum(steps, dtype=np.int64).max()) > MAX_JSON_DEPTH:
        raise ManifestError(
            f"{where}: values are nested deeper than a document's JSON may nest "
            f"(MAX_JSON_DEPTH={MAX_JSON_DEPTH} levels, zarr_manifest_store.document.wire)"
        )


def convert[T](value: Any, kind: type[T], where: str, at: str = "") -> T:
    """``value`` (found at field ``at`` of the file ``where``) as ``kind``, strictly.

    A mismatch is a ManifestError naming the file and the field.
    """
    try:
        return msgspec.convert(value, kind, strict=True)
    except msgspec.ValidationError as e:
        raise ManifestError(f"{where}: {_field_message(e, at)}") from None


def decode[T](data: bytes, kind: type[T], where: str) -> T:
    """Decode a large JSON file (a manifest) straight into ``kind``, strictly; a member name
    repeated in one object is refused."""
    try:
        value = msgspec.json.decode(data, type=kind, strict=True)
    except msgspec.ValidationError as e:
        raise ManifestError(f"{where}: {_field_message(e)}") from None
    except (msgspec.DecodeError, UnicodeDecodeError) as e:
        raise ManifestError(f"{where}: not valid JSON: {_short(e)}") from None
    _check_unique_members(data, value, where)
    return value


def _check_unique_members(data: bytes, value: Any, where: str) -> None:
    """Refuse a JSON text (already parsed into ``value``) that repeats a member name in an object.

    Parsers keep one of the repeated members, so ``value`` has fewer members
    than the text then. Fast path: in a text without backslashes no string holds
    a ``"``, so with whitespace removed each ``":`` ends exactly one member name;
    re-encoded, ``value`` spells each of its members the same way. Equal counts
    mean no member was dropped. Otherwise (escapes, or members the decoding
    dropped or defaulted), the text is parsed again, checking every object.
    """
    if b"\\" not in data and _member_names(value) == data.translate(None, b" \t\r\n").count(b'":'):
        return
    try:
        json.loads(data, object_pairs_hook=_unique_object)
    except _RepeatedMember as e:
        raise ManifestError(
            f"{where}: not valid JSON: the member name {e.args[0]!r} is repeated in one object "
            f"(a document must not repeat one)"
        ) from None
    except (ValueError, RecursionError) as e:  # bytes the first parser let through
        raise ManifestError(f"{where}: not valid JSON: {_short(e)}") from None


def _member_names(value: Any) -> int:
    """How many ``":`` the compact JSON of ``value`` holds (-1 if it cannot be encoded)."""
    try:
        return msgspec.json.encode(value).count(b'":')
    except (msgspec.EncodeError, TypeError, OverflowError, RecursionError):
        return -1


class _RepeatedMember(ValueError):
    pass


def _unique_object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    value = dict(pairs)
    if len(value) != len(pairs):
        seen: set[str] = set()
        raise _RepeatedMember(next(k for k, _ in pairs if k in seen or seen.add(k)))
    return value


def dumps(value: Any) -> bytes:
    """Compact JSON of a wire value (Structs included)."""
    return msgspec.json.encode(value)


def _field_message(error: msgspec.ValidationError, at: str = "") -> str:
    """msgspec's "... - at `$.a.b`" as "field a.b: ..." (prefixed with the field ``at``)."""
    text = str(error)
    match = re.fullmatch(r"(.*) - at `\$(.*)`", text, flags=re.DOTALL)
    problem, path = match.groups() if match else (text, "")
    return f"field {join(at, path.lstrip('.')) or '(top level)'}: {problem}"


def join(at: str, name: str) -> str:
    """The field ``name`` inside the field ``at``: ``join("a", "b") == "a.b"``, ``join("a", "[0]") == "a[0]"``."""
    if not at or not name:
        return at or name
    return at + name if name.startswith("[") else f"{at}.{name}"


def _short(error: Exception, limit: int = 200) -> str:
    text = str(error)
    return text if len(text) <= limit else text[:limit] + "..."
