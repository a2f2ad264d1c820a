"""Datasets described from their object headers alone, exactly as h5py would describe them.

A compact, contiguous or chunked dataset whose header holds only messages this
module knows (dataspace, a datatype of integers, IEEE floats or fixed-length
strings, fill value, layout, filter pipeline, attributes of numbers and strings,
fixed or variable length, in the header or in dense storage (``dense_attributes``),
creation-ordered or not, and a netCDF-4 dimension list) becomes a :class:`HeaderDataset`: the scan's
:class:`~.objects.Dataset` with every property a scan asks about already read, so
that describing it makes no h5py call but those that read a chunked dataset's chunk
index (HDF5's own, through the dataset opened when first asked for). Each datatype
is decoded by HDF5 itself (``H5Tdecode``), once per distinct type, and values are
taken as stored only where HDF5's conversion to h5py's memory type would copy them
unchanged. Anything else — virtual layouts, external storage, shared messages,
huge objects in dense attribute storage, other types — returns None, and the scan opens the object
with h5py instead.
"""

from __future__ import annotations

import functools
from typing import Any

import h5py
import numpy as np
from h5py import h5d, h5o, h5p, h5z

from zarr_manifest_store.scan.common import Refused
from zarr_manifest_store.scan.hdf5.chunk_tree import StoredIndex
from zarr_manifest_store.scan.hdf5.datatypes import DataKind
from zarr_manifest_store.scan.hdf5.dense_attributes import dense_attributes
from zarr_manifest_store.scan.hdf5.header_attributes import HeaderAttributes, decoded_type
from zarr_manifest_store.scan.hdf5.header_scales import dimension_list, scale_names
from zarr_manifest_store.scan.hdf5.headers import (
    NOT_RECOGNISED,
    FileBytes,
    Message,
    Unrecognised,
    object_messages,
)
from zarr_manifest_store.scan.hdf5.library import open_by_address
from zarr_manifest_store.scan.hdf5.messages import (
    CHUNKED,
    COMPACT,
    CONTIGUOUS,
    RESERVED_FILTERS,
    PipelineStage,
    Space,
    attribute_info,
    chunk_dims,
    dataspace,
    fill_value,
    filter_pipeline,
    layout,
    type_size,
    unshared,
)
from zarr_manifest_store.scan.hdf5.objects import Dataset

__all__ = ["HeaderDataset", "header_dataset"]

DATASPACE, DATATYPE, FILL_OLD, FILL, LAYOUT, ATTRIBUTE, CONTINUATION = 1, 3, 4, 5, 8, 12, 16
ATTRIBUTE_INFO, PIPELINE = 21, 11
IGNORED = frozenset({FILL_OLD, 0x0D, 0x0E, CONTINUATION, 0x12, 0x16})
"""Messages that change nothing h5py reports: the old fill value (the new one rules),
comments, modification times, continuations (followed), reference counts."""
DATASET_CLASSES = frozenset({0, 1, 3})
"""Datatype classes of datasets read here: fixed-point, floating-point, fixed-length string."""


def header_dataset(
    file: FileBytes, h5group: h5py.Group, group_name: str, name: str | bytes, address: int
) -> HeaderDataset | None:
    """The dataset whose object header is at ``address`` (linked as ``name`` from
    ``h5group``, whose path is ``group_name``), or None when h5py must read it."""
    if not isinstance(name, str):
        return None
    try:
        return HeaderDataset.read(file, h5group, f"{group_name.rstrip('/')}/{name}", address)
    except (*NOT_RECOGNISED, Refused):
        return None  # what this reader does not know, h5py reads


class HeaderDataset(Dataset):
    """A dataset described from its object header (see the module's docstring).

    Its properties are set, not read through h5py; the HDF5 identifier is
    opened only when something asks for it (a dimension scale's name, say).
    """

    def __init__(
        self, h5group: h5py.Group, name: str, address: int, space: Space, kind: DataKind
    ) -> None:
        # h5py's own __init__ needs the identifier this class avoids opening
        self._readonly = True
        self._cache_props: dict[str, Any] = {}
        self._group = h5group
        self.name = name
        self.address = address
        """Where its object header lies (the dataset is opened from there when asked for)."""
        self.shape = space.shape
        self.size = space.size
        self.ndim = len(space.shape)
        self.maxshape = space.maxshape
        self.kind = kind
        self.dtype = kind.stored
        self.scale_references: tuple[tuple[int, ...], ...] | None = None
        """The scales its ``DIMENSION_LIST`` lists on each axis, by address (None: it has none)."""
        self.file_bytes: FileBytes | None = None
        self.storage_offset: int | None = None
        self.values: np.ndarray | None = None
        """Its data, when the header holds it (a compact dataset)."""

    @functools.cached_property
    def id(self) -> h5d.DatasetID:  # type: ignore[override]
        try:
            return open_by_address(self._group.id, self.address)
        except KeyError:  # an HDF5 built without H5Oopen_by_addr: by name, as h5py opens it
            return h5o.open(self._group.id, self.name.rsplit("/", 1)[1].encode())

    @functools.cached_property
    def attached_scales(self) -> list[str | None] | None:  # type: ignore[override]
        """Per axis, the name of the last scale attached, from the headers where they name it
        exactly (see ``header_scales``), else as h5py's path names it."""
        if self.scale_references is None or not self.ndim or self.file_bytes is None:
            return None
        try:
            return scale_names(self.scale_references, self.linked_names, self.file_bytes)
        except NOT_RECOGNISED:
            return super().attached_scales

    @classmethod
    def read(cls, file: FileBytes, h5group: h5py.Group, name: str, address: int) -> HeaderDataset:
        """The dataset at ``address`` (raises Unrecognised when it is none of those read here)."""
        by_type: dict[int, Message] = {}
        attributes: list[Message] = []
        messages = object_messages(file, address)
        for message in messages:
            if message.type == ATTRIBUTE:
                attributes.append(message)
            elif message.type not in IGNORED:
                if message.type in by_type:
                    raise Unrecognised("repeated messages")
                by_type[message.type] = message
        pipeline = by_type.pop(PIPELINE, None)
        info = by_type.pop(ATTRIBUTE_INFO, None)
        info = None if info is None else attribute_info(unshared(info), file)
        # attributes listed by creation order: the header's flag (h5py's) and the info message's
        tracked = info is not None and info.tracked
        if tracked != (messages[0].order is not None):
            raise Unrecognised("attribute info")
        if by_type.keys() != {DATASPACE, DATATYPE, FILL, LAYOUT}:
            raise Unrecognised(f"messages {sorted(by_type)}")
        space = dataspace(unshared(by_type[DATASPACE]), file)
        datatype = unshared(by_type[DATATYPE])
        if space is None or datatype[0] & 0x0F not in DATASET_CLASSES:
            raise Unrecognised("null dataspace or datatype class")
        kind, exact = _dataset_type(datatype)
        if not exact:
            raise Unrecognised("HDF5 converts this datatype on reading")
        ds = cls(h5group, name, address, space, kind)
        itemsize = type_size(datatype)
        fill = fill_value(unshared(by_type[FILL]))
        if fill and len(fill) != itemsize:
            raise Unrecognised("fill value size")
        body = unshared(by_type[LAYOUT])
        if body[1] == CHUNKED:
            ds.create_plist = _chunked(body, pipeline, fill, ds.ndim, itemsize, file)
        elif pipeline is not None:
            raise Unrecognised("filters of data that is not chunked")
        else:
            storage, address, data = layout(body, file)
            ds.create_plist = HeaderCreation(storage, fill)
            if storage == COMPACT:
                if len(data) != space.size * itemsize:
                    raise Unrecognised("compact data size")
                ds.values = np.frombuffer(data, kind.stored).reshape(space.shape).copy()
            elif data != space.size * itemsize:
                raise Unrecognised("contiguous data size")
            elif address is not None:
                ds.storage_offset = file.base + address
        raw = [(m.order, unshared(m)) for m in attributes]
        if info is not None and info.heap is not None:
            if raw:
                raise Unrecognised("attributes both in the header and in dense storage")
            raw = dense_attributes(file, info.heap, info.names, info.tracked)
        ds.attributes = HeaderAttributes(ds, raw, file, tracked)
        if "DIMENSION_LIST" in ds.attributes:
            if "CLASS" in ds.attributes:  # a scale of scales: the dimension scale API's own case
                raise Unrecognised("a dimension scale with a dimension list")
            listed = ds.attributes.raw("DIMENSION_LIST")
            ds.scale_references = dimension_list(listed, ds.ndim, file)
            ds.file_bytes = file
        return ds


class HeaderCreation:
    """The dataset creation properties a scan asks about, from the header: layout, chunk
    shape, filters and fill value, each as h5py's ``PropDCID`` gives it (no external
    files: headers that have them are left to h5py)."""

    def __init__(
        self,
        storage: int,
        fill: bytes | None,
        chunks: tuple[int, ...] | None = None,
        filters: tuple[tuple[int, int, tuple[int, ...], bytes], ...] = (),
        index: StoredIndex | None = None,
    ) -> None:
        self._layout = _LAYOUTS[storage]
        self.index = index
        """Its chunk index, when one read from the file, not through HDF5 (:mod:`.chunk_tree`)."""
        self._fill = fill
        self._chunks = chunks
        self._filters = filters

    def get_layout(self) -> int:
        return self._layout

    def get_chunk(self) -> tuple[int, ...] | None:
        return self._chunks

    def fill_value_defined(self) -> int:
        if self._fill is None:
            return h5d.FILL_VALUE_UNDEFINED
        return h5d.FILL_VALUE_USER_DEFINED if self._fill else h5d.FILL_VALUE_DEFAULT

    def get_fill_value(self, values: np.ndarray) -> None:
        """Writes the fill value into ``values`` (one element of the dataset's type)."""
        raw = values.view(np.uint8)
        raw[:] = np.frombuffer(self._fill, np.uint8) if self._fill else 0

    def get_fill_time(self) -> int:
        return h5d.FILL_TIME_IFSET  # a fill time of "never" is left to h5py (``fill_value``)

    def get_nfilters(self) -> int:
        return len(self._filters)

    def get_filter(self, index: int) -> tuple[int, int, tuple[int, ...], bytes]:
        return self._filters[index]

    def get_external_count(self) -> int:
        return 0


def _chunked(
    body: bytes,
    pipeline: Message | None,
    fill: bytes | None,
    ndim: int,
    itemsize: int,
    file: FileBytes,
) -> HeaderCreation:
    """The creation properties of a chunked dataset, from its layout and filter messages."""
    dims = chunk_dims(body, file)
    if len(dims) != ndim + 1 or dims[-1] != itemsize:
        raise Unrecognised("chunk rank or element size")
    filters = () if pipeline is None else _filters(unshared(pipeline))
    return HeaderCreation(CHUNKED, fill, dims[:-1], filters, StoredIndex.of(file, body, dims))


@functools.lru_cache(maxsize=256)
def _filters(body: bytes) -> tuple[tuple[int, int, tuple[int, ...], bytes], ...]:
    """A filter pipeline message's filters as h5py reports them (the datasets of a file
    repeat a few pipelines)."""
    return tuple(map(_reported, filter_pipeline(body)))


_LAYOUTS = {COMPACT: h5d.COMPACT, CONTIGUOUS: h5d.CONTIGUOUS, CHUNKED: h5d.CHUNKED}


def _reported(stage: PipelineStage) -> tuple[int, int, tuple[int, ...], bytes]:
    """A filter as h5py's ``get_filter`` reports it: the name the message stores, or for
    HDF5's own filters (whose names version 2 messages leave out) the library's name."""
    name = stage.name
    if name is None:
        if stage.id >= RESERVED_FILTERS:
            raise Unrecognised("filter without a name")  # HDF5 would look up its plugin's
        name = _library_filter_name(stage.id)
    return stage.id, stage.flags, stage.cd_values, name


@functools.cache
def _library_filter_name(code: int) -> bytes:
    """The name HDF5 reports for its own filter ``code`` where the pipeline stores none."""
    dcpl = h5p.create(h5p.DATASET_CREATE)
    dcpl.set_filter(code, h5z.FLAG_OPTIONAL)
    return dcpl.get_filter(0)[3]


@functools.lru_cache(maxsize=256)
def _dataset_type(datatype: bytes) -> tuple[DataKind, bool]:
    """A dataset datatype's kind, and whether h5py reads it exactly as stored (the kind's own
    judgement: netCDF's one-byte null-terminated chars, say, read as stored)."""
    kind = DataKind.of(decoded_type(datatype))
    return kind, not kind.materialise
