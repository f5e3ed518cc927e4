"""Gemini's ``streamGenerateContent?alt=sse``: the nano-banana family, streamed.

Each Server-Sent Event is ``data: <GenerateContentResponse JSON>`` (no ``event:`` line),
as googleapis/python-genai reads it (``_api_client.py``: lines prefixed ``data: ``). Every
chunk carries some of the candidate's parts; the last one its ``finishReason`` and the
``usageMetadata``. Gemini 3 Pro Image "thinks" first and may send up to two interim
images as parts with ``thought: true`` (the Gemini API's image generation guide, "thinking
process"): those become partial images. The answer's own image part is the final image;
refusals arrive as in a whole answer (``promptFeedback.blockReason``, a safety
``finishReason``), so the whole-answer rules judge the chunks put together.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from imagegate.providers import http, sse
from imagegate.providers.base import (
    ContentBlocked,
    ImageRequest,
    UpstreamUnavailable,
)
from imagegate.providers.client import UpstreamResponse
from imagegate.providers.streaming import FinalImage, PartialImage, StreamEvent

if TYPE_CHECKING:
    from imagegate.providers.gemini import GeminiProvider

MAX_EVENT = 96 * 1024 * 1024


async def stream(provider: GeminiProvider, request: ImageRequest) -> AsyncIterator[StreamEvent]:
    from imagegate.providers.gemini import _get

    channel = f"{provider.name}/{request.upstream_model}"
    headers = await provider.auth_headers(channel)
    url = provider.endpoint(request).replace(":generateContent", ":streamGenerateContent")
    url += ("&" if "?" in url else "?") + "alt=sse"
    answer: list[dict[str, Any]] = []  # the candidate's parts that are not thoughts
    reason: Any = None
    message: Any = None
    usage: dict[str, Any] | None = None
    drafts = 0
    try:
        async with provider.client.stream("POST", url, json=provider.body(request),
                                          headers=headers) as response:
            if response.status != 200:
                whole = UpstreamResponse(response.status, response.headers,
                                         await response.content.read(1 << 20))
                raise provider.classify(channel, whole)
            async for event in sse.events(response, MAX_EVENT):
                chunk = sse.json_object(channel, event, "a chunk")
                if isinstance(chunk.get("error"), dict):
                    error = chunk["error"]
                    raise UpstreamUnavailable(
                        f"upstream {channel} failed mid-stream: "
                        f"{provider.scrub(str(error.get('message')))[:300]}")
                feedback = chunk.get("promptFeedback") or {}
                if isinstance(feedback, dict) and feedback.get("blockReason"):
                    raise ContentBlocked(provider._explain(
                        "the prompt was blocked", feedback["blockReason"],
                        feedback.get("blockReasonMessage")))
                if isinstance(chunk.get("usageMetadata"), dict):
                    usage = chunk["usageMetadata"]
                candidates = [c for c in chunk.get("candidates") or [] if isinstance(c, dict)]
                if not candidates:
                    continue
                candidate = candidates[0]
                reason = candidate.get("finishReason") or reason
                message = candidate.get("finishMessage") or message
                for part in (candidate.get("content") or {}).get("parts") or []:
                    if not isinstance(part, dict):
                        continue
                    inline = _get(part, "inlineData", "inline_data")
                    if not part.get("thought"):
                        answer.append(part)
                    elif isinstance(inline, dict) and inline.get("data"):
                        if drafts < request.partial_images:
                            data = http.decode_b64(channel, inline["data"])
                            yield PartialImage(0, drafts, data,
                                               await http.checked_image(channel, data))
                        drafts += 1
    except http.TransportError as e:
        raise http.transport_error(channel, e) from None
    except sse.EventTooLarge as e:
        raise UpstreamUnavailable(f"upstream {channel} sent {e}") from None
    if not answer and reason is None:
        raise UpstreamUnavailable(f"upstream {channel} ended its stream without an answer")
    candidate = {"content": {"parts": answer}, "finishReason": reason, "finishMessage": message}
    image = await provider._image(channel, candidate)
    yield FinalImage(0, image, usage)
