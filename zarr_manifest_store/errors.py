"""The exception types users catch.

Each subclasses the built-in type a caller would already handle, so generic
``except ValueError`` / ``except OSError`` code keeps working.
"""


class ManifestError(ValueError):
    """A malformed or hostile chunk-manifest document or manifest."""


class UnsupportedDatasetError(ValueError):
    """A dataset that cannot be described exactly as byte ranges and Zarr codecs."""


class SourceChangedError(OSError):
    """A source file no longer matches the fingerprint recorded when it was scanned."""
