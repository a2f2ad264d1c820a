"""netCDF3 scanner: classic, 64-bit-offset and CDF5 files described from their own header.

A netCDF3 file is a header followed by uncompressed, big-endian, C-ordered
data, so every variable maps to byte ranges exactly:

- a non-record variable is one contiguous block at its ``begin`` offset; a
  large one is split along its leading axis into several chunks of whole rows,
  so that readers can parallelise and slice;
- a record variable has one slab per record, at ``begin + i * record_size``,
  where the record size is the sum of every record variable's (padded) slab;
  each slab becomes one chunk.

The header is parsed here (the format is specified in the netCDF User Guide,
"File Format Specifications"), reading only its bytes, so remote files cost a
request or two.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, NoReturn

import numpy as np
from zarr.dtype import parse_dtype

from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.cf import (
    TYPED_ATTRIBUTES,
    fill_value_attribute,
    fill_value_record,
    stored_attribute,
    typed_value,
)
from zarr_manifest_store.group import ManifestGroup
from zarr_manifest_store.io.paths import is_local, source_path
from zarr_manifest_store.io.remote_file import shared_remote_file
from zarr_manifest_store.io.sources import Sources
from zarr_manifest_store.manifest import ChunkManifest, Fingerprint
from zarr_manifest_store.scan.common import (
    CONTIGUOUS_CHUNK_BYTES,
    Refusals,
    Refused,
    rows_per_chunk,
    with_stored_coordinates,
    zarr_name,
)
from zarr_manifest_store.scan.registry import Format

__all__ = ["FORMAT", "SIGNATURES", "NetCDF3Header", "read_netcdf3_header", "scan_netcdf3"]


VERSIONS = {1: "classic", 2: "64-bit offset", 5: "64-bit data (CDF5)"}
"""The netCDF3 formats, by the version byte after ``CDF``."""
SIGNATURES = tuple(b"CDF" + bytes([version]) for version in VERSIONS)
"""The first four bytes of a netCDF3 file."""

_HEADER_BLOCK = 64 * 2**10
_ABSENT, _NC_DIMENSION, _NC_VARIABLE, _NC_ATTRIBUTE = 0, 10, 11, 12
_STREAMING = -1

# nc_type -> (numpy dtype as stored, netCDF default fill value); types 7-11 exist only in CDF5.
_TYPES: dict[int, tuple[np.dtype, Any]] = {
    1: (np.dtype("i1"), -127),
    2: (np.dtype("S1"), b"\x00"),
    3: (np.dtype(">i2"), -32767),
    4: (np.dtype(">i4"), -2147483647),
    5: (np.dtype(">f4"), 9.9692099683868690e36),
    6: (np.dtype(">f8"), 9.9692099683868690e36),
    7: (np.dtype("u1"), 255),
    8: (np.dtype(">u2"), 65535),
    9: (np.dtype(">u4"), 4294967295),
    10: (np.dtype(">i8"), -9223372036854775806),
    11: (np.dtype(">u8"), 18446744073709551614),
}


@dataclass(frozen=True)
class Dimension:
    """A netCDF3 dimension; the record (unlimited) dimension has ``length`` None."""

    name: str
    length: int | None


@dataclass(frozen=True)
class Variable:
    """A netCDF3 variable as its header entry describes it."""

    name: str
    dimensions: tuple[Dimension, ...]
    attributes: dict[str, np.ndarray | bytes]
    dtype: np.dtype
    default_fill: Any
    begin: int

    @property
    def is_record(self) -> bool:
        return bool(self.dimensions) and self.dimensions[0].length is None

    @property
    def slab_bytes(self) -> int:
        """Bytes of the variable's non-record part: all of it, or one record's slab."""
        inner = self.dimensions[1:] if self.is_record else self.dimensions
        return math.prod(d.length for d in inner) * self.dtype.itemsize  # type: ignore[misc]


@dataclass(frozen=True)
class NetCDF3Header:
    """The parsed header of a netCDF3 file: format, record count, dimensions, attributes, variables.

    >>> header = read_netcdf3_header("stations.nc")
    >>> header.format, header.numrecs, [v.name for v in header.variables]
    ('classic', 3, ['t2m', 'time'])
    """

    version: int
    numrecs: int
    dimensions: tuple[Dimension, ...]
    attributes: dict[str, np.ndarray | bytes]
    variables: tuple[Variable, ...]

    @property
    def format(self) -> str:
        return VERSIONS[self.version]

    @property
    def record_bytes(self) -> int:
        """The stride between records: the record variables' slabs, each padded to 4 bytes.

        A file with a single record variable is not padded (netCDF's special case).
        """
        slabs = [v.slab_bytes for v in self.variables if v.is_record]
        if len(slabs) == 1:
            return slabs[0]
        return sum(_pad4(s) for s in slabs)


def scan_netcdf3(
    url: str | os.PathLike[str],
    *,
    group: str | None = None,
    drop_variables: str | Iterable[str] | None = None,
    on_unsupported: str = "raise",
    storage_options: dict[str, Any] | None = None,
    contiguous_chunk_bytes: int | None = CONTIGUOUS_CHUNK_BYTES,
) -> ManifestGroup:
    """Describe a netCDF3 file (classic, 64-bit offset or CDF5) as a ManifestGroup, reading only its header.

    Every variable becomes a big-endian Zarr array whose chunks are byte
    ranges of the file; ``_FillValue`` (or netCDF's default fill value for the
    type) becomes the Zarr ``fill_value``, and the attributes are carried so
    that ``xr.open_zarr(ManifestStore(g))`` equals ``xr.open_dataset(url, engine="scipy")``.
    ``group`` must be None (netCDF3 has no groups). A variable whose data runs
    past the end of a truncated file is refused (``on_unsupported``: raise
    ``UnsupportedDatasetError`` naming it, or ``"skip"`` it with a warning); the
    others are kept. Large non-record variables are
    split along their first axis into chunks of about ``contiguous_chunk_bytes``
    (``None``: one chunk), as ``scan_hdf5`` splits contiguous datasets.

    >>> g = scan_netcdf3("stations.nc")
    >>> xr.open_zarr(zms.ManifestStore(g)).t2m.sizes
    Frozen({'time': 3, 'station': 4})
    """
    if group not in (None, "", "/"):
        raise ValueError(f"{os.fspath(url)!r} is a netCDF3 file, which has no groups: got {group=}")
    dropped = {drop_variables} if isinstance(drop_variables, str) else set(drop_variables or ())
    path = source_path(url)
    refusals = Refusals(path, on_unsupported)  # type: ignore[arg-type]  # it checks the value
    header, fingerprint = _read_header(path, storage_options)
    arrays = {}
    for v in header.variables:
        if v.name in dropped:
            continue
        try:
            array = _array(v, header, path, fingerprint, contiguous_chunk_bytes)
            arrays[zarr_name(v.name)] = array  # a name Zarr reserves is escaped
        except Refused as e:
            refusals.add(v.name, str(e))
    refusals.finish()
    return ManifestGroup(arrays=arrays, attributes=_attributes(header.attributes, None))


def read_netcdf3_header(
    url: str | os.PathLike[str], *, storage_options: dict[str, Any] | None = None
) -> NetCDF3Header:
    """Parse the header of a netCDF3 file; a ValueError names the file and what is malformed.

    >>> read_netcdf3_header("stations.nc").format
    'classic'
    """
    return _read_header(source_path(url), storage_options)[0]


# ---------------------------------------------------------------------- arrays


def _array(
    var: Variable,
    header: NetCDF3Header,
    path: str,
    fingerprint: Fingerprint,
    contiguous_chunk_bytes: int | None,
) -> ManifestArray:
    """The ManifestArray of one variable: its Zarr metadata and the byte ranges of its chunks."""
    size: int = fingerprint.size  # type: ignore[assignment]  # _read_header checked it
    dims = var.dimensions
    if var.is_record:
        shape = (header.numrecs, *(d.length for d in dims[1:]))
        chunks = (1, *shape[1:])
        stride, count = header.record_bytes, header.numrecs
        length = var.slab_bytes
        # no records: nothing to read (netCDF-C places the record variables past the file's end)
        end = var.begin + (count - 1) * stride + length if count else 0
    else:
        shape = tuple(d.length for d in dims)  # type: ignore[misc]
        rows = _leading_rows(var, size, contiguous_chunk_bytes)
        chunks = (rows, *shape[1:]) if shape else ()
        count = -(-shape[0] // rows) if shape else 1
        stride = length = rows * var.slab_bytes // shape[0] if shape else var.slab_bytes
        end = var.begin + var.slab_bytes
    if end > size:
        raise Refused(
            f"the file is truncated: variable {var.name!r} ends at byte {end}, but the file has "
            f"{size} bytes (scan the complete file)"
        )
    grid = (count, *(1 for _ in shape[1:])) if shape else ()
    offsets = (var.begin + stride * np.arange(count, dtype=np.uint64)).reshape(grid)
    manifest = ChunkManifest(
        paths=[path],
        path_index=np.zeros(grid, dtype=np.uint32),
        offsets=offsets,
        lengths=np.full(grid, length, dtype=np.uint64),
        fingerprints={path: fingerprint},
    )
    fill = var.attributes.get("_FillValue")
    fill_value = _fill_of(fill, var.dtype) if fill is not None else None
    fill_value = var.default_fill if fill_value is None else fill_value
    zdtype = parse_dtype(var.dtype, zarr_format=3)
    metadata = {
        "shape": list(shape),
        "data_type": zdtype.to_json(zarr_format=3),
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": list(chunks)}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": zdtype.to_json_scalar(fill_value, zarr_format=3),
        "codecs": [{"name": "bytes", "configuration": {"endian": "big"}}],
        "attributes": with_stored_coordinates(_attributes(var.attributes, var.dtype)),
        "dimension_names": [zarr_name(d.name) for d in dims],  # as their coordinates are named
    }
    return ManifestArray(metadata=metadata, manifest=manifest)


def _leading_rows(var: Variable, size: int, target: int | None) -> int:
    """Rows of a non-record variable's leading axis per chunk: all, or about ``target`` bytes worth."""
    if not var.dimensions:
        return 1
    n: int = var.dimensions[0].length  # type: ignore[assignment]
    room_after = size - var.begin - var.slab_bytes
    return rows_per_chunk(n, var.slab_bytes // n, target=target, room_after=room_after)


def _attributes(attrs: dict[str, np.ndarray | bytes], dtype: np.dtype | None) -> dict[str, Any]:
    """Attributes as JSON, as xarray's scipy backend shows them; ``_FillValue`` as its zarr backend reads it.

    A ``char`` variable's ``_FillValue``, and a float ``scale_factor`` /
    ``add_offset``, keep their NumPy values in ``TYPED_ATTRIBUTES`` (see
    ``fill_value_record`` and ``stored_attribute``).
    """
    out: dict[str, Any] = {}
    typed: dict[str, Any] = {}
    for name, value in attrs.items():
        if name == "_FillValue" and dtype is not None:
            native = dtype.newbyteorder("=")
            fill = _fill_of(value, dtype)
            encoded = None if fill is None else fill_value_attribute(fill, native)
            if encoded is not None:
                out[name] = encoded
            elif fill is not None and (record := fill_value_record(fill, native)) is not None:
                typed[name] = record
            if fill is None or np.size(value) > 1:  # as scipy shows it: xarray masks with it
                typed[name] = typed_value(
                    np.asarray(value).reshape(-1 if np.size(value) > 1 else ())
                )
            continue
        out[name], record = stored_attribute(name, value)
        if record is not None:
            typed[name] = record
    if typed:
        out[TYPED_ATTRIBUTES] = typed
    return out


def _fill_of(value: np.ndarray | bytes, dtype: np.dtype) -> Any:
    """A ``_FillValue`` attribute's first value as a value of ``dtype``; None where it is not
    one (text for a number, a number the type cannot hold exactly): netCDF readers then
    mask nothing with it, and the variable's default fill stands for unwritten data."""
    if dtype.kind == "S":
        raw = value if isinstance(value, bytes) else np.asarray(value).tobytes()
        return raw[:1] or b"\x00"
    first = np.asarray(value).ravel()
    if first.size == 0 or first.dtype.kind not in "iufb":
        return None
    native = dtype.newbyteorder("=")
    with np.errstate(all="ignore"):
        converted = first[:1].astype(native)
    if converted[0] != first[0] and not (np.isnan(first[0]) and np.isnan(converted[0])):
        return None
    return converted[0].item()


def _pad4(n: int) -> int:
    return n + (-n % 4)


# ---------------------------------------------------------------------- header parsing


def _read_header(
    path: str, storage_options: dict[str, Any] | None
) -> tuple[NetCDF3Header, Fingerprint]:
    """The file's header, and its fingerprint (whose size bounds the header reads); a remote
    file's from its first block, read with the fingerprint in one request (within a
    ``sharing``, the block the format registry read to identify it)."""
    sources = Sources(storage_options)
    try:
        if is_local(path):
            fingerprint = sources.fingerprint(path)
            if fingerprint.size is None:
                raise OSError(f"cannot read {path!r}: its size is unknown to the file system")
            return _HeaderParser(path, fingerprint.size, sources.read_sync).parse(), fingerprint
        remote = shared_remote_file(sources, path)
        parser = _HeaderParser(path, remote.size, lambda _, at, n: remote.read_range(at, at + n))
        return parser.parse(), remote.fingerprint
    finally:
        sources.close()


class _HeaderParser:
    """Reads a netCDF3 header from the front of a file, fetching more bytes only when needed."""

    def __init__(self, path: str, size: int, read: Callable[[str, int, int], bytes]) -> None:
        self._path, self._size, self._read = path, size, read
        self._buf = b""
        self._pos = 0
        self._version = 0

    def parse(self) -> NetCDF3Header:
        magic = self._take(4, "the format signature")
        if magic[:3] != b"CDF" or magic[3] not in VERSIONS:
            self._fail(
                f"the file starts with {magic!r}, not a netCDF3 signature "
                f"(b'CDF\\x01', b'CDF\\x02' or b'CDF\\x05')",
                at=0,
            )
        self._version = magic[3]
        numrecs = self._int(self._wide, "the record count", allow_streaming=True)
        dimensions = tuple(
            Dimension(name, length or None)
            for name, length in self._list(_NC_DIMENSION, "dimension", self._dimension)
        )
        attributes = dict(self._list(_NC_ATTRIBUTE, "global attribute", self._attribute))
        variables = tuple(self._list(_NC_VARIABLE, "variable", lambda: self._variable(dimensions)))
        header = NetCDF3Header(self._version, numrecs, dimensions, attributes, variables)
        if numrecs == _STREAMING:
            header = self._with_streamed_numrecs(header)
        return header

    # -- items

    def _dimension(self) -> tuple[str, int]:
        name = self._name("dimension name")
        return name, self._int(self._wide, f"the length of dimension {name!r}")

    def _attribute(self) -> tuple[str, np.ndarray | bytes]:
        name = self._name("attribute name")
        nc_type = self._int(4, f"the type of attribute {name!r}")
        dtype = self._dtype(nc_type, f"attribute {name!r}")[0]
        count = self._int(self._wide, f"the length of attribute {name!r}")
        nbytes = count * dtype.itemsize
        raw = self._take(nbytes, f"the values of attribute {name!r}")
        self._take(-nbytes % 4, f"the padding of attribute {name!r}")
        if dtype.kind == "S":
            return name, raw.rstrip(b"\x00")
        values = np.frombuffer(raw, dtype=dtype).astype(dtype.newbyteorder("="))
        return name, values

    def _variable(self, dimensions: tuple[Dimension, ...]) -> Variable:
        name = self._name("variable name")
        ndims = self._int(self._wide, f"the dimension count of variable {name!r}")
        dims = []
        for axis in range(ndims):
            at = self._pos
            dimid = self._int(self._wide, f"a dimension id of variable {name!r}")
            if dimid >= len(dimensions):
                self._fail(
                    f"variable {name!r} uses dimension id {dimid}, but the file defines "
                    f"{len(dimensions)} dimension(s)",
                    at=at,
                )
            if dimensions[dimid].length is None and axis > 0:
                self._fail(
                    f"variable {name!r} has the record dimension {dimensions[dimid].name!r} "
                    f"at position {axis}; it may only come first",
                    at=at,
                )
            dims.append(dimensions[dimid])
        attributes = dict(
            self._list(_NC_ATTRIBUTE, f"attribute of variable {name!r}", self._attribute)
        )
        dtype, fill = self._dtype(self._int(4, f"the type of variable {name!r}"), repr(name))
        self._int(
            self._wide, f"the size of variable {name!r}"
        )  # vsize: recomputed, it may overflow
        begin = self._int(8 if self._version > 1 else 4, f"the data offset of variable {name!r}")
        return Variable(name, tuple(dims), attributes, dtype, fill, begin)

    def _with_streamed_numrecs(self, header: NetCDF3Header) -> NetCDF3Header:
        """A header written while streaming has no record count: the file size gives it."""
        begins = [v.begin for v in header.variables if v.is_record]
        stride = header.record_bytes
        numrecs = (self._size - min(begins)) // stride if begins and stride else 0
        return NetCDF3Header(
            header.version, numrecs, header.dimensions, header.attributes, header.variables
        )

    # -- primitives

    @property
    def _wide(self) -> int:
        """The size of counts and lengths: 8 bytes in CDF5, else 4."""
        return 8 if self._version == 5 else 4

    def _list(self, tag: int, what: str, item: Callable[[], Any]) -> list[Any]:
        at = self._pos
        found = self._int(4, f"the {what} list tag")
        count = self._int(self._wide, f"the number of {what}s")
        if found == _ABSENT and count == 0:
            return []
        if found != tag:
            self._fail(f"expected the {what} list (tag {tag}) or none, found tag {found}", at=at)
        if count > self._size:
            self._fail(f"the header claims {count} {what}s, more than the file has bytes", at=at)
        return [item() for _ in range(count)]

    def _name(self, what: str) -> str:
        n = self._int(self._wide, f"the length of a {what}")
        raw = self._take(n, f"a {what}")
        self._take(-n % 4, f"the padding of a {what}")
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError:  # scipy's writer encodes names as Latin-1, and reads them so
            return raw.decode("latin-1")

    def _dtype(self, nc_type: int, what: str) -> tuple[np.dtype, Any]:
        if nc_type not in _TYPES or (nc_type > 6 and self._version != 5):
            kinds = "1-11" if self._version == 5 else "1-6"
            self._fail(f"{what} has type {nc_type}; netCDF3 {self.format} types are {kinds}")
        return _TYPES[nc_type]

    def _int(self, nbytes: int, what: str, *, allow_streaming: bool = False) -> int:
        at = self._pos
        value = int.from_bytes(self._take(nbytes, what), "big", signed=True)
        if value < 0 and not (allow_streaming and value == _STREAMING):
            self._fail(f"{what} is negative ({value})", at=at)
        return value

    def _take(self, n: int, what: str) -> bytes:
        end = self._pos + n
        if end > len(self._buf):
            if end > self._size:
                self._fail(
                    f"the header ends inside {what}: byte {end} is past the end of the file "
                    f"({self._size} bytes)"
                )
            want = min(self._size, max(end, 2 * len(self._buf), _HEADER_BLOCK))
            self._buf += self._read(self._path, len(self._buf), want - len(self._buf))
        data = self._buf[self._pos : end]
        self._pos = end
        return data

    @property
    def format(self) -> str:
        return VERSIONS.get(self._version, "netCDF3")

    def _fail(self, problem: str, *, at: int | None = None) -> NoReturn:
        where = self._pos if at is None else at
        raise ValueError(
            f"{self._path!r} is not a valid netCDF3 file: {problem} (header byte {where})"
        )


FORMAT = Format(
    name="netcdf3",
    scan=scan_netcdf3,
    description=f"netCDF3 ({', '.join(map(repr, SIGNATURES))})",
    signatures=SIGNATURES,
)
"""netCDF3 in the format registry: files that start with ``CDF`` and a version byte."""
