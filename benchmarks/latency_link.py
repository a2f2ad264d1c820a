"""The delayed link of ``remote_latency.py``: a TCP proxy that holds each segment for half
the round trip in each direction, counting the HTTP requests it forwards and how many were
in flight at once; a worker asks it for the counts over a control port. And the front that
serves moto's S3 with kept-alive connections, as S3 itself does."""

from __future__ import annotations

import asyncio
import collections
import json
import socket
import threading
from socketserver import ThreadingMixIn
from typing import Any
from wsgiref.simple_server import ServerHandler, WSGIRequestHandler, WSGIServer

from remote_read import DelayProxy


class HTTPFramer:
    """Finds HTTP/1.1 messages in one direction of a connection: request heads as they
    arrive, response ends as they leave (``methods`` pairs responses with their requests)."""

    def __init__(self, responses: bool, methods: collections.deque[str]) -> None:
        self.responses, self.methods = responses, methods
        self.buffer = bytearray()
        self.state, self.left, self.method = "head", 0, ""

    def feed(self, data: bytes) -> list[str]:
        """The methods of the messages that ``data`` starts (requests) or ends (responses)."""
        self.buffer += data
        found: list[str] = []
        while self.buffer or (self.state == "body" and self.left == 0):
            if self.state == "body":
                taken = min(self.left, len(self.buffer))
                del self.buffer[:taken]
                self.left -= taken
                if self.left:
                    break
                self.state = "head"
                if self.responses:
                    found.append(self.method)
            elif not self._head(found):
                break
        return found

    def _head(self, found: list[str]) -> bool:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            return False
        lines = bytes(self.buffer[:end]).decode("latin-1").split("\r\n")
        del self.buffer[: end + 4]
        headers = {
            k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])
        }
        if "chunked" in headers.get("transfer-encoding", ""):
            raise NotImplementedError("chunked transfer encoding is not counted")
        length = int(headers.get("content-length", 0))
        if not self.responses:
            self.method = lines[0].split(" ", 1)[0]
            self.methods.append(self.method)
            found.append(self.method)
        else:
            status = int(lines[0].split()[1])
            if status < 200:
                return True  # an interim answer
            self.method = self.methods.popleft() if self.methods else "?"
            if self.method == "HEAD" or status in (204, 304):
                length = 0
        self.state, self.left = "body", length
        if length == 0 and not self.responses:
            self.state = "head"
        return True


class CountingProxy(DelayProxy):
    """The delayed link, counting requests (by method) and the most in flight at once.

    A control port answers ``reset`` (zero the counters) and ``stats`` (a JSON line),
    so that a worker can count what each of its reads cost.
    """

    def __init__(self, upstream: tuple[str, int], rtt: float) -> None:
        self.counts: collections.Counter[str] = collections.Counter()
        self.in_flight = self.most_in_flight = 0
        self.writers: set[asyncio.StreamWriter] = set()  # of the connections open
        super().__init__(upstream, rtt)
        control = asyncio.run_coroutine_threadsafe(
            asyncio.start_server(self._control, "127.0.0.1", 0), self.loop
        ).result()
        self.control_port = control.sockets[0].getsockname()[1]

    async def _control(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while line := (await reader.readline()).strip():
            if line == b"reset":
                self.counts.clear()
                self.most_in_flight = self.in_flight
                writer.write(b"{}\n")
            else:
                stats = {"requests": self.counts.total(), **self.counts}
                stats["in flight"] = self.most_in_flight
                writer.write(json.dumps(stats).encode() + b"\n")
            await writer.drain()
        writer.close()

    def stop(self) -> None:
        """Close the connections still open (kept alive), so that their relays end; stop."""

        async def close() -> None:
            for writer in list(self.writers):
                writer.close()
            relays = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            if relays:
                await asyncio.wait(relays, timeout=2)

        asyncio.run_coroutine_threadsafe(close(), self.loop).result(5)
        super().stop()

    def _requested(self, methods: list[str]) -> None:
        self.counts.update(methods)
        self.in_flight += len(methods)
        self.most_in_flight = max(self.most_in_flight, self.in_flight)

    def _answered(self, methods: list[str]) -> None:
        self.in_flight -= len(methods)

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            writer.close()
            return
        self.writers |= {writer, up_writer}
        methods: collections.deque[str] = collections.deque()
        requests, responses = HTTPFramer(False, methods), HTTPFramer(True, methods)
        outstanding = [0]

        def arrived(data: bytes) -> None:
            found = requests.feed(data)
            outstanding[0] += len(found)
            self._requested(found)

        def sent(data: bytes) -> None:
            found = responses.feed(data)
            outstanding[0] -= len(found)
            self._answered(found)

        await asyncio.gather(
            self._pipe(reader, up_writer, on_read=arrived),
            self._pipe(up_reader, writer, on_write=sent),
        )
        self.writers -= {writer, up_writer}
        self._answered(["?"] * outstanding[0])  # requests a closed connection never answered


class Counter:
    """A worker's line to the proxy's control port."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.lines = self.sock.makefile("rb")

    def ask(self, what: str) -> dict[str, int]:
        self.sock.sendall(what.encode() + b"\n")
        return json.loads(self.lines.readline())

    def counted(self, run: Any) -> tuple[Any, dict[str, int]]:
        self.ask("reset")
        result = run()
        return result, self.ask("stats")


class KeepAliveFront:
    """Serves moto's S3 on 127.0.0.1 with HTTP/1.1 keep-alive.

    moto's own server (werkzeug's) answers every request with ``Connection: close``, so each
    request of every client would open a new connection, which this link does not delay: a
    reconnection would cost nothing of the round trip it costs on a real network, and the
    measurement would be of how fast each client connects rather than of a request on a
    connection kept alive, as S3 keeps them. A response goes out in one write, headers and
    body together, with Nagle's algorithm off (else its tail could wait for the client's
    delayed ACK).
    """

    def __init__(self) -> None:
        from moto.server import DomainDispatcherApplication, create_backend_app

        self.server = _ThreadingWSGIServer(("127.0.0.1", 0), _KeepAliveHandler)
        # A second app over the same moto backends (the process's): the buckets that the
        # tests' S3Server holds are served here too.
        self.server.set_app(DomainDispatcherApplication(create_backend_app))
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self._thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join(5)


class _ThreadingWSGIServer(ThreadingMixIn, WSGIServer):
    daemon_threads = True


class _KeptAliveResponse(ServerHandler):
    """wsgiref's response writer speaking HTTP/1.1; a response of unknown length closes."""

    http_version = "1.1"

    def cleanup_headers(self) -> None:
        super().cleanup_headers()
        if "Content-Length" not in self.headers:
            self.request_handler.close_connection = True
            self.headers["Connection"] = "close"


class _KeepAliveHandler(WSGIRequestHandler):
    """wsgiref's request handler, serving requests on one connection until the client closes."""

    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    wbufsize = 1 << 20  # a response is written when complete, not line by line

    def handle(self) -> None:
        self.close_connection = True
        self.handle_one_request()
        while not self.close_connection:
            self.handle_one_request()

    def handle_one_request(self) -> None:
        self.raw_requestline = self.rfile.readline(65537)
        if not self.raw_requestline or len(self.raw_requestline) > 65536:
            self.close_connection = True
            return
        if not self.parse_request():
            return
        response = _KeptAliveResponse(
            self.rfile, self.wfile, self.get_stderr(), self.get_environ(), multithread=True
        )
        response.request_handler = self
        response.run(self.server.get_app())
        self.wfile.flush()  # a response with no body (a HEAD's) is never flushed by wsgiref

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: one line per request otherwise."""
