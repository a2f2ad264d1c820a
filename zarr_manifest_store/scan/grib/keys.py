"""What ecCodes says about a GRIB2 field, looked up once per distinct header.

ecCodes' concepts (``paramId``, ``shortName``, ``typeOfLevel``, ``stepType``, ...)
cost milliseconds per look-up, so the scanner asks once for each distinct
*header*: the message's sections 1 to 4 with the reference time (and, for the
common product templates 4.0 and 4.1, the forecast time) blanked out; each
message's own times are read from its bytes (:func:`message_times`). The keys
and attribute names are cfgrib's, so that the arrays read as cfgrib shows them.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import Any

from zarr_manifest_store.format_codecs.grib import MISSING, eccodes
from zarr_manifest_store.format_codecs.grib_sections import Framing, identification_time

__all__ = ["GLOBAL_KEYS", "Field", "header_signature", "look_up", "message_times"]

GLOBAL_KEYS = ("edition", "centre", "centreDescription", "subCentre")
"""cfgrib's dataset attributes (as ``GRIB_<key>``)."""
_DATA_KEYS = (
    "paramId",
    "dataType",
    "numberOfPoints",
    "typeOfLevel",
    "stepUnits",
    "stepType",
    "gridType",
    "uvRelativeToGrid",
)
_EXTRA_KEYS = (
    "shortName",
    "units",
    "name",
    "cfName",
    "cfVarName",
    "missingValue",
    "totalNumber",
    "numberOfDirections",
    "numberOfFrequencies",
    "NV",
    "gridDefinitionDescription",
)
_GRID_KEYS = {
    "regular_ll": (
        "Nx",
        "iDirectionIncrementInDegrees",
        "iScansNegatively",
        "longitudeOfFirstGridPointInDegrees",
        "longitudeOfLastGridPointInDegrees",
        "Ny",
        "jDirectionIncrementInDegrees",
        "jPointsAreConsecutive",
        "jScansPositively",
        "latitudeOfFirstGridPointInDegrees",
        "latitudeOfLastGridPointInDegrees",
    ),
    "regular_gg": (
        "N",
        "Ni",
        "Nj",
        "iDirectionIncrementInDegrees",
        "iScansNegatively",
        "jScansPositively",
        "jPointsAreConsecutive",
        "longitudeOfFirstGridPointInDegrees",
        "longitudeOfLastGridPointInDegrees",
        "latitudeOfFirstGridPointInDegrees",
        "latitudeOfLastGridPointInDegrees",
    ),
}
"""The grids read (cfgrib gives them latitude / longitude dimensions), with their attribute keys."""
_UNIT_SECONDS = {0: 60, 1: 3600, 2: 86400, 10: 3 * 3600, 11: 6 * 3600, 12: 12 * 3600, 13: 1}
"""Code table 4.4: seconds in each unit of the forecast time (those of a fixed length)."""
_TIMED_TEMPLATES = (0, 1)
"""Product templates whose forecast time (octets 19-22) is the step of an instantaneous field."""
_EPOCH = datetime.datetime(1970, 1, 1)


@dataclass
class Field:
    """What ecCodes says about a header: the variable, its level and grid, its attributes.

    ``refused`` is the reason a field cannot be read exactly (None if it can);
    ``step`` (hours) and ``time`` (seconds since 1970) are those of the message
    looked up: the scanner checks them against what it reads from that message's
    bytes, and uses ``step`` for every message of a header whose forecast time
    was not blanked.
    """

    param_id: int
    name: str
    type_of_level: str
    step_type: str
    level: float | None
    number: int | None
    grid: bytes
    shape: tuple[int, ...]
    attributes: dict[str, Any]
    globals: dict[str, Any]
    step: float | None
    time: int | None
    refused: str | None = None
    latitudes: Any = field(default=None, repr=False)
    longitudes: Any = field(default=None, repr=False)


def header_signature(framing: Framing, head: bytes) -> tuple[bytes, bool]:
    """The bytes that identify a message's field up to its times, and whether the forecast time
    was blanked (so that :func:`message_times` reads the step).

    ``head`` holds the message's bytes up to section 5.
    """
    parts = [bytes([framing.discipline])]
    for number in (1, 2, 3, 4):
        if number in framing.sections:
            start, size = framing.sections[number]
            parts.append(bytearray(head[start : start + size]))
    section1, section4 = parts[1], parts[-1]
    section1[12:18] = bytes(6)
    timed = _template(section4) in _TIMED_TEMPLATES and section4[17] in _UNIT_SECONDS
    if timed:
        section4[18:22] = bytes(4)
    return b"".join(parts), timed


def message_times(framing: Framing, head: bytes, timed: bool) -> tuple[int, float | None]:
    """A message's reference time (seconds since 1970, as cfgrib counts it) and, when its
    header's forecast time was blanked, its step in hours."""
    start, size = framing.sections[1]
    year, month, day, hour, minute = identification_time(head[start : start + size])
    when = datetime.datetime(year, month, day, hour, minute)
    seconds = int((when - _EPOCH).total_seconds())
    if not timed:
        return seconds, None
    start, _ = framing.sections[4]
    section4 = head[start:]
    forecast = int.from_bytes(section4[18:22], "big")
    return seconds, forecast * _UNIT_SECONDS[section4[17]] / 3600.0


def look_up(message: bytes) -> Field:
    """The :class:`Field` of a message's header, from ecCodes (``message`` may end with an
    empty section 7: the data are never read)."""
    ec = eccodes()
    handle = ec.codes_new_from_message(message)
    try:
        ec.codes_set(handle, "missingValue", MISSING)
        return _field(ec, handle)
    finally:
        ec.codes_release(handle)


def _field(ec: Any, handle: Any) -> Field:
    known: dict[str, Any] = {}

    def get(key: str) -> Any:
        if key not in known:
            defined = ec.codes_is_defined(handle, key)
            known[key] = ec.codes_get(handle, key) if defined else None
        return known[key]

    grid_type = get("gridType")
    attributes = {}
    for key in _DATA_KEYS:
        value = get(key)
        if value is not None and value not in ("undef", "unknown"):
            attributes[f"GRIB_{key}"] = value
    for key in sorted(_EXTRA_KEYS + _GRID_KEYS.get(grid_type, ())):
        value = get(key)
        if value is not None:
            attributes[f"GRIB_{key}"] = value
    if "GRIB_stepUnits" in attributes:
        attributes["GRIB_stepUnits"] = 1  # cfgrib gives steps in hours, and says so
    param_id = get("paramId")
    name = attributes.get("GRIB_cfVarName", "unknown")
    if name in ("undef", "unknown"):
        name = attributes.get("GRIB_shortName", f"paramId_{param_id}")
    found = Field(
        param_id=param_id,
        name=name,
        type_of_level=get("typeOfLevel") or "undef",
        step_type=get("stepType") or "undef",
        level=ec.codes_get_double(handle, "level") if get("level") is not None else None,
        number=get("number"),
        grid=b"",
        shape=(),
        attributes=attributes,
        globals={f"GRIB_{k}": get(k) for k in GLOBAL_KEYS if get(k) is not None},
        step=_step(ec, handle, get("stepUnits")),
        time=_reference_time(get("dataDate"), get("dataTime")),
    )
    found.refused = _refusal(get, grid_type)
    if found.refused is None:
        found.shape = (
            get("Ny") if grid_type == "regular_ll" else get("Nj"),
            get("Nx") or get("Ni"),
        )
        found.latitudes = ec.codes_get_array(handle, "distinctLatitudes")
        found.longitudes = ec.codes_get_array(handle, "distinctLongitudes")
    return found


def _step(ec: Any, handle: Any, units: Any) -> float | None:
    """The step in hours, as cfgrib computes it (``endStep:int`` in ``stepUnits:int``)."""
    seconds = _UNIT_SECONDS.get(units)
    if seconds is None or not ec.codes_is_defined(handle, "endStep"):
        return None
    return ec.codes_get_long(handle, "endStep") * seconds / 3600.0


def _reference_time(date: int | None, time: int | None) -> int | None:
    """``dataDate`` and ``dataTime`` as seconds since 1970, as cfgrib counts them."""
    if date is None or time is None:
        return None
    when = datetime.datetime(date // 10000, date // 100 % 100, date % 100, time // 100, time % 100)
    return int((when - _EPOCH).total_seconds())


def _refusal(get: Any, grid_type: str | None) -> str | None:
    """Why a field cannot be read exactly as cfgrib presents it, or None."""
    if grid_type not in _GRID_KEYS:
        return (
            f"its grid is {grid_type!r}; only regular_ll and regular_gg grids (latitude / "
            f"longitude dimensions) are read"
        )
    if get("jPointsAreConsecutive") or get("alternativeRowScanning"):
        return (
            "its points are not stored row by row (jPointsAreConsecutive / alternativeRowScanning)"
        )
    if get("iScansNegatively"):
        return "its points run from east to west (iScansNegatively)"
    if get("directionNumber") is not None or get("frequencyNumber") is not None:
        return "it is a wave spectrum (directionNumber / frequencyNumber), not read"
    if _UNIT_SECONDS.get(get("stepUnits")) is None:
        return f"its step unit (stepUnits={get('stepUnits')}) has no fixed length"
    return None


def _template(section4: bytes) -> int:
    return int.from_bytes(section4[7:9], "big")
