"""Streaming (SPEC section 8) through the real providers to the fake upstreams, read by the
official openai SDK (sync and async) and by plain HTTP: events in OpenAI's wire format,
pass-through as the upstream sends them, a client that leaves, the error event, and the
400s. Also SPEC section 3's OpenAI fields on synchronous answers and task records."""

from __future__ import annotations

import asyncio
import base64
import io
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from PIL import Image

from imagegate.testing.records import Fault
from tests.support.edits import RED, picture
from tests.support.server import GatewayServer
from tests.support.upstreams import (
    NO_BREAKER,
    OPENAI_KEY,
    Fakes,
    fresh,
    running_fakes,
    start_gateway,
)

GEN = "/v1/images/generations"


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    with running_fakes() as started:
        yield started


@pytest.fixture(scope="module")
def gw(fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    # a keep-alive comment after 0.2 s of silence: the SDKs below read streams with them
    server = start_gateway("sqlite", fakes, tmp_path_factory.mktemp("streaming"),
                           {**NO_BREAKER, "IMAGEGATE_STREAM_KEEPALIVE": "0.2"}, max_retries=0)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def token(gw: GatewayServer) -> str:
    return gw.token(credits=1000)


@pytest.fixture()
def fake(fakes: Fakes) -> Iterator[Fakes]:
    with fresh(fakes) as clean:
        yield clean
    for f in fakes:
        f.release_streams()


@pytest.fixture()
def sdk(gw: GatewayServer, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=token, max_retries=0, timeout=30)


def headers(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


def balance(gw: GatewayServer, token: str) -> float:
    me = httpx.get(gw.url + "/api/credentials/me", headers=headers(token), timeout=10).json()
    return float(me["balance"])


def task(gw: GatewayServer, token: str, task_id: str) -> dict[str, Any]:
    return httpx.get(f"{gw.url}/v1/tasks/{task_id}", headers=headers(token), timeout=10).json()


def finished(gw: GatewayServer, token: str, task_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        record = task(gw, token, task_id)
        if record.get("status") in ("succeeded", "failed"):
            return record
        time.sleep(0.05)
    raise AssertionError(f"task {task_id} did not finish: {record}")


def decoded(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def test_sdk_streams_gpt_image_2_partials_then_completed(sdk: openai.OpenAI, fake: Fakes
                                                         ) -> None:
    events = list(sdk.images.generate(model="gpt-image-2", prompt="a lighthouse", stream=True,
                                      partial_images=2, size="1536x1024", quality="low"))
    assert [e.type for e in events] == ["image_generation.partial_image"] * 2 + [
        "image_generation.completed"]
    assert [e.partial_image_index for e in events[:2]] == [0, 1]  # type: ignore[union-attr]
    done = events[-1]
    assert (done.size, done.quality, done.background, done.output_format) == (
        "1536x1024", "low", "opaque", "png")
    assert done.usage.output_tokens > 0 and done.usage.input_tokens_details.text_tokens > 0
    assert decoded(done.b64_json).size == (1536, 1024)
    extra = done.model_extra or {}
    assert extra["url"].startswith("http") and extra["task_id"]
    assert httpx.get(extra["url"], timeout=10).content == base64.b64decode(done.b64_json)
    (sent,) = fake[0].requests
    assert sent.json["stream"] is True and sent.json["partial_images"] == 2


def test_async_sdk_streams_an_edit(gw: GatewayServer, token: str, fake: Fakes) -> None:
    async def run() -> list[Any]:
        client = openai.AsyncOpenAI(base_url=f"{gw.url}/v1", api_key=token, max_retries=0,
                                    timeout=30)
        stream = await client.images.edit(
            model="gpt-image-2", image=("a.png", picture(RED, (512, 512))), prompt="bluer",
            stream=True, partial_images=1, output_format="webp")
        events = [event async for event in stream]
        await client.close()
        return events

    events = asyncio.run(run())
    assert [e.type for e in events] == ["image_edit.partial_image", "image_edit.completed"]
    assert decoded(events[-1].b64_json).format == "WEBP"
    assert events[-1].usage.input_tokens_details.image_tokens > 0
    (sent,) = fake[0].requests
    assert sent.path == "/v1/images/edits"


def test_nano_banana_pro_thought_images_are_partials(sdk: openai.OpenAI, fake: Fakes) -> None:
    events = list(sdk.images.generate(model="nano-banana-pro", prompt="a fox", stream=True,
                                      partial_images=2, size="1024x576"))
    assert [e.type for e in events] == ["image_generation.partial_image"] * 2 + [
        "image_generation.completed"]
    assert decoded(events[0].b64_json).size == (256, 256)  # Gemini's draft
    assert events[-1].size == "1376x768" and decoded(events[-1].b64_json).size == (1376, 768)
    (sent,) = fake[1].requests
    assert sent.path.endswith("/gemini-3-pro-image-preview:streamGenerateContent")
    assert sent.query == {"alt": "sse"}


def test_partial_images_0_is_one_completed_event_per_image(sdk: openai.OpenAI, fake: Fakes
                                                          ) -> None:
    events = list(sdk.images.generate(model="nano-banana", prompt="two owls", n=2,
                                      stream=True))
    assert [e.type for e in events] == ["image_generation.completed"] * 2
    assert {(e.model_extra or {})["image_index"] for e in events} == {0, 1}
    assert len(fake[1].requests) == 2  # Gemini draws one image a call


def test_first_partial_reaches_the_client_before_the_upstream_finishes(
        sdk: openai.OpenAI, fake: Fakes) -> None:
    openai_fake = fake[0]
    openai_fake.hold_streams()  # the upstream sends its first event, then waits
    stream = sdk.images.generate(model="gpt-image-2", prompt="a slow one", stream=True,
                                 partial_images=3)
    first = next(iter(stream))
    assert first.type == "image_generation.partial_image"
    assert openai_fake.streams_finished == 0  # still held: the gateway buffered nothing
    openai_fake.release_streams()
    rest = [e.type for e in stream]
    assert rest[-1] == "image_generation.completed" and len(rest) == 3
    assert openai_fake.streams_finished == 1


def test_a_quiet_upstream_gets_keep_alive_comments(gw: GatewayServer, token: str,
                                                   sdk: openai.OpenAI, fake: Fakes) -> None:
    fake[0].hold_streams()
    body = {"model": "gpt-image-2", "prompt": "quiet", "stream": True, "partial_images": 1}
    with httpx.stream("POST", gw.url + GEN, json=body, headers=headers(token),
                      timeout=30) as r:
        lines = r.iter_lines()
        assert next(lines) == "event: image_generation.partial_image"
        assert next(lines).startswith("data: ") and next(lines) == ""
        assert next(lines) == ": keep-alive"  # the upstream is held: nothing else can come
        fake[0].release_streams()
        rest = list(lines)
    assert "event: image_generation.completed" in rest


def test_a_client_that_leaves_does_not_stop_the_task(gw: GatewayServer, token: str,
                                                     fake: Fakes) -> None:
    openai_fake = fake[0]
    before = balance(gw, token)
    openai_fake.hold_streams()
    body = {"model": "gpt-image-2", "prompt": "left early", "stream": True, "partial_images": 2}
    with httpx.stream("POST", gw.url + GEN, json=body, headers=headers(token),
                      timeout=30) as r:
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("text/event-stream")
        task_id, trace_id = r.headers["x-task-id"], r.headers["x-trace-id"]
        lines = r.iter_lines()
        assert next(lines) == "event: image_generation.partial_image"
    openai_fake.release_streams()  # the client is gone; the upstream goes on
    record = finished(gw, token, task_id)
    assert record["status"] == "succeeded" and record["trace_id"] == trace_id
    assert record["response"]["data"][0]["url"]
    assert record["response"]["usage"]["output_tokens"] > 0
    assert round(before - balance(gw, token), 3) == 0.053  # charged once
    assert openai_fake.streams_finished == 1


def test_failure_after_the_first_event_is_one_error_event(gw: GatewayServer, token: str,
                                                           sdk: openai.OpenAI, fake: Fakes
                                                           ) -> None:
    before = balance(gw, token)
    fake[0].script(Fault(stream_cut=1))  # one partial, then the connection drops
    body = {"model": "gpt-image-2", "prompt": "cut", "stream": True, "partial_images": 2}
    r = httpx.post(gw.url + GEN, json=body, headers=headers(token), timeout=30)
    assert r.status_code == 200
    blocks = [b for b in r.text.split("\n\n") if b]
    assert blocks[0].startswith("event: image_generation.partial_image\n")
    name, data = blocks[-1].split("\n")
    assert name == "event: error" and len(blocks) == 2
    error = orjson.loads(data.removeprefix("data: "))
    assert error["success"] is False and error["error"]["code"] == "api_error"
    assert error["trace_id"] == r.headers["x-trace-id"]
    assert OPENAI_KEY not in r.text and fake[0].base_url not in r.text
    record = finished(gw, token, r.headers["x-task-id"])
    assert record["status"] == "failed"
    assert balance(gw, token) == before  # the hold was released
    fake[0].script(Fault(stream_cut=1))
    with pytest.raises(openai.APIError, match="connection failed"):
        list(sdk.images.generate(model="gpt-image-2", prompt="cut", stream=True,
                                 partial_images=2))


def test_failure_before_the_first_event_is_the_usual_json_error(gw: GatewayServer,
                                                                token: str, fake: Fakes
                                                                ) -> None:
    fake[0].script(Fault(status=400, code="moderation_blocked"))
    body = {"model": "gpt-image-2", "prompt": "no", "stream": True}
    r = httpx.post(gw.url + GEN, json=body, headers=headers(token), timeout=30)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"


@pytest.mark.parametrize(("body", "status", "words"), [
    ({"model": "dall-e-3", "stream": True}, 400, "stream is not supported by dall-e-3"),
    ({"model": "gpt-image-2", "stream": True, "async": True}, 400,
     "stream cannot be combined with async"),
    ({"model": "gpt-image-2", "stream": True, "callback_url": "https://example.com/hook"}, 400,
     "stream cannot be combined with async or callback_url"),
    ({"model": "gpt-image-2", "stream": True, "partial_images": 4}, 400,
     "partial_images must be from 0 to 3"),
    ({"model": "gpt-image-2", "stream": "yes"}, 400, "stream must be true or false"),
])
def test_stream_refusals(gw: GatewayServer, token: str, fake: Fakes, body: dict[str, Any],
                         status: int, words: str) -> None:
    r = httpx.post(gw.url + GEN, json={"prompt": "x", **body}, headers=headers(token),
                   timeout=30)
    assert r.status_code == status and words in r.json()["error"]["message"], r.text
    assert not fake[0].requests


def test_sync_answer_and_task_carry_openai_fields(sdk: openai.OpenAI, gw: GatewayServer,
                                                  token: str, fake: Fakes) -> None:
    raw = sdk.images.with_raw_response.generate(model="gpt-image-2", prompt="fields",
                                                size="1024x1536", quality="high",
                                                output_format="jpeg")
    result = raw.parse()
    assert (result.size, result.quality, result.background, result.output_format) == (
        "1024x1536", "high", "opaque", "jpeg")
    assert result.usage is not None and result.usage.total_tokens > 0
    record = task(gw, token, orjson.loads(raw.content)["task_id"])
    assert record["response"]["size"] == "1024x1536"
    assert record["response"]["usage"]["total_tokens"] == result.usage.total_tokens


def test_concurrent_streams_each_complete(sdk: openai.OpenAI, fake: Fakes) -> None:
    results: list[str] = []

    def one(i: int) -> None:
        events = list(sdk.images.generate(model="gpt-image-2", prompt=f"many {i}",
                                          stream=True, partial_images=1))
        results.append(events[-1].type)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert results == ["image_generation.completed"] * 4


def test_a_repeated_stream_with_an_idempotency_key_is_replayed_uncharged(
        gw: GatewayServer, token: str, fake: Fakes) -> None:
    body = {"model": "gpt-image-2", "prompt": "once", "stream": True, "partial_images": 1}
    sent = {**headers(token), "idempotency-key": "stream-replay-1"}
    before = balance(gw, token)
    first = httpx.post(gw.url + GEN, json=body, headers=sent, timeout=30)
    again = httpx.post(gw.url + GEN, json=body, headers=sent, timeout=30)
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["x-task-id"] == first.headers["x-task-id"]
    (block,) = [b for b in again.text.split("\n\n") if b]
    name, data = block.split("\n")
    assert name == "event: image_generation.completed"
    replayed = orjson.loads(data.removeprefix("data: "))
    completed = orjson.loads(first.text.split("\n\n")[1].split("\n")[1].removeprefix("data: "))
    assert replayed["b64_json"] == completed["b64_json"]
    assert replayed["url"] == completed["url"]
    assert round(before - balance(gw, token), 3) == 0.053
    assert len(fake[0].requests) == 1
