"""scan_fits: a FITS file's image HDUs as Zarr arrays, each exact or refused.

astropy (``astropy.io.fits``) reads the headers and says where each HDU's data starts;
the data itself is never read, except the small table of a tile-compressed image that
locates its tiles. Each image HDU becomes an array named by its ``EXTNAME`` (the primary
HDU ``PRIMARY``, an unnamed extension ``HDU<n>``, a repeated name ``<EXTNAME>_<EXTVER>``),
with its axes in NumPy's order (``NAXISn`` ... ``NAXIS1``), named ``<array>_naxis<n>``,
and its header cards as attributes (``COMMENT`` and ``HISTORY`` cards joined by newlines).
An empty primary HDU's cards become the group's attributes; other HDUs without pixels
(``NAXIS = 0``, or an axis of length 0) are left out.

The modules: ``images`` (data types, BSCALE / BZERO / BLANK, uncompressed images),
``tiles`` (tile-compressed images). Tables and random groups are refused.

This module declares the format (how a file is recognised); ``scan_fits`` lives in
:mod:`.scanner`, which the registry imports, with the format's libraries, when a
file is first scanned (``zms.scan_fits`` does too).
"""

from __future__ import annotations

from zarr_manifest_store.scan.registry import Deferred, Format

__all__ = ["FORMAT", "SIGNATURE"]

SIGNATURE = b"SIMPLE  =                    T"
"""The first card of a FITS file begins with these 30 bytes."""

FORMAT = Format(
    name="fits",
    scan=Deferred("zarr_manifest_store.scan.fits.scanner:scan_fits"),
    description="FITS (a first card SIMPLE = T)",
    signatures=(SIGNATURE,),
)
"""FITS in the format registry: files whose first card is ``SIMPLE = T``; astropy is imported
when one is scanned."""
