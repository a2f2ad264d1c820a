"""Run the check of each file in its own worker process, with a timeout and a memory cap.

Workers are forked from a server process that imported the checker once. A
worker that runs out of time is killed; what it had checked by then is kept,
and the file gets a ``timeout`` error naming the stage it was in. A worker
that dies (a crash in a C library) gets an error with its exit code; one that
raises (the memory cap's ``MemoryError``) gets the exception.
"""

from __future__ import annotations

import functools
import multiprocessing
import multiprocessing.context
import resource
import tempfile
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .check import Recorder, check_file, describe
from .fetch import CorpusFile

PRELOAD = ["benchmarks.real_files.check", "scipy.io", "h5netcdf"]


def run_all(
    files: Iterable[CorpusFile],
    *,
    jobs: int = 1,
    timeout: float = 60.0,
    memory_gb: float = 8.0,
    progress: Callable[[dict[str, Any]], None] | None = None,
) -> list[dict[str, Any]]:
    """Every file's result, in the order given (``jobs`` workers at a time)."""

    def one(file: CorpusFile) -> dict[str, Any]:
        result = run_one(file, timeout=timeout, memory_gb=memory_gb)
        if progress is not None:
            progress(result)
        return result

    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        return list(pool.map(one, files))


def run_one(file: CorpusFile, *, timeout: float, memory_gb: float) -> dict[str, Any]:
    """One file's result from a worker process."""
    with tempfile.TemporaryDirectory(prefix="real-files-") as tmp:
        out = Path(tmp) / "events.jsonl"
        start = time.perf_counter()
        worker = _context().Process(
            target=work, args=(file.path, file.format, str(out), memory_gb), daemon=True
        )
        worker.start()
        worker.join(timeout)
        timed_out = worker.is_alive()
        if timed_out:
            worker.kill()
            worker.join()
        wall = time.perf_counter() - start
        lines = out.read_text().splitlines() if out.exists() else []
    result = Recorder.assemble(file.path, file.format, lines)
    result.update({k: v for k, v in asdict(file).items() if k != "path"}, wall_seconds=wall)
    if timed_out:
        message = f"timeout after {timeout:g} s (in stage {result['stage']}{_progress(result)})"
        result["error"] = {"stage": result["stage"], "message": message}
    elif worker.exitcode != 0 and result["error"] is None:
        message = f"worker died with exit code {worker.exitcode} (in stage {result['stage']})"
        result["error"] = {"stage": result["stage"], "message": message}
    return result


def _progress(result: dict[str, Any]) -> str:
    total = result["h5py_datasets"]
    if result["stage"] != "datasets" or total is None:
        return ""
    return f"; {len(result['datasets'])} of {total} datasets checked"


def work(path: str, fmt: str, out: str, memory_gb: float) -> None:
    """The worker: cap the memory, check the file, stream the records to ``out``."""
    limit = int(memory_gb * 2**30)
    resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    with open(out, "w") as stream:
        recorder = Recorder(path, fmt, stream)
        try:
            check_file(path, fmt, recorder=recorder)
        except BaseException as e:
            stage = recorder.result["stage"]
            recorder.event("error", {"stage": stage, "message": f"checker: {describe(e, path)}"})


@functools.cache
def _context() -> multiprocessing.context.ForkServerContext:
    """Workers forked from a server that imported the checker once (imports cost seconds)."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context
