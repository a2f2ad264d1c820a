"""What ``import zarr_manifest_store`` does to zarr: :func:`register`, and nothing else.

zarr reads two process-wide settings when it opens an array, and the package
needs both changed from zarr's defaults to serve its arrays well: which codec
pipeline decodes them, and whether rectilinear chunk grids (the grids virtual
concatenation of ragged files produces) may be read. :func:`register` changes
them once, at import, and only where the user has not chosen; no constructor
or reader changes zarr's configuration afterwards.
"""

from __future__ import annotations

import os

from zarr import config
from zarr.registry import register_pipeline

from zarr_manifest_store.pipeline import ManifestCodecPipeline, ManifestStorePipelines

__all__ = ["ENVIRONMENT_PREFIX", "PIPELINE_PATH", "ZARR_DEFAULTS", "register"]

PIPELINE_PATH = f"{ManifestStorePipelines.__module__}.{ManifestStorePipelines.__qualname__}"
"""What ``codec_pipeline.path`` names once :func:`register` has pointed it at the chooser."""
ZARR_DEFAULTS = {
    "codec_pipeline.path": "zarr.core.codec_pipeline.BatchedCodecPipeline",
    "array.rectilinear_chunks": False,
}
"""The zarr settings :func:`register` may change, with zarr's own defaults (zarr 3.4)."""
ENVIRONMENT_PREFIX = "ZARR_"
"""zarr reads ``ZARR_A__B=value`` from the environment as the setting ``a.b``."""


def register() -> None:
    """Register the package's codec pipelines with zarr, and adjust two zarr settings
    the user has not chosen. ``import zarr_manifest_store`` calls it; calling it again
    applies the same rule to the settings as they are then.

    - ``ManifestStorePipelines`` and ``ManifestCodecPipeline`` join zarr's registry of
      codec pipelines (a registry entry changes nothing by itself).
    - ``codec_pipeline.path`` is pointed at ``ManifestStorePipelines``, which gives the
      arrays of a ManifestStore a ``ManifestCodecPipeline`` and every other array
      zarr's default pipeline.
    - ``array.rectilinear_chunks`` is turned on, so that zarr (and xarray through it)
      reads the rectilinear chunk grids that combining ragged files produces.

    The codecs zarr lacks (:mod:`zarr_manifest_store.format_codecs`) are not registered
    here: zarr finds them through the package's ``zarr.codecs`` entry points, also for
    plain zarr-python opening a document.

    A setting is changed only while it holds zarr's default and the environment does
    not set it (``ZARR_CODEC_PIPELINE__PATH``, ``ZARR_ARRAY__RECTILINEAR_CHUNKS``): a
    value the user chose, in the environment or through ``zarr.config.set`` before the
    import, is kept, and one set after the import replaces the package's. (A setting
    set before the import to zarr's own default cannot be told from the default: set
    it in the environment or after the import.)

    >>> import zarr
    >>> register()  # importing the package did it already
    >>> zarr.config.get("codec_pipeline.path") == PIPELINE_PATH
    True
    >>> fused = "zarr.core.codec_pipeline.FusedCodecPipeline"
    >>> with zarr.config.set({"codec_pipeline.path": fused}):  # the user's choice wins
    ...     register()
    ...     zarr.config.get("codec_pipeline.path") == fused
    True
    """
    register_pipeline(ManifestStorePipelines)
    register_pipeline(ManifestCodecPipeline)
    _set_unless_chosen("codec_pipeline.path", PIPELINE_PATH)
    _set_unless_chosen("array.rectilinear_chunks", True)


def _set_unless_chosen(key: str, value: object) -> None:
    """Set zarr's ``key`` to ``value`` if it holds zarr's default and no variable sets it."""
    if config.get(key) == ZARR_DEFAULTS[key] and not _in_environment(key):
        config.set({key: value})


def _in_environment(key: str) -> bool:
    """Whether an environment variable sets zarr's ``key`` (as zarr's config reads them)."""
    wanted = key.replace("-", "_")
    for name in os.environ:
        if name.startswith(ENVIRONMENT_PREFIX):
            setting = name.removeprefix(ENVIRONMENT_PREFIX).lower().replace("__", ".")
            if setting.replace("-", "_") == wanted:
                return True
    return False
