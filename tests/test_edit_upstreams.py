"""Edits through the real providers to the fake upstreams: the exact multipart OpenAI gets,
the inlineData parts Gemini gets, and LiteLLM's image_edit against the running gateway."""

from __future__ import annotations

import base64
import hashlib
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator

import httpx
import openai
import pytest

from imagegate.testing import pictures
from imagegate.testing.multipart import parse_form
from tests.support.edits import BLUE, EDITS, GREEN, RED, data_uri, image_of, mask, picture
from tests.support.server import GatewayServer
from tests.support.upstreams import (
    NO_BREAKER,
    OPENAI_KEY,
    Fakes,
    assert_no_leak,
    fresh,
    running_fakes,
    start_gateway,
)


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    with running_fakes() as started:
        yield started


@pytest.fixture(scope="module")
def gw(fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    server = start_gateway("sqlite", fakes, tmp_path_factory.mktemp("edit-upstreams"),
                           NO_BREAKER, max_retries=0)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def token(gw: GatewayServer) -> str:
    return gw.token(credits=1000)


@pytest.fixture()
def fake(fakes: Fakes) -> Iterator[Fakes]:
    with fresh(fakes) as clean:
        yield clean


@pytest.fixture()
def sdk(gw: GatewayServer, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=token, max_retries=0)


def test_gpt_image_edit_is_multipart_as_openai_takes_it(sdk: openai.OpenAI, fake: Fakes
                                                       ) -> None:
    openai_fake = fake[0]
    first, second = picture(RED, (512, 512)), picture(BLUE, (512, 512), "JPEG")
    result = sdk.images.edit(model="gpt-image-1", image=[("a.png", first), ("b.jpg", second)],
                             mask=("m.png", mask((512, 512))), prompt="swap the colours", n=2,
                             size="1536x1024", quality="low", input_fidelity="high",
                             background="opaque", output_format="webp",
                             response_format="b64_json")
    assert result.data is not None and len(result.data) == 2
    assert image_of(result.data[1].model_dump()).size == (1536, 1024)
    (sent,) = openai_fake.requests
    assert sent.path == "/v1/images/edits"
    assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    form = parse_form(sent.body, sent.headers["content-type"])
    assert form.fields() == {"model": "gpt-image-2", "prompt": "swap the colours", "n": "2",
                             "size": "1536x1024", "quality": "low", "background": "opaque",
                             "output_format": "webp", "moderation": "auto",
                             "input_fidelity": "high"}
    images = form.files("image[]")
    assert [(p.content_type, p.data) for p in images] == [("image/png", first),
                                                          ("image/jpeg", second)]
    (sent_mask,) = form.files("mask")
    assert sent_mask.content_type == "image/png" and sent_mask.data == mask((512, 512))


def test_dall_e_3_edit_is_served_by_gpt_image_2(sdk: openai.OpenAI, fake: Fakes) -> None:
    result = sdk.images.edit(model="dall-e-3", image=("a.png", picture()), prompt="dusk",
                             quality="hd", size="1792x1024", extra_body={"style": "natural"})
    assert result.data is not None
    assert image_of(result.data[0].model_dump()).size == (1792, 1024)
    assert result.data[0].revised_prompt == "dusk"
    form = parse_form(fake[0].requests[0].body, fake[0].requests[0].headers["content-type"])
    assert form.fields() == {"model": "gpt-image-2", "prompt": "dusk", "n": "1",
                             "size": "1792x1024", "quality": "high"}


def test_nano_banana_edit_sends_inline_data_before_the_text(gw: GatewayServer, token: str,
                                                            fake: Fakes) -> None:
    gemini = fake[1]
    first, second = picture(GREEN, (1536, 1024)), picture(RED, (300, 300), "WEBP")
    r = httpx.post(gw.url + EDITS, headers={"authorization": f"Bearer {token}"}, timeout=60,
                   json={"model": "nano-banana", "prompt": "merge them", "n": 2,
                         "image": [data_uri(first), data_uri(second, "image/webp")]})
    assert r.status_code == 200, r.text
    assert [image_of(item).size for item in r.json()["data"]] == [(1248, 832)] * 2  # 3:2
    assert len(gemini.requests) == 2  # n upstream calls
    for sent in gemini.requests:
        assert sent.path == "/v1beta/models/gemini-2.5-flash-image:generateContent"
        parts = sent.json["contents"][0]["parts"]
        assert parts == [
            {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(first).decode()}},
            {"inlineData": {"mimeType": "image/webp",
                            "data": base64.b64encode(second).decode()}},
            {"text": "merge them"}]
        # no size given: the supported ratio nearest to the first input's (1536x1024)
        assert sent.json["generationConfig"]["imageConfig"] == {"aspectRatio": "3:2"}


def test_nano_banana_pro_edit_with_a_size(sdk: openai.OpenAI, fake: Fakes) -> None:
    result = sdk.images.edit(model="nano-banana-pro", image=("a.png", picture()),
                             prompt="wider", size="2048x1152")
    assert result.data is not None
    assert image_of(result.data[0].model_dump()).size == (2752, 1536)  # 16:9 at 2K
    config = fake[1].requests[0].json["generationConfig"]["imageConfig"]
    assert config == {"aspectRatio": "16:9", "imageSize": "2K"}


def test_upstream_refusal_of_an_edit_is_a_clean_error(gw: GatewayServer, token: str,
                                                      fake: Fakes) -> None:
    """A channel that sends a model without edits (dall-e-3 upstream) gets OpenAI's own
    refusal, passed on scrubbed, and nothing charged."""
    r = httpx.post(gw.url + EDITS, headers={"authorization": f"Bearer {token}"}, timeout=60,
                   json={"model": "dall-e-classic", "prompt": "x", "image": data_uri(picture())})
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request", r.text
    assert "Invalid value: 'dall-e-3'" in r.json()["error"]["message"]
    assert r.headers.get("x-credits-charged") is None
    assert_no_leak(r.text, *fake)


def test_gemini_inline_limit_is_named_before_the_call(gw: GatewayServer, token: str,
                                                      fake: Fakes) -> None:
    big = pictures.render(512, 512, "png", "big", "big", pad_to=16 * 1024 * 1024)
    r = httpx.post(gw.url + EDITS, headers={"authorization": f"Bearer {token}"}, timeout=60,
                   files={"image": ("big.png", big, "image/png")},
                   data={"model": "nano-banana-2", "prompt": "x"})
    assert r.status_code == 400, r.text
    assert "Gemini takes at most 21 MB in one request" in r.json()["error"]["message"]
    assert fake[1].requests == []


LITELLM = textwrap.dedent("""
    import io, os, sys
    import litellm
    base, token, path = sys.argv[1:4]
    with open(path, "rb") as f:
        image = io.BytesIO(f.read())
    image.name = "input.png"
    result = litellm.image_edit(model="openai/gpt-image-1", image=image, prompt="litellm edit",
                                api_base=base, api_key=token, size="1024x1024")
    print(result.data[0].url or result.data[0].b64_json[:40])
""")


def test_litellm_image_edit_against_the_gateway(gw: GatewayServer, token: str, fake: Fakes,
                                                tmp_path: pytest.TempPathFactory) -> None:
    source = picture(BLUE, (640, 480))
    path = tmp_path / "input.png"  # type: ignore[operator]
    path.write_bytes(source)
    done = subprocess.run(
        [sys.executable, "-c", LITELLM, f"{gw.url}/v1", token, str(path)],
        capture_output=True, text=True, timeout=180,
        env={**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True"})
    assert done.returncode == 0, done.stderr[-2000:]
    url = done.stdout.strip().splitlines()[-1]
    assert url.startswith(gw.url + "/files/gpt-image/")
    assert httpx.get(url).status_code == 200
    (sent,) = fake[0].requests  # LiteLLM's upload went through to the upstream intact
    form = parse_form(sent.body, sent.headers["content-type"])
    (part,) = form.files("image[]")
    assert hashlib.sha256(part.data).digest() == hashlib.sha256(source).digest()
    assert form.fields()["prompt"] == "litellm edit"
