"""The exception types users catch.

Each subclasses the built-in type a caller would already handle, so generic
``except ValueError`` / ``except OSError`` code keeps working.
"""


class ManifestError(ValueError):
    """A malformed or hostile chunk-manifest document or manifest; the message names the file and field.

    >>> import os, zarr_manifest_store as zms
    >>> os.makedirs("broken.zarr", exist_ok=True)
    >>> with open("broken.zarr/zarr.json", "w") as f:
    ...     _ = f.write('{"zarr_format": 3, "node_type": "gro')
    >>> zms.ManifestStore.open("broken.zarr")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    zarr_manifest_store.errors.ManifestError: .../broken.zarr/zarr.json: ...
    """


class UnsupportedDatasetError(ValueError):
    """A dataset that cannot be described exactly as byte ranges and Zarr codecs.

    Scanners raise it naming the file, the variable and the reason, instead of
    describing data that would read wrongly.

    >>> import zarr_manifest_store as zms
    >>> with open("notes.txt", "w") as f:
    ...     _ = f.write("field notes, not a dataset")
    >>> zms.scan("notes.txt")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    zarr_manifest_store.errors.UnsupportedDatasetError: cannot identify the format of 'notes.txt': ...
    """


class SourceChangedError(OSError):
    """A source file no longer matches the fingerprint recorded when it was scanned.

    Its bytes may have moved, so none are decoded: rescan the file. It is an
    ``OSError``, like the other ways a source can fail to be read.

    >>> issubclass(SourceChangedError, OSError)
    True
    """
