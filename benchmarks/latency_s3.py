"""The archive of ``remote_latency.py`` on moto's S3 behind the delayed link, for the scripts
that time one random chunk part by part against a bare GET (``remote_random_breakdown.py``,
``remote_hops.py``): the servers started and stopped, and their worker run in a process of
its own."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from latency_link import CountingProxy, KeepAliveFront
from remote_latency import Backend, publish, write_document, write_files
from remote_read import TESTS


@contextlib.contextmanager
def s3_behind_link(
    data: Path, rtt: float, proxy_type: type[CountingProxy] = CountingProxy
) -> Iterator[tuple[dict[str, Any], CountingProxy]]:
    """The archive written under ``data`` and served by moto's S3 on kept-alive connections
    behind a ``proxy_type`` link adding ``rtt`` seconds a round trip: the job a worker reads
    it with, and the link."""
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        os.environ.setdefault(name, "testing")
    sys.path.insert(0, str(TESTS))
    from servers import S3Server

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    files = write_files(data / "files")
    s3 = S3Server().start()
    publish(data, s3, files)
    front = KeepAliveFront()
    proxy = proxy_type(("127.0.0.1", int(front.url.rsplit(":", 1)[1])), rtt)
    try:
        backend = Backend("s3", proxy, files)
        yield backend.describe(*write_document(data, backend)), proxy
    finally:
        proxy.stop()
        front.stop()
        s3.stop()


def worker_result(script: str, job: dict[str, Any], reads: int) -> Any:
    """What ``script --worker JOB READS`` prints last (JSON), run in a process of its own."""
    cmd = [sys.executable, script, "--worker", json.dumps(job), str(reads)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RuntimeError(f"the worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])
