"""The HDUs of a FITS file: each header, parsed by astropy, and where its data lies.

astropy's ``HDUList`` builds an HDU object for every header (and checks and rewrites
cards as it does), which costs several times the parsing itself in a file of thousands of
HDUs. The walk here asks astropy only to parse each header (``Header.fromfile``, public)
and works out the size of the data that follows from the header, as the FITS standard
gives it (section 4.4.1): ``|BITPIX| / 8 * GCOUNT * (PCOUNT + NAXIS1 * ... * NAXISn)``,
padded to 2880-byte blocks, without ``NAXIS1`` for random groups.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import IO, Any

try:
    from astropy.io import fits
except ImportError:  # the optional ``formats`` extra: scan_fits says what to install
    fits = None

from zarr_manifest_store.scan.common import Refused

__all__ = ["BLOCK", "HDU", "hdus", "header_cards"]

BLOCK = 2880
"""FITS headers and data come in blocks of this many bytes."""
_COMMENTARY = ("COMMENT", "HISTORY")


@dataclass(frozen=True)
class HDU:
    """One HDU: its cards, where its data begins, what kind it is, and its image's cards.

    ``kind`` is ``image``, ``compressed`` (a tile-compressed image), ``bintable``,
    ``table``, ``groups`` or the ``XTENSION`` of another extension; ``cards`` are its
    header's (see :func:`header_cards`), ``image`` those of the image it holds
    (astropy's image header of a compressed one), or None when it holds no pixels.
    """

    index: int
    cards: dict[str, Any]
    begin: int
    kind: str
    image: Any
    name: str
    ver: int


def hdus(fileobj: IO[bytes], size: int) -> Iterator[HDU]:
    """Every HDU of the file, in order; what follows the last full HDU is ignored, as astropy does."""
    offset, index = 0, 0
    while index == 0 or offset + BLOCK <= size:
        fileobj.seek(offset)
        try:
            header = fits.Header.fromfile(fileobj)
        except (OSError, ValueError) as e:
            if index == 0:
                raise Refused(f"its primary header is unreadable ({e})") from e
            return  # trailing bytes that are no header
        begin = fileobj.tell()
        hdu = _described(index, header, begin)
        yield hdu
        offset = begin + -(-_data_bytes(hdu.cards) // BLOCK) * BLOCK
        index += 1


def _described(index: int, header: Any, begin: int) -> HDU:
    cards = header_cards(header)
    kind = _kind(index, cards)
    image = cards
    name = str(cards.get("EXTNAME", "PRIMARY" if index == 0 else ""))
    if kind == "compressed":
        # Built from the header's bytes: BinTableHDU(header=...) would drop BZERO / BSCALE.
        table = fits.BinTableHDU.fromstring(header.tostring().encode("ascii"))
        compressed = fits.CompImageHDU(bintable=table)
        image, name = header_cards(compressed.header), compressed.name  # astropy's default name
    name = name or f"HDU{index}"
    ver = image.get("EXTVER", 1)
    naxis = image.get("NAXIS") or 0
    axes = [image.get(f"NAXIS{i}") for i in range(1, int(naxis) + 1)]
    empty = kind in ("image", "compressed") and (not axes or 0 in axes)
    return HDU(index, cards, begin, kind, None if empty else image, name, ver)


def header_cards(header: Any) -> dict[str, Any]:
    """A header's cards as JSON values, as astropy gives them: the first card of a
    repeated keyword, commentary cards joined by newlines, blank keywords left out.

    Each card's value is asked of astropy once (every ask looks up its settings).
    """
    out: dict[str, Any] = {}
    commentary: dict[str, list[str]] = {}
    for card in header.cards:
        key = card.keyword
        if key in _COMMENTARY:
            commentary.setdefault(key, []).append(str(card.value))
        elif key and key not in out:
            out[key] = _json_value(card.value)
    out.update((key, "\n".join(lines)) for key, lines in commentary.items())
    return out


def _json_value(value: Any) -> Any:
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, complex):
        return [value.real, value.imag]
    if isinstance(value, fits.card.Undefined):
        return None
    return str(value)


def _kind(index: int, header: dict[str, Any]) -> str:
    if index == 0:
        random_groups = header.get("GROUPS") is True and header.get("NAXIS1") == 0
        return "groups" if random_groups else "image"
    xtension = str(header.get("XTENSION", "")).strip()
    if xtension == "BINTABLE":
        return "compressed" if header.get("ZIMAGE") is True else "bintable"
    return {"IMAGE": "image", "TABLE": "table"}.get(xtension, xtension or "unknown")


def _data_bytes(header: dict[str, Any]) -> int:
    """The bytes of data that follow ``header``, before padding."""
    naxis = _count(header, "NAXIS")
    axes = [_count(header, f"NAXIS{i}") for i in range(1, naxis + 1)]
    if not axes:
        return 0
    if header.get("GROUPS") is True and axes[0] == 0:
        axes = axes[1:]
    bitpix = header.get("BITPIX")
    if bitpix not in (8, 16, 32, 64, -32, -64):
        raise Refused(f"has BITPIX = {bitpix!r}; FITS allows 8, 16, 32, 64, -32 and -64")
    pcount, gcount = _count(header, "PCOUNT", 0), _count(header, "GCOUNT", 1)
    return abs(bitpix) // 8 * gcount * (pcount + math.prod(axes))


def _count(header: dict[str, Any], key: str, default: int | None = None) -> int:
    value = header.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise Refused(f"has {key} = {value!r}, not a count")
    return value
