"""Request slots shared by event loops: the remote requests in flight to one host, bounded.

Remote requests run on fsspec's I/O loop, and those of obstore clients also on the
caller's loop (zarr's, or the user's), with no thread hop. ``asyncio.Semaphore``
belongs to one loop; :class:`Slots` counts across every loop of the process, so
``max_concurrency`` bounds a host's requests wherever they run.
"""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from typing import Any

__all__ = ["Slots"]


class Slots:
    """At most ``limit`` holders at once, on any event loops; waiters are served first come,
    first served. Use as ``async with slots: ...``."""

    def __init__(self, limit: int) -> None:
        self._free = limit
        self._lock = threading.Lock()
        self._waiting: deque[tuple[asyncio.AbstractEventLoop, asyncio.Future[None]]] = deque()

    async def __aenter__(self) -> None:
        with self._lock:
            if self._free and not self._waiting:
                self._free -= 1
                return
            loop = asyncio.get_running_loop()
            granted: asyncio.Future[None] = loop.create_future()
            self._waiting.append((loop, granted))
        try:
            await granted
        except asyncio.CancelledError:
            with self._lock:
                queued = (loop, granted) in self._waiting
                if queued:
                    self._waiting.remove((loop, granted))
            if not queued and not granted.cancelled():
                self.release()  # it was handed a slot just before the cancellation
            raise

    async def __aexit__(self, *exc: Any) -> None:
        self.release()

    def release(self) -> None:
        """Give a slot back: to the longest waiter (on its own loop), else to the pool."""
        while True:
            with self._lock:
                if not self._waiting:
                    self._free += 1
                    return
                loop, granted = self._waiting.popleft()
            try:
                loop.call_soon_threadsafe(self._grant, granted)
                return
            except RuntimeError:  # its loop is closed: nobody waits there any more
                continue

    def _grant(self, granted: asyncio.Future[None]) -> None:
        if granted.done():  # cancelled meanwhile: the slot goes to the next waiter
            self.release()
        else:
            granted.set_result(None)
