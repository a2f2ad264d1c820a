"""Icechunk repositories for the tests: on local storage or on the S3 emulator, with the
virtual chunk containers a test's sources need declared and authorised."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import icechunk as ic

S3_KEYS = {"access_key_id": "testing", "secret_access_key": "testing"}


def local_repository(
    where: Path, containers: list[str] = (), *, named: bool = False
) -> ic.Repository:
    """A new repository in folder ``where`` declaring (and authorising) ``containers``
    (named ``c0``, ``c1``, ... if ``named``)."""
    return _create(ic.local_filesystem_storage(str(where)), containers, None, named)


def s3_repository(
    server: Any, bucket: str, prefix: str, containers: list[str] = ()
) -> ic.Repository:
    """A new repository at ``s3://bucket/prefix`` on the moto server ``server``."""
    storage = ic.s3_storage(
        bucket=bucket,
        prefix=prefix,
        region="us-east-1",
        endpoint_url=server.endpoint_url,
        allow_http=True,
        force_path_style=True,
        **S3_KEYS,
    )
    return _create(storage, containers, server.endpoint_url, False)


def reopen(repo: ic.Repository, storage: Any = None) -> ic.Repository:
    """The repository opened afresh, its containers authorised (a reader's view)."""
    return ic.Repository.open(
        repo.storage, authorize_virtual_chunk_access=_authorisations(repo.config, None)
    )


def _create(
    storage: Any, containers: list[str], s3_endpoint: str | None, named: bool
) -> ic.Repository:
    config = ic.RepositoryConfig.default()
    for i, prefix in enumerate(containers):
        name = f"c{i}" if named else None
        config.set_virtual_chunk_container(
            ic.VirtualChunkContainer(prefix, _store_for(prefix, s3_endpoint), name=name)
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return ic.Repository.create(
            storage, config, authorize_virtual_chunk_access=_authorisations(config, s3_endpoint)
        )


def _store_for(prefix: str, s3_endpoint: str | None) -> Any:
    if prefix.startswith("file://"):
        return ic.local_filesystem_store(prefix.removeprefix("file://"))
    return ic.s3_store(
        region="us-east-1", endpoint_url=s3_endpoint, allow_http=True, force_path_style=True
    )


def _authorisations(config: ic.RepositoryConfig, s3_endpoint: str | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for container in (config.virtual_chunk_containers or {}).values():
        prefix = container.url_prefix
        if prefix.startswith("file://"):
            out[prefix] = ic.credentials.LocalFileSystemAccess
        else:
            out[prefix] = ic.s3_static_credentials(**S3_KEYS)
    return ic.containers_credentials(out)
