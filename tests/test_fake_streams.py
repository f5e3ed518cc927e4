"""The fakes stream as the vendors do: the official openai SDK parses the fake OpenAI's
image events itself, and the fake Gemini's streamGenerateContent sends Server-Sent Events
of GenerateContentResponse chunks (thought drafts first for 3 Pro)."""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Iterator

import httpx
import openai
import orjson
import pytest
from PIL import Image

from imagegate.testing import FakeGemini, FakeOpenAI
from tests.support.edits import RED, picture

KEY = "sk-fake-streams-0123456789"


@pytest.fixture(scope="module")
def fake_openai() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key=KEY) as fake:
        yield fake


@pytest.fixture(scope="module")
def fake_gemini() -> Iterator[FakeGemini]:
    with FakeGemini(api_key=KEY) as fake:
        yield fake


@pytest.fixture()
def sdk(fake_openai: FakeOpenAI) -> Iterator[openai.OpenAI]:
    fake_openai.reset()
    yield openai.OpenAI(base_url=f"{fake_openai.base_url}/v1", api_key=KEY, max_retries=0,
                        timeout=20)
    fake_openai.reset()


def test_openai_sdk_parses_the_fakes_generation_stream(sdk: openai.OpenAI) -> None:
    events = list(sdk.images.generate(model="gpt-image-1", prompt="a kite", stream=True,
                                      partial_images=2, size="1536x1024", n=2))
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["ImageGenPartialImageEvent"] * 2 + ["ImageGenCompletedEvent"] + [
        "ImageGenPartialImageEvent"] * 2 + ["ImageGenCompletedEvent"]
    done = events[2]
    assert (done.size, done.quality, done.background, done.output_format) == (
        "1536x1024", "medium", "opaque", "png")
    assert done.usage.output_tokens > 0
    image = Image.open(io.BytesIO(base64.b64decode(done.b64_json)))
    assert image.size == (1536, 1024)


def test_openai_sdk_parses_the_fakes_edit_stream(sdk: openai.OpenAI) -> None:
    events = list(sdk.images.edit(model="gpt-image-1", image=("a.png", picture(RED)),
                                  prompt="bluer", stream=True))
    assert [e.type for e in events] == ["image_edit.completed"]  # partial_images 0
    assert events[0].usage.input_tokens_details.image_tokens > 0


def test_partial_images_out_of_range_is_openais_error(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="partial_images"):
        sdk.images.generate(model="gpt-image-1", prompt="x", stream=True, partial_images=4)


def test_a_held_stream_sends_its_first_event_only(sdk: openai.OpenAI,
                                                  fake_openai: FakeOpenAI) -> None:
    fake_openai.hold_streams()
    stream = sdk.images.generate(model="gpt-image-1", prompt="held", stream=True,
                                 partial_images=1)
    got: list[str] = []
    reader = threading.Thread(target=lambda: got.extend(e.type for e in stream))
    reader.start()
    reader.join(1.0)
    assert reader.is_alive() and fake_openai.streams_finished == 0
    fake_openai.release_streams()
    reader.join(20)
    assert got == ["image_generation.partial_image", "image_generation.completed"]
    assert fake_openai.streams_finished == 1


def test_gemini_stream_is_sse_chunks_with_thought_drafts(fake_gemini: FakeGemini) -> None:
    url = (f"{fake_gemini.base_url}/v1beta/models/gemini-3-pro-image-preview"
           ":streamGenerateContent")
    body = {"contents": [{"role": "user", "parts": [{"text": "a fox"}]}],
            "generationConfig": {"responseModalities": ["IMAGE"]}}
    r = httpx.post(url, params={"alt": "sse"}, json=body, headers={"x-goog-api-key": KEY})
    assert r.headers["content-type"].startswith("text/event-stream")
    chunks = [orjson.loads(line.removeprefix("data: ")) for line in r.text.split("\r\n\r\n")
              if line]
    parts = [c["candidates"][0]["content"]["parts"][0] for c in chunks]
    assert [bool(p.get("thought")) for p in parts] == [True, True, True, False]
    assert [("inlineData" in p) for p in parts] == [False, True, True, True]
    assert chunks[-1]["candidates"][0]["finishReason"] == "STOP"
    assert "usageMetadata" in chunks[-1] and "usageMetadata" not in chunks[0]
    whole = httpx.post(url, json=body, headers={"x-goog-api-key": KEY})  # no alt=sse
    assert isinstance(whole.json(), list) and len(whole.json()) == 4
