"""The HTTP side of the local provider servers: recording, fault injection, lifecycle, control.

A provider fake subclasses ``FakeProviderServer`` and implements two methods:
``handle_api(request) -> Reply`` (the provider's real behaviour) and
``render_fault(fault, request) -> Reply`` (how that provider says "429", "500", ...).
Everything else lives here:

* every API request is recorded (method, path, lower-cased headers, parsed body, time,
  the status answered) and can be read with ``requests()`` and cleared with ``clear()``;
* faults are injected at run time from Python (``fail_next``, ``set_failure_rate``,
  ``set_latency``, ``go_down``) or over HTTP on ``/_fake/...`` (see ``_control``), so a
  server started as a process (``python -m ...``, see ``fakes.run_cli``) can be steered;
* ``start() -> base_url`` binds a free 127.0.0.1 port; ``stop()``; a context manager.

The HTTP layer is the standard library's ``ThreadingHTTPServer`` speaking HTTP/1.1 with
keep-alive, one thread per connection, one ``write`` per response: a hung or slow request
never blocks the others, and loopback throughput is well above 1,000 requests/s.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import time
from collections import deque
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self
from urllib.parse import parse_qsl, urlsplit

from return_notify.channels.fakes import (
    Fault,
    FaultKind,
    FaultPlan,
    RecordedRequest,
    Reply,
    json_reply,
)

logger = logging.getLogger(__name__)

class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    timeout = 60  # idle keep-alive connections end, so their threads do too
    server: _HTTPServer

    def setup(self) -> None:
        super().setup()
        self.server.fake._track(self.connection, add=True)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.fake._track(self.connection, add=False)

    def do_GET(self) -> None:
        self.server.fake._dispatch(self)

    do_POST = do_GET
    do_DELETE = do_GET
    do_PUT = do_GET

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        logger.debug("%s " + format, self.server.fake.name, *args)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True
    request_queue_size = 256
    fake: FakeProviderServer


def parse_body(content_type: str, raw: bytes) -> Any:
    """Form bodies become ``dict[str, str]`` (last value wins), JSON is decoded, else None."""
    ctype = content_type.split(";")[0].strip().lower()
    try:
        if ctype == "application/x-www-form-urlencoded":
            return dict(parse_qsl(raw.decode("utf-8"), keep_blank_values=True))
        if ctype.endswith("json") or (raw[:1] in (b"{", b"[")):
            return json.loads(raw) if raw else None
    except (UnicodeDecodeError, ValueError):
        return None
    return None


class FakeProviderServer:
    """Base class of the local provider servers (see the module docstring)."""

    name = "fake"

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        latency_ms: float = 0.0,
        seed: int | None = None,
        max_records: int = 100_000,
    ) -> None:
        self.host = host
        self.port = port
        self.faults = FaultPlan(seed)
        self.faults.latency_s = latency_ms / 1000.0
        self._records: deque[RecordedRequest] = deque(maxlen=max_records)
        self._records_lock = threading.Lock()
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._lifecycle = threading.RLock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._down_timer: threading.Timer | None = None
        self._down = False

    # --- provider hooks ---------------------------------------------------------------
    def handle_api(self, request: RecordedRequest) -> Reply:
        raise NotImplementedError

    def render_fault(self, fault: Fault, request: RecordedRequest) -> Reply:
        raise NotImplementedError

    # --- lifecycle ----------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> str:
        """Listen on ``host:port`` (port 0: a free one) and serve in a thread; return the URL."""
        with self._lifecycle:
            if self._httpd is None:
                self._stopping.clear()
                self._listen()
        logger.info("%s fake listening on %s", self.name, self.base_url)
        return self.base_url

    def _listen(self) -> None:
        httpd = _HTTPServer((self.host, self.port), _Handler)
        httpd.fake = self
        self.port = httpd.server_address[1]
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.1},
            name=f"{self.name}-fake", daemon=True,
        )
        self._thread.start()

    def _close_listener(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
            self._httpd = None
        with self._conns_lock:
            conns = list(self._conns)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self) -> None:
        with self._lifecycle:
            self._stopping.set()  # wakes hung and slow requests
            if self._down_timer is not None:
                self._down_timer.cancel()
                self._down_timer = None
            self._down = False
            self._close_listener()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def go_down(self, seconds: float) -> None:
        """Refuse connections (listener closed, open connections cut) for ``seconds``."""
        with self._lifecycle:
            self._down = True
            self._close_listener()
            self._down_timer = threading.Timer(seconds, self._come_back)
            self._down_timer.daemon = True
            self._down_timer.start()

    def _come_back(self) -> None:
        with self._lifecycle:
            if not self._down or self._stopping.is_set():
                return
            for _ in range(50):  # the port is ours; retry briefly if the kernel lags
                try:
                    self._listen()
                    break
                except OSError:
                    time.sleep(0.05)
            self._down = False

    # --- fault injection ----------------------------------------------------------------
    def fail_next(self, count: int, kind: FaultKind, **options: Any) -> None:
        """The next ``count`` API calls fail with ``Fault(kind, **options)``."""
        self.faults.fail_next(count, Fault(kind, **options))

    def set_failure_rate(self, rate: float, kind: FaultKind = "server_error", **options: Any) -> None:
        """Each API call fails with probability ``rate`` (0 turns it off)."""
        self.faults.set_rate(rate, Fault(kind, **options))

    def set_latency(self, ms: float) -> None:
        """Answer every API call after ``ms`` milliseconds."""
        self.faults.latency_s = max(0.0, ms) / 1000.0

    def reset(self) -> None:
        """No faults, no latency, no records."""
        self.faults.reset()
        self.clear()

    # --- records ------------------------------------------------------------------------
    def requests(self, path_contains: str | None = None) -> list[RecordedRequest]:
        with self._records_lock:
            items = list(self._records)
        return [r for r in items if path_contains is None or path_contains in r.path]

    def clear(self) -> None:
        with self._records_lock:
            self._records.clear()

    def _track(self, conn: socket.socket, add: bool) -> None:
        with self._conns_lock:
            if add:
                self._conns.add(conn)
            else:
                self._conns.discard(conn)

    # --- HTTP ---------------------------------------------------------------------------
    def _dispatch(self, handler: _Handler) -> None:
        length = int(handler.headers.get("Content-Length") or 0)
        raw = handler.rfile.read(length) if length else b""
        split = urlsplit(handler.path)
        headers = {k.lower(): v for k, v in handler.headers.items()}
        request = RecordedRequest(
            method=handler.command, path=split.path, query=dict(parse_qsl(split.query)),
            headers=headers, body=parse_body(headers.get("content-type", ""), raw),
            raw=raw, time=time.time(),
        )
        if self._down:
            handler.close_connection = True
            return
        if split.path.startswith("/_fake/"):
            self._write(handler, self._control(request))
            return
        fault = self.faults.next_fault()
        if fault is not None and fault.kind == "drop":
            self._record(request)
            handler.close_connection = True
            return
        if fault is not None and fault.kind != "hang":
            reply = self.render_fault(fault, request)
            reply.headers.update(fault.headers)
        else:
            reply = self.handle_api(request)
        request.status = reply.status
        self._record(request)
        delay = self.faults.latency_s + (fault.seconds if fault is not None else 0.0)
        if delay > 0 and self._stopping.wait(delay):
            handler.close_connection = True
            return
        self._write(handler, reply)

    def _record(self, request: RecordedRequest) -> None:
        with self._records_lock:
            self._records.append(request)

    @staticmethod
    def _write(handler: _Handler, reply: Reply) -> None:
        try:
            reason = HTTPStatus(reply.status).phrase
        except ValueError:
            reason = ""
        lines = [f"HTTP/1.1 {reply.status} {reason}"]
        headers = {"Content-Length": str(len(reply.body)), **reply.headers}
        if reply.body:
            headers.setdefault("Content-Type", reply.content_type)
        if handler.close_connection:
            headers["Connection"] = "close"
        lines += [f"{k}: {v}" for k, v in headers.items()]
        data = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + reply.body
        try:
            handler.wfile.write(data)
        except OSError:
            handler.close_connection = True

    def _control(self, request: RecordedRequest) -> Reply:
        """``/_fake/...``: GET|DELETE requests, POST faults|failure-rate|latency|down|reset."""
        body = request.body if isinstance(request.body, dict) else {}
        action = request.path.removeprefix("/_fake/").strip("/")
        try:
            if action == "requests" and request.method == "GET":
                return json_reply(200, [r.to_json() for r in self.requests()])
            if action == "requests" and request.method == "DELETE":
                self.clear()
            elif action == "faults":
                options = {k: v for k, v in body.items() if k not in ("kind", "count")}
                self.fail_next(int(body.get("count", 1)), body["kind"], **options)
            elif action == "failure-rate":
                options = {k: v for k, v in body.items() if k not in ("kind", "rate")}
                self.set_failure_rate(float(body["rate"]), body.get("kind", "server_error"), **options)
            elif action == "latency":
                self.set_latency(float(body["ms"]))
            elif action == "down":
                seconds = float(body["seconds"])
                threading.Thread(target=self.go_down, args=(seconds,), daemon=True).start()
            elif action == "reset":
                self.reset()
            else:
                return json_reply(404, {"error": f"unknown control action {action!r}"})
        except (KeyError, TypeError, ValueError) as exc:
            return json_reply(400, {"error": f"{type(exc).__name__}: {exc}"})
        return json_reply(200, {"ok": True})

