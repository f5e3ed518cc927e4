"""Streamed answers of the fake upstreams (Server-Sent Events), and how tests steer them.

A fake answers a stream with a :class:`Response` whose ``stream`` yields its events; they
go out chunked, each flushed as it comes, as a real upstream's do. Tests can hold every
stream after its first event (to see what reached a client meanwhile) and cut one after
some events (``Fault.stream_cut``).
"""

from __future__ import annotations

import asyncio
import email.utils
import http
import threading
from collections.abc import AsyncIterator
from typing import Any

import h11

from imagegate.testing.records import Fault, Response


class StreamingFake:
    """Mixed into FakeServer."""

    server_header: Any
    _lock: threading.Condition

    def _init_streams(self) -> None:
        self._gate = threading.Event()  # cleared: streams wait before their next event
        self._gate.set()
        self._streams_finished = 0

    def _reset_streams(self) -> None:
        with self._lock:
            self._streams_finished = 0
        self._gate.set()

    def hold_streams(self) -> None:
        """Streams stop before their next event (each sends its first, then waits) until
        :meth:`release_streams`: a test can see what reached the client meanwhile."""
        self._gate.clear()

    def release_streams(self) -> None:
        self._gate.set()

    @property
    def streams_finished(self) -> int:
        """Streamed answers sent to their end."""
        with self._lock:
            return self._streams_finished

    async def events(self, frames: list[bytes], fault: Fault | None) -> AsyncIterator[bytes]:
        """A stream's events one by one: the first at once, each next one once the gate is
        open; ``fault.stream_cut`` drops the connection after that many."""
        for sent, chunk in enumerate(frames):
            if fault is not None and fault.stream_cut is not None and sent >= fault.stream_cut:
                raise ConnectionResetError("stream_cut")
            while sent and not self._gate.is_set():  # noqa: ASYNC110 - set from test threads
                await asyncio.sleep(0.01)
            yield chunk
        with self._lock:
            self._streams_finished += 1

    async def _send_stream(self, conn: h11.Connection, writer: asyncio.StreamWriter,
                           response: Response) -> None:
        """No content-length: h11 sends it chunked, each chunk flushed as it comes."""
        assert response.stream is not None
        headers = [("content-type", response.content_type),
                   ("date", email.utils.formatdate(usegmt=True)),
                   ("server", self.server_header), *response.headers]
        phrase = http.HTTPStatus(response.status).phrase.encode()
        writer.write(conn.send(h11.Response(status_code=response.status, headers=headers,
                                            reason=phrase)) or b"")
        await writer.drain()
        try:
            async for chunk in response.stream:
                writer.write(conn.send(h11.Data(data=chunk)) or b"")
                await writer.drain()
        except ConnectionResetError:
            writer.transport.abort()
            raise
        writer.write(conn.send(h11.EndOfMessage()) or b"")
        await writer.drain()


def gemini_chunks(whole: dict[str, Any]) -> list[dict[str, Any]]:
    """A whole generateContent answer as streamGenerateContent sends it: one part a chunk,
    the last chunk with the finishReason and the usageMetadata (a blocked prompt: its one
    chunk)."""
    candidates = whole.get("candidates")
    if not candidates:
        return [whole]
    envelope = {k: whole[k] for k in ("modelVersion", "responseId") if k in whole}
    candidate = candidates[0]
    parts = (candidate.get("content") or {}).get("parts") or []
    chunks = [{"candidates": [{"content": {"role": "model", "parts": [part]}, "index": 0}],
               **envelope} for part in parts[:-1]]
    last = {**candidate}
    if parts:
        last["content"] = {"role": "model", "parts": parts[-1:]}
    chunks.append({"candidates": [last], "usageMetadata": whole.get("usageMetadata"),
                   **envelope})
    return chunks
