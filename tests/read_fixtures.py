"""Builders shared by the read-path tests: chunked HDF5 sources and stores over them."""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np
from helpers import GZIP_SHUFFLE_CODECS, array_metadata, hdf5_chunk_manifest
from servers import RangeHTTPServer

from zarr_manifest_store import ChunkManifest, ManifestArray, ManifestGroup, ManifestStore
from zarr_manifest_store.io.sources import Sources
from zarr_manifest_store.manifest import Fingerprint

ROWS, COLS, CHUNK_ROWS = 48, 50, 2
"""Every test source: a (48, 50) float32 dataset 'v' in 24 chunks of (2, 50), gzip + shuffle."""


def write_source(path: Path, seed: int = 0) -> np.ndarray:
    """Write the test dataset to ``path``; returns its values."""
    data = np.random.default_rng(seed).normal(280, 10, size=(ROWS, COLS)).astype("float32")
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "v", data=data, chunks=(CHUNK_ROWS, COLS), compression="gzip", shuffle=True
        )
    return data


def manifest_for(
    path: Path,
    url: str | None = None,
    fingerprint: Fingerprint | None = None,
) -> ChunkManifest:
    """The manifest of ``path``'s dataset, its chunks referenced at ``url`` (default: the path)."""
    m = hdf5_chunk_manifest(path, "v")
    name = url or str(path)
    return ChunkManifest(
        paths=[name],
        path_index=m.path_index,
        offsets=m.offsets,
        lengths=m.lengths,
        fingerprints={name: fingerprint} if fingerprint else None,
    )


def store_over(manifest: ChunkManifest, **store_kwargs: Any) -> ManifestStore:
    """A store serving ``manifest`` as the array 'v' of the root group."""
    meta = array_metadata(
        (ROWS, COLS), (CHUNK_ROWS, COLS), codecs=GZIP_SHUFFLE_CODECS, dimension_names=["y", "x"]
    )
    array = ManifestArray(metadata=meta, manifest=manifest)
    return ManifestStore(ManifestGroup(arrays={"v": array}), **store_kwargs)


def store_on_s3(
    s3: tuple[Any, str, Any], tmp_path: Path, key: str
) -> tuple[ManifestStore, np.ndarray, Fingerprint]:
    """A store over the test source uploaded as ``key`` to the ``s3`` fixture's bucket, its
    fingerprint recorded: (store, values, fingerprint)."""
    fs, bucket, server = s3
    path = tmp_path / "src.h5"
    data = write_source(path)
    url = f"s3://{bucket}/{key}"
    fs.put(str(path), url)
    options = server.storage_options
    fingerprint = Sources(options).fingerprint(url)
    store = store_over(manifest_for(path, url, fingerprint), storage_options=options)
    return store, data, fingerprint


def local_store(
    tmp_path: Path, *, name: str = "src.h5", record: bool = True, **store_kwargs: Any
) -> tuple[ManifestStore, np.ndarray, Path]:
    """A store over a fresh local source, its fingerprint recorded (unless ``record=False``)."""
    path = tmp_path / name
    data = write_source(path)
    fp = Sources().fingerprint(str(path)) if record else None
    return store_over(manifest_for(path, fingerprint=fp), **store_kwargs), data, path


def open_fds() -> set[str]:
    """The files this process has open (Linux: /proc/self/fd)."""
    out = set()
    for fd in os.listdir("/proc/self/fd"):
        with contextlib.suppress(OSError):  # the descriptor listdir itself used
            out.add(os.readlink(f"/proc/self/fd/{fd}"))
    return out


def count_calls(
    monkeypatch: Any, owner: Any, name: str, where: Callable[..., bool] | None = None
) -> list[Any]:
    """Record the arguments of every call to ``owner.name`` (that ``where(*args)`` accepts)."""
    calls: list[Any] = []
    original: Callable[..., Any] = getattr(owner, name)

    def spy(*args: Any, **kwargs: Any) -> Any:
        if where is None or where(*args):
            calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, spy)
    return calls


def reads_of(path: Path) -> Callable[..., bool]:
    """A ``where`` for ``os.pread`` spies: the call reads ``path`` (not another test's file)."""

    def reading(fd: int, *args: Any) -> bool:
        try:
            return os.readlink(f"/proc/self/fd/{fd}") == str(path)
        except OSError:
            return False

    return reading


class SlowHTTPServer(RangeHTTPServer):
    """The range server, each GET held ``delay`` seconds: counts the GETs in flight at once
    and the bytes they asked for."""

    def __init__(self, root: Path, delay: float = 0.1) -> None:
        super().__init__(root)
        self.lock = threading.Lock()
        self.in_flight = self.most_in_flight = 0
        self.bytes_in_flight = self.most_bytes_in_flight = 0
        outer, base = self, self._server.RequestHandlerClass

        class Handler(base):
            def do_GET(self) -> None:
                # In flight while held, before any byte of the answer goes out: a client that
                # has its answer may send its next request before this thread counts again.
                asked = _range_length(self.headers.get("Range"))
                outer._count(1, asked)
                try:
                    time.sleep(delay)
                finally:
                    outer._count(-1, -asked)
                super().do_GET()

        self._server.RequestHandlerClass = Handler
        self._server.socket.listen(64)  # room for every connection of a read at once

    def _count(self, requests: int, asked: int) -> None:
        with self.lock:
            self.in_flight += requests
            self.bytes_in_flight += asked
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
            self.most_bytes_in_flight = max(self.most_bytes_in_flight, self.bytes_in_flight)


def _range_length(spec: str | None) -> int:
    found = re.fullmatch(r"bytes=(\d+)-(\d+)", spec or "")
    return int(found.group(2)) - int(found.group(1)) + 1 if found else 0
