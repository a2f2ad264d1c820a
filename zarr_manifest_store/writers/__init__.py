"""Writers: a manifest hierarchy written out in a format other tools read.

Every writer has one shape::

    write(source, url, *, storage_options=None, mode=..., **format_options)

``source`` is what was scanned or combined: a ManifestGroup, a ManifestArray
or a ManifestStore serving one, resolved with
:func:`zarr_manifest_store.group.root_of`; ``url`` is the target (a path or
an fsspec URL, configured by ``storage_options``); ``mode`` says whether an
existing target is replaced (``"w"``) or refused (``"w-"``); the other
options are the format's own. The writers:

- :func:`zarr_manifest_store.write_manifest`: a chunk-manifest document
  (``zarr_manifest_store/document/write.py``);
- :func:`zarr_manifest_store.to_kerchunk` (:mod:`.kerchunk`): kerchunk
  references, JSON or parquet; with no ``url`` it returns the JSON references.
"""

from zarr_manifest_store.writers.kerchunk import to_kerchunk

__all__ = ["to_kerchunk"]
