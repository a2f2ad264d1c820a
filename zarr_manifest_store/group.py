"""ManifestGroup: an immutable hierarchy of ManifestArrays, subgroups and attributes."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from types import MappingProxyType
from typing import Any

from zarr_manifest_store.array import ManifestArray, same_json

__all__ = ["ManifestGroup", "Node", "root_of"]

type Node = ManifestArray | ManifestGroup


class ManifestGroup(Mapping[str, "Node"]):
    """A Zarr group of virtual arrays: a read-only mapping from member name to node.

    ``g["name"]`` gives a member; ``g["sub/t2m"]`` walks into subgroups.

    >>> g = ManifestGroup(arrays={}, groups={"forecast": ManifestGroup()}, attributes={"title": "demo"})
    >>> list(g), g.attributes["title"]
    (['forecast'], 'demo')
    """

    __slots__ = ("_arrays", "_attributes", "_groups")

    def __init__(
        self,
        arrays: Mapping[str, ManifestArray] | None = None,
        groups: Mapping[str, ManifestGroup] | None = None,
        attributes: Mapping[str, Any] | None = None,
    ) -> None:
        arrays, groups = dict(arrays or {}), dict(groups or {})
        for name, node in arrays.items():
            _check_member(name, node, ManifestArray)
        for name, node in groups.items():
            _check_member(name, node, ManifestGroup)
        if both := arrays.keys() & groups.keys():
            raise ValueError(f"{sorted(both)} named both as arrays and as groups")
        attributes = dict(attributes or {})
        try:
            json.dumps(attributes, allow_nan=True)
        except (TypeError, ValueError) as e:
            raise ValueError(f"group attributes must be JSON-serialisable: {e}") from e
        self._arrays = MappingProxyType(arrays)
        self._groups = MappingProxyType(groups)
        self._attributes = MappingProxyType(attributes)

    @property
    def arrays(self) -> Mapping[str, ManifestArray]:
        """The arrays directly in this group, by name."""
        return self._arrays

    @property
    def groups(self) -> Mapping[str, ManifestGroup]:
        """The subgroups directly in this group, by name."""
        return self._groups

    @property
    def attributes(self) -> Mapping[str, Any]:
        """The group's attributes (JSON values)."""
        return self._attributes

    def __getitem__(self, path: str) -> Node:
        name, _, rest = path.strip("/").partition("/")
        node: Node | None = self._arrays.get(name)
        if node is None and (node := self._groups.get(name)) is None:
            raise KeyError(path)
        if not rest:
            return node
        if not isinstance(node, ManifestGroup):
            raise KeyError(f"{path!r}: {name!r} is an array, not a group")
        return node[rest]

    def __iter__(self) -> Iterator[str]:
        yield from self._arrays
        yield from self._groups

    def __len__(self) -> int:
        return len(self._arrays) + len(self._groups)

    def walk(self, prefix: str = "") -> Iterator[tuple[str, Node]]:
        """Every node below this group as ``(path, node)``, parents before children."""
        for name, node in self.items():
            path = f"{prefix}{name}"
            yield path, node
            if isinstance(node, ManifestGroup):
                yield from node.walk(f"{path}/")

    def replace(self, **changes: Any) -> ManifestGroup:
        """A copy with ``arrays``, ``groups`` or ``attributes`` replaced."""
        fields = {"arrays": self._arrays, "groups": self._groups, "attributes": self._attributes}
        return ManifestGroup(**{**fields, **changes})

    def equals(self, other: object) -> bool:
        """Same attributes and members, arrays compared by metadata and references."""
        if not isinstance(other, ManifestGroup) or not same_json(
            dict(self._attributes), dict(other._attributes)
        ):
            return False
        if (
            self._arrays.keys() != other._arrays.keys()
            or self._groups.keys() != other._groups.keys()
        ):
            return False
        return all(a.equals(other._arrays[k]) for k, a in self._arrays.items()) and all(
            g.equals(other._groups[k]) for k, g in self._groups.items()
        )

    def __eq__(self, other: object) -> bool:
        return self.equals(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"ManifestGroup(arrays={list(self._arrays)}, groups={list(self._groups)}, "
            f"attributes={dict(self._attributes)})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return ManifestGroup, (dict(self._arrays), dict(self._groups), dict(self._attributes))


def root_of(source: object, what: str) -> Node:
    """The hierarchy a writer or reader is given: a ManifestGroup or ManifestArray itself, or
    the ``root`` of what serves one (a ManifestStore); ``what`` names the caller in errors."""
    root = getattr(source, "root", source)
    if not isinstance(root, ManifestGroup | ManifestArray):
        raise TypeError(
            f"{what} needs a ManifestGroup, ManifestArray or ManifestStore, "
            f"got {type(source).__name__}"
        )
    return root


def _check_member(name: str, node: object, kind: type) -> None:
    if not isinstance(name, str) or not name or "/" in name or name in (".", "..", "zarr.json"):
        raise ValueError(f"invalid member name {name!r}: a non-empty name without '/'")
    if name.startswith("__"):
        raise ValueError(
            f"invalid member name {name!r}: names starting with '__' are reserved by Zarr"
        )
    if not isinstance(node, kind):
        raise TypeError(f"member {name!r} must be a {kind.__name__}, got {type(node).__name__}")
