"""A Server-Sent Events reader for upstream streams (the WHATWG event-stream format).

Image events carry megabytes of base64 on one ``data:`` line, so lines are not read with a
line-length limit (aiohttp's ``readline`` refuses long lines): the body is read in chunks
and split on blank lines, with a cap on one event's size.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson

from imagegate.providers.base import UpstreamUnavailable

_BOUNDARY = re.compile(rb"\r\n\r\n|\n\n|\r\r")
_LINE = re.compile(rb"\r\n|\n|\r")


class EventTooLarge(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class Event:
    event: str | None
    data: str


def parse(block: bytes) -> Event | None:
    """One event's lines; None for a block of comments only."""
    name: str | None = None
    data: list[str] = []
    for raw in _LINE.split(block):
        line = raw.decode("utf-8", "replace")
        if not line or line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if field == "event":
            name = value
        elif field == "data":
            data.append(value)
    if not data and name is None:
        return None
    return Event(name, "\n".join(data))


async def events(response: aiohttp.ClientResponse, max_event: int) -> AsyncIterator[Event]:
    """Each event as soon as its closing blank line arrived."""
    buffer = bytearray()
    scanned = 0
    async for chunk in response.content.iter_any():
        buffer += chunk
        while True:
            found = _BOUNDARY.search(buffer, max(0, scanned - 3))
            if found is None:
                scanned = len(buffer)
                if scanned > max_event:
                    raise EventTooLarge(f"an event over {max_event} bytes")
                break
            block = bytes(buffer[:found.start()])
            del buffer[:found.end()]
            scanned = 0
            event = parse(block)
            if event is not None:
                yield event
    if buffer.strip():
        event = parse(bytes(buffer))
        if event is not None:
            yield event


def json_object(channel: str, event: Event, what: str) -> dict[str, Any]:
    """An event's data as a JSON object; anything else is the upstream's fault, named as
    ``what`` (Gemini sends chunks, OpenAI events)."""
    try:
        data = orjson.loads(event.data)
    except orjson.JSONDecodeError:
        raise UpstreamUnavailable(f"upstream {channel} sent {what} that is not JSON") from None
    if not isinstance(data, dict):
        raise UpstreamUnavailable(f"upstream {channel} sent {what} that is not an object")
    return data
