"""The fingerprint check of each remote range: the fingerprint that passed last is not
compared again, but a fingerprint recorded since is checked."""

from __future__ import annotations

import pytest

from zarr_manifest_store.errors import SourceChangedError
from zarr_manifest_store.io.fingerprints import FingerprintRegistry
from zarr_manifest_store.manifest import Fingerprint

URL = "s3://bucket/a.nc"


def test_a_fingerprint_recorded_after_a_range_passed_is_still_checked():
    """A range served as ETag "a" passed (nothing recorded: "a" is what the object looked
    like first); once the scan's fingerprint "b" is recorded, the same answer is refused."""
    registry = FingerprintRegistry()
    served = Fingerprint(size=10, etag="a")
    registry.check(URL, served)
    registry.check(URL, served)
    registry.record({URL: Fingerprint(size=10, etag="b")})
    with pytest.raises(SourceChangedError, match=r"ETag b -> a"):
        registry.check(URL, served)


def test_a_range_served_by_another_object_is_refused_after_one_that_passed():
    registry = FingerprintRegistry({URL: [Fingerprint(size=10, etag="a")]})
    registry.check(URL, Fingerprint(size=10, etag='"a"'))
    with pytest.raises(SourceChangedError, match=r"ETag a -> c"):
        registry.check(URL, Fingerprint(size=10, etag="c"))
    registry.check(URL, Fingerprint(size=10, etag="a"))
