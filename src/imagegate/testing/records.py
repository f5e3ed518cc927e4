"""The data the fakes exchange with tests: faults to inject, requests recorded, responses.

Separate from the server so tests and the control plane can build these without a loop.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field, fields
from typing import Any

import orjson


@dataclass(frozen=True)
class Fault:
    """One misbehaviour to inject; fields combine (e.g. a delay, then a 429 with Retry-After)."""

    status: int | None = None
    code: str | None = None
    message: str | None = None
    retry_after: float | None = None
    delay: float = 0.0
    hang: bool = False
    reset: bool = False
    malformed_json: bool = False
    truncated_b64: bool = False
    html: bool = False
    safety: str | None = None
    block_reason: str | None = None
    url_response: bool = False
    image_bytes: int | None = None
    quota_id: str | None = None  # Gemini 429: the QuotaFailure violated, e.g. a per-day one
    text_only: str | None = None  # Gemini: the model answers in words (finishReason STOP)
    stream_cut: int | None = None  # a stream: the connection drops after this many events

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fault:
        """Build from JSON (the control endpoints); unknown keys are an error."""
        names = {f.name for f in fields(cls)}
        unknown = set(data) - names
        if unknown:
            raise ValueError(f"unknown fault fields: {sorted(unknown)}")
        return cls(**data)


@dataclass(frozen=True)
class RecordedRequest:
    """What arrived, byte for byte, so tests can assert on what the gateway really sent."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    json: Any
    time: float
    query: dict[str, str] = field(default_factory=dict)
    connection: int = 0  # which TCP connection carried it (keep-alive checks)
    fault: Fault | None = None

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["body"] = self.body.decode("utf-8", "replace")
        return data


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    content_type: str = "application/json"
    # a streamed body (Server-Sent Events): chunks sent as they come, chunked encoding
    stream: AsyncIterator[bytes] | None = None


def json_response(status: int, payload: Any, headers: list[tuple[str, str]] | None = None,
                  ) -> Response:
    return Response(status, orjson.dumps(payload), list(headers or []))


def format_retry_after(value: float) -> str:
    """Integer seconds when whole (the common form), else the float as text."""
    return str(int(value)) if float(value).is_integer() else str(value)


def new_request_id() -> str:
    return uuid.uuid4().hex
