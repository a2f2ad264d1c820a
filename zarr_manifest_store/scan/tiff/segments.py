"""One TIFF image (a series, or one overview level of it) as a ManifestArray of its segments.

Each strip or tile is a chunk. A page's array is ``(height, width)``, with the
samples last (``(height, width, samples)``) when they are interleaved and first
(``(samples, height, width)``) when each is stored apart (planar configuration
2); the pages of a series are stacked on leading axes, as tifffile presents
them. Tiles are stored full-size, padded at the image's edge, as Zarr stores
edge chunks; the last strip is stored short, so strips are read with a codec
that pads it (uncompressed strips instead read on into the bytes after it,
where the file has them: the rows past the image are never seen).

Strips and tiles decode with Zarr's ``bytes`` codec, followed by
``numcodecs.zlib`` or ``zstd`` for Deflate or zstd, where that is exact; other
compressions, predictors, JPEG and short strips with the
:class:`~zarr_manifest_store.format_codecs.tiff.TiffSegmentCodec`.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
from zarr.dtype import parse_dtype

from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.format_codecs.tiff import CODEC_NAME
from zarr_manifest_store.manifest import MISSING, ChunkManifest, Fingerprint
from zarr_manifest_store.scan.common import Refused

__all__ = ["COMPRESSIONS", "Image", "image_array"]

COMPRESSIONS = {
    1: "none",
    5: "lzw",
    7: "jpeg",
    8: "deflate",
    32946: "deflate",  # the older code for Deflate
    32773: "packbits",
    34925: "lzma",
    50000: "zstd",
}
"""TIFF Compression tag values read, by the codec's name for them."""
_COMPRESSORS = {
    "deflate": {"name": "numcodecs.zlib", "configuration": {"level": 6}},
    "zstd": {"name": "zstd", "configuration": {"level": 0, "checksum": False}},
}
"""The Zarr codecs of compressions that need no more (levels do not matter to decoding)."""
_AXIS_NAMES = {
    "Z": "depth",
    "I": "sequence",
    "T": "time",
    "C": "channel",
    "A": "angle",
    "P": "phase",
    "R": "tile",
    "H": "lifetime",
    "E": "lambda",
    "L": "exposure",
    "V": "event",
    "Q": "other",
    "M": "mosaic",
    "Y": "y",
    "X": "x",
    "S": "sample",
}
"""Dimension names by tifffile's axis codes (its ``TIFF.AXES``; ``y`` and ``x`` as CF has them)."""
_JPEG_OUTPUT = {1: None, 2: 2, 6: 2}
"""The colour space (as imagecodecs numbers them: RGB 2) tifffile decodes JPEG into, by
PhotometricInterpretation: grey as it is, RGB and YCbCr as RGB."""


@dataclass(frozen=True)
class Image:
    """Where an image's bytes are: the file, its size and fingerprint, and its byte order."""

    path: str
    size: int
    fingerprint: Fingerprint
    byteorder: str  # "<" or ">"


def image_array(series: Any, image: Image, attributes: dict[str, Any]) -> ManifestArray:
    """The ManifestArray of a tifffile series (or level): its pages' segments as chunks.

    Raises :class:`Refused` with the reason when it cannot be read exactly.
    """
    key = series.keyframe
    _check_page(key)
    page_shape, page_chunks, grid = _page_layout(key)
    shape = tuple(series.shape)
    leading = shape[: len(shape) - len(page_shape)]
    if shape[len(leading) :] != page_shape or math.prod(leading) != len(series.pages):
        raise Refused(
            f"tifffile presents its {len(series.pages)} page(s) of {page_shape} as {shape}, "
            "which is no stack of whole pages"
        )
    offsets, lengths = _segments(series.pages, math.prod(grid))
    codecs, lengths = _codecs(key, image, offsets, lengths, page_chunks)
    missing = (offsets == 0) | (lengths == 0)
    full_grid = (*leading, *grid)
    manifest = ChunkManifest(
        paths=[image.path],
        path_index=np.where(missing, MISSING, 0).astype(np.uint32).reshape(full_grid),
        offsets=np.where(missing, 0, offsets).reshape(full_grid),
        lengths=np.where(missing, 0, lengths).reshape(full_grid),
        fingerprints={image.path: image.fingerprint},
    )
    zdtype = parse_dtype(np.dtype(key.dtype.str).newbyteorder("="), zarr_format=3)
    metadata = {
        "shape": list(shape),
        "data_type": zdtype.to_json(zarr_format=3),
        "chunk_grid": {
            "name": "regular",
            "configuration": {"chunk_shape": [*(1 for _ in leading), *page_chunks]},
        },
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": zdtype.to_json_scalar(key.nodata, zarr_format=3),
        "codecs": codecs,
        "attributes": attributes,
        "dimension_names": _dimension_names(series.axes, len(shape)),
    }
    return ManifestArray(metadata=metadata, manifest=manifest)


def _check_page(key: Any) -> None:
    """Refuse what the scanner cannot describe exactly, naming the TIFF tag that says so."""
    for code in (258, 339):  # BitsPerSample, SampleFormat: one value for every sample
        tag = key.tags.get(code)
        if tag is not None and len(set(np.ravel(tag.value).tolist())) > 1:
            raise Refused(f"its samples differ in {tag.name}: {tag.value}")
    if key.compression not in COMPRESSIONS:
        raise Refused(f"its compression ({_named(key.compression)}) has no codec here")
    if key.sampleformat not in (1, 2, 3):
        raise Refused(f"its SampleFormat {_named(key.sampleformat)} is not uint, int or float")
    if key.bitspersample not in (1, 8, 16, 32, 64) or key.dtype is None:
        raise Refused(
            f"its samples are {key.bitspersample} bits, not a whole number of bytes "
            "(8, 16, 32 or 64) nor single bits"
        )
    if key.bitspersample == 1 and (key.predictor != 1 or key.compression == 7):
        raise Refused("its samples are single bits with a predictor or JPEG")
    if key.imagedepth > 1 or key.tiledepth > 1:
        raise Refused("it is a volume (ImageDepth / TileDepth), which is not read")
    if key.fillorder != 1:
        raise Refused("its bits are stored in reverse order (FillOrder 2)")
    if key.predictor not in (1, 2, 3):
        raise Refused(f"its Predictor {key.predictor} is unknown")
    if key.is_subsampled and key.compression != 7:
        raise Refused("its YCbCr samples are subsampled without JPEG, which is not read")
    if key.compression == 7:
        if key.bitspersample != 8 or key.photometric not in _JPEG_OUTPUT:
            raise Refused(
                f"it is JPEG of {key.bitspersample}-bit {_named(key.photometric)} samples; "
                "8-bit grey, RGB and YCbCr are read"
            )
        if key.extrasamples or key.planarconfig != 1:
            raise Refused("it is JPEG with extra or separately stored samples")


def _named(value: Any) -> str:
    """A TIFF enumeration's value with its name, for messages (``LZW (5)``)."""
    name = getattr(value, "name", None)
    return f"{name} ({int(value)})" if name else repr(value)


def _page_layout(key: Any) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """A page's shape, the shape of its chunks and its chunk grid, samples where they lie."""
    height, width, samples = key.imagelength, key.imagewidth, key.samplesperpixel
    if key.is_tiled:
        rows, columns = key.tilelength, key.tilewidth
    else:
        rows, columns = min(key.rowsperstrip, height), width
    grid = (-(-height // rows), -(-width // columns))
    if samples == 1:
        return (height, width), (rows, columns), grid
    if key.planarconfig == 1:
        return (height, width, samples), (rows, columns, samples), (*grid, 1)
    return (samples, height, width), (1, rows, columns), (samples, *grid)


def _segments(pages: Any, per_page: int) -> tuple[np.ndarray, np.ndarray]:
    """The offsets and byte counts of every page's segments, page after page."""
    offsets = np.empty((len(pages), per_page), dtype=np.uint64)
    lengths = np.empty((len(pages), per_page), dtype=np.uint64)
    for i, page in enumerate(pages):
        if page is None:
            raise Refused(f"page {i} of the series is missing")
        if len(page.dataoffsets) != per_page or len(page.databytecounts) != per_page:
            raise Refused(
                f"page {page.index} has {len(page.dataoffsets)} segments, "
                f"where its image needs {per_page}"
            )
        offsets[i] = page.dataoffsets
        lengths[i] = page.databytecounts
    return offsets.ravel(), lengths.ravel()


def _codecs(
    key: Any, image: Image, offsets: np.ndarray, lengths: np.ndarray, chunks: tuple[int, ...]
) -> tuple[list[dict[str, Any]], np.ndarray]:
    """The chunks' codecs, and their byte counts (uncompressed strips may read on)."""
    compression = COMPRESSIONS[key.compression]
    itemsize = key.dtype.itemsize
    endian = "little" if image.byteorder == "<" else "big"
    full = math.prod(chunks) * itemsize
    packed = key.bitspersample == 1
    plain = [{"name": "bytes", "configuration": {"endian": endian} if itemsize > 1 else {}}]
    if packed:
        pass  # single bits: only the TIFF codec unpacks them
    elif compression == "none":
        present = (offsets != 0) & (lengths != 0)
        short = np.flatnonzero(present & (lengths < _decoded_bytes(key, len(offsets))))
        if short.size:
            raise Refused(
                f"its uncompressed segment {short[0]} holds {lengths[short[0]]} bytes, fewer than "
                "its pixels take (tifffile cannot read it either)"
            )
        if key.predictor == 1 and np.all(~present | (offsets + full <= image.size)):
            return plain, np.where(present, full, 0).astype(np.uint64)
    elif key.predictor == 1 and compression in ("deflate", "zstd") and _whole_segments(key):
        return [*plain, _COMPRESSORS[compression]], lengths
    config: dict[str, Any] = {"compression": compression, "endian": endian}
    if key.predictor != 1:
        config["predictor"] = int(key.predictor)
    if packed:
        config["bits"] = 1
    if key.planarconfig == 1 and key.samplesperpixel > 1:
        config["samples"] = int(key.samplesperpixel)
    if compression == "jpeg":
        if key.jpegtables:
            config["jpeg_tables"] = base64.b64encode(bytes(key.jpegtables)).decode()
        if _JPEG_OUTPUT[key.photometric] is not None:
            config["jpeg_outcolorspace"] = _JPEG_OUTPUT[key.photometric]
        if key.photometric == 2 and not key.is_jfif:
            config["jpeg_colorspace"] = 2  # RGB stored as is (Aperio SVS), as tifffile reads it
    return [{"name": CODEC_NAME, "configuration": config}], lengths


def _decoded_bytes(key: Any, count: int) -> np.ndarray:
    """The bytes each of ``count`` uncompressed segments takes: a tile's all, a strip's its rows."""
    row_bytes = (key.tilewidth if key.is_tiled else key.imagewidth) * key.dtype.itemsize
    row_bytes *= key.samplesperpixel if key.planarconfig == 1 else 1
    if key.is_tiled:
        return np.full(count, key.tilelength * row_bytes, dtype=np.uint64)
    rows = min(key.rowsperstrip, key.imagelength)
    per_plane = -(-key.imagelength // rows)
    first_rows = (np.arange(count) % per_plane) * rows
    return (np.minimum(rows, key.imagelength - first_rows) * row_bytes).astype(np.uint64)


def _whole_segments(key: Any) -> bool:
    """Whether every segment holds a whole chunk: tiles, or strips that divide the image."""
    return key.is_tiled or key.imagelength % min(key.rowsperstrip, key.imagelength) == 0


def _dimension_names(axes: str, ndim: int) -> list[str]:
    """Dimension names from tifffile's axis codes (``YXS`` -> ``y, x, sample``), unique."""
    names: list[str] = []
    for code in axes[-ndim:] if ndim else "":
        name = _AXIS_NAMES.get(code, code.lower())
        candidate, n = name, 1
        while candidate in names:
            candidate, n = f"{name}_{n}", n + 1
        names.append(candidate)
    return names
