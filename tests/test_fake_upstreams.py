"""The fake upstreams must behave like the real services over real sockets.

Gateway tests trust these fakes, so each protocol detail and fault the gateway relies on is
pinned here with plain httpx calls.
"""

from __future__ import annotations

import asyncio
import base64
import io
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from PIL import Image

from imagegate.testing import FakeGemini, FakeOpenAI, Fault

OPENAI_PATH = "/v1/images/generations"


def gemini_path(model: str) -> str:
    return f"/v1beta/models/{model}:generateContent"


@pytest.fixture(scope="module")
def openai_fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key="sk-test-123456789", url_ttl=0.5) as fake:
        yield fake


@pytest.fixture(scope="module")
def gemini_fake() -> Iterator[FakeGemini]:
    with FakeGemini(api_key="gm-test") as fake:
        yield fake


@pytest.fixture
def oai(openai_fake: FakeOpenAI) -> Iterator[httpx.Client]:
    openai_fake.reset()
    headers = {"Authorization": "Bearer sk-test-123456789", "OpenAI-Organization": "org-1"}
    with httpx.Client(base_url=openai_fake.base_url, headers=headers, timeout=10) as client:
        yield client


@pytest.fixture
def gem(gemini_fake: FakeGemini) -> Iterator[httpx.Client]:
    gemini_fake.reset()
    with httpx.Client(base_url=gemini_fake.base_url, headers={"x-goog-api-key": "gm-test"},
                      timeout=10) as client:
        yield client


def decode(b64: str) -> Image.Image:
    img = Image.open(io.BytesIO(base64.b64decode(b64)))
    img.load()
    return img


def gemini_body(prompt: str = "a red fox", modalities: list[str] | None = None,
                **image_config: str) -> dict[str, Any]:
    config: dict[str, Any] = {"responseModalities": modalities or ["IMAGE"]}
    if image_config:
        config["imageConfig"] = image_config
    return {"contents": [{"role": "user", "parts": [{"text": prompt}]}],
            "generationConfig": config}


def final_image(payload: dict[str, Any]) -> Image.Image:
    parts = payload["candidates"][0]["content"]["parts"]
    found = [p["inlineData"] for p in parts if "inlineData" in p and not p.get("thought")]
    assert len(found) == 1
    return decode(found[0]["data"])


# ----- OpenAI: success shapes ------------------------------------------------------------
@pytest.mark.parametrize(("body", "size", "fmt", "mode"), [
    ({"model": "gpt-image-2", "size": "1536x1024", "output_format": "webp"}, (1536, 1024),
     "WEBP", "RGB"),
    ({"model": "gpt-image-2", "size": "3840x1280", "quality": "low"}, (3840, 1280), "PNG", "RGB"),
    ({"model": "gpt-image-1", "background": "transparent"}, (1024, 1024), "PNG", "RGBA"),
    ({"model": "gpt-image-1-mini", "size": "1024x1536", "output_format": "jpeg"}, (1024, 1536),
     "JPEG", "RGB"),
])
def test_openai_gpt_image_shapes(oai: httpx.Client, body: dict[str, Any], size: tuple[int, int],
                                 fmt: str, mode: str) -> None:
    response = oai.post(OPENAI_PATH, json={"prompt": "a lighthouse at dusk", **body})
    assert response.status_code == 200, response.text
    payload = response.json()
    assert set(payload) >= {"created", "background", "output_format", "quality", "size", "usage"}
    assert payload["size"] == f"{size[0]}x{size[1]}"
    usage = payload["usage"]
    assert usage["total_tokens"] == usage["input_tokens"] + usage["output_tokens"] > 0
    img = decode(payload["data"][0]["b64_json"])
    assert (img.size, img.format, img.mode) == (size, fmt, mode)
    if mode == "RGBA":
        assert payload["background"] == "transparent" and img.getpixel((0, 0))[3] == 0


def test_openai_n_images_differ_and_are_deterministic(oai: httpx.Client) -> None:
    body = {"model": "gpt-image-2", "prompt": "three cats", "n": 3}
    first = [d["b64_json"] for d in oai.post(OPENAI_PATH, json=body).json()["data"]]
    again = [d["b64_json"] for d in oai.post(OPENAI_PATH, json=body).json()["data"]]
    assert len(set(first)) == 3 and first == again


def test_openai_dalle3_b64_and_url(oai: httpx.Client, openai_fake: FakeOpenAI) -> None:
    body = {"model": "dall-e-3", "prompt": "a castle", "size": "1792x1024", "quality": "hd",
            "style": "natural"}
    item = oai.post(OPENAI_PATH, json={**body, "response_format": "b64_json"}).json()["data"][0]
    assert item["revised_prompt"] == "A detailed image of: a castle"
    assert decode(item["b64_json"]).size == (1792, 1024)
    payload = oai.post(OPENAI_PATH, json=body).json()
    assert "usage" not in payload
    url = payload["data"][0]["url"]
    assert url.startswith(f"{openai_fake.base_url}/files/") and "se=" in url and "sig=" in url
    got = httpx.get(url)  # no auth needed: the signature is the credential
    assert got.status_code == 200 and got.headers["content-type"] == "image/png"
    assert Image.open(io.BytesIO(got.content)).size == (1792, 1024)
    forged = httpx.get(url.replace("sig=", "sig=AAAA"))
    assert forged.status_code == 403 and b"<Code>AuthenticationFailed</Code>" in forged.content
    time.sleep(0.6)  # url_ttl is 0.5 s on this fake
    expired = httpx.get(url)
    assert expired.status_code == 403 and b"Signature not valid" in expired.content
    assert expired.headers["content-type"] == "application/xml"


def test_openai_url_response_fault_for_gpt_image(oai: httpx.Client) -> None:
    oai.post(OPENAI_PATH, json={"model": "gpt-image-2", "prompt": "warm"})  # render cache
    with FakeOpenAI(api_key="k") as fake:
        fake.script(Fault(url_response=True))
        body = {"model": "gpt-image-2", "prompt": "a boat", "output_format": "jpeg"}
        data = httpx.post(fake.base_url + OPENAI_PATH, json=body,
                          headers={"Authorization": "Bearer k"}).json()["data"][0]
        got = httpx.get(data["url"])
        assert got.headers["content-type"] == "image/jpeg"
        assert Image.open(io.BytesIO(got.content)).format == "JPEG"


# ----- OpenAI: errors ---------------------------------------------------------------------
def test_openai_auth(openai_fake: FakeOpenAI) -> None:
    url = openai_fake.base_url + OPENAI_PATH
    body = {"model": "gpt-image-2", "prompt": "x"}
    missing = httpx.post(url, json=body)
    assert missing.status_code == 401 and "didn't provide an API key" in missing.text
    wrong = httpx.post(url, json=body, headers={"Authorization": "Bearer sk-wrong-secret-key-9"})
    error = wrong.json()["error"]
    assert wrong.status_code == 401 and error["code"] == "invalid_api_key"
    assert error["type"] == "invalid_request_error" and error["param"] is None
    assert "sk-wrong-secret-key-9" not in wrong.text and "ey-9" in error["message"]


@pytest.mark.parametrize(("body", "status", "param", "code"), [
    ({"model": "gpt-image-1", "style": "vivid"}, 400, "style", "unknown_parameter"),
    ({"model": "gpt-image-2", "response_format": "url"}, 400, "response_format",
     "unknown_parameter"),
    ({"model": "dall-e-3", "background": "opaque"}, 400, "background", "unknown_parameter"),
    ({"model": "dall-e-3", "moderation": "low"}, 400, "moderation", "unknown_parameter"),
    ({"model": "gpt-image-9"}, 404, None, "model_not_found"),
    ({"model": "gpt-image-2", "size": "1000x1000"}, 400, "size", "invalid_value"),
    ({"model": "gpt-image-2", "size": "3840x1024"}, 400, "size", "invalid_value"),
    ({"model": "gpt-image-2", "size": "3840x3840"}, 400, "size", "invalid_value"),
    ({"model": "gpt-image-2", "size": "512x512"}, 400, "size", "invalid_value"),
    ({"model": "gpt-image-1", "size": "1792x1024"}, 400, "size", "invalid_value"),
    ({"model": "dall-e-3", "size": "512x512"}, 400, None, "invalid_size"),
    ({"model": "gpt-image-1", "quality": "hd"}, 400, "quality", "invalid_value"),
    ({"model": "dall-e-3", "quality": "high"}, 400, "quality", "invalid_value"),
    ({"model": "dall-e-3", "n": 2}, 400, "n", "invalid_value"),
    ({"model": "gpt-image-2", "n": 11}, 400, "n", "integer_above_max_value"),
    ({"model": "gpt-image-2", "n": "2"}, 400, "n", "invalid_type"),
    ({"model": "gpt-image-1", "background": "transparent", "output_format": "jpeg"}, 400,
     "background", "invalid_value"),
    ({"model": "gpt-image-2", "prompt": None}, 400, "prompt", "missing_required_parameter"),
])
def test_openai_validation(oai: httpx.Client, body: dict[str, Any], status: int,
                           param: str | None, code: str) -> None:
    response = oai.post(OPENAI_PATH, json={"prompt": "a tree", **body})
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert (error["param"], error["code"]) == (param, code)
    assert set(error) == {"message", "type", "param", "code"} and error["message"]


def test_openai_unknown_parameter_message_and_bad_json(oai: httpx.Client) -> None:
    error = oai.post(OPENAI_PATH, json={"model": "gpt-image-1", "prompt": "p",
                                        "style": "vivid"}).json()["error"]
    assert error["message"] == "Unknown parameter: 'style'."
    bad = oai.post(OPENAI_PATH, content=b"{nope", headers={"content-type": "application/json"})
    assert bad.status_code == 400 and "could not parse the JSON body" in bad.text
    assert oai.get(OPENAI_PATH).status_code == 404


# ----- Gemini -----------------------------------------------------------------------------
@pytest.mark.parametrize(("model", "config", "size"), [
    ("gemini-2.5-flash-image", {}, (1024, 1024)),
    ("gemini-2.5-flash-image", {"aspectRatio": "16:9"}, (1344, 768)),
    ("gemini-2.5-flash-image", {"aspectRatio": "2:3"}, (832, 1248)),
    ("gemini-3-pro-image-preview", {"aspectRatio": "16:9", "imageSize": "2K"}, (2752, 1536)),
    ("gemini-3.1-flash-image-preview", {"aspectRatio": "1:4"}, (512, 2048)),
    ("gemini-3.1-flash-image-preview", {"aspectRatio": "1:1", "imageSize": "4K"}, (4096, 4096)),
])
def test_gemini_success_sizes(gem: httpx.Client, model: str, config: dict[str, str],
                              size: tuple[int, int]) -> None:
    response = gem.post(gemini_path(model), json=gemini_body(**config))
    assert response.status_code == 200, response.text
    payload = response.json()
    candidate = payload["candidates"][0]
    assert candidate["finishReason"] == "STOP" and candidate["content"]["role"] == "model"
    img = final_image(payload)
    assert (img.size, img.format) == (size, "PNG")
    assert payload["modelVersion"] == model and payload["responseId"]
    usage = payload["usageMetadata"]
    assert usage["totalTokenCount"] >= usage["promptTokenCount"] + usage["candidatesTokenCount"]
    thoughts = [p for p in candidate["content"]["parts"] if p.get("thought")]
    assert bool(thoughts) == model.startswith("gemini-3")


def test_gemini_text_and_thought_parts(gem: httpx.Client) -> None:
    body = gemini_body(modalities=["TEXT", "IMAGE"])
    parts = gem.post(gemini_path("gemini-3-pro-image-preview"), json=body).json()[
        "candidates"][0]["content"]["parts"]
    assert parts[0]["thought"] is True and "text" in parts[0]
    assert any(p.get("thought") and "inlineData" in p for p in parts)  # a draft to skip
    assert any("text" in p and not p.get("thought") for p in parts)
    assert "inlineData" in parts[-1] and parts[-1]["inlineData"]["mimeType"] == "image/png"


def test_gemini_snake_case_and_query_key(gemini_fake: FakeGemini) -> None:
    body = {"contents": [{"parts": [{"text": "a kite"}]}],
            "generation_config": {"response_modalities": ["IMAGE"],
                                  "image_config": {"aspect_ratio": "3:2"}}}
    response = httpx.post(gemini_fake.base_url + gemini_path("gemini-2.5-flash-image"),
                          params={"key": "gm-test"}, json=body)
    assert response.status_code == 200 and final_image(response.json()).size == (1248, 832)


def test_gemini_auth(gemini_fake: FakeGemini) -> None:
    url = gemini_fake.base_url + gemini_path("gemini-2.5-flash-image")
    wrong = httpx.post(url, json=gemini_body(), headers={"x-goog-api-key": "nope"})
    assert wrong.status_code == 400
    error = wrong.json()["error"]
    assert (error["code"], error["status"]) == (400, "INVALID_ARGUMENT")
    assert error["message"] == "API key not valid. Please pass a valid API key."
    assert error["details"][0]["reason"] == "API_KEY_INVALID"
    missing = httpx.post(url, json=gemini_body())
    assert missing.status_code == 403 and missing.json()["error"]["status"] == "PERMISSION_DENIED"


@pytest.mark.parametrize(("model", "body", "status", "needle"), [
    ("gemini-9-image", gemini_body(), 404, "is not found for API version v1beta"),
    ("gemini-2.5-flash-image", gemini_body(aspectRatio="7:3"), 400, "aspect"),
    ("gemini-2.5-flash-image", gemini_body(aspectRatio="1:4"), 400, "aspect"),
    ("gemini-2.5-flash-image", gemini_body(imageSize="2K"), 400, "image_size"),
    ("gemini-3-pro-image-preview", gemini_body(imageSize="2k"), 400, "image size"),
    ("gemini-3-pro-image-preview", gemini_body(prompt=" "), 400, "text part"),
    ("gemini-3-pro-image-preview", {"contents": []}, 400, "contents is not specified"),
    ("gemini-3-pro-image-preview", {**gemini_body(), "foo": 1}, 400, 'Unknown name "foo"'),
    ("gemini-3-pro-image-preview", gemini_body(modalities=["PICTURE"]), 400, "Invalid value"),
])
def test_gemini_validation(gem: httpx.Client, model: str, body: dict[str, Any], status: int,
                           needle: str) -> None:
    response = gem.post(gemini_path(model), json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == status and needle in error["message"]
    assert error["status"] == ("NOT_FOUND" if status == 404 else "INVALID_ARGUMENT")


def test_gemini_safety_and_block_reason(gem: httpx.Client, gemini_fake: FakeGemini) -> None:
    path = gemini_path("gemini-3.1-flash-image-preview")
    gemini_fake.script(Fault(safety="IMAGE_SAFETY"), Fault(safety="NO_IMAGE"),
                       Fault(block_reason="PROHIBITED_CONTENT"))
    first, second, third = (gem.post(path, json=gemini_body()) for _ in range(3))
    assert first.status_code == second.status_code == third.status_code == 200
    candidate = first.json()["candidates"][0]
    assert candidate["finishReason"] == "IMAGE_SAFETY" and "content" not in candidate
    parts = second.json()["candidates"][0]["content"]["parts"]
    assert parts and not any("inlineData" in p for p in parts)
    blocked = third.json()
    assert "candidates" not in blocked
    assert blocked["promptFeedback"]["blockReason"] == "PROHIBITED_CONTENT"


@pytest.mark.parametrize(("status", "name"), [(429, "RESOURCE_EXHAUSTED"), (500, "INTERNAL"),
                                              (503, "UNAVAILABLE"), (403, "PERMISSION_DENIED"),
                                              (401, "UNAUTHENTICATED")])
def test_gemini_status_faults(gem: httpx.Client, gemini_fake: FakeGemini, status: int,
                              name: str) -> None:
    gemini_fake.script(Fault(status=status, retry_after=3))
    response = gem.post(gemini_path("gemini-2.5-flash-image"), json=gemini_body())
    error = response.json()["error"]
    assert (response.status_code, error["code"], error["status"]) == (status, status, name)
    assert "retry-after" not in response.headers  # Google says it in the body only
    retry = [d for d in error["details"] if d["@type"].endswith("google.rpc.RetryInfo")]
    assert [d["retryDelay"] for d in retry] == ["3s"]


def test_gemini_429_is_shaped_like_ai_studio(gem: httpx.Client, gemini_fake: FakeGemini
                                             ) -> None:
    gemini_fake.script(Fault(status=429, retry_after=45.8), Fault(
        status=429, quota_id="GenerateRequestsPerDayPerProjectPerModel-FreeTier"))
    minute, day = (gem.post(gemini_path("gemini-2.5-flash-image"), json=gemini_body())
                   for _ in range(2))
    error = minute.json()["error"]
    assert "retry-after" not in minute.headers
    assert "exceeded your current quota" in error["message"]
    assert error["message"].endswith("Please retry in 45.8s.")
    kinds = {d["@type"].rsplit(".", 1)[1]: d for d in error["details"]}
    assert set(kinds) == {"Help", "QuotaFailure", "RetryInfo"}
    assert kinds["RetryInfo"]["retryDelay"] == "45.8s"
    assert "PerMinute" in kinds["QuotaFailure"]["violations"][0]["quotaId"]
    day_error = day.json()["error"]
    assert day.status_code == 429 and "Please retry" not in day_error["message"]
    violations = [d for d in day_error["details"] if "violations" in d][0]["violations"]
    assert violations[0]["quotaId"] == "GenerateRequestsPerDayPerProjectPerModel-FreeTier"
    assert not any("retryDelay" in d for d in day_error["details"])


# ----- faults -----------------------------------------------------------------------------
def test_status_fault_retry_after_and_code(oai: httpx.Client, openai_fake: FakeOpenAI) -> None:
    body = {"model": "gpt-image-2", "prompt": "p"}
    openai_fake.script(Fault(status=429, retry_after=2), Fault(status=500, retry_after=1.5),
                       Fault(status=400, code="moderation_blocked"))
    limited, broken, blocked, fine = (oai.post(OPENAI_PATH, json=body) for _ in range(4))
    assert limited.status_code == 429 and limited.headers["retry-after"] == "2"
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"
    assert broken.status_code == 500 and broken.headers["retry-after"] == "1.5"
    assert broken.json()["error"]["type"] == "server_error"
    assert blocked.status_code == 400
    assert blocked.json()["error"]["code"] == "moderation_blocked"
    assert fine.status_code == 200


def test_always_and_reset(oai: httpx.Client, openai_fake: FakeOpenAI) -> None:
    body = {"model": "gpt-image-2", "prompt": "p"}
    openai_fake.script(Fault(status=502))
    openai_fake.always(Fault(status=503, message="busy"))
    codes = [oai.post(OPENAI_PATH, json=body).status_code for _ in range(3)]
    assert codes == [502, 503, 503]
    openai_fake.always(None)
    assert oai.post(OPENAI_PATH, json=body).status_code == 200
    openai_fake.script(Fault(status=500))
    openai_fake.reset()
    assert openai_fake.requests == []
    assert oai.post(OPENAI_PATH, json=body).status_code == 200


def test_delay_and_hang(oai: httpx.Client, openai_fake: FakeOpenAI) -> None:
    body = {"model": "gpt-image-2", "prompt": "p"}
    openai_fake.script(Fault(delay=0.3), Fault(hang=True))
    started = time.monotonic()
    assert oai.post(OPENAI_PATH, json=body).status_code == 200
    assert time.monotonic() - started >= 0.3
    with pytest.raises(httpx.ReadTimeout):
        oai.post(OPENAI_PATH, json=body, timeout=0.3)
    deadline = time.monotonic() + 2  # the held request ends when the client hangs up
    while openai_fake.active_connections and time.monotonic() < deadline:
        time.sleep(0.01)
    assert openai_fake.active_connections == 0
    assert oai.post(OPENAI_PATH, json=body).status_code == 200


def test_reset_breaks_the_connection(oai: httpx.Client, openai_fake: FakeOpenAI) -> None:
    openai_fake.script(Fault(reset=True))
    with pytest.raises((httpx.ReadError, httpx.RemoteProtocolError)):
        oai.post(OPENAI_PATH, json={"model": "gpt-image-2", "prompt": "p"})
    assert len(openai_fake.requests) == 1  # the request was read before the RST


def test_garbage_bodies(oai: httpx.Client, openai_fake: FakeOpenAI) -> None:
    body = {"model": "gpt-image-2", "prompt": "p"}
    openai_fake.script(Fault(malformed_json=True), Fault(truncated_b64=True), Fault(html=True),
                       Fault(html=True, status=504))
    bad_json, truncated, html, html504 = (oai.post(OPENAI_PATH, json=body) for _ in range(4))
    assert bad_json.status_code == 200
    assert bad_json.headers["content-type"] == "application/json"
    with pytest.raises(ValueError):
        bad_json.json()
    raw = base64.b64decode(truncated.json()["data"][0]["b64_json"])
    with pytest.raises(OSError):
        Image.open(io.BytesIO(raw)).load()
    assert html.status_code == 502 and html.headers["content-type"].startswith("text/html")
    assert b"<html>" in html.content and html504.status_code == 504


@pytest.mark.parametrize(("fmt", "target"), [("png", 20_000_000), ("jpeg", 3_000_000),
                                             ("webp", 3_000_000)])
def test_big_images(oai: httpx.Client, openai_fake: FakeOpenAI, fmt: str, target: int) -> None:
    openai_fake.script(Fault(image_bytes=target))
    body = {"model": "gpt-image-1", "prompt": "big", "output_format": fmt}
    raw = base64.b64decode(oai.post(OPENAI_PATH, json=body).json()["data"][0]["b64_json"])
    assert target * 0.95 <= len(raw) <= target * 1.05
    img = Image.open(io.BytesIO(raw))
    img.load()
    assert img.size == (1024, 1024) and img.format == fmt.upper()


def test_gemini_truncated_and_big(gem: httpx.Client, gemini_fake: FakeGemini) -> None:
    gemini_fake.script(Fault(truncated_b64=True), Fault(image_bytes=2_000_000))
    path = gemini_path("gemini-2.5-flash-image")
    with pytest.raises(OSError):
        final_image(gem.post(path, json=gemini_body()).json())
    response = gem.post(path, json=gemini_body())
    assert len(response.content) > 2_000_000 and final_image(response.json()).size == (1024, 1024)


# ----- recording, keep-alive, concurrency, lifecycle ------------------------------------
def test_recording(oai: httpx.Client, openai_fake: FakeOpenAI) -> None:
    oai.post(OPENAI_PATH, json={"model": "gpt-image-2", "prompt": "first"})
    openai_fake.script(Fault(status=500))
    oai.post(OPENAI_PATH + "?x=1", json={"model": "dall-e-3", "prompt": "second"})
    first, second = openai_fake.requests
    assert (first.method, first.path, first.json["prompt"]) == ("POST", OPENAI_PATH, "first")
    assert first.headers["openai-organization"] == "org-1"
    assert first.headers["authorization"] == "Bearer sk-test-123456789"
    assert b'"second"' in second.body and second.query == {"x": "1"}
    assert first.fault is None and second.fault == Fault(status=500)
    assert first.time <= second.time


def test_keep_alive_reuses_one_connection(openai_fake: FakeOpenAI) -> None:
    openai_fake.reset()
    before = openai_fake.connections_opened
    with httpx.Client(base_url=openai_fake.base_url,
                      headers={"Authorization": "Bearer sk-test-123456789"}) as client:
        for _ in range(5):
            response = client.post(OPENAI_PATH, json={"model": "gpt-image-2", "prompt": "k"})
            assert response.status_code == 200
    assert openai_fake.connections_opened == before + 1
    assert len({r.connection for r in openai_fake.requests}) == 1


async def test_concurrent_requests(gemini_fake: FakeGemini) -> None:
    gemini_fake.reset()
    # Ten clients of 30: httpcore's pool is quadratic in its size, the fake is not.
    clients = [httpx.AsyncClient(base_url=gemini_fake.base_url, timeout=30,
                                 headers={"x-goog-api-key": "gm-test"}) for _ in range(10)]
    try:
        responses = await asyncio.gather(*(
            clients[i % 10].post(gemini_path("gemini-2.5-flash-image"),
                                 json=gemini_body(f"p{i % 5}"))
            for i in range(300)))
    finally:
        for client in clients:
            await client.aclose()
    assert all(r.status_code == 200 for r in responses)
    assert len(gemini_fake.requests) == 300
    assert len({r.connection for r in gemini_fake.requests}) >= 100


async def test_many_held_requests_do_not_block_others() -> None:
    async with FakeOpenAI(api_key="k") as fake:
        fake.always(Fault(hang=True))
        request = (f"POST {OPENAI_PATH} HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{{}}"
                   ).encode()
        streams = []
        for _ in range(1000):
            reader, writer = await asyncio.open_connection("127.0.0.1", fake.port)
            writer.write(request)
            streams.append((reader, writer))
        await fake.await_requests(1000, within=10)
        fake.always(None)
        async with httpx.AsyncClient(base_url=fake.base_url) as client:
            response = await client.post(OPENAI_PATH, json={"model": "gpt-image-2", "prompt": "p"},
                                         headers={"Authorization": "Bearer k"}, timeout=5)
        assert response.status_code == 200
        for _, writer in streams[:10]:
            writer.close()
        started = time.monotonic()
    assert time.monotonic() - started < 3  # stop() released the held connections promptly
    assert await asyncio.wait_for(streams[-1][0].read(), 2) == b""
    for _, writer in streams[10:]:
        writer.close()


def test_control_plane(openai_fake: FakeOpenAI) -> None:
    openai_fake.reset()
    base = openai_fake.base_url
    assert httpx.post(f"{base}/__fake__/script", json=[{"status": 418}]).status_code == 200
    response = httpx.post(base + OPENAI_PATH, json={"model": "gpt-image-2", "prompt": "p"},
                          headers={"Authorization": "Bearer sk-test-123456789"})
    assert response.status_code == 418
    listed = httpx.get(f"{base}/__fake__/requests").json()
    assert [r["path"] for r in listed] == [OPENAI_PATH]
    assert httpx.get(f"{base}/__fake__/count").json() == {"requests": 1}
    assert httpx.post(f"{base}/__fake__/always", json={"bogus": 1}).status_code == 400
    assert httpx.post(f"{base}/__fake__/reset").status_code == 200 and not openai_fake.requests


def test_serve_forever_subprocess() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    code = ("from imagegate.testing import serve_forever; "
            f"serve_forever('gemini', '127.0.0.1', {port}, 'cli-key')")
    proc = subprocess.Popen([sys.executable, "-c", code], stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stderr is not None
        assert f"http://127.0.0.1:{port}" in proc.stderr.readline()
        response = httpx.post(f"http://127.0.0.1:{port}" + gemini_path("gemini-2.5-flash-image"),
                              json=gemini_body(), headers={"x-goog-api-key": "cli-key"})
        assert response.status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(10) == 0


def test_fake_upstream_cli() -> None:
    """`imagegate fake-upstream`: port 0 prints the bound port, the key never shows, the
    default key is imagegate.testing's, and --latency / --url-ttl apply."""
    proc = subprocess.Popen([sys.executable, "-m", "imagegate", "fake-upstream", "openai",
                             "--port", "0", "--latency", "0.4", "--url-ttl", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        base = line.rsplit(" ", 1)[-1].strip()
        assert base.startswith("http://127.0.0.1:") and not base.endswith(":0"), line
        assert "sk-test" not in line
        headers = {"Authorization": "Bearer sk-test"}
        started = time.monotonic()
        response = httpx.post(base + OPENAI_PATH, headers=headers, timeout=30,
                              json={"model": "dall-e-3", "prompt": "a boat"})
        assert response.status_code == 200, response.text
        assert time.monotonic() - started >= 0.4
        url = response.json()["data"][0]["url"]
        assert httpx.get(url).status_code == 200
        time.sleep(1.2)
        assert httpx.get(url).status_code == 403  # expired after --url-ttl
    finally:
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=10)
    assert "sk-test" not in out + err
