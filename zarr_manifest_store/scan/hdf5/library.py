"""Calls into the HDF5 library h5py uses that h5py does not wrap (a property it does not
expose), made under h5py's lock as h5py makes its own."""

from __future__ import annotations

import ctypes
import functools
from typing import Any

import h5py
from h5py._objects import phil

__all__ = ["query"]


def query(name: str, hid: int, result: type[ctypes.c_int] | type[ctypes.c_uint]) -> int | None:
    """What HDF5's ``name(hid, &value)`` gives, a ``result`` (None: the library does not
    export the function, or the call fails)."""
    call = _function(name, result)
    if call is None:
        return None
    found = result()
    # HDF5 is built without thread safety: h5py runs every call into it under its lock
    # ("phil", not public), and so must a call h5py does not wrap (threads scan files at once).
    with phil:
        failed = call(hid, ctypes.byref(found)) < 0
    return None if failed else found.value


@functools.cache
def _function(name: str, result: type[ctypes.c_int] | type[ctypes.c_uint]) -> Any:
    try:
        call = getattr(ctypes.CDLL(h5py.h5.__file__), name)
    except (OSError, AttributeError):
        return None
    call.argtypes = [ctypes.c_int64, ctypes.POINTER(result)]
    call.restype = ctypes.c_int
    return call
