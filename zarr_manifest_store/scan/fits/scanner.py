"""scan_fits: the image HDUs of a FITS file, each through astropy's headers (see the package)."""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable, Mapping
from typing import Any, Literal

try:
    from astropy.io import fits
except ImportError:  # the optional ``formats`` extra
    fits = None

from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.errors import UnsupportedDatasetError
from zarr_manifest_store.group import ManifestGroup
from zarr_manifest_store.io.paths import source_path
from zarr_manifest_store.scan.common import (
    CONTIGUOUS_CHUNK_BYTES,
    Refusals,
    Refused,
    check_chunk_bytes,
    dropped_names,
    zarr_name,
)
from zarr_manifest_store.scan.fits.headers import HDU, hdus
from zarr_manifest_store.scan.fits.images import BITPIX_DTYPES, image_array, packing
from zarr_manifest_store.scan.fits.tiles import compressed_array
from zarr_manifest_store.scan.source import ScanSource, scan_source

__all__ = ["scan_fits"]

_NOT_AN_IMAGE = {
    "groups": "is a random-groups HDU, which Zarr arrays cannot describe",
    "bintable": "is a binary table: its rows interleave the columns' values, which Zarr "
    "chunks of one column cannot describe",
    "table": "is an ASCII table: its rows interleave the columns' values, which Zarr "
    "chunks of one column cannot describe",
}


def scan_fits(
    url: str | os.PathLike[str],
    *,
    group: str | None = None,
    drop_variables: Collection[str] | str | None = None,
    on_unsupported: Literal["raise", "skip"] = "raise",
    storage_options: Mapping[str, Any] | None = None,
    contiguous_chunk_bytes: int | None = CONTIGUOUS_CHUNK_BYTES,
) -> ManifestGroup:
    """Scan a FITS file into a :class:`ManifestGroup`: one array per image HDU.

    Values read through ``xr.open_zarr(ManifestStore(g))`` are astropy's
    (``hdul[i].data``): big-endian pixels, the unsigned-integer convention as
    ``uint16`` / ``uint32`` / ``int8``, other ``BSCALE`` / ``BZERO`` as CF
    ``scale_factor`` / ``add_offset``, ``BLANK`` as ``_FillValue``.
    Uncompressed images are split along their first axis into chunks of about
    ``contiguous_chunk_bytes`` (``None``: one chunk); tile-compressed images
    (GZIP_1, GZIP_2, RICE_1, NOCOMPRESS) have a chunk per tile. An HDU that
    cannot be described exactly (a table, PLIO_1 or HCOMPRESS_1 tiles,
    quantized floats, ...) raises :class:`~zarr_manifest_store.UnsupportedDatasetError`
    (``on_unsupported="raise"``) or is left out with a warning (``"skip"``);
    ``drop_variables`` names arrays to leave out. FITS has no groups: ``group``
    must be None.

    >>> import numpy as np
    >>> from astropy.io import fits
    >>> fits.PrimaryHDU(np.arange(6, dtype=">i2").reshape(2, 3)).writeto("/tmp/scan_fits_doc.fits", overwrite=True)
    >>> g = zms.scan_fits("/tmp/scan_fits_doc.fits")
    >>> g["PRIMARY"].shape, g["PRIMARY"].metadata.dimension_names
    ((2, 3), ('PRIMARY_naxis2', 'PRIMARY_naxis1'))
    >>> zarr.open_group(zms.ManifestStore(g), mode="r")["PRIMARY"][1].tolist()
    [3, 4, 5]
    """
    if fits is None:
        raise ModuleNotFoundError(
            "scanning FITS files needs astropy: pip install 'zarr-manifest-store[formats]'"
        )
    if group not in (None, "", "/"):
        raise ValueError(f"{os.fspath(url)!r} is a FITS file, which has no groups: got {group=}")
    check_chunk_bytes(contiguous_chunk_bytes)
    path = source_path(url)
    refusals = Refusals(path, on_unsupported)
    try:
        with scan_source(path, storage_options) as source:
            scan = _Scan(source, refusals, contiguous_chunk_bytes)
            with source.file() as fileobj:
                result = scan.group(hdus(fileobj, source.size), dropped_names(drop_variables))
    except Refused as e:
        raise UnsupportedDatasetError(f"{path!r} is not a FITS file astropy reads: {e}") from e
    refusals.finish()
    return result


class _Scan:
    """One file's HDUs into arrays, refusals recorded."""

    def __init__(self, source: ScanSource, refusals: Refusals, chunk_bytes: int | None) -> None:
        self.source, self.refusals, self.chunk_bytes = source, refusals, chunk_bytes

    def group(self, found: Iterable[HDU], dropped: set[str]) -> ManifestGroup:
        """The group of every HDU with data; an empty primary HDU's cards as its attributes."""
        found = list(found)
        names = _names([(hdu.name, hdu.ver) for hdu in found])
        arrays: dict[str, ManifestArray] = {}
        attributes: dict[str, Any] = {}
        for hdu, name in zip(found, names, strict=True):
            if hdu.image is None:
                if hdu.index == 0:
                    attributes = hdu.cards
                continue
            if name in dropped:
                continue
            try:
                if zarr_name(name) in arrays:
                    raise Refused("repeats the EXTNAME and EXTVER of an earlier HDU")
                arrays[zarr_name(name)] = self._array(hdu, name)
            except Refused as e:
                self.refusals.add(name, str(e))
        return ManifestGroup(arrays=arrays, attributes=attributes)

    def _array(self, hdu: HDU, name: str) -> ManifestArray:
        """The array of one HDU with data, or Refused."""
        image = hdu.image
        attributes = dict(image)

        def dimension(n: int) -> str:
            return f"{name}_naxis{n}"

        if hdu.kind == "compressed":
            return compressed_array(
                path=self.source.path,
                fingerprint=self.source.fingerprint,
                begin=hdu.begin,
                table=hdu.cards,
                image=image,
                read=self._read,
                attributes=attributes,
                dimension_name=dimension,
            )
        if hdu.kind != "image":
            raise Refused(_NOT_AN_IMAGE.get(hdu.kind, f"is a {hdu.kind} extension, not an image"))
        bitpix = image.get("BITPIX")
        pack = packing(bitpix, image)
        naxis = int(image["NAXIS"])
        shape = tuple(int(image[f"NAXIS{i}"]) for i in range(naxis, 0, -1))
        return image_array(
            path=self.source.path,
            fingerprint=self.source.fingerprint,
            begin=hdu.begin,
            shape=shape,
            pack=pack,
            stored=BITPIX_DTYPES[bitpix],
            attributes=attributes,
            dimension_names=[dimension(n) for n in range(naxis, 0, -1)],
            chunk_bytes=self.chunk_bytes,
        )

    def _read(self, offset: int, length: int) -> bytes:
        size = self.source.size
        if offset + length > size:
            raise Refused(f"is truncated: its table ends at byte {offset + length} of {size}")
        return self.source.read(offset, length)


def _names(found: list[tuple[str, int]]) -> list[str]:
    """Each HDU's array name: its name, with ``_<EXTVER>`` where the name repeats."""
    counts: dict[str, int] = {}
    for name, _ in found:
        counts[name] = counts.get(name, 0) + 1
    return [name if counts[name] == 1 else f"{name}_{ver}" for name, ver in found]
