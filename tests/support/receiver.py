"""A real HTTP server that receives callbacks, records them and can misbehave on cue.

``plan`` says how to answer the next requests, one entry each, then 200:
``"503"``; ``"302"`` (to ``/moved``); ``"stall"`` (say nothing for ``slow_seconds``);
``"drip"`` (send the status line, then one header byte every 0.1 s for ``slow_seconds``,
which never trips a per-read timeout). Slow answers stop early when the client hangs up.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import orjson

STATUS = {"200": 200, "503": 503, "302": 302, "stall": 200, "drip": 200}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int
    how: str = "200"
    method: str = "POST"
    at: float = field(default_factory=time.time)
    ended: float | None = None  # when the exchange ended, either way
    answered: bool = False  # the whole answer was written
    hung_up: bool = False  # the client closed before the answer was complete

    @property
    def json(self) -> Any:
        return orjson.loads(self.body)


class CallbackReceiver:
    def __init__(self, port: int = 0, slow_seconds: float = 8.0) -> None:
        self.received: list[Received] = []
        self.plan: list[str] = []
        self.fail_first = 0  # answer 503 to this many requests first (after the plan)
        self.slow_seconds = slow_seconds
        self.in_flight = 0
        self.max_in_flight = 0
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802
                body = self.rfile.read(int(self.headers.get("content-length", 0)))
                rec = receiver._arrived(self, body)
                try:
                    rec.hung_up = self._answer(rec)
                    rec.answered = not rec.hung_up
                except OSError:
                    rec.hung_up = True
                finally:
                    with receiver.lock:
                        receiver.in_flight -= 1
                        rec.ended = time.time()

            do_GET = do_POST  # noqa: N815 - a followed 302 would come back as a GET

            def _answer(self, rec: Received) -> bool:
                """Send the planned answer; True when the client hung up first."""
                if rec.how == "stall" and self._hung_up_within(receiver.slow_seconds):
                    return True
                if rec.how == "drip":
                    self.wfile.write(b"HTTP/1.1 200 OK\r\nX-Drip: ")
                    deadline = time.monotonic() + receiver.slow_seconds
                    while time.monotonic() < deadline:
                        if self._hung_up_within(0.1):
                            return True
                        self.wfile.write(b"a")
                    self.wfile.write(b"\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")
                    return False
                self.send_response(rec.status)
                if rec.status == 302:
                    self.send_header("location", "/moved")
                self.send_header("content-length", "2")
                self.end_headers()
                self.wfile.write(b"ok")
                return False

            def _hung_up_within(self, seconds: float) -> bool:
                deadline = time.monotonic() + seconds
                while (left := deadline - time.monotonic()) > 0:
                    readable, _, _ = select.select([self.connection], [], [], min(left, 0.05))
                    if readable and not self.connection.recv(1, socket.MSG_PEEK):
                        return True
                return False

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.port = int(self.server.server_address[1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def _arrived(self, handler: BaseHTTPRequestHandler, body: bytes) -> Received:
        with self.lock:
            if self.plan:
                how = self.plan.pop(0)
            elif self.fail_first > 0:
                how, self.fail_first = "503", self.fail_first - 1
            else:
                how = "200"
            rec = Received(handler.path, {k.lower(): v for k, v in handler.headers.items()},
                           body, STATUS[how], how, handler.command)
            self.received.append(rec)
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        return rec

    def __enter__(self) -> CallbackReceiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()

    def delivered(self) -> list[Received]:
        """Requests answered 200 at once: the ones the gateway counts as delivered."""
        with self.lock:
            return [r for r in self.received if r.status == 200 and r.how == "200"]

    def wait_for(self, count: int, timeout: float = 30) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if len(self.delivered()) >= count:
                return self.delivered()
            time.sleep(0.05)
        raise AssertionError(f"expected {count} callbacks, got {len(self.delivered())}")
