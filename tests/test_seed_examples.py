"""Every request example of the seed document, sent the way the seed sends it (requests)."""

from __future__ import annotations

import base64
import io
import uuid

import pytest
import requests
from PIL import Image

from tests.support.server import GatewayServer

# what these check happens above the database: SQLite only (the database layer runs on
# both in test_billing, test_crash_safety, test_hardening, test_scaleout ...)
pytestmark = [pytest.mark.usefixtures("backend"),
              pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]

GPT2_SCENES = [
    ("A cinematic portrait of a young woman standing in a convenience store at night, "
     "illuminated by soft pink and cyan neon signs through the window. Shot on 35mm film, "
     "shallow depth of field, slight grain, melancholic mood.", "1024x1536"),
    ("A vintage travel poster of the Amalfi Coast, Italy. Stylized art-deco illustration of "
     "cliffside lemon-yellow houses cascading down to a turquoise sea, with a small white "
     "sailboat in the harbor. Bold typography at the top reads AMALFI and at the bottom ITALIA "
     "1958. Limited color palette: cream, sea-blue, lemon yellow, terracotta. Slight "
     "paper-grain texture.", "1024x1536"),
    ("A wooden bookshelf consisting of three shelves: On the top shelf, there should be one "
     "book. On the second shelf, there should be three books. On the bottom shelf, there "
     "should be seven books. Soft warm lighting, photorealistic, cozy library atmosphere.",
     "1024x1024"),
    ("A soft, poetic children's book illustration of a small fox reading a book under a "
     "glowing mushroom in a moonlit forest. Watercolor and pencil texture, gentle pastel "
     "colors, dreamy atmosphere, hand-drawn feel.", "1536x1024"),
]


def post(server: GatewayServer, token: str, payload: dict[str, object]) -> requests.Response:
    url = f"{server.url}/openai/images/generations"
    headers = {
        "accept": "application/json",
        "authorization": f"Bearer {token}",
        "content-type": "application/json",
    }
    return requests.post(url, json=payload, headers=headers, timeout=60)


def fetch_image(url: str) -> Image.Image:
    r = requests.get(url, timeout=30)
    assert r.status_code == 200, r.text
    assert r.headers["cache-control"] == "public, max-age=31536000, immutable"
    image = Image.open(io.BytesIO(r.content))
    image.load()
    assert r.headers["content-type"] == Image.MIME[image.format]
    return image


def check_success(r: requests.Response, prompt: str) -> dict[str, object]:
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True
    uuid.UUID(body["task_id"])
    assert body["trace_id"] == r.headers["x-trace-id"]
    assert isinstance(body["created"], int) and body["created"] > 1_700_000_000
    assert len(body["data"]) == 1
    assert body["data"][0]["revised_prompt"] == prompt
    return body


@pytest.mark.parametrize(("prompt", "size"), GPT2_SCENES)
def test_gpt_image_2_scenes(sandbox: GatewayServer, token: str, prompt: str, size: str) -> None:
    r = post(sandbox, token, {"model": "gpt-image-2", "prompt": prompt, "size": size})
    body = check_success(r, prompt)
    url = body["data"][0]["url"]
    task_id = body["task_id"]
    assert url == f"{sandbox.url}/files/gpt-image/{task_id}_0.png"
    image = fetch_image(url)
    assert (image.format, f"{image.width}x{image.height}") == ("PNG", size)


@pytest.mark.parametrize("model", ["nano-banana", "nano-banana-pro"])
@pytest.mark.parametrize(("prompt", "size"), [
    ("a small red apple on a white table, photoreal", "1024x1024"),
    ("abstract painting", "1024x1024"),
])
def test_nano_banana(sandbox: GatewayServer, token: str, model: str, prompt: str,
                     size: str) -> None:
    r = post(sandbox, token, {"model": model, "prompt": prompt, "size": size})
    body = check_success(r, prompt)
    assert body["data"][0]["url"].startswith(f"{sandbox.url}/files/nano-banana/")
    image = fetch_image(body["data"][0]["url"])
    assert (image.format, image.size) == ("PNG", (1024, 1024))


@pytest.mark.parametrize(("extra", "size"), [
    ({}, (1024, 1024)),
    ({"quality": "standard"}, (1024, 1024)),
    ({"quality": "hd"}, (1024, 1024)),
    ({"size": "1024x1024"}, (1024, 1024)),
    ({"size": "1792x1024"}, (1792, 1024)),
    ({"style": "vivid"}, (1024, 1024)),
    ({"style": "natural"}, (1024, 1024)),
    ({"response_format": "url"}, (1024, 1024)),
])
def test_dalle_3_variants(sandbox: GatewayServer, token: str, extra: dict[str, str],
                          size: tuple[int, int]) -> None:
    prompt = "A cute baby sea otter"
    r = post(sandbox, token, {"model": "dall-e-3", "prompt": prompt, **extra})
    body = check_success(r, prompt)
    image = fetch_image(body["data"][0]["url"])
    assert (image.format, image.size) == ("PNG", size)


def test_dalle_3_b64_json(sandbox: GatewayServer, token: str) -> None:
    prompt = "A cute baby sea otter"
    r = post(sandbox, token, {"model": "dall-e-3", "prompt": prompt,
                              "response_format": "b64_json"})
    body = check_success(r, prompt)
    item = body["data"][0]
    assert "url" not in item
    image = Image.open(io.BytesIO(base64.b64decode(item["b64_json"])))
    assert (image.format, image.size) == ("PNG", (1024, 1024))
    # the image is still hosted
    key = f"dalle/{body['task_id']}_0.png"
    assert fetch_image(f"{sandbox.url}/files/{key}").size == (1024, 1024)


def test_client_trace_id_is_echoed(sandbox: GatewayServer, token: str) -> None:
    r = post(sandbox, token, {"model": "nano-banana", "prompt": "x", "trace_id": "my-trace-1"})
    assert r.status_code == 200
    assert r.json()["trace_id"] == "my-trace-1"
    assert r.headers["x-trace-id"] == "my-trace-1"


def test_credits_header(sandbox: GatewayServer, token: str) -> None:
    r = post(sandbox, token, {"model": "nano-banana-2", "prompt": "x"})
    assert r.headers["x-credits-charged"] == "0.28"
