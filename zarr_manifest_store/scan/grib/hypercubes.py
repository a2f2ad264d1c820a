"""GRIB2 fields gathered into arrays the way cfgrib presents them.

Messages of one variable (``paramId``) on one level type and step type, over one
grid, form an array whose dimensions are cfgrib's: ``number`` (ensemble member),
``time`` (reference time), ``step``, the level (named by its type, e.g.
``isobaricInhPa``), then ``latitude`` and ``longitude``; a dimension of one value
becomes a scalar coordinate, as cfgrib squeezes it. Each message is one chunk;
a combination no message holds is a missing chunk (NaN, as cfgrib fills it).
Variables with the same coordinates form a hypercube; a file of several
hypercubes gives one group each (see :func:`group_names`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from zarr_manifest_store.array import ManifestArray
from zarr_manifest_store.format_codecs.grib import CODEC_NAME
from zarr_manifest_store.group import ManifestGroup
from zarr_manifest_store.manifest import ChunkManifest, Fingerprint
from zarr_manifest_store.scan.grib.keys import Field

__all__ = ["Message", "hypercubes"]

_TIME = {"units": "seconds since 1970-01-01T00:00:00", "calendar": "proleptic_gregorian"}
_COORDINATE_ATTRIBUTES: dict[str, dict[str, Any]] = {
    "latitude": {"units": "degrees_north", "standard_name": "latitude", "long_name": "latitude"},
    "longitude": {"units": "degrees_east", "standard_name": "longitude", "long_name": "longitude"},
    "number": {
        "units": "1",
        "standard_name": "realization",
        "long_name": "ensemble member numerical id",
    },
    "step": {
        "units": "hours",
        "standard_name": "forecast_period",
        "long_name": "time since forecast_reference_time",
        "dtype": "timedelta64[ns]",
    },
    "time": {
        **_TIME,
        "standard_name": "forecast_reference_time",
        "long_name": "initial time of forecast",
    },
    "valid_time": {**_TIME, "standard_name": "time", "long_name": "time"},
}
_LEVEL_ATTRIBUTES: dict[str, dict[str, Any]] = {
    "depthBelowLand": {
        "units": "m",
        "positive": "down",
        "long_name": "soil depth",
        "standard_name": "depth",
    },
    "depthBelowLandLayer": {
        "units": "m",
        "positive": "down",
        "long_name": "soil depth",
        "standard_name": "depth",
    },
    "hybrid": {
        "units": "1",
        "positive": "down",
        "long_name": "hybrid level",
        "standard_name": "atmosphere_hybrid_sigma_pressure_coordinate",
    },
    "heightAboveGround": {
        "units": "m",
        "positive": "up",
        "long_name": "height above the surface",
        "standard_name": "height",
    },
    "isobaricInhPa": {
        "units": "hPa",
        "positive": "down",
        "stored_direction": "decreasing",
        "standard_name": "air_pressure",
        "long_name": "pressure",
    },
    "isobaricInPa": {
        "units": "Pa",
        "positive": "down",
        "stored_direction": "decreasing",
        "standard_name": "air_pressure",
        "long_name": "pressure",
    },
    "isobaricLayer": {
        "units": "Pa",
        "positive": "down",
        "standard_name": "air_pressure",
        "long_name": "pressure",
    },
}
"""cfgrib's attributes of level coordinates, by level type."""


@dataclass(frozen=True)
class Message:
    """One message: where it lies, its field, and its own reference time and step."""

    offset: int
    length: int
    field: Field
    time: int
    step: float


@dataclass
class _Variable:
    field: Field
    messages: list[Message]

    def axes(self) -> dict[str, list[Any]]:
        """The values along each of cfgrib's header axes, sorted as cfgrib sorts them."""
        first = self.field
        values: dict[str, Iterable[Any]] = {}
        if first.number is not None:
            values["number"] = {m.field.number for m in self.messages}
        values["time"] = {m.time for m in self.messages}
        values["step"] = {m.step for m in self.messages}
        if first.level is not None:
            values[first.type_of_level] = {m.field.level for m in self.messages}
        return {name: sorted(v, reverse=_decreasing(name)) for name, v in values.items()}


def hypercubes(
    messages: Sequence[Message], path: str, fingerprint: Fingerprint
) -> dict[tuple[str, ...], ManifestGroup]:
    """The hypercubes of ``messages`` (fields that can be read), keyed by what tells them apart:
    level type, step type, and a number when those are shared by several."""
    variables: dict[tuple[Any, ...], _Variable] = {}
    for message in messages:
        f = message.field
        key = (f.type_of_level, f.step_type, f.grid, f.param_id)
        if key not in variables:
            variables[key] = _Variable(f, [])
        variables[key].messages.append(message)
    cubes: dict[tuple[Any, ...], list[tuple[_Variable, dict[str, list[Any]]]]] = defaultdict(list)
    for (level_type, step_type, grid, _), variable in variables.items():
        axes = variable.axes()
        signature = (level_type, step_type, grid, repr(axes))
        cubes[signature].append((variable, axes))
    counts: dict[tuple[str, str], int] = defaultdict(int)
    out: dict[tuple[str, ...], ManifestGroup] = {}
    for (level_type, step_type, _, _), members in cubes.items():
        counts[level_type, step_type] += 1
        name = (level_type, step_type, str(counts[level_type, step_type]))
        out[name] = _group(members, path, fingerprint)
    return out


def _group(
    members: list[tuple[_Variable, dict[str, list[Any]]]], path: str, fingerprint: Fingerprint
) -> ManifestGroup:
    """One hypercube: its variables and their coordinates."""
    first, axes = members[0]
    field = first.field
    arrays: dict[str, ManifestArray] = {}
    dims = [name for name, values in axes.items() if len(values) > 1]
    for name, values in axes.items():
        data = np.asarray(values, dtype=_dtype(name))
        arrays[name] = _inline(
            data if name in dims else data[0],
            [name] if name in dims else [],
            _coordinate_attributes(name),
        )
    arrays["latitude"] = _inline(field.latitudes, ["latitude"], _latitude_attributes(field))
    arrays["longitude"] = _inline(
        field.longitudes, ["longitude"], _COORDINATE_ATTRIBUTES["longitude"]
    )
    time_dims = [d for d in ("time", "step") if d in dims]
    time = np.asarray(axes["time"], dtype=np.int64).reshape(-1, 1)
    step = np.asarray(axes["step"], dtype=np.float64).reshape(1, -1)
    valid = (time + step * 3600).reshape([len(axes[d]) for d in time_dims])
    arrays["valid_time"] = _inline(valid, time_dims, _COORDINATE_ATTRIBUTES["valid_time"])
    coordinates = " ".join([*axes, "latitude", "longitude", "valid_time"])
    for variable, _ in members:
        name = variable.field.name
        arrays[name] = _data_array(variable, axes, dims, coordinates, path, fingerprint)
    attributes = dict(field.globals)
    attributes["Conventions"] = "CF-1.7"
    if "GRIB_centreDescription" in attributes:
        attributes["institution"] = attributes["GRIB_centreDescription"]
    return ManifestGroup(arrays=arrays, attributes=attributes)


def _data_array(
    variable: _Variable,
    axes: dict[str, list[Any]],
    dims: list[str],
    coordinates: str,
    path: str,
    fingerprint: Fingerprint,
) -> ManifestArray:
    """A variable's array: one chunk per message, at its place in the hypercube."""
    field = variable.field
    header = [len(axes[d]) for d in dims]
    where = {d: {v: i for i, v in enumerate(axes[d])} for d in dims}
    grid = (*header, 1, 1)
    offsets = np.zeros(grid, dtype=np.uint64)
    lengths = np.zeros(grid, dtype=np.uint64)
    present = np.zeros(grid, dtype=bool)
    for message in variable.messages:
        values = _header_values(message, field.type_of_level)
        index = (*(where[d][values[d]] for d in dims), 0, 0)
        if not present[index]:  # cfgrib reads the first of messages that coincide
            present[index] = True
            offsets[index], lengths[index] = message.offset, message.length
    paths = np.where(present, path, "")
    manifest = ChunkManifest.from_arrays(
        paths=paths, offsets=offsets, lengths=lengths, fingerprints={path: fingerprint}
    )
    attributes = dict(field.attributes)
    attributes["long_name"] = attributes.get(
        "GRIB_name", f"original GRIB paramId: {field.param_id}"
    )
    attributes["units"] = attributes.get("GRIB_units", "1")
    if "GRIB_cfName" in attributes:
        attributes["standard_name"] = attributes["GRIB_cfName"]
    attributes["coordinates"] = coordinates
    shape = [*header, *field.shape]
    metadata = {
        "shape": shape,
        "data_type": "float32",
        "chunk_grid": {
            "name": "regular",
            "configuration": {"chunk_shape": [*(1 for _ in header), *field.shape]},
        },
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": "NaN",
        "codecs": [{"name": CODEC_NAME}],
        "attributes": attributes,
        "dimension_names": [*dims, "latitude", "longitude"],
    }
    return ManifestArray(metadata=metadata, manifest=manifest)


def _header_values(message: Message, level_type: str) -> dict[str, Any]:
    f = message.field
    return {"number": f.number, "time": message.time, "step": message.step, level_type: f.level}


def _inline(values: Any, dims: list[str], attributes: dict[str, Any]) -> ManifestArray:
    """A small coordinate array whose one chunk is kept in the manifest."""
    data = np.asarray(values)
    data = data.astype(data.dtype.newbyteorder("<"))
    shape = list(data.shape)
    grid = tuple(1 for _ in shape)
    manifest = ChunkManifest.from_arrays(
        paths=np.full(grid, ""),
        offsets=np.zeros(grid, dtype=np.uint64),
        lengths=np.zeros(grid, dtype=np.uint64),
        inline={tuple(0 for _ in grid): data.tobytes()},
    )
    kind = data.dtype
    metadata = {
        "shape": shape,
        "data_type": {"<i8": "int64", "<f8": "float64"}[kind.str],
        "chunk_grid": {"name": "regular", "configuration": {"chunk_shape": shape}},
        "chunk_key_encoding": {"name": "default", "configuration": {"separator": "/"}},
        "fill_value": 0,
        "codecs": [{"name": "bytes", "configuration": {"endian": "little"}}],
        "attributes": dict(attributes),
        "dimension_names": dims,
    }
    return ManifestArray(metadata=metadata, manifest=manifest)


def _coordinate_attributes(name: str) -> dict[str, Any]:
    attributes = {
        "long_name": f"original GRIB coordinate for key: {_key(name)}({name})",
        "units": "1",
    }
    attributes.update(_COORDINATE_ATTRIBUTES.get(name) or _LEVEL_ATTRIBUTES.get(name, {}))
    return attributes


def _key(name: str) -> str:
    return name if name in ("number", "time", "step") else "level"


def _latitude_attributes(field: Field) -> dict[str, Any]:
    attributes = dict(_COORDINATE_ATTRIBUTES["latitude"])
    if len(field.latitudes) > 1 and field.latitudes[0] > field.latitudes[-1]:
        attributes["stored_direction"] = "decreasing"
    return attributes


def _decreasing(name: str) -> bool:
    return _LEVEL_ATTRIBUTES.get(name, {}).get("stored_direction") == "decreasing"


def _dtype(name: str) -> type:
    return np.int64 if name in ("number", "time") else np.float64
