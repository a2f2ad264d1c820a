"""Calls into the HDF5 library h5py uses that h5py does not wrap (a property it does not
expose), made under h5py's lock as h5py makes its own."""

from __future__ import annotations

import ctypes
import functools
from typing import Any

import h5py
from h5py._objects import phil

__all__ = ["open_by_address", "query"]


def open_by_address(location: h5py.h5g.GroupID, address: int) -> h5py.h5o.ObjectID:
    """The object whose header is at ``address`` in ``location``'s file (``H5Oopen_by_addr``:
    half the cost of opening it by name, which looks the name up in its group first)."""
    call = _opener()
    if call is None:
        raise KeyError("H5Oopen_by_addr is not exported")
    with phil:
        hid = call(location.id, address)
    if hid < 0:
        raise KeyError(f"no object at address {address}")
    return h5py.h5i.wrap_identifier(hid)


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


def _function(name: str, result: type[ctypes.c_int] | type[ctypes.c_uint]) -> Any:
    return _symbol(name, (ctypes.c_int64, ctypes.POINTER(result)), ctypes.c_int)


def _opener() -> Any:
    return _symbol("H5Oopen_by_addr", (ctypes.c_int64, ctypes.c_uint64), ctypes.c_int64)


@functools.cache
def _symbol(name: str, argtypes: tuple[Any, ...], restype: Any) -> Any:
    """HDF5's function ``name`` in the library h5py uses, typed (None if not exported)."""
    try:
        call = getattr(ctypes.CDLL(h5py.h5.__file__), name)
    except (OSError, AttributeError):
        return None
    call.argtypes = list(argtypes)
    call.restype = restype
    return call
