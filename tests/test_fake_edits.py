"""The fakes refuse edits as the real APIs do: the official SDK against the OpenAI fake,
raw generateContent bodies against the Gemini fake."""

from __future__ import annotations

import base64
import io
from collections.abc import Iterator

import httpx
import openai
import pytest
from PIL import Image

from imagegate.testing import FakeGemini, FakeOpenAI
from tests.support.edits import BLUE, RED, mask, picture


@pytest.fixture(scope="module")
def fakes() -> Iterator[tuple[FakeOpenAI, FakeGemini]]:
    with FakeOpenAI("sk-fake") as o, FakeGemini("gm-fake") as g:
        yield o, g


@pytest.fixture()
def sdk(fakes: tuple[FakeOpenAI, FakeGemini]) -> openai.OpenAI:
    return openai.OpenAI(base_url=fakes[0].base_url + "/v1", api_key="sk-fake", max_retries=0)


def refusal(sdk: openai.OpenAI, **kwargs: object) -> dict[str, object]:
    with pytest.raises(openai.APIStatusError) as caught:
        sdk.images.edit(prompt="x", **kwargs)  # type: ignore[call-overload]
    body = caught.value.body
    assert isinstance(body, dict)
    return body


def test_sdk_edit_is_accepted(sdk: openai.OpenAI) -> None:
    result = sdk.images.edit(model="gpt-image-2", prompt="swap", size="1024x1536",
                             image=[("a.png", picture(RED)), ("b.webp", picture(BLUE, fmt="WEBP"))],
                             mask=("m.png", mask()))
    assert result.usage is not None and result.usage.input_tokens_details.image_tokens > 0
    image = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json)))  # type: ignore
    assert image.size == (1024, 1536)
    auto = sdk.images.edit(model="gpt-image-1", prompt="x", image=("a.png", picture(RED)))
    decoded = Image.open(io.BytesIO(base64.b64decode(auto.data[0].b64_json)))  # type: ignore
    assert decoded.size == (1536, 1024)  # auto follows the input's shape (384x256)


@pytest.mark.parametrize(("kwargs", "message", "param"), [
    ({"model": "gpt-image-1", "image": ("a.png", picture(), "application/octet-stream")},
     "Invalid file 'image': unsupported mimetype ('application/octet-stream'). Supported "
     "file formats are 'image/jpeg', 'image/png', and 'image/webp'.", "image"),
    ({"model": "dall-e-2", "image": ("a.jpg", picture(fmt="JPEG"), "image/jpeg")},
     "Invalid file 'image': unsupported mimetype ('image/jpeg'). Supported file formats are "
     "'image/png'.", "image"),
    ({"model": "gpt-image-1", "image": ("a.png", b"not an image", "image/png")},
     "Invalid image file or mode for image 1, please check your image file.", None),
    ({"model": "gpt-image-1", "image": ("a.png", picture()), "mask": ("m.png", mask((64, 64)))},
     "Invalid mask image format - mask size does not match image size", "mask"),
    ({"model": "gpt-image-1", "image": ("a.png", picture()), "mask": ("m.png", picture())},
     "Invalid mask image format - mask image missing alpha channel", "mask"),
    ({"model": "gpt-image-2", "image": [(f"{i}.png", picture()) for i in range(17)]},
     "Invalid 'image': array too long. Expected an array with maximum length 16, but got an "
     "array with length 17 instead.", "image"),
    ({"model": "gpt-image-1-mini", "image": ("a.png", picture()), "input_fidelity": "high"},
     "input_fidelity is not supported for model 'gpt-image-1-mini'.", "input_fidelity"),
    ({"model": "dall-e-3", "image": ("a.png", picture())},
     "Invalid value: 'dall-e-3'. Supported values are:", "model"),
])
def test_openai_fake_refuses_as_openai(sdk: openai.OpenAI, kwargs: dict[str, object],
                                       message: str, param: str | None) -> None:
    body = refusal(sdk, **kwargs)
    assert str(body["message"]).startswith(message), body
    assert body["param"] == param


def test_openai_fake_refuses_a_text_image_field(fakes: tuple[FakeOpenAI, FakeGemini]) -> None:
    r = httpx.post(fakes[0].base_url + "/v1/images/edits", data={"image": "https://x/y.png",
                   "prompt": "x", "model": "gpt-image-1"}, files={"unused": ("u", b"")},
                   headers={"authorization": "Bearer sk-fake"})
    assert r.status_code == 400
    assert r.json()["error"]["message"] == ("Invalid type for 'image': expected one of an array "
                                            "of files or file, but got a string instead.")


def generate(fake: FakeGemini, parts: list[dict[str, object]]) -> httpx.Response:
    model = "gemini-2.5-flash-image"
    return httpx.post(f"{fake.base_url}/v1beta/models/{model}:generateContent", timeout=30,
                      headers={"x-goog-api-key": "gm-fake"},
                      json={"contents": [{"role": "user", "parts": parts}],
                            "generationConfig": {"responseModalities": ["IMAGE"]}})


def inline(data: bytes, mime: str = "image/png") -> dict[str, object]:
    return {"inlineData": {"mimeType": mime, "data": base64.b64encode(data).decode()}}


def test_gemini_fake_edits_an_inline_image(fakes: tuple[FakeOpenAI, FakeGemini]) -> None:
    r = generate(fakes[1], [inline(picture(RED, (1600, 900))), {"text": "make it blue"}])
    assert r.status_code == 200, r.text
    part = r.json()["candidates"][0]["content"]["parts"][-1]
    image = Image.open(io.BytesIO(base64.b64decode(part["inlineData"]["data"])))
    assert image.size == (1344, 768)  # no aspectRatio: the input's nearest ratio, 16:9


@pytest.mark.parametrize(("part", "message"), [
    ({"inlineData": {"mimeType": "image/png", "data": "@@not base64@@"}},
     "Base64 decoding failed"),
    (inline(b"hello", "text/plain"), "Unsupported MIME type: text/plain"),
    (inline(b"hello, not a png"), "Unable to process input image"),
    ({"inlineData": {"mimeType": "image/png", "data": "", "extra": 1}}, 'Unknown name "extra"'),
])
def test_gemini_fake_refuses_bad_inline_images(fakes: tuple[FakeOpenAI, FakeGemini],
                                               part: dict[str, object], message: str) -> None:
    r = generate(fakes[1], [part, {"text": "edit"}])
    assert r.status_code == 400, r.text
    assert message in r.json()["error"]["message"]
    assert r.json()["error"]["status"] == "INVALID_ARGUMENT"


def test_gemini_fake_refuses_a_payload_over_20_mib(fakes: tuple[FakeOpenAI, FakeGemini]
                                                   ) -> None:
    r = generate(fakes[1], [inline(b"\0" * (16 * 1024 * 1024)), {"text": "edit"}])
    assert r.status_code == 400
    assert r.json()["error"]["message"] == "Request payload size exceeds the limit: 20971520 bytes."
