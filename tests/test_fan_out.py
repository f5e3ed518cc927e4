"""Routing choices. n > 1 on upstreams that make one image per call: n calls at once, each
retried and failed over on its own, and an image once made is never asked for (and paid
for) again. Values an upstream model refuses (gpt-image-2: background transparent): the
channel is skipped, and a 400 naming the parameter when no channel is left."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
from openai import OpenAI

from imagegate.testing import FakeGemini, FakeOpenAI, Fault
from tests.support import db
from tests.support.server import GatewayServer
from tests.support.upstreams import (
    GEMINI_KEY,
    NO_BREAKER,
    OPENAI_KEY,
    Fakes,
    error_of,
    fresh,
    post,
    registry_yaml,
    write_config,
)

# Gemini's models as an OpenAI-compatible relay serves them (the fake OpenAI speaks for one)
RELAYED = """
  nano-banana-relay:
    family: nano-banana
    price: 0.14
    channels:
      - upstream: openai
        model: gemini-2.5-flash-image
  nano-banana-relay-batched:
    family: nano-banana
    price: 0.14
    channels:
      - upstream: openai
        model: gemini-2.5-flash-image
        fan_out: false
  gpt-image-1-packaged:
    family: gpt-image
    price: 0.042
    sizes: [1024x1024, 1536x1024, 1024x1536]
    channels:
      - upstream: openai
        model: gpt-image-2
        unsupported: {background: [transparent]}
  gpt-image-1-mixed:
    family: gpt-image
    price: 0.042
    sizes: [1024x1024, 1536x1024, 1024x1536]
    channels:
      - upstream: openai
        model: gpt-image-2
        unsupported: {background: [transparent]}
      - upstream: openai
        model: gpt-image-1-mini
        priority: 1
  gpt-image-fanned:
    family: gpt-image
    price: 0.05
    sizes: flexible
    channels:
      - upstream: openai-one-per-call
        model: gpt-image-2
  nano-banana-failover:
    family: nano-banana
    price: 0.14
    channels:
      - upstream: gemini
        model: gemini-2.5-flash-image
        max_retries: 0
      - upstream: openai
        model: gemini-2.5-flash-image
        priority: 1
        fan_out: true
"""


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    with FakeOpenAI(api_key=OPENAI_KEY) as openai, FakeGemini(api_key=GEMINI_KEY) as gemini:
        yield openai, gemini, openai


@pytest.fixture(scope="module")
def gw(fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    data = tmp_path_factory.mktemp("fan-out")
    text = registry_yaml(fakes[0], fakes[1], max_retries=2).replace("models:\n", f"""
  openai-one-per-call:
    type: openai
    base_url: {fakes[0].base_url}
    api_key_env: TEST_OPENAI_KEY
    fan_out: true
models:
""", 1)
    config = write_config(data / "models.yaml", text + RELAYED)
    server = GatewayServer(data / "d", "--config", str(config), env=NO_BREAKER).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def token(gw: GatewayServer) -> str:
    return gw.token(credits=1000)


@pytest.fixture()
def fake(fakes: Fakes) -> Iterator[Fakes]:
    with fresh(fakes) as clean:
        yield clean


def _images(r: httpx.Response, n: int) -> None:
    assert r.status_code == 200, r.text
    assert len(r.json()["data"]) == n
    for item in r.json()["data"]:
        assert httpx.get(item["url"]).status_code == 200


def test_a_failed_call_is_retried_alone(gw: GatewayServer, token: str, fake) -> None:
    gemini = fake[1]
    gemini.script(Fault(status=500))  # the first of the three calls to arrive fails once
    r = post(gw, token, {"model": "nano-banana", "prompt": "three apples", "n": 3})
    _images(r, 3)
    assert len(gemini.requests) == 4  # three calls and one retry, not the three again


def test_images_made_are_kept_when_the_rest_fail_over(gw: GatewayServer, token: str,
                                                      fake) -> None:
    openai, gemini, _ = fake
    gemini.script(Fault(status=503), Fault(status=503))  # two of three fail, no retries
    r = post(gw, token, {"model": "nano-banana-failover", "prompt": "pears", "n": 3})
    _images(r, 3)
    assert len(gemini.requests) == 3
    assert [q.json["n"] for q in openai.requests] == [1, 1]  # only the two missing images
    (upstream,) = db.query(gw.data_dir, "SELECT upstream FROM tasks WHERE id = ?",
                           r.json()["task_id"])[0]
    assert upstream == "gemini/gemini-2.5-flash-image,openai/gemini-2.5-flash-image"


def test_an_upstream_can_declare_one_image_per_call(gw: GatewayServer, token: str,
                                                    fake) -> None:
    openai = fake[0]
    r = post(gw, token, {"model": "gpt-image-fanned", "prompt": "figs", "n": 3})
    _images(r, 3)
    assert [q.json["n"] for q in openai.requests] == [1, 1, 1]
    r = post(gw, token, {"model": "gpt-image-2", "prompt": "figs", "n": 3})  # the same fake
    _images(r, 3)
    assert [q.json["n"] for q in openai.requests[3:]] == [3]


def test_a_gemini_model_behind_an_openai_channel(gw: GatewayServer, token: str, fake) -> None:
    openai = fake[0]
    r = post(gw, token, {"model": "nano-banana-relay", "prompt": "plums", "n": 2,
                         "size": "1792x1024"})
    _images(r, 2)
    assert [(q.json["n"], q.json["model"]) for q in openai.requests] == [
        (1, "gemini-2.5-flash-image")] * 2
    sdk = OpenAI(base_url=gw.url + "/v1", api_key=token, max_retries=0)
    images = sdk.images.generate(model="nano-banana-relay", prompt="plums", n=3)
    assert len(images.data) == 3 and all(i.url for i in images.data)
    assert len(openai.requests) == 2 + 3
    # what the same channel does with fan_out turned off: the relay passes Google's refusal on
    r = post(gw, token, {"model": "nano-banana-relay-batched", "prompt": "plums", "n": 2})
    assert "Multiple candidates is not enabled" in error_of(r, 400, "bad_request")
    assert post(gw, token, {"model": "nano-banana-relay-batched",
                            "prompt": "one plum"}).status_code == 200


def test_a_refusal_stops_the_other_calls_and_charges_nothing(gw: GatewayServer, token: str,
                                                              fake) -> None:
    gemini = fake[1]
    gemini.script(Fault(safety="IMAGE_SAFETY"))
    before = db.query(gw.data_dir, "SELECT balance FROM credentials WHERE name = 'test'")
    r = post(gw, token, {"model": "nano-banana", "prompt": "x", "n": 4})
    error_of(r, 403, "forbidden")
    assert len(gemini.requests) <= 4  # nothing retried
    assert db.query(gw.data_dir, "SELECT balance FROM credentials WHERE name = 'test'"
                    ) == before


@pytest.mark.parametrize(("fault", "said"), [
    (Fault(text_only="Which kind of apple do you mean?"), "Which kind of apple do you mean?"),
    (Fault(safety="OTHER"), "unable to create that image"),
])
def test_an_answer_without_an_image_is_retried_once_and_quoted(
        gw: GatewayServer, token: str, fake, fault: Fault, said: str) -> None:
    gemini = fake[1]
    gemini.always(fault)
    r = post(gw, token, {"model": "nano-banana", "prompt": "an apple"})
    message = error_of(r, 500, "api_error")
    assert said in message and "without an image" in message
    assert len(gemini.requests) == 2  # one retry, not the channel's two
    gemini.reset()
    gemini.script(fault)  # once only: the retry draws
    assert post(gw, token, {"model": "nano-banana", "prompt": "an apple"}).status_code == 200


def _balance(gw: GatewayServer) -> object:
    return db.query(gw.data_dir, "SELECT balance FROM credentials WHERE name = 'test'")


def test_a_transparent_gpt_image_1_is_refused_before_anything_is_charged(
        gw: GatewayServer, token: str, fake) -> None:
    openai = fake[0]
    before = _balance(gw)
    body = {"model": "gpt-image-1-packaged", "prompt": "a sticker", "background": "transparent"}
    message = error_of(post(gw, token, body), 400, "bad_request")
    assert "background" in message and "gpt-image-2" in message, message
    assert openai.requests == [] and _balance(gw) == before
    assert post(gw, token, {**body, "background": "opaque"}).status_code == 200
    assert openai.requests[0].json["background"] == "opaque"


def test_without_the_declaration_gpt_image_2_refuses_it_and_nothing_is_charged(
        gw: GatewayServer, token: str, fake) -> None:
    openai = fake[0]
    before = _balance(gw)
    r = post(gw, token, {"model": "gpt-image-1", "prompt": "a sticker",
                         "background": "transparent"})
    assert "Transparent background is not supported" in error_of(r, 400, "bad_request")
    assert len(openai.requests) == 1 and _balance(gw) == before  # a refusal: not retried


def test_a_refused_value_goes_to_the_channel_that_takes_it(gw: GatewayServer, token: str,
                                                           fake) -> None:
    openai = fake[0]
    r = post(gw, token, {"model": "gpt-image-1-mixed", "prompt": "a sticker",
                         "background": "transparent", "response_format": "b64_json"})
    assert r.status_code == 200, r.text
    assert [(q.json["model"], q.json["background"]) for q in openai.requests] == [
        ("gpt-image-1-mini", "transparent")]
    post(gw, token, {"model": "gpt-image-1-mixed", "prompt": "a poster"})
    assert openai.requests[1].json["model"] == "gpt-image-2"


def test_a_stream_also_skips_the_channel_that_refuses_a_value(gw: GatewayServer, token: str,
                                                              fake) -> None:
    openai = fake[0]
    sdk = OpenAI(base_url=gw.url + "/v1", api_key=token, max_retries=0, timeout=60)
    events = list(sdk.images.generate(model="gpt-image-1-mixed", prompt="a sticker",
                                      background="transparent", stream=True, partial_images=1))
    assert [e.type for e in events] == ["image_generation.partial_image",
                                        "image_generation.completed"]
    assert [(q.json["model"], q.json["background"], q.json["stream"])
            for q in openai.requests] == [("gpt-image-1-mini", "transparent", True)]
