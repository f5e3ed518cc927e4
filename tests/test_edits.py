"""Image edits on a sandbox gateway: the official SDK's images.edit for every model, the JSON
form (data: URI, a chained /files/ URL), async with a signed callback, task records, and
edit prices."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from imagegate import webhooks
from imagegate.core.routing.registry import default_config_text
from tests.support import backend as backends
from tests.support.edits import (
    BLUE,
    EDITS,
    GREEN,
    RED,
    data_uri,
    image_of,
    mask,
    near,
    picture,
)
from tests.support.receiver import CallbackReceiver
from tests.support.server import GatewayServer

pytestmark = pytest.mark.usefixtures("backend")  # SQLite and PostgreSQL

MODELS = ["dall-e-3", "gpt-image-1", "gpt-image-2", "nano-banana", "nano-banana-2",
          "nano-banana-pro"]
MASKED = ["dall-e-3", "gpt-image-1", "gpt-image-2"]
EDIT_PRICE = 0.2  # nano-banana's edit tier in this module's config (generations: 0.14)


@pytest.fixture(scope="module")
def gw(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    backends.current = backend
    data = tmp_path_factory.mktemp(f"edits-{backend}")
    config = yaml.safe_load(default_config_text())
    config["models"]["nano-banana"]["tiers"] = [{"operation": "edits", "price": EDIT_PRICE}]
    (data / "models.yaml").write_text(yaml.safe_dump(config))
    server = GatewayServer(data / "d", "--sandbox", "--config", str(data / "models.yaml"), env={
        "IMAGEGATE_CALLBACK_ALLOW": '["127.0.0.0/8"]', "IMAGEGATE_POLL_INTERVAL": "0.2",
        "IMAGEGATE_CALLBACK_BASE_DELAY": "0.1"})
    yield server.start()
    server.stop()


@pytest.fixture(scope="module")
def cred(gw: GatewayServer) -> tuple[str, str]:
    return gw.credential(credits=1000, name="edits")


@pytest.fixture()
def sdk(gw: GatewayServer, cred: tuple[str, str]) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{gw.url}/v1", api_key=cred[0], max_retries=0)


def post(gw: GatewayServer, token: str, body: dict[str, object]) -> httpx.Response:
    return httpx.post(gw.url + EDITS, json=body, headers={"authorization": f"Bearer {token}"},
                      timeout=60)


@pytest.mark.parametrize("model", MODELS)
def test_sdk_edit_one_image_as_url(sdk: openai.OpenAI, model: str) -> None:
    raw = sdk.images.with_raw_response.edit(
        model=model, image=("red.png", picture(RED, (384, 256)), "image/png"),
        prompt="make it look like dusk")
    result = raw.parse()
    assert result.data is not None and len(result.data) == 1 and result.data[0].url
    image = image_of(result.data[0].model_dump())
    # the sandbox edits the input: its colour survives, in the input's shape when no size
    assert near(image.getpixel((image.width // 2, image.height // 3)), RED), model
    if model.startswith(("gpt-image", "nano-banana")):
        assert abs(image.width / image.height - 1.5) < 0.1, image.size
    assert float(raw.headers["x-credits-charged"]) > 0


@pytest.mark.parametrize("model", MODELS)
def test_sdk_edit_two_images_as_b64(sdk: openai.OpenAI, model: str) -> None:
    result = sdk.images.edit(
        model=model, prompt="put the two together", response_format="b64_json",
        image=[("red.png", picture(RED)), ("blue.jpg", picture(BLUE, fmt="JPEG"))])
    assert result.data is not None and result.data[0].b64_json
    image = image_of(result.data[0].model_dump())
    assert near(image.getpixel((image.width // 2, image.height // 3)), RED)
    # the second input is there too: a thumbnail of it along the bottom
    row = image.height - image.height // 10 - 12
    assert any(near(image.getpixel((x, row)), BLUE) for x in range(8, image.width // 4, 4))


@pytest.mark.parametrize("model", MASKED)
def test_sdk_edit_with_mask(sdk: openai.OpenAI, model: str) -> None:
    size = "1024x1024" if model != "gpt-image-1" else "1536x1024"
    result = sdk.images.edit(model=model, image=("red.png", picture(RED, (384, 256))),
                             mask=("mask.png", mask((384, 256))), prompt="a sun", size=size)
    assert result.data is not None
    image = image_of(result.data[0].model_dump())
    assert image.size == tuple(int(v) for v in size.split("x"))
    # the transparent quarter of the mask was edited, the rest kept
    assert not near(image.getpixel((10, 10)), RED)
    assert near(image.getpixel((image.width * 3 // 4, image.height // 2)), RED)


def test_json_data_uri_then_the_result_by_its_files_url(gw: GatewayServer,
                                                       cred: tuple[str, str]) -> None:
    first = post(gw, cred[0], {"model": "nano-banana-2", "prompt": "greener",
                               "image": data_uri(picture(GREEN, (512, 512)))})
    assert first.status_code == 200, first.text
    task = httpx.get(f"{gw.url}/v1/tasks/{first.json()['task_id']}",
                     headers={"authorization": f"Bearer {cred[0]}"}).json()
    (stored,) = task["request"]["inputs"]["images"]
    assert not (gw.data_dir / "files" / stored["key"]).exists()  # deleted before the answer
    url = first.json()["data"][0]["url"]
    assert url.startswith(gw.url + "/files/")
    # generate, then edit the result: the gateway reads its own file from storage
    second = post(gw, cred[0], {"model": "gpt-image-2", "prompt": "now at night",
                                "image": [url], "size": "1024x1024"})
    assert second.status_code == 200, second.text
    image = image_of(second.json()["data"][0])
    assert image.size == (1024, 1024) and near(image.getpixel((512, 300)), GREEN)
    # a path of ours works as well as the full URL
    third = post(gw, cred[0], {"model": "nano-banana", "prompt": "again",
                               "image": url.removeprefix(gw.url)})
    assert third.status_code == 200, third.text


def test_async_edit_with_a_signed_callback(gw: GatewayServer, cred: tuple[str, str]) -> None:
    token, secret = cred
    with CallbackReceiver() as receiver:
        r = post(gw, token, {"model": "gpt-image-1", "prompt": "async edit",
                             "image": [data_uri(picture(RED)), data_uri(picture(BLUE))],
                             "callback_url": receiver.url + "/hook"})
        assert r.status_code == 200, r.text
        task_id = r.json()["task_id"]
        assert set(r.json()) == {"task_id", "trace_id"}
        (hook,) = receiver.wait_for(1, timeout=30)
    body = hook.json
    assert body["success"] is True and body["task_id"] == task_id
    assert webhooks.verify(secret, hook.body, hook.headers["x-imagegate-signature"])
    assert near(image_of(body["data"]["data"][0]).getpixel((200, 100)), RED)
    task = httpx.get(f"{gw.url}/v1/tasks/{task_id}",
                     headers={"authorization": f"Bearer {token}"}).json()
    assert task["type"] == "images_edits" and task["status"] == "succeeded"
    # the record refers to stored inputs by key; it never carries their bytes
    inputs = task["request"]["inputs"]
    assert [i["mime_type"] for i in inputs["images"]] == ["image/png", "image/png"]
    assert "image" not in task["request"] and len(json.dumps(task)) < 4000
    for stored in inputs["images"]:
        key = stored["key"]
        assert key.startswith("inputs/") and len(Path(key).stem) >= 32  # unguessable
    # the inputs served the run only: gone once its end is recorded (the hook may be first)
    assert gone(gw, [i["key"] for i in inputs["images"]])
    batch = httpx.post(f"{gw.url}/openai/tasks", headers={"authorization": f"Bearer {token}"},
                       json={"action": "retrieve_batch", "type": "images_edits", "limit": 100})
    assert task_id in [t["id"] for t in batch.json()["items"]]
    assert {t["type"] for t in batch.json()["items"]} == {"images_edits"}


def test_async_edit_is_polled_to_its_end(gw: GatewayServer, cred: tuple[str, str]) -> None:
    r = post(gw, cred[0], {"model": "nano-banana-pro", "prompt": "later", "async": True,
                           "image": data_uri(picture(BLUE, fmt="WEBP"), "image/webp")})
    task_id = r.json()["task_id"]
    found = httpx.post(f"{gw.url}/openai/tasks", headers={"authorization": f"Bearer {cred[0]}"},
                       json={"action": "retrieve", "id": task_id}).json()
    assert found["type"] == "images_edits" and found["status"] in ("queued", "running",
                                                                   "succeeded")
    deadline = time.monotonic() + 30
    while (task := httpx.get(f"{gw.url}/v1/tasks/{task_id}",
                             headers={"authorization": f"Bearer {cred[0]}"}).json()
           )["status"] in ("queued", "running") and time.monotonic() < deadline:
        time.sleep(0.1)
    assert task["status"] == "succeeded", task
    assert near(image_of(task["response"]["data"][0]).getpixel((300, 200)), BLUE)


def test_edit_prices_come_from_edit_tiers(gw: GatewayServer, cred: tuple[str, str]) -> None:
    auth = {"authorization": f"Bearer {cred[0]}"}
    gen = httpx.post(gw.url + "/openai/images/generations", headers=auth, timeout=60,
                     json={"model": "nano-banana", "prompt": "an apple"})
    assert gen.headers["x-credits-charged"] == "0.14"
    edit = post(gw, cred[0], {"model": "nano-banana", "prompt": "an apple",
                              "image": data_uri(picture())})
    assert edit.headers["x-credits-charged"] == str(EDIT_PRICE)
    # a model with no edit tier charges an edit what it charges a generation
    other = post(gw, cred[0], {"model": "gpt-image-1", "prompt": "x", "quality": "low",
                               "image": data_uri(picture())})
    assert other.headers["x-credits-charged"] == "0.011"
    listed = httpx.get(gw.url + "/v1/models/nano-banana", headers=auth).json()
    assert listed["price_tiers"] == [{"operation": "edits", "price": EDIT_PRICE}]


def test_indexed_image_fields_and_a_url_among_files(gw: GatewayServer, sdk: openai.OpenAI,
                                                    cred: tuple[str, str]) -> None:
    """Some clients number their parts (image[0], image[1]); a text image[] is a URL."""
    made = sdk.images.edit(model="nano-banana", image=("g.png", picture(GREEN)), prompt="x")
    assert made.data is not None and made.data[0].url
    r = httpx.post(gw.url + EDITS, headers={"authorization": f"Bearer {cred[0]}"}, timeout=60,
                   data={"model": "gpt-image-2", "prompt": "three", "image[]": made.data[0].url,
                         "size": "1024x1024"},
                   files=[("image[0]", ("a.png", picture(RED))),
                          ("image[1]", ("b.png", picture(BLUE)))])
    assert r.status_code == 200, r.text
    task = httpx.get(f"{gw.url}/v1/tasks/{r.json()['task_id']}",
                     headers={"authorization": f"Bearer {cred[0]}"}).json()
    assert len(task["request"]["inputs"]["images"]) == 3
    image = image_of(r.json()["data"][0])
    assert near(image.getpixel((512, 300)), GREEN)  # the URL came first in the form


def test_idempotent_edit_is_answered_once_and_charged_once(gw: GatewayServer,
                                                          cred: tuple[str, str]) -> None:
    headers = {"authorization": f"Bearer {cred[0]}", "idempotency-key": f"edit-{time.time()}"}

    def send(colour: tuple[int, int, int]) -> httpx.Response:
        return httpx.post(gw.url + EDITS, headers=headers, timeout=60,
                          data={"model": "nano-banana", "prompt": "once"},
                          files={"image": ("a.png", picture(colour))})

    first, again = send(RED), send(RED)
    assert first.status_code == again.status_code == 200, again.text
    assert again.json()["task_id"] == first.json()["task_id"]
    assert again.headers["idempotent-replayed"] == "true"
    assert again.headers["x-credits-charged"] == "0"
    other = send(BLUE)  # the same key with other image bytes is another request
    assert other.status_code == 409 and other.json()["error"]["code"] == "conflict"


def gone(gw: GatewayServer, keys: list[str], within: float = 10) -> bool:
    deadline = time.monotonic() + within
    while any((gw.data_dir / "files" / k).exists() for k in keys):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_inputs_are_kept_when_the_operator_says_so(backend: str, tmp_path: Path) -> None:
    with GatewayServer(tmp_path / "d", "--sandbox",
                       env={"IMAGEGATE_KEEP_EDIT_INPUTS": "true"}) as server:
        token = server.token(credits=10)
        r = post(server, token, {"model": "gpt-image-2", "prompt": "kept",
                                 "image": data_uri(picture(RED, (256, 256)))})
        assert r.status_code == 200, r.text
        task = httpx.get(f"{server.url}/v1/tasks/{r.json()['task_id']}",
                         headers={"authorization": f"Bearer {token}"}).json()
        (stored,) = task["request"]["inputs"]["images"]
        assert (server.data_dir / "files" / stored["key"]).stat().st_size == stored["bytes"]
