"""GRIB2 scanner: each message (a field) is one chunk, decoded by the GRIB codec.

The file is walked message by message, reading only each message's headers
(sections 0 to 6, never the packed values); ecCodes names each distinct header
once (:mod:`.keys`), and the fields are gathered into cfgrib's hypercubes
(:mod:`.hypercubes`). GRIB1 messages, grids other than regular latitude /
longitude and Gaussian ones, and fields cfgrib would not place on a hypercube
are refused with the reason.

This module declares the format (how a file is recognised); ``scan_grib`` lives in
:mod:`.scanner`, which the registry imports, with the format's libraries, when a
file is first scanned (``zms.scan_grib`` does too).
"""

from __future__ import annotations

from zarr_manifest_store.format_codecs.grib_sections import MAGIC
from zarr_manifest_store.scan.registry import Deferred, Format

__all__ = ["FORMAT"]

FORMAT = Format(
    name="grib",
    scan=Deferred("zarr_manifest_store.scan.grib.scanner:scan_grib"),
    description=f"GRIB2 (signature {MAGIC!r})",
    signatures=(MAGIC,),
)
"""GRIB2 in the format registry: files that start with ``GRIB``; the scanner is imported
when one is scanned."""
