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
        node: Node = self
        above = ""
        for name in path.strip("/").split("/"):
            if not isinstance(node, ManifestGroup):
                raise KeyError(f"{path!r}: {above!r} is an array, not a group")
            above = name
            found = node._arrays.get(name)
            if found is None and (found := node._groups.get(name)) is None:
                raise KeyError(path)
            node = found
        return node

    def __iter__(self) -> Iterator[str]:
        yield from self._arrays
        yield from self._groups

    def __len__(self) -> int:
        return len(self._arrays) + len(self._groups)

    def walk(self, prefix: str = "") -> Iterator[tuple[str, Node]]:
        """Every node below this group as ``(path, node)``, parents before children.

        Iterative, so that no depth of nesting exhausts Python's stack.
        """
        stack = [(prefix, iter(self.items()))]
        while stack:
            base, members = stack[-1]
            for name, node in members:
                yield base + name, node
                if isinstance(node, ManifestGroup):
                    stack.append((f"{base}{name}/", iter(node.items())))
                    break
            else:
                stack.pop()

    def replace(self, **changes: Any) -> ManifestGroup:
        """A copy with ``arrays``, ``groups`` or ``attributes`` replaced."""
        fields = {"arrays": self._arrays, "groups": self._groups, "attributes": self._attributes}
        return ManifestGroup(**{**fields, **changes})

    def equals(self, other: object) -> bool:
        """Same attributes and members, arrays compared by metadata and references."""
        pairs = [(self, other)]
        while pairs:
            mine, theirs = pairs.pop()
            if not isinstance(theirs, ManifestGroup) or not same_json(
                dict(mine._attributes), dict(theirs._attributes)
            ):
                return False
            if (
                mine._arrays.keys() != theirs._arrays.keys()
                or mine._groups.keys() != theirs._groups.keys()
            ):
                return False
            if not all(a.equals(theirs._arrays[k]) for k, a in mine._arrays.items()):
                return False
            pairs.extend((g, theirs._groups[k]) for k, g in mine._groups.items())
        return True

    def __eq__(self, other: object) -> bool:
        return self.equals(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"ManifestGroup(arrays={list(self._arrays)}, groups={list(self._groups)}, "
            f"attributes={dict(self._attributes)})"
        )

    def __reduce__(self) -> tuple[Any, ...]:
        """Pickled flat, one entry per group, so that no depth of nesting exhausts the stack."""
        groups = [("", self), *((p, n) for p, n in self.walk() if isinstance(n, ManifestGroup))]
        return _unflatten, ([(p, dict(g._arrays), dict(g._attributes)) for p, g in groups],)


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


def _unflatten(
    flat: list[tuple[str, dict[str, ManifestArray], dict[str, Any]]],
) -> ManifestGroup:
    """The group that ``__reduce__`` flattened: ``(path, arrays, attributes)``, parents first."""
    children: dict[str, list[tuple[str, ManifestGroup]]] = {}
    for path, arrays, attributes in reversed(flat):  # children are built before their parent
        groups = dict(reversed(children.pop(path, [])))
        group = ManifestGroup(arrays=arrays, groups=groups, attributes=attributes)
        parent, _, name = path.rpartition("/")
        children.setdefault(parent, []).append((name, group))
    return children[""][0][1]


def _check_member(name: str, node: object, kind: type) -> None:
    if not isinstance(name, str) or not name or "/" in name or name in (".", "..", "zarr.json"):
        raise ValueError(f"invalid member name {name!r}: a non-empty name without '/'")
    if name.startswith("__"):
        raise ValueError(
            f"invalid member name {name!r}: names starting with '__' are reserved by Zarr"
        )
    if not isinstance(node, kind):
        raise TypeError(f"member {name!r} must be a {kind.__name__}, got {type(node).__name__}")
