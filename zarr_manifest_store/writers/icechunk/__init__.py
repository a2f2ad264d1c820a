"""Virtual datasets into Icechunk repositories: ``to_icechunk`` and the containers it needs.

A hierarchy is written into an Icechunk session as Zarr v3 metadata, virtual
references (in bulk, each with its source's scan-time fingerprint as Icechunk's
checksum) and ordinary chunks for inline data. Everything is checked before the
first write: the repository's virtual chunk containers, and for an append or a
region write, that the new part fits what is stored. The caller commits.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import fsspec.asyn

from zarr_manifest_store.group import ManifestGroup, root_of
from zarr_manifest_store.io.remote import io_loop
from zarr_manifest_store.writers.icechunk.append import (
    append_plan,
    region_plan,
    stored_attributes,
)
from zarr_manifest_store.writers.icechunk.locations import (
    check_containers,
    containers_for,
    declared_containers,
    group_locations,
    relative_locations,
)
from zarr_manifest_store.writers.icechunk.write import (
    ArrayWrite,
    Plan,
    array_document,
    group_document,
    icechunk_store,
    run_plan,
)

__all__ = ["icechunk_containers", "stored_attributes", "to_icechunk"]


def to_icechunk(
    source: Any,
    store: Any,
    *,
    group: str | None = None,
    mode: Literal["w-", "w"] = "w-",
    append_dim: str | None = None,
    region: Mapping[str, slice] | None = None,
) -> None:
    """Write a ManifestGroup (or a virtual ``xr.Dataset``) into an Icechunk session's store.

    ``store`` is ``session.store`` of a writable session (or the session);
    commit afterwards (``session.commit(...)``). References go in bulk, each
    with its source's fingerprint as checksum (ETag, or the modification time
    rounded up to the second), so Icechunk refuses to read a changed source;
    inline chunks (loaded variables) become ordinary chunks. ``group`` is the
    path of the group to write; ``mode="w-"`` refuses a group that holds
    something, ``"w"`` replaces it.

    ``append_dim="time"`` adds the new part after what the group holds along
    that dimension; ``region={"time": slice(start, stop)}`` replaces that
    stretch (on chunk boundaries). Both first check the new part as a combine
    would and refuse a misfit, naming the array and what differs, without
    writing anything. So does a reference outside the repository's virtual
    chunk containers (see :func:`icechunk_containers`).

    >>> import icechunk
    >>> group = zms.scan("data/era_2026-01-01.nc")
    >>> config = icechunk.RepositoryConfig.default()
    >>> for prefix in zms.icechunk_containers(group):
    ...     store = icechunk.local_filesystem_store(prefix.removeprefix("file://"))
    ...     config.set_virtual_chunk_container(icechunk.VirtualChunkContainer(prefix, store))
    >>> repo = icechunk.Repository.create(icechunk.in_memory_storage(), config)
    >>> session = repo.writable_session("main")
    >>> zms.to_icechunk(group, session.store)
    >>> snapshot = session.commit("day 1")
    >>> zms.scan_icechunk(repo)["t2m"].manifest.nchunks
    4
    """
    if hasattr(source, "virtualize"):  # an xr.Dataset: the accessor encodes it as xarray would
        source.virtualize.to_icechunk(
            store, group=group, mode=mode, append_dim=append_dim, region=region
        )
        return
    root = root_of(source, "to_icechunk")
    if not isinstance(root, ManifestGroup):
        raise TypeError("to_icechunk writes a hierarchy: wrap the array in a ManifestGroup")
    store = _writable_store(store)
    prefix = (group or "").strip("/")
    if append_dim is not None and region is not None:
        raise ValueError("pass append_dim or region, not both")
    if mode not in ("w-", "w"):
        raise ValueError(f"mode must be 'w-' or 'w', got {mode!r}")
    locations = group_locations(root)
    config = store.session.config
    check_containers(locations.values(), declared_containers(config), "to_icechunk")
    if append_dim is not None:
        plan = append_plan(root, store, prefix, append_dim)
    elif region is not None:
        plan = region_plan(root, store, prefix, region)
    else:
        plan = _new_plan(root, store, prefix, mode)
    run_plan(store, plan, relative_locations(locations, config))


def icechunk_containers(source: Any) -> list[str]:
    """The virtual chunk container prefixes a hierarchy's references need in a repository.

    One per bucket (``s3://bucket/``) or host, and the common folder of local
    files (``file:///data/``).

    >>> zms.icechunk_containers(zms.scan("data/era_2026-01-01.nc"))
    ['file://.../data/']
    """
    if hasattr(source, "virtualize"):
        source = source.virtualize.to_group()
    root = root_of(source, "icechunk_containers")
    if not isinstance(root, ManifestGroup):
        root = ManifestGroup(arrays={"array": root})
    return containers_for(group_locations(root).values())


def _writable_store(source: Any) -> Any:
    """The IcechunkStore of ``source`` (a store or a session), refused when read-only."""
    store = icechunk_store(source)
    if store.read_only:
        raise ValueError(
            "the Icechunk store is read-only: write through repo.writable_session(branch).store"
        )
    return store


def _new_plan(root: ManifestGroup, store: Any, prefix: str, mode: str) -> Plan:
    """Metadata documents and chunks of the whole hierarchy, written at ``prefix``."""
    exists = not fsspec.asyn.sync(io_loop(), store.is_empty, prefix)
    if exists and mode == "w-":
        raise FileExistsError(
            f"the repository already holds group {prefix or '/'!r}: pass mode='w' to replace "
            "it, append_dim=... to add to it, or another group=..."
        )
    plan = Plan(clear=prefix if exists else None)
    parts = prefix.split("/") if prefix else []
    for i in range(1, len(parts)):
        parent = "/".join(parts[:i])
        if not fsspec.asyn.sync(io_loop(), store.exists, f"{parent}/zarr.json"):
            plan.documents[f"{parent}/zarr.json"] = group_document({})
    base = f"{prefix}/" if prefix else ""
    plan.documents[f"{base}zarr.json"] = group_document(root.attributes)
    for path, node in root.walk(base):
        if isinstance(node, ManifestGroup):
            plan.documents[f"{path}/zarr.json"] = group_document(node.attributes)
        else:
            plan.documents[f"{path}/zarr.json"] = array_document(node.metadata)
            plan.arrays.append(ArrayWrite(path, node.manifest, (0,) * node.ndim))
    return plan
