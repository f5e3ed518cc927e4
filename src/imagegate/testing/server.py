"""A tiny asyncio + h11 HTTP/1.1 server that the fake upstreams build on.

Why not uvicorn/starlette: faults such as "hang forever", "RST the socket" or "garbage
bytes" need control over the raw connection, and tests must be able to hold thousands of
requests open without a thread each. One daemon thread runs one event loop per fake.
"""

from __future__ import annotations

import asyncio
import contextlib
import email.utils
import http
import logging
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from typing import Any, ClassVar, Self, TypeVar
from urllib.parse import parse_qsl, urlsplit

import h11
import orjson

from imagegate.testing.records import (
    Fault,
    RecordedRequest,
    Response,
    format_retry_after,
    json_response,
)
from imagegate.testing.streams import StreamingFake

T = TypeVar("T")
logger = logging.getLogger(__name__)

_CLOSE = object()  # sentinel: the connection is finished, do not read another request


_HTML_PAGE = """<html>
<head><title>{status} {reason}</title></head>
<body>
<center><h1>{status} {reason}</h1></center>
<hr><center>cloudflare</center>
</body>
</html>
"""


class FakeServer(StreamingFake):
    """Base class: sockets, keep-alive, fault queue, recording. Subclasses speak a protocol."""

    kind: ClassVar[str] = "generic"
    server_header: ClassVar[str] = "fake-upstream"
    retry_after_header: ClassVar[bool] = True  # Google puts the delay in the body instead

    def __init__(self, api_key: str, *, host: str = "127.0.0.1", port: int = 0,
                 latency: float = 0.0) -> None:
        self.api_key = api_key
        self.host = host
        self.port = port
        self.latency = latency  # added before every successful generation
        self._lock = threading.Condition()
        self._script: deque[Fault] = deque()
        self._always: Fault | None = None
        self._requests: list[RecordedRequest] = []
        self._connections_opened = 0
        self._startup_error: BaseException | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._stopping: asyncio.Event | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._writers: dict[asyncio.Task[Any], asyncio.StreamWriter] = {}
        self._init_streams()

    # ----- lifecycle -------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        host = "127.0.0.1" if self.host in ("", "0.0.0.0", "::") else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> Self:
        """Bind now (so base_url is known at once) and serve from a daemon thread."""
        if self._thread is not None:
            return self
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self.port))
        sock.listen(4096)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        self._executor = ThreadPoolExecutor(max_workers=4, thread_name_prefix=f"fake-{self.kind}")
        self._loop = asyncio.new_event_loop()
        ready = threading.Event()
        self._startup_error = None
        self._thread = threading.Thread(target=self._run, args=(sock, ready), daemon=True,
                                        name=f"fake-{self.kind}-{self.port}")
        self._thread.start()
        if not ready.wait(10) or self._startup_error is not None:
            self.stop()
            raise RuntimeError(f"fake {self.kind} server did not start") from self._startup_error
        return self

    def stop(self) -> None:
        """Close every connection (held ones included) and join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if self._stopping is not None:
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(self._stopping.set)
        thread.join(10)
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
        self._loop = self._thread = self._stopping = self._executor = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return self.start()

    async def __aexit__(self, *exc: object) -> None:
        self.stop()

    def _run(self, sock: socket.socket, ready: threading.Event) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_until_complete(self._serve(sock, ready))
        except BaseException as exc:
            self._startup_error = exc
            raise
        finally:
            ready.set()
            self._loop.close()

    async def _serve(self, sock: socket.socket, ready: threading.Event) -> None:
        self._stopping = asyncio.Event()
        server = await asyncio.start_server(self._on_connection, sock=sock, limit=1 << 20)
        ready.set()
        await self._stopping.wait()
        server.close()
        for task, writer in list(self._writers.items()):
            writer.transport.abort()
            task.cancel()
        if self._writers:
            await asyncio.wait(list(self._writers), timeout=5)
        await server.wait_closed()

    # ----- faults and recording ---------------------------------------------------------
    def script(self, *faults: Fault | None) -> None:
        """Queue faults: the k-th request from now consumes the k-th (None = succeed)."""
        with self._lock:
            self._script.extend(faults)  # type: ignore[arg-type]

    def always(self, fault: Fault | None) -> None:
        """Apply ``fault`` to every request once the script is used up (None turns it off)."""
        with self._lock:
            self._always = fault

    def reset(self) -> None:
        with self._lock:
            self._script.clear()
            self._always = None
            self._requests.clear()
        self._reset_streams()

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    @property
    def connections_opened(self) -> int:
        """TCP connections accepted so far (keep-alive means this stays low)."""
        with self._lock:
            return self._connections_opened

    @property
    def active_connections(self) -> int:
        """Connections open right now (did the client give up on a hung request?)."""
        return len(self._writers)

    def wait_for_requests(self, count: int, timeout: float = 5.0) -> list[RecordedRequest]:
        """Block until ``count`` requests were recorded (for hung-request tests)."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self._requests) >= count, timeout):
                raise TimeoutError(f"only {len(self._requests)} of {count} requests arrived")
            return list(self._requests)

    async def await_requests(self, count: int, within: float = 5.0) -> list[RecordedRequest]:
        """The same from async code, without blocking the caller's loop."""
        deadline = time.monotonic() + within
        while len(self.requests) < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {len(self.requests)} of {count} requests arrived")
            await asyncio.sleep(0.005)
        return self.requests

    def _next_fault(self) -> Fault | None:
        with self._lock:
            if self._script:
                return self._script.popleft()
            return self._always

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self._requests.append(request)
            self._lock.notify_all()

    # ----- protocol hooks (subclasses) ----------------------------------------------------
    async def handle(self, request: RecordedRequest, fault: Fault | None) -> Response:
        raise NotImplementedError

    def error_response(self, status: int, fault: Fault) -> Response:
        """The provider's own error body for an injected ``status``."""
        raise NotImplementedError

    def html_page(self, status: int) -> bytes:
        reason = _reason(status)
        return _HTML_PAGE.format(status=status, reason=reason).encode()

    async def run_sync(self, func: Callable[..., T], *args: Any) -> T:
        """Run CPU work (Pillow, base64) off the loop so other requests keep flowing."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, func, *args)

    # ----- connection handling ------------------------------------------------------------
    async def _on_connection(self, reader: asyncio.StreamReader,
                             writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._writers[task] = writer
        sock = writer.get_extra_info("socket")
        if sock is not None:  # answers go out at once, as a real upstream's would
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        with self._lock:
            self._connections_opened += 1
            conn_id = self._connections_opened
        conn = h11.Connection(h11.SERVER, max_incomplete_event_size=256 * 1024)
        try:
            while True:
                got = await self._read_request(conn, reader, writer)
                if got is None:
                    break
                if await self._dispatch(conn, reader, writer, conn_id, *got) is _CLOSE:
                    break
                if h11.MUST_CLOSE in (conn.our_state, conn.their_state):
                    break
                conn.start_next_cycle()
        except (ConnectionError, h11.ProtocolError, OSError):
            pass
        except asyncio.CancelledError:
            # Only stop() cancels us; ending normally keeps 3.11's streams callback quiet.
            pass
        finally:
            self._writers.pop(task, None)
            if not writer.transport.is_closing():
                writer.transport.close()

    async def _read_request(self, conn: h11.Connection, reader: asyncio.StreamReader,
                            writer: asyncio.StreamWriter) -> tuple[h11.Request, bytes] | None:
        request: h11.Request | None = None
        body = bytearray()
        while True:
            try:
                event = conn.next_event()
            except h11.RemoteProtocolError:
                if conn.our_state in (h11.IDLE, h11.SEND_RESPONSE):
                    await self._send(conn, writer, Response(400, b"bad request", [], "text/plain"))
                return None
            if event is h11.NEED_DATA:
                if conn.they_are_waiting_for_100_continue:
                    writer.write(conn.send(h11.InformationalResponse(status_code=100)))
                conn.receive_data(await reader.read(65536))
            elif isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                assert request is not None
                return request, bytes(body)
            else:  # ConnectionClosed or PAUSED
                return None

    async def _dispatch(self, conn: h11.Connection, reader: asyncio.StreamReader,
                        writer: asyncio.StreamWriter, conn_id: int, event: h11.Request,
                        body: bytes) -> object:
        target = urlsplit(event.target.decode("latin-1"))
        headers: dict[str, str] = {}
        for name, value in event.headers:
            key = name.decode("latin-1").lower()
            text = value.decode("latin-1")
            headers[key] = f"{headers[key]}, {text}" if key in headers else text
        parsed: Any = None
        if body:
            with contextlib.suppress(orjson.JSONDecodeError):
                parsed = orjson.loads(body)
        request = RecordedRequest(
            method=event.method.decode("ascii"), path=target.path, headers=headers, body=body,
            json=parsed, time=time.time(), query=dict(parse_qsl(target.query)),
            connection=conn_id)
        if request.path.startswith("/__fake__/"):
            await self._send(conn, writer, self._control(request))
            return None
        fault = self._next_fault()
        request = replace(request, fault=fault)
        self._record(request)
        if fault is not None:
            if fault.delay > 0:
                await asyncio.sleep(fault.delay)
            if fault.hang:
                while await reader.read(65536):
                    pass
                return _CLOSE
            if fault.reset:
                sock = writer.get_extra_info("socket")
                if sock is not None:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                writer.transport.abort()
                return _CLOSE
        try:
            response = await self._respond(request, fault)
        except Exception:  # a bug in the fake must show up as a 500, not a dead socket
            logger.exception("fake %s failed on %s %s", self.kind, request.method, request.path)
            response = Response(500, b'{"error": "fake upstream crashed"}')
        await self._send(conn, writer, response, head=request.method == "HEAD")
        return None

    async def _respond(self, request: RecordedRequest, fault: Fault | None) -> Response:
        if fault is None:
            return await self.handle(request, None)
        if fault.html:
            status = fault.status or 502
            response = Response(status, self.html_page(status), [], "text/html")
        elif fault.malformed_json:  # cut off; with image_bytes, inside that much base64
            body = b'{"created": 1700000000, "data": [{"b64_'
            if fault.image_bytes:
                body += b'json": "' + b"A" * fault.image_bytes
            response = Response(fault.status or 200, body)
        elif fault.status is not None and fault.status >= 400:
            response = self.error_response(fault.status, fault)
        else:
            response = await self.handle(request, fault)
        if fault.retry_after is not None and self.retry_after_header:
            response.headers.append(("retry-after", format_retry_after(fault.retry_after)))
        return response

    async def _send(self, conn: h11.Connection, writer: asyncio.StreamWriter,
                    response: Response, head: bool = False) -> None:
        if response.stream is not None:
            return await self._send_stream(conn, writer, response)
        headers = [
            ("content-type", response.content_type),
            ("content-length", str(len(response.body))),
            ("date", email.utils.formatdate(usegmt=True)),
            ("server", self.server_header),
            *response.headers,
        ]
        parts = [conn.send(h11.Response(status_code=response.status, headers=headers,
                                        reason=_reason(response.status).encode()))]
        if response.body and not head:
            parts.append(conn.send(h11.Data(data=response.body)))
        parts.append(conn.send(h11.EndOfMessage()))
        writer.write(b"".join(p for p in parts if p))
        await writer.drain()

    # ----- control plane (for `imagegate fake-upstream` users) ---------------------------
    def _control(self, request: RecordedRequest) -> Response:
        """/__fake__/{requests,count,script,always,reset}: drive a fake running in another
        process."""
        action = request.path.removeprefix("/__fake__/")
        try:
            if action == "requests" and request.method == "GET":
                return json_response(200, [r.to_dict() for r in self.requests])
            if action == "count" and request.method == "GET":  # cheap, for polling
                return json_response(200, {"requests": len(self._requests)})
            if action == "script" and request.method == "POST":
                items = request.json if isinstance(request.json, list) else [request.json]
                self.script(*(None if i is None else Fault.from_dict(i) for i in items))
            elif action == "always" and request.method == "POST":
                self.always(None if request.json is None else Fault.from_dict(request.json))
            elif action == "reset" and request.method == "POST":
                self.reset()
            else:
                return json_response(404, {"error": f"no control action {action!r}"})
        except (TypeError, ValueError) as exc:
            return json_response(400, {"error": str(exc)})
        return json_response(200, {"ok": True})


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
