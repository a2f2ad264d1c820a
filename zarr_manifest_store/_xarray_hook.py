"""Register the xarray layer once xarray is imported, without importing xarray ourselves.

Importing xarray (and pandas) costs about as much again as this package, so
``import zarr_manifest_store`` does not pay for it. The ``.virtualize``
accessor must nevertheless exist on every ``xr.Dataset`` once both packages
are imported: if xarray is already imported, the layer is imported now;
otherwise a one-shot import hook imports it right after xarray's own import.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import importlib.util
import sys
from types import ModuleType

LAYER = "zarr_manifest_store.xarray"


def register_xarray_layer() -> None:
    """Import the xarray layer now if xarray is loaded, else as soon as it is."""
    if "xarray" in sys.modules:
        importlib.import_module(LAYER)
    elif not any(isinstance(finder, _AfterXarray) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterXarray())


class _AfterXarray(importlib.abc.MetaPathFinder):
    """Finds xarray like the other finders do, and imports the layer once xarray has run."""

    def find_spec(
        self, fullname: str, path: object = None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname != "xarray":
            return None
        sys.meta_path.remove(self)  # one-shot; also keeps the lookup below from finding us
        spec = importlib.util.find_spec(fullname)
        loader = spec.loader if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        run_xarray = loader.exec_module

        def exec_module(module: ModuleType) -> None:
            run_xarray(module)
            importlib.import_module(LAYER)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec
