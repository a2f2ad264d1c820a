"""One array's chunk references as the loaders collect them, and their targets resolved."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from zarr_manifest_store.errors import ManifestError
from zarr_manifest_store.io.paths import source_path
from zarr_manifest_store.io.sources import Sources
from zarr_manifest_store.manifest import ChunkManifest

__all__ = ["Chunks", "Targets", "grid_shape"]


class Chunks:
    """One array's chunk references, flattened in C order of its chunk grid."""

    def __init__(self, nchunks: int) -> None:
        self.urls = np.full(nchunks, None, dtype=object)
        self.offsets = np.zeros(nchunks, dtype=np.int64)
        self.lengths = np.zeros(nchunks, dtype=np.int64)
        self.whole = np.zeros(nchunks, dtype=bool)
        self.inline: dict[int, bytes] = {}

    def manifest(self, path: str, meta: Mapping[str, Any], targets: Targets) -> ChunkManifest:
        grid = grid_shape(meta["shape"], meta["chunk_grid"]["configuration"]["chunk_shape"])
        present = self.urls != None  # noqa: E711 - elementwise
        paths = np.full(self.urls.shape, "", dtype=object)
        resolved = {u: targets.resolve(path, u) for u in set(self.urls[present])}
        paths[present] = [resolved[u] for u in self.urls[present]]
        lengths = self.lengths.copy()
        for i in np.flatnonzero(self.whole):
            lengths[i] = targets.size(paths[i])
        inline = {
            tuple(int(c) for c in np.unravel_index(i, grid)): d for i, d in self.inline.items()
        }
        try:
            return ChunkManifest.from_arrays(
                paths=paths.astype(str).reshape(grid),
                offsets=self.offsets.reshape(grid),
                lengths=lengths.reshape(grid),
                inline=inline,
            )
        except ValueError as e:
            raise ManifestError(f"array {path!r}: {e}") from e


class Targets:
    """Resolves reference urls the way fsspec does, and sizes whole-file references."""

    def __init__(self, remote_protocol: str | None, storage_options: dict[str, Any]) -> None:
        self._protocol = remote_protocol
        self._sources = Sources(storage_options)
        self._sizes: dict[str, int] = {}

    def resolve(self, array: str, url: Any) -> str:
        if not isinstance(url, str) or not url:
            raise ManifestError(
                f"array {array!r}: a reference has no target url ({url!r}); "
                f"references relying on fsspec's target= option are not supported"
            )
        if "://" not in url and self._protocol not in (None, "file", "local"):
            url = f"{self._protocol}://{url}"
        return source_path(url)

    def size(self, url: str) -> int:
        if url not in self._sizes:
            size = self._sources.fingerprint(url).size
            if size is None:
                raise OSError(f"cannot size {url!r}, which a whole-file reference points to")
            self._sizes[url] = size
        return self._sizes[url]


def grid_shape(shape: Iterable[int], chunks: Iterable[int]) -> tuple[int, ...]:
    return tuple(math.ceil(n / c) for n, c in zip(shape, chunks, strict=True))
