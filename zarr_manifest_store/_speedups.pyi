"""The compiled steps of a read (``_speedups.c``): ``ChunkManifest.locator``, ``Sources``."""

from collections.abc import Mapping

import numpy as np

class Locator:
    """One array's references by chunk key: ``prefix``, then each coordinate in
    canonical decimal joined by ``separator``; shares the arrays it is given."""

    def __init__(
        self,
        prefix: str,
        separator: str,
        paths: tuple[str, ...],
        index: np.ndarray,
        offsets: np.ndarray,
        lengths: np.ndarray,
    ) -> None: ...

def resolve(locators: Mapping[str, Locator], key: str) -> tuple[str, int, int] | None:
    """``(path, offset, length)`` of the reference ``key`` names (the array is the first
    ``/``-prefix of ``key`` in ``locators``, the root ``""`` first), or None for any other key."""

def read_nowait(fd: int, offset: int, length: int) -> np.ndarray | None:
    """A new ``uint8`` array of ``length`` bytes of ``fd`` from ``offset``, if every one is
    in the page cache; None when one is not or the file ends before; OSError otherwise."""
