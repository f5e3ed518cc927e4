"""The official openai SDK pointed at the gateway works unmodified."""

from __future__ import annotations

import base64
import io

import httpx
import openai
import pytest
from PIL import Image

from tests.support.server import GatewayServer

# what these check happens above the database: SQLite only (the database layer runs on
# both in test_billing, test_crash_safety, test_hardening, test_scaleout ...)
pytestmark = [pytest.mark.usefixtures("backend"),
              pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]


@pytest.fixture()
def sdk(sandbox: GatewayServer, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{sandbox.url}/v1", api_key=token, max_retries=0)


def test_generate_url(sdk: openai.OpenAI) -> None:
    result = sdk.images.generate(model="gpt-image-2", prompt="a lighthouse", size="1536x1024",
                                 quality="high")
    assert result.data and result.data[0].url
    image = Image.open(io.BytesIO(httpx.get(result.data[0].url).content))
    assert image.size == (1536, 1024)


def test_generate_b64_webp(sdk: openai.OpenAI) -> None:
    result = sdk.images.generate(model="gpt-image-1", prompt="a lighthouse", n=2,
                                 response_format="b64_json", output_format="webp",
                                 background="opaque")
    assert result.data is not None and len(result.data) == 2
    for item in result.data:
        assert item.b64_json
        image = Image.open(io.BytesIO(base64.b64decode(item.b64_json)))
        assert image.format == "WEBP" and image.convert("RGBA").getpixel((0, 0))[3] == 255


def test_the_sandbox_refuses_what_production_refuses(sdk: openai.OpenAI) -> None:
    """gpt-image-1 and -2 are both served by gpt-image-2, which has no transparent
    backgrounds: the packaged channels refuse it, and so does the sandbox standing in."""
    for model in ("gpt-image-1", "gpt-image-2"):
        with pytest.raises(openai.BadRequestError) as exc:
            sdk.images.generate(model=model, prompt="x", background="transparent")
        assert exc.value.status_code == 400
        assert (f'background "transparent" is not supported by {model}: it is served by '
                "gpt-image-2, which does not accept it") in str(exc.value)


def test_sdk_errors_carry_the_code(sdk: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as exc:
        sdk.images.generate(model="dall-e-3", prompt="x", size="512x512")
    body = exc.value.body
    assert isinstance(body, dict)
    assert "size" in str(exc.value)


def test_sdk_bad_token(sandbox: GatewayServer) -> None:
    sdk = openai.OpenAI(base_url=f"{sandbox.url}/v1", api_key="ig-nope-nope-nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        sdk.images.generate(model="dall-e-3", prompt="x")
