"""OpenAI's streamed Images API: ``stream: true`` (and ``partial_images``) on
``/v1/images/generations`` and ``/v1/images/edits``.

The answer is Server-Sent Events, each ``event: <type>`` then ``data: <json>`` whose
``type`` is ``image_generation.partial_image`` / ``image_generation.completed`` (edits:
``image_edit.*``), with ``b64_json``, ``partial_image_index`` (partials), ``size``,
``quality``, ``background``, ``output_format``, ``created_at`` and ``usage`` (completed):
openai-python's ImageGenPartialImageEvent, ImageGenCompletedEvent, ImageEditPartialImageEvent
and ImageEditCompletedEvent, parsed by its ``Stream`` (an event whose data has ``error``
raises APIError). Events carry no image number: with ``n`` > 1 each completed event closes
one image, and partials belong to the image not yet completed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from imagegate.providers import http, sse
from imagegate.providers.base import (
    ContentBlocked,
    EditRequest,
    GeneratedImage,
    ImageRequest,
    ProviderError,
    UpstreamAuthError,
    UpstreamUnavailable,
)
from imagegate.providers.client import UpstreamResponse
from imagegate.providers.openai_edits import edit_form
from imagegate.providers.streaming import FinalImage, PartialImage, StreamEvent

if TYPE_CHECKING:
    from imagegate.providers.openai import OpenAIProvider

MAX_EVENT = 96 * 1024 * 1024  # a 4K PNG as base64, with room to spare


async def stream(provider: OpenAIProvider, request: ImageRequest) -> AsyncIterator[StreamEvent]:
    from imagegate.providers.openai import meta_of

    channel = f"{provider.name}/{request.upstream_model}"
    if not provider.api_key:
        raise UpstreamAuthError(f"upstream {channel} has no API key: set {provider.key_env}")
    body = provider.body(request)
    body["stream"] = True
    body["partial_images"] = request.partial_images
    edit = isinstance(request, EditRequest)
    payload: dict[str, Any] = ({"data": edit_form(body, request)} if edit  # type: ignore[arg-type]
                               else {"json": body})
    url = provider.endpoint(request, "edits" if edit else "generations")
    headers = {**await provider.auth_headers(channel), "accept": "text/event-stream"}
    done = 0
    try:
        async with provider.client.stream("POST", url, headers=headers, **payload) as response:
            if response.status != 200:
                answer = UpstreamResponse(response.status, response.headers,
                                          await response.content.read(1 << 20))
                raise provider.classify(channel, answer)
            if response.content_type == "application/json":
                # an OpenAI-compatible upstream that ignores `stream` answers whole
                whole = UpstreamResponse(200, response.headers, await response.read())
                result = await provider.result_of(channel, http.json_body(whole))
                for image in result.images:
                    yield FinalImage(done, image, result.usage if not done else None,
                                     result.meta)
                    done += 1
                return
            async for event in sse.events(response, MAX_EVENT):
                if event.data.strip() == "[DONE]":
                    break
                data = sse.json_object(channel, event, "an event")
                kind = str(data.get("type") or event.event or "")
                if event.event == "error" or kind == "error" or "error" in data:
                    raise _stream_error(channel, data, provider.scrub)
                if kind.endswith(".partial_image"):
                    index = data.get("partial_image_index")
                    image = http.decode_b64(channel, data.get("b64_json"))
                    yield PartialImage(done, index if isinstance(index, int) else 0, image,
                                       await http.checked_image(channel, image), meta_of(data))
                elif kind.endswith(".completed"):
                    image = http.decode_b64(channel, data.get("b64_json"))
                    mime = await http.checked_image(channel, image)
                    usage = data.get("usage") if isinstance(data.get("usage"), dict) else None
                    yield FinalImage(done, GeneratedImage(image, mime), usage, meta_of(data))
                    done += 1
    except http.TransportError as e:
        raise http.transport_error(channel, e) from None
    except sse.EventTooLarge as e:
        raise UpstreamUnavailable(f"upstream {channel} sent {e}") from None
    if not done:
        raise UpstreamUnavailable(f"upstream {channel} ended its stream before an image was "
                                  "completed")


def _stream_error(channel: str, data: dict[str, Any], scrub: http.Scrubber) -> ProviderError:
    error = data.get("error") if isinstance(data.get("error"), dict) else data
    message = error.get("message") if isinstance(error, dict) else None
    text = scrub(str(message))[:300] if message else "an error event"
    if isinstance(error, dict) and error.get("code") in http.MODERATION_CODES:
        return ContentBlocked(text)
    return UpstreamUnavailable(f"upstream {channel} failed mid-stream: {text}")
