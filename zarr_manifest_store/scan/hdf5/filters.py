"""HDF5 filter pipelines as Zarr v3 codec lists.

HDF5 applies a dataset's filters in pipeline order when writing and in reverse
when reading; Zarr does the same with the bytes-to-bytes codecs that follow the
``bytes`` codec. So a pipeline maps one filter to one codec, in order, when a
codec exists whose decoding is exactly the filter's: deflate is zlib framing
(not gzip), fletcher32 appends HDF5's checksum, blosc and zstd chunks are
plain blosc / zstd frames. LZF, LZ4 and bitshuffle have their own framings, which
the package's codecs decode (:mod:`zarr_manifest_store.format_codecs.hdf5_filters`,
with imagecodecs: the ``formats`` extra). Filters without such a codec (szip,
blosc2, scale-offset, n-bit, ...), or whose parameters are not the ones known, raise
:class:`UnmappableFilter`, and the scanner then materialises or refuses the
dataset.
"""

from __future__ import annotations

import functools
import marshal
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import h5py

from zarr_manifest_store.format_codecs.hdf5_filters import (
    MISSING,
    Hdf5BitshuffleCodec,
    Hdf5Lz4Codec,
    Hdf5LzfCodec,
    default_block_size,
    imagecodecs_available,
)

__all__ = [
    "FILTER_NAMES",
    "Filter",
    "UnmappableFilter",
    "filter_codecs",
    "pipeline",
    "pipeline_codecs",
]

Codec = dict[str, Any]

FILTER_NAMES = {
    1: "deflate",
    2: "shuffle",
    3: "fletcher32",
    4: "szip",
    5: "nbit",
    6: "scaleoffset",
    307: "bzip2",
    32000: "lzf",
    32001: "blosc",
    32004: "lz4",
    32008: "bitshuffle",
    32015: "zstd",
    32026: "blosc2",
}
"""Names of the registered HDF5 filter ids this module knows about."""

_BLOSC_COMPRESSORS = {0: "blosclz", 1: "lz4", 2: "lz4hc", 3: "snappy", 4: "zlib", 5: "zstd"}
_BLOSC_SHUFFLES = {0: "noshuffle", 1: "shuffle", 2: "bitshuffle"}


class UnmappableFilter(ValueError):
    """An HDF5 filter that no Zarr codec decodes exactly; the message says which and why."""


class Filter(NamedTuple):
    """One stage of a dataset's filter pipeline, as HDF5 reports it."""

    id: int
    flags: int
    cd_values: tuple[int, ...]
    label: str = ""

    @property
    def name(self) -> str:
        return FILTER_NAMES.get(self.id) or self.label or f"filter {self.id}"


def pipeline(dcpl: h5py.h5p.PropDCID) -> list[Filter]:
    """The filter pipeline of a dataset creation property list, in write order."""
    return [_filter(*dcpl.get_filter(i)) for i in range(dcpl.get_nfilters())]


def pipeline_codecs(dcpl: h5py.h5p.PropDCID) -> list[Codec]:
    """``filter_codecs(pipeline(dcpl))``, converted once per distinct pipeline (the datasets
    of a file repeat a few) and kept in its ``marshal`` form, so that each call gets codecs of
    its own."""
    stages = tuple(map(dcpl.get_filter, range(dcpl.get_nfilters())))
    kept = _pipeline_codecs(stages)
    return filter_codecs(pipeline(dcpl)) if kept is None else marshal.loads(kept)


@functools.lru_cache(maxsize=256)
def _pipeline_codecs(
    stages: tuple[tuple[int, int, tuple[int, ...], bytes | str], ...],
) -> bytes | None:
    """The codecs' marshal form (None where it would not give them back as they are: marshal
    writes any object with a buffer, a NumPy number say, as bytes)."""
    codecs = filter_codecs([_filter(*stage) for stage in stages])
    try:
        kept = marshal.dumps(codecs)
    except ValueError:  # no marshal form
        return None
    return kept if marshal.loads(kept) == codecs else None


def _filter(code: int, flags: int, values: tuple[int, ...], name: bytes | str) -> Filter:
    label = name.decode("ascii", "replace") if isinstance(name, bytes) else str(name)
    return Filter(int(code), int(flags), tuple(int(v) for v in values), label)


def filter_codecs(filters: Sequence[Filter]) -> list[Codec]:
    """The Zarr v3 bytes-to-bytes codecs equivalent to ``filters``, in the same order.

    >>> filter_codecs([Filter(2, 0, (4,)), Filter(1, 0, (6,))])
    [{'name': 'numcodecs.shuffle', 'configuration': {'elementsize': 4}}, {'name': 'numcodecs.zlib', 'configuration': {'level': 6}}]
    """
    codecs = []
    for i, f in enumerate(filters):
        build = _BUILDERS.get(f.id)
        if build is None:
            raise UnmappableFilter(f"HDF5 filter {f.name!r} (id {f.id}) has no Zarr codec")
        if f.id == 2 and f.cd_values and _appended(filters[:i]) % f.cd_values[0]:
            # HDF5 shuffles whole elements and leaves the trailing bytes in place;
            # numcodecs' shuffle refuses a buffer that is not whole elements.
            raise UnmappableFilter(
                f"HDF5 filter 'shuffle' of {f.cd_values[0]}-byte elements runs after "
                "'fletcher32' appended a 4-byte checksum, which numcodecs.shuffle cannot unshuffle"
            )
        size = f.cd_values[2] if f.id == 32008 and len(f.cd_values) > 2 else 0
        if size and _appended(filters[:i]) % size:
            # the bitshuffle filter fails on a chunk that is not whole elements: HDF5 skips it
            # (when optional) on every chunk, or cannot write them
            raise UnmappableFilter(
                f"HDF5 filter 'bitshuffle' of {size}-byte elements runs after "
                "'fletcher32' appended a 4-byte checksum, so it never applies"
            )
        codecs.append(build(f.cd_values))
    return codecs


def _appended(filters: Sequence[Filter]) -> int:
    """Bytes the filters add to a chunk before the next one sees it (fletcher32's checksum)."""
    return sum(4 for f in filters if f.id == 3)


def _deflate(cd: tuple[int, ...]) -> Codec:
    return {"name": "numcodecs.zlib", "configuration": {"level": cd[0] if cd else 6}}


def _shuffle(cd: tuple[int, ...]) -> Codec:
    if not cd:
        raise UnmappableFilter("HDF5 filter 'shuffle' has no element size in its parameters")
    return {"name": "numcodecs.shuffle", "configuration": {"elementsize": cd[0]}}


def _fletcher32(cd: tuple[int, ...]) -> Codec:
    return {"name": "numcodecs.fletcher32", "configuration": {}}


def _bzip2(cd: tuple[int, ...]) -> Codec:
    return {"name": "numcodecs.bz2", "configuration": {"level": cd[0] if cd else 9}}


def _zstd(cd: tuple[int, ...]) -> Codec:
    return {"name": "zstd", "configuration": {"level": cd[0] if cd else 0, "checksum": False}}


def _blosc(cd: tuple[int, ...]) -> Codec:
    # cd_values: filter revision, blosc version, type size, chunk bytes, level, shuffle, compressor
    if len(cd) < 4:
        raise UnmappableFilter(f"HDF5 filter 'blosc' has incomplete parameters {list(cd)}")
    typesize = cd[2]
    level = cd[4] if len(cd) > 4 else 5
    shuffle = _BLOSC_SHUFFLES.get(cd[5] if len(cd) > 5 else 1)
    cname = _BLOSC_COMPRESSORS.get(cd[6] if len(cd) > 6 else 0)
    if shuffle is None or cname is None:
        raise UnmappableFilter(f"HDF5 filter 'blosc' has unknown parameters {list(cd)}")
    return {
        "name": "blosc",
        "configuration": {
            "cname": cname,
            "clevel": level,
            "shuffle": shuffle,
            "typesize": max(typesize, 1),
            "blocksize": 0,
        },
    }


def _imagecodecs(name: str) -> None:
    if not imagecodecs_available():
        raise UnmappableFilter(f"HDF5 filter {name!r} {MISSING}")


def _lzf(cd: tuple[int, ...]) -> Codec:
    # cd_values: h5py's filter revision, the LZF version, the chunk's bytes (none decodes)
    if len(cd) > 3:
        raise UnmappableFilter(f"HDF5 filter 'lzf' has unknown parameters {list(cd)}")
    _imagecodecs("lzf")
    return Hdf5LzfCodec().to_dict()


def _lz4(cd: tuple[int, ...]) -> Codec:
    # cd_values: the block size to compress in, which each chunk's header repeats
    if len(cd) > 1:
        raise UnmappableFilter(f"HDF5 filter 'lz4' has unknown parameters {list(cd)}")
    _imagecodecs("lz4")
    return Hdf5Lz4Codec().to_dict()


def _bitshuffle(cd: tuple[int, ...]) -> Codec:
    # cd_values: major and minor version, element size, block size (elements; 0: the
    # library's default), compression (0 none, 2 lz4, 3 zstd), zstd's level
    compression = {0: "none", 2: "lz4", 3: "zstd"}.get(cd[4] if len(cd) > 4 else 0)
    if not 3 <= len(cd) <= 6 or not cd[2] or (len(cd) > 3 and cd[3] % 8) or compression is None:
        raise UnmappableFilter(f"HDF5 filter 'bitshuffle' has unknown parameters {list(cd)}")
    _imagecodecs("bitshuffle")
    block = cd[3] if len(cd) > 3 and cd[3] else default_block_size(cd[2])
    try:
        return Hdf5BitshuffleCodec(cd[2], block, compression).to_dict()
    except ValueError as e:  # sizes past what the codec takes
        raise UnmappableFilter(f"HDF5 filter 'bitshuffle': {e}") from None


_BUILDERS: dict[int, Callable[[tuple[int, ...]], Codec]] = {
    1: _deflate,
    2: _shuffle,
    3: _fletcher32,
    307: _bzip2,
    32000: _lzf,
    32001: _blosc,
    32004: _lz4,
    32008: _bitshuffle,
    32015: _zstd,
}
