"""scan_dmrpp: an OPeNDAP DMR++ sidecar as the ManifestGroup of the HDF5 / netCDF-4 file it
describes, exact for every variable or refused.

DMR++ (``.dmrpp``) is the DAP4 metadata of a file (DMR) plus the ``dmrpp:``
namespace (``http://xml.opendap.org/dap/dmrpp/1.0.0#``) that says where each
variable's bytes are: ``dmrpp:chunks`` with their filters, chunk shape and
each chunk's offset, size and position, or values written inline
(``dmrpp:compact``, ``dmrpp:missingdata``). NASA publishes one beside many
files of its archives. Reading it costs one request, where scanning the file
itself costs many; the arrays are the ones ``scan_hdf5`` gives for the file
(:mod:`.groups` names dimensions and writes attributes as it does,
:mod:`.storage` lays out the chunks as it does, :mod:`.types` maps DAP4
types), and their references point at the data file (``dmrpp:href``).

This module declares the format (how a file is recognised); ``scan_dmrpp`` lives in
:mod:`.scanner`, which the registry imports, with the format's libraries, when a
file is first scanned (``zms.scan_dmrpp`` does too).
"""

from __future__ import annotations

from zarr_manifest_store.scan.registry import Deferred, Format, Head

__all__ = ["FORMAT", "NAMESPACE"]

NAMESPACE = b"://xml.opendap.org/dap/dmrpp/1.0.0#"
"""The DMR++ namespace, as a DMR++ declares it (after ``http`` or ``https``)."""


def _sniff(file: Head) -> bool:
    """An XML file whose root element is a DAP4 ``Dataset`` declaring the DMR++ namespace."""
    head = file.head.lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"<") and b"<Dataset" in head and NAMESPACE in head


FORMAT = Format(
    name="dmrpp",
    scan=Deferred("zarr_manifest_store.scan.dmrpp.scanner:scan_dmrpp"),
    description="DMR++ (OPeNDAP's XML sidecar of an HDF5 / netCDF4 file)",
    sniff=_sniff,
)
"""DMR++ in the format registry: recognised by its root element and namespace; the scanner is
imported when one is scanned."""
