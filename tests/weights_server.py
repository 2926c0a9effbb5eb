"""A real HTTP file server on 127.0.0.1 for the download tests, with misbehaviours on demand.

``FileServer`` serves byte strings at paths (``add(path, data, ...)``), honours ``Range: bytes=N-``
(206 + ``Content-Range``) and ``If-Range`` (against the route's ETag), and records every request's
method, path and headers. Per route it can: answer a fixed HTTP status (404...), redirect, drop the connection
at a byte offset for the first ``drops`` requests, stall after a byte offset, ignore ranges, answer a
wrong ``Content-Range``, claim a false ``Content-Length``, and throttle (so two clients overlap).
Stalls end when the server stops, so threads never outlive a test.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Route:
    data: bytes = b""
    status: int | None = None  # answer this HTTP status instead of the file
    drop_at: int | None = None  # absolute byte offset where the connection is cut...
    drops: int = 0  # ...for this many requests
    stall_at: int | None = None  # absolute byte offset where sending pauses...
    stall_for: float = 0.0  # ...for this long (seconds), for every request reaching it
    ignore_range: bool = False  # always answer 200 with the whole file
    bad_range: bool = False  # answer 206 with a Content-Range starting elsewhere
    fake_length: int | None = None  # Content-Length to claim on a 200
    chunk: int = 64 * 1024  # bytes per write
    chunk_delay: float = 0.0  # seconds between writes (throttle)
    etag: str | None = None
    redirect_to: str | None = None  # answer 302 to this path (as Hugging Face / GitHub do to their CDN)
    hits: int = field(default=0)


@dataclass
class Request:
    method: str
    path: str
    headers: dict[str, str]


class FileServer:
    """``with FileServer() as srv: srv.add("/a.bin", data); urlopen(srv.url + "/a.bin")``."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.requests: list[Request] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self.httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- set-up
    def add(self, path: str, data: bytes = b"", **behaviour) -> Route:
        route = Route(data=data, **behaviour)
        self.routes[path] = route
        return route

    @property
    def url(self) -> str:
        assert self.httpd is not None
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}"

    def requests_for(self, path: str, method: str = "GET") -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == path and r.method == method]

    def start(self) -> FileServer:
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # keep test output clean
                pass

            def do_GET(self) -> None:
                server._serve(self, body=True)

            def do_HEAD(self) -> None:
                server._serve(self, body=False)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        if self.httpd is not None:
            self.httpd.shutdown()
            self.httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FileServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # -- serving
    def _serve(self, h: BaseHTTPRequestHandler, body: bool) -> None:
        with self._lock:
            self.requests.append(Request(h.command, h.path, {k: v for k, v in h.headers.items()}))
            route = self.routes.get(h.path)
            if route is not None:
                route.hits += 1
                drop_now = route.drop_at is not None and route.drops > 0
                if drop_now and body:
                    route.drops -= 1
        if route is None:
            h.send_error(404, "Not Found")
            return
        if route.status is not None:
            h.send_error(route.status)
            return
        if route.redirect_to is not None:
            h.send_response(302)
            h.send_header("Location", route.redirect_to)
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        data = route.data
        total = len(data)
        start = 0
        rng = h.headers.get("Range")
        if_range = h.headers.get("If-Range")
        if rng and not route.ignore_range and (if_range is None or if_range == route.etag):
            m = re.fullmatch(r"bytes=(\d+)-", rng.strip())
            if m:
                start = int(m.group(1))
                if start >= total:
                    h.send_response(416)
                    h.send_header("Content-Range", f"bytes */{total}")
                    h.send_header("Content-Length", "0")
                    h.end_headers()
                    return
        if start:
            h.send_response(206)
            shown = start + 10 if route.bad_range else start
            h.send_header("Content-Range", f"bytes {shown}-{total - 1}/{total}")
        else:
            h.send_response(200)
        length = route.fake_length if (route.fake_length is not None and not start) else total - start
        h.send_header("Content-Length", str(length))
        h.send_header("Accept-Ranges", "bytes")
        h.send_header("Content-Type", "application/octet-stream")
        if route.etag:
            h.send_header("ETag", route.etag)
        h.end_headers()
        if not body:
            return
        pos = start
        stalled = False
        try:
            while pos < total:
                if route.stall_at is not None and pos == route.stall_at and not stalled:
                    stalled = True  # also when a resumed request starts right there
                    self.stopping.wait(route.stall_for)
                    if self.stopping.is_set():
                        return
                end = min(total, pos + route.chunk)
                if drop_now and route.drop_at is not None and pos < route.drop_at <= end:
                    end = route.drop_at
                if route.stall_at is not None and pos < route.stall_at <= end:
                    end = route.stall_at
                h.wfile.write(data[pos:end])
                h.wfile.flush()
                pos = end
                if drop_now and pos == route.drop_at:
                    h.connection.shutdown(socket.SHUT_RDWR)
                    h.close_connection = True
                    return
                if route.chunk_delay:
                    time.sleep(route.chunk_delay)
        except (BrokenPipeError, ConnectionResetError, OSError):
            return  # the client went away (timeout tests)
