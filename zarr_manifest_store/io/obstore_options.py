"""fsspec-style ``storage_options`` as obstore store arguments.

Users configure remote access once, the way fsspec (s3fs, gcsfs, adlfs,
fsspec's HTTP) takes it, because scanning reads through fsspec. Reading
chunks goes through obstore: this module translates the common options and
refuses any other one by name, rather than ignoring it. The table is in
``docs/howto/remote.md``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

__all__ = ["OBSTORE_KINDS", "store_arguments"]

OBSTORE_KINDS = {
    "s3": "s3",
    "s3a": "s3",
    "gs": "gcs",
    "gcs": "gcs",
    "az": "azure",
    "abfs": "azure",
    "abfss": "azure",
    "http": "http",
    "https": "http",
}
"""URL scheme -> the kind of obstore store that reads it."""

_FSSPEC_CACHING = {
    "skip_instance_cache",
    "use_listings_cache",
    "listings_expiry_time",
    "max_paths",
    "default_block_size",
    "default_cache_type",
    "default_fill_cache",
    "block_size",
    "cache_type",
}
"""fsspec options about its own caches: they do not change which bytes are read."""

_STORE_CLASSES = {"s3": "S3Store", "gcs": "GCSStore", "azure": "AzureStore", "http": "HTTPStore"}


def store_arguments(
    kind: str, url: str, options: Mapping[str, Any], *, timeout: float
) -> tuple[str, dict[str, Any]]:
    """The obstore store class name and its keyword arguments for the store serving ``url``.

    Raises ``ValueError`` naming an option that has no obstore equivalent.
    """
    options = {k: v for k, v in options.items() if k not in _FSSPEC_CACHING}
    config, client = _TRANSLATORS[kind](url, options)
    if unknown := sorted(options):
        raise ValueError(
            f"storage option(s) {unknown} for {url!r} cannot be passed on to the "
            f"{_STORE_CLASSES[kind]} that reads it; supported options are listed in "
            f"docs/howto/remote.md"
        )
    client = {"timeout": timedelta(seconds=timeout), **client}
    arguments = {"client_options": client, "retry_config": {"max_retries": 0}, **config}
    return _STORE_CLASSES[kind], arguments


def _s3(url: str, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """s3fs options: credentials, ``anon``, ``endpoint_url``, region, ``requester_pays``,
    ``profile`` (read through boto3)."""
    client_kwargs = dict(options.pop("client_kwargs", None) or {})
    config: dict[str, Any] = {"bucket": urlsplit(url).netloc}
    _move(options, config, {"key": "access_key_id", "secret": "secret_access_key"})
    _move(options, config, {"token": "session_token", "region": "region"})
    _move(client_kwargs, config, {"region_name": "region"})
    if options.pop("anon", False):
        config["skip_signature"] = True
    if options.pop("requester_pays", False):
        config["request_payer"] = True
    endpoint = (
        options.pop("endpoint_url", None)
        or client_kwargs.pop("endpoint_url", None)
        or os.environ.get("AWS_ENDPOINT_URL_S3")  # as botocore (so s3fs) reads it
        or os.environ.get("AWS_ENDPOINT_URL")
    )
    if profile := options.pop("profile", None):
        config["credential_provider"] = _boto3_credentials(profile)
    if client_kwargs:
        options["client_kwargs"] = client_kwargs  # whatever is left is refused
    return config | _endpoint("endpoint", endpoint), _http_client(endpoint)


def _gcs(url: str, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """gcsfs options: ``token`` (``"anon"``, a service-account file or its parsed JSON),
    ``endpoint_url`` (else ``STORAGE_EMULATOR_HOST``, as gcsfs reads it), ``project``."""
    config: dict[str, Any] = {"bucket": urlsplit(url).netloc}
    options.pop("project", None)  # names the project to bill for listings: not needed to read
    token = options.pop("token", None)
    if token == "anon":
        config["skip_signature"] = True
    elif isinstance(token, dict):
        config["service_account_key"] = json.dumps(token)
    elif isinstance(token, str | os.PathLike) and token not in ("google_default", "cloud"):
        config["service_account"] = os.fspath(token)
    elif token not in (None, "google_default", "cloud"):
        options["token"] = token  # a credentials object: refused
    endpoint = options.pop("endpoint_url", None) or os.environ.get("STORAGE_EMULATOR_HOST")
    if endpoint and "://" not in endpoint:
        endpoint = f"http://{endpoint}"  # STORAGE_EMULATOR_HOST may be host:port
    return config | _endpoint("base_url", endpoint), _http_client(endpoint)


def _azure(url: str, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """adlfs options: ``account_name``, ``account_key``, ``sas_token``, ``connection_string``
    (else ``AZURE_STORAGE_CONNECTION_STRING``), ``anon``."""
    parts = urlsplit(url)
    container, _, account = parts.netloc.partition("@")
    config: dict[str, Any] = {"container_name": container}
    if account:
        config["account_name"] = account.split(".", 1)[0]
    connection = options.pop("connection_string", None)
    if connection is None and not {"account_name", "account_key", "sas_token"} & set(options):
        connection = os.environ.get("AZURE_STORAGE_CONNECTION_STRING")
    endpoint = None
    if connection:
        fields = _connection_string(connection)
        config |= {k: fields[f] for f, k in _CONNECTION_FIELDS.items() if f in fields}
        endpoint = fields.get("BlobEndpoint")
    _move(options, config, {"account_name": "account_name", "account_key": "account_key"})
    _move(options, config, {"sas_token": "sas_key"})
    if options.pop("anon", False):
        config["skip_signature"] = True
    return config | _endpoint("endpoint", endpoint), _http_client(endpoint)


_CONNECTION_FIELDS = {
    "AccountName": "account_name",
    "AccountKey": "account_key",
    "SharedAccessSignature": "sas_key",
}


def _http(url: str, options: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """fsspec HTTP options: ``headers`` and ``client_kwargs`` ``headers``; proxies come from
    the environment (``HTTP(S)_PROXY``, ``NO_PROXY``), as ``trust_env`` would take them."""
    parts = urlsplit(url)
    client_kwargs = dict(options.pop("client_kwargs", None) or {})
    headers = {**client_kwargs.pop("headers", {}), **options.pop("headers", {})}
    if client_kwargs.get("trust_env", True) is True:
        client_kwargs.pop("trust_env", None)
    if client_kwargs:
        options["client_kwargs"] = client_kwargs  # whatever is left is refused
    client: dict[str, Any] = {"allow_http": parts.scheme == "http"}
    if headers:
        client["default_headers"] = {str(k): str(v) for k, v in headers.items()}
    return {"url": f"{parts.scheme}://{parts.netloc}"}, client


_TRANSLATORS: dict[str, Callable[[str, dict[str, Any]], tuple[dict[str, Any], dict[str, Any]]]]
_TRANSLATORS = {"s3": _s3, "gcs": _gcs, "azure": _azure, "http": _http}


def _move(source: dict[str, Any], target: dict[str, Any], names: Mapping[str, str]) -> None:
    """Move each option of ``names`` that is set from ``source`` into ``target``, renamed."""
    for name, renamed in names.items():
        value = source.pop(name, None)
        if value is not None:
            target[renamed] = value


def _endpoint(name: str, endpoint: str | None) -> dict[str, Any]:
    return {name: endpoint.rstrip("/")} if endpoint else {}


def _http_client(endpoint: str | None) -> dict[str, Any]:
    """Client options for an endpoint: plain HTTP only where the endpoint says so."""
    return {"allow_http": True} if endpoint and endpoint.startswith("http://") else {}


def _connection_string(text: str) -> dict[str, str]:
    """The fields of an Azure Storage connection string (``Name=value;...``)."""
    fields = (part.partition("=") for part in text.split(";") if part.strip())
    return {name.strip(): value.strip() for name, _, value in fields}


def _boto3_credentials(profile: str) -> Any:
    """Credentials of an AWS profile, read (and refreshed) through boto3."""
    try:
        import boto3
        from obstore.auth.boto3 import Boto3CredentialProvider
    except ImportError as e:
        raise ValueError(
            "storage option 'profile' needs boto3 to read the AWS profile: pip install boto3"
        ) from e
    return Boto3CredentialProvider(boto3.Session(profile_name=profile))
