"""Shared fixtures: small HDF5 files generated on the fly."""

from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest
from document_samples import build_document

# Network traffic goes only to 127.0.0.1: no real credentials, no instance-metadata probing.
for _name, _value in {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
    "NO_GCE_CHECK": "true",
    # gcsfs >= 2026.10 asks GCS's gRPC control plane for every bucket's type by default;
    # the emulator does not serve it (each lookup waits out a 60 s timeout).
    "GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT": "false",
}.items():
    os.environ[_name] = _value


@pytest.fixture
def gzip_shuffle_file(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """An HDF5 file with a (12, 10) float32 dataset 't2m', chunks (4, 5), gzip + shuffle."""
    data = np.random.default_rng(0).normal(280, 10, size=(12, 10)).astype("float32")
    path = tmp_path / "gzip_shuffle.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "t2m", data=data, chunks=(4, 5), compression="gzip", shuffle=True, fillvalue=-9999.0
        )
    return path, data


@pytest.fixture
def http_server(tmp_path: Path):
    """A range-capable HTTP server over a fresh folder (``server.root``), on 127.0.0.1."""
    from servers import RangeHTTPServer

    root = tmp_path / "http-root"
    root.mkdir()
    yield from _running(RangeHTTPServer(root))


@pytest.fixture(scope="session")
def s3_server():
    """moto's S3 in server mode on 127.0.0.1, shared by the session's tests."""
    from servers import S3Server

    yield from _running(S3Server())


@pytest.fixture
def s3(s3_server):
    """An s3fs file system on the moto server with a fresh bucket: (fs, bucket, server)."""
    return _fresh_bucket(s3_server)


@pytest.fixture(scope="session")
def gcs_server():
    """gcp-storage-emulator on 127.0.0.1, shared by the session's tests."""
    from cloud_emulators import GCSServer

    yield from _running(GCSServer())


@pytest.fixture
def gcs(gcs_server):
    """A gcsfs file system on the emulator with a fresh bucket: (fs, bucket, server)."""
    return _fresh_bucket(gcs_server)


@pytest.fixture(scope="session")
def azure_server():
    """Azurite's Blob service on 127.0.0.1 (behind a counting proxy), shared by the session."""
    from cloud_emulators import AzureServer

    yield from _running(AzureServer())


@pytest.fixture
def azure(azure_server):
    """An adlfs file system on Azurite with a fresh container: (fs, container, server)."""
    return _fresh_bucket(azure_server)


def _running(server):
    """Start ``server`` for a fixture's lifetime."""
    server.start()
    try:
        yield server
    finally:
        server.stop()


def _fresh_bucket(server):
    import uuid

    bucket = f"zms-{uuid.uuid4().hex[:12]}"
    server.create_bucket(bucket)
    fs = server.filesystem()
    server.requests.clear()
    return fs, bucket, server


# Small chunk-manifest documents (document_samples.build_document), for the tests of hostile
# documents.


@pytest.fixture(params=["json", "columnar"])
def document(request, tmp_path) -> Path:
    return build_document(tmp_path, request.param)


@pytest.fixture
def json_document(tmp_path) -> Path:
    return build_document(tmp_path, "json")


@pytest.fixture
def columnar_document(tmp_path) -> Path:
    return build_document(tmp_path, "columnar")
