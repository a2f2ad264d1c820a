"""Progress while ``zarr-manifest scan`` works: a bar on a terminal, fed by the scan's executor."""

from __future__ import annotations

import concurrent.futures
import threading
import time
from collections.abc import Callable
from typing import Any, TextIO

__all__ = ["Progress", "Reporting", "scan_executor"]


def scan_executor(
    jobs: int, scheduler: str | None, on_done: Callable[[], None]
) -> tuple[concurrent.futures.Executor, Callable[[], None]]:
    """The executor files are scanned on, reporting each finished file; and how to shut it down."""
    if scheduler:
        # dask.distributed is an optional dependency (the "dask" extra): imported when asked for
        from distributed import Client

        client = Client(scheduler)
        return Reporting(client.get_executor(), on_done), client.close
    # Threads, not processes: a command starts afresh, and worker processes take seconds to
    # start (each imports xarray and the scanners); threads overlap remote files' requests.
    threads = concurrent.futures.ThreadPoolExecutor(jobs)
    return Reporting(threads, on_done), threads.shutdown


class Reporting(concurrent.futures.Executor):
    """Submits to another executor and calls ``on_done`` as each task finishes."""

    def __init__(self, inner: Any, on_done: Callable[[], None]) -> None:
        self._inner = inner
        self._on_done = on_done

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        future = self._inner.submit(fn, *args, **kwargs)
        future.add_done_callback(lambda _: self._on_done())
        return future


class Progress:
    """A one-line progress bar over ``total`` items on ``stream``, drawn only on a terminal.

    >>> import io
    >>> p = Progress(3, "scanning", io.StringIO())  # not a terminal: draws nothing
    >>> p.advance(); p.close(); p.done
    1
    """

    WIDTH = 30

    def __init__(self, total: int, label: str, stream: TextIO) -> None:
        self.total = total
        self.label = label
        self.stream = stream
        self.done = 0
        self.enabled = total > 1 and stream.isatty()
        self._started = time.perf_counter()
        self._drawn = 0.0
        self._lock = threading.Lock()
        self._draw(force=True)

    def advance(self) -> None:
        with self._lock:
            self.done += 1
            self._draw(force=self.done == self.total)

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\r\x1b[K")
            self.stream.flush()

    def _draw(self, force: bool = False) -> None:
        now = time.perf_counter()
        if not self.enabled or (not force and now - self._drawn < 0.1):
            return
        self._drawn = now
        filled = self.WIDTH * self.done // max(self.total, 1)
        bar = "#" * filled + "-" * (self.WIDTH - filled)
        self.stream.write(
            f"\r{self.label} [{bar}] {self.done}/{self.total} files {now - self._started:.1f} s"
        )
        self.stream.flush()
