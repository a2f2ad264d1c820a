"""TIFF scanner: TIFF, BigTIFF, GeoTIFF and Cloud-Optimised GeoTIFF files as chunk references.

tifffile parses the file's directories (IFDs) and groups its pages into
series, as ``tifffile.imread`` presents them; each series becomes arrays whose
chunks are its strips or tiles (see :mod:`.segments`):

- the first series is the root group: its image is the array ``image``, a
  transparency mask (a page of NewSubfileType 4, as GDAL writes them) the
  array ``mask``; each overview level of a pyramid (COG overviews, SubIFDs)
  is the group ``1``, ``2``, ... beside them, holding that level's ``image``
  and ``mask``;
- every further series is the group ``series1``, ``series2``, ..., laid out
  the same way;
- a GeoTIFF's tags are kept as the image's attributes, with ``x`` / ``y``
  coordinates and a ``spatial_ref`` grid mapping where they are exact
  (:mod:`.geo`).

What cannot be read exactly (bit depths that are not whole bytes, volumes,
compressions without a codec here, ...) is refused, naming the array and why.

This module declares the format (how a file is recognised); ``scan_tiff`` lives in
:mod:`.scanner`, which the registry imports, with the format's libraries, when a
file is first scanned (``zms.scan_tiff`` does too).
"""

from __future__ import annotations

from zarr_manifest_store.scan.registry import Deferred, Format

__all__ = ["FORMAT", "SIGNATURES"]

SIGNATURES = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
"""The first four bytes of a TIFF (little- or big-endian) or BigTIFF file."""

FORMAT = Format(
    name="tiff",
    scan=Deferred("zarr_manifest_store.scan.tiff.scanner:scan_tiff"),
    description=f"TIFF / BigTIFF / GeoTIFF / COG ({', '.join(map(repr, SIGNATURES))})",
    signatures=SIGNATURES,
)
"""TIFF in the format registry: files that start with a TIFF or BigTIFF byte-order mark;
tifffile and pyproj are imported when one is scanned."""
