"""Azure OpenAI, Vertex AI and OpenRouter (issue 18): every seed model through each one's fake,
synchronous and asynchronous, edits, n, faults, failover across types, credentials."""

from __future__ import annotations

import asyncio
import base64
import io
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest
from PIL import Image

from imagegate.testing import FakeAzureOpenAI, FakeOpenRouter, FakeVertex, Fault
from tests.support.edits import BLUE, EDITS, picture
from tests.support.more_upstreams import (
    API_VERSION,
    AZURE_KEY,
    ENTRA_TOKEN,
    ENV,
    OPENROUTER_KEY,
    PROJECT,
    SECRETS,
    Upstreams,
    write_registry,
)
from tests.support.server import GatewayServer
from tests.support.upstreams import error_of, post
from tests.test_async_tasks import wait_status


@pytest.fixture(scope="module")
def ups() -> Iterator[Upstreams]:
    with FakeAzureOpenAI(AZURE_KEY, bearer_token=ENTRA_TOKEN) as azure, \
            FakeVertex(PROJECT) as vertex, FakeOpenRouter(OPENROUTER_KEY) as router:
        yield Upstreams(azure, vertex, router)


@pytest.fixture(scope="module")
def gw(ups: Upstreams, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    data = tmp_path_factory.mktemp("more-upstreams")
    config = write_registry(ups, data / "config")
    server = GatewayServer(data / "d", "--config", str(config), env=ENV).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def token(gw: GatewayServer) -> str:
    return gw.token(credits=100000)


@pytest.fixture()
def fake(ups: Upstreams) -> Iterator[Upstreams]:
    ups.reset()
    yield ups
    ups.reset()


def images(r: httpx.Response, n: int = 1) -> list[Image.Image]:
    assert r.status_code == 200, r.text
    assert len(r.json()["data"]) == n
    out = []
    for item in r.json()["data"]:
        data = (base64.b64decode(item["b64_json"]) if "b64_json" in item
                else httpx.get(item["url"]).content)
        image = Image.open(io.BytesIO(data))
        image.load()
        out.append(image)
    return out


def no_secret(text: str, ups: Upstreams) -> None:
    for secret in (*SECRETS, *ups.vertex.oauth.tokens):
        for piece in (secret, secret[:12], secret[-12:]):
            assert piece not in text, f"{piece!r} leaked: {text[:300]}"
    assert "PRIVATE KEY" not in text and "Bearer " not in text


# (public model, which fake serves it, request extras, expected image size)
SYNC = [
    ("dall-e-3", "azure", {"size": "1792x1024", "quality": "hd"}, (1792, 1024)),
    ("gpt-image-1", "azure", {"size": "1536x1024", "quality": "low"}, (1536, 1024)),
    ("gpt-image-2", "azure", {"size": "2048x1152"}, (2048, 1152)),
    ("gpt-image-2-entra", "azure", {"size": "1024x1024"}, (1024, 1024)),
    ("nano-banana", "vertex", {"size": "1792x1024"}, (1344, 768)),
    ("nano-banana-2", "vertex", {"size": "1792x1024"}, (2752, 1536)),
    ("nano-banana-pro", "vertex", {"size": "1024x1024"}, (1024, 1024)),
    ("nano-banana-or", "router", {"size": "1792x1024"}, (1344, 768)),
    ("nano-banana-2-or", "router", {"size": "1792x1024"}, (2752, 1536)),
    ("nano-banana-pro-or", "router", {"size": "1024x1024"}, (1024, 1024)),
]


@pytest.mark.parametrize(("model", "kind", "extra", "size"), SYNC)
def test_every_seed_model_synchronously(gw: GatewayServer, token: str, fake: Upstreams,
                                        model: str, kind: str, extra: dict[str, str],
                                        size: tuple[int, int]) -> None:
    r = post(gw, token, {"model": model, "prompt": "a lighthouse", **extra})
    assert images(r)[0].size == size
    (sent,) = getattr(fake, kind).requests
    if kind == "azure":
        assert sent.path == "/openai/deployments/gpt-image-2/images/generations"
        assert sent.query == {"api-version": API_VERSION}
        if model.endswith("-entra"):
            assert sent.headers["authorization"] == f"Bearer {ENTRA_TOKEN}"
        else:
            assert sent.headers["api-key"] == AZURE_KEY and "authorization" not in sent.headers
        assert "model" not in sent.json and sent.json["prompt"] == "a lighthouse"
    elif kind == "vertex":
        location = "us-central1" if model == "nano-banana" else "global"
        assert sent.path.startswith(f"/v1/projects/{PROJECT}/locations/{location}/publishers/"
                                    "google/models/gemini-")
        assert sent.headers["authorization"].startswith("Bearer ya29.")
        assert sent.json["generationConfig"]["responseModalities"] == ["IMAGE"]
    else:
        assert sent.path == "/api/v1/chat/completions"
        assert sent.headers["authorization"] == f"Bearer {OPENROUTER_KEY}"
        assert sent.headers["http-referer"] == "https://imagegate.example"
        assert sent.json["modalities"] == ["image", "text"]
        assert sent.json["model"].startswith("google/gemini-")
        assert sent.json["image_config"]["aspect_ratio"] in ("16:9", "1:1")
    if model == "dall-e-3":
        assert sent.json["quality"] == "high"


MODELS = [(model, kind) for model, kind, _, _ in SYNC]


@pytest.mark.parametrize(("model", "kind"), MODELS)
def test_every_seed_model_asynchronously(gw: GatewayServer, token: str, fake: Upstreams,
                                         model: str, kind: str) -> None:
    r = post(gw, token, {"model": model, "prompt": "a harbour", "async": True})
    assert r.status_code == 200 and "data" not in r.json(), r.text
    task = wait_status(gw, token, r.json()["task_id"])
    assert task["status"] == "succeeded", task
    assert len(getattr(fake, kind).requests) == 1


@pytest.mark.parametrize(("model", "kind", "calls"), [
    ("gpt-image-2", "azure", [2]), ("nano-banana", "vertex", [1, 1]),
    ("nano-banana-or", "router", [1, 1])])
def test_n_in_one_call_or_fanned_out(gw: GatewayServer, token: str, fake: Upstreams,
                                     model: str, kind: str, calls: list[int]) -> None:
    images(post(gw, token, {"model": model, "prompt": "two boats", "n": 2}), 2)
    sent = getattr(fake, kind).requests
    assert len(sent) == len(calls)
    if kind == "azure":
        assert [q.json["n"] for q in sent] == calls


@pytest.mark.parametrize(("model", "kind"), MODELS)
def test_every_seed_model_edits(gw: GatewayServer, token: str, fake: Upstreams, model: str,
                                kind: str) -> None:
    source = picture(BLUE, (512, 512))
    r = httpx.post(gw.url + EDITS, headers={"authorization": f"Bearer {token}"}, timeout=60,
                   data={"model": model, "prompt": "paint it red"},
                   files=[("image", ("a.png", source, "image/png"))])
    images(r)
    (sent,) = getattr(fake, kind).requests
    encoded = base64.b64encode(source).decode()
    if kind == "azure":
        assert sent.path == "/openai/deployments/gpt-image-2/images/edits"
        assert sent.query["api-version"] == API_VERSION
        assert sent.headers["content-type"].startswith("multipart/form-data")
        assert source in sent.body
    elif kind == "vertex":
        part = sent.json["contents"][0]["parts"][0]
        assert part["inlineData"] == {"mimeType": "image/png", "data": encoded}
    else:
        part = sent.json["messages"][0]["content"][0]
        assert part == {"type": "image_url",
                        "image_url": {"url": f"data:image/png;base64,{encoded}"}}


KINDS = [("gpt-image-2", "azure"), ("nano-banana", "vertex"), ("nano-banana-or", "router")]


@pytest.mark.parametrize(("model", "kind"), KINDS)
@pytest.mark.parametrize("fault", [Fault(status=429, retry_after=0.3), Fault(status=503),
                                   Fault(delay=2.5)], ids=["429", "503", "timeout"])
def test_transient_faults_are_retried(gw: GatewayServer, token: str, fake: Upstreams,
                                      model: str, kind: str, fault: Fault) -> None:
    upstream = getattr(fake, kind)
    upstream.script(fault)
    images(post(gw, token, {"model": model, "prompt": "a storm"}))
    first, second = upstream.requests
    if fault.retry_after is not None:  # the retry waited at least what the upstream asked
        assert second.time - first.time >= fault.retry_after


@pytest.mark.parametrize(("model", "kind", "fault", "said"), [
    ("gpt-image-2", "azure", Fault(status=400, code="content_policy_violation"),
     "filtered: violence"),
    ("nano-banana", "vertex", Fault(safety="IMAGE_SAFETY"), "IMAGE_SAFETY"),
    ("nano-banana-or", "router", Fault(status=403), "violence"),
    ("nano-banana-or", "router", Fault(safety="IMAGE_SAFETY"), "IMAGE_SAFETY"),
])
def test_content_filters_are_forbidden(gw: GatewayServer, token: str, fake: Upstreams,
                                       model: str, kind: str, fault: Fault, said: str) -> None:
    getattr(fake, kind).script(fault)
    message = error_of(post(gw, token, {"model": model, "prompt": "x"}), 403, "forbidden")
    assert said in message
    assert len(getattr(fake, kind).requests) == 1  # a refusal is not retried


@pytest.mark.parametrize(("model", "said"), [
    ("gpt-image-2-bad-key", "TEST_AZURE_BAD_KEY"),
    ("nano-banana-forged-key", "token grant was refused"),
    ("nano-banana-or-bad-key", "TEST_OPENROUTER_BAD_KEY"),
])
def test_bad_credentials(gw: GatewayServer, token: str, fake: Upstreams, model: str,
                         said: str) -> None:
    r = post(gw, token, {"model": model, "prompt": "x"})
    assert said in error_of(r, 500, "api_error")
    no_secret(r.text, fake)


def test_failover_from_vertex_to_openrouter(gw: GatewayServer, token: str,
                                            fake: Upstreams) -> None:
    fake.vertex.always(Fault(status=503))
    images(post(gw, token, {"model": "nano-banana-failover", "prompt": "x", "n": 2}), 2)
    assert len(fake.vertex.requests) == 2 and len(fake.router.requests) == 2


def test_a_revoked_token_is_replaced_once_for_many_requests(gw: GatewayServer, token: str,
                                                            fake: Upstreams) -> None:
    images(post(gw, token, {"model": "nano-banana", "prompt": "warm up"}))
    issued = len(fake.vertex.oauth.tokens)
    fake.vertex.oauth.revoke_all()

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            return await asyncio.gather(*(client.post(
                gw.url + "/openai/images/generations", headers={
                    "authorization": f"Bearer {token}"},
                json={"model": "nano-banana", "prompt": f"apple {i}"}) for i in range(8)))

    for r in asyncio.run(burst()):
        images(r)
    assert len(fake.vertex.oauth.tokens) == issued + 1


@pytest.mark.parametrize(("model", "kind"), KINDS)
def test_no_key_or_token_in_answers_or_logs(gw: GatewayServer, token: str, fake: Upstreams,
                                            model: str, kind: str) -> None:
    upstream = getattr(fake, kind)
    images(post(gw, token, {"model": model, "prompt": "a key"}))  # a token exists now
    echoed = {"azure": AZURE_KEY, "router": OPENROUTER_KEY,
              "vertex": " ".join(fake.vertex.oauth.tokens)}[kind]  # what each one was sent
    upstream.script(Fault(status=400, message=f"bad credentials: {echoed}"))
    r = post(gw, token, {"model": model, "prompt": "x"})
    assert r.status_code == 400, r.text
    no_secret(r.text, fake)
    no_secret(gw.log(), fake)


def test_regional_and_global_vertex_endpoints(tmp_path: Path) -> None:
    from imagegate.core.routing.registry import UpstreamConfig
    from imagegate.providers.base import ImageRequest
    from imagegate.providers.vertex import VertexProvider

    request = ImageRequest(public_model="nano-banana", family="nano-banana",
                           upstream_model="gemini-2.5-flash-image", prompt="x")
    urls = {}
    for location in ("europe-west4", "global"):
        config = UpstreamConfig(type="vertex", options={"project": "p", "location": location})
        urls[location] = VertexProvider("v", config, {}).endpoint(request)
    path = "publishers/google/models/gemini-2.5-flash-image:generateContent"
    assert urls == {
        "europe-west4": "https://europe-west4-aiplatform.googleapis.com/v1/projects/p/"
                        f"locations/europe-west4/{path}",
        "global": f"https://aiplatform.googleapis.com/v1/projects/p/locations/global/{path}"}


def test_tokens_are_refreshed_before_they_expire_once_for_all(tmp_path: Path) -> None:
    from imagegate.providers.google_tokens import REFRESH_MARGIN, AccessTokens

    with FakeVertex(PROJECT) as vertex:
        vertex.oauth.token_lifetime = int(REFRESH_MARGIN) + 1  # one second of use each
        tokens = AccessTokens(str(vertex.service_account_key(tmp_path / "sa.json")))

        async def run() -> None:
            first = await tokens.token()
            assert await tokens.token() == first and tokens.refreshes == 1
            await asyncio.sleep(1.2)  # into the last REFRESH_MARGIN seconds of its life
            assert vertex.oauth.valid(first)  # not expired: refreshed before it would be
            got = await asyncio.gather(*(tokens.token() for _ in range(20)))
            assert set(got) != {first} and len(set(got)) == 1
            assert tokens.refreshes == 2

        asyncio.run(run())


@pytest.mark.parametrize(("upstream", "said"), [
    ("{type: azure, api_key_env: K}", "type azure needs base_url"),
    ("{type: azure, base_url: 'https://r.openai.azure.com', options: {auth: oauth}}",
     "api-key, bearer or entra"),
    ("{type: azure, base_url: 'https://r.openai.azure.com', options: {auth: entra, "
     "client_id: c}}", "auth entra needs options.tenant_id: the service principal's"),
    ("{type: bedrock}", "'openai', 'gemini', 'azure', 'vertex', 'openrouter' or 'sandbox'"),
])
def test_registry_refuses_an_unusable_upstream(upstream: str, said: str) -> None:
    from imagegate.core.routing.registry import ConfigError, parse_registry

    with pytest.raises(ConfigError, match=said):
        parse_registry(f"upstreams: {{up: {upstream}}}\nmodels: {{}}\n", "test.yaml")


@pytest.mark.parametrize(("model", "kind"), [("gpt-image-2", "azure"),
                                             ("nano-banana-or", "router")])
def test_a_stream_from_an_upstream_that_answers_whole(gw: GatewayServer, token: str,
                                                      fake: Upstreams, model: str,
                                                      kind: str) -> None:
    """Azure here answers `stream: true` with one JSON body, and OpenRouter's chat images
    do not stream: the client still gets its stream, of completed images only."""
    r = httpx.post(gw.url + "/v1/images/generations", timeout=60,
                   headers={"authorization": f"Bearer {token}"},
                   json={"model": model, "prompt": "whole", "stream": True,
                         "partial_images": 2})
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    (block,) = [b for b in r.text.split("\n\n") if b]
    assert block.startswith("event: image_generation.completed\ndata: ")
    (sent,) = getattr(fake, kind).requests
    if kind == "azure":
        assert sent.json["stream"] is True and sent.json["partial_images"] == 2


@pytest.mark.parametrize(("model", "kind", "partials"), [
    ("nano-banana-pro", "vertex", 2),  # streamGenerateContent: the thought drafts are partials
    ("gpt-image-2", "azure", 0),  # answered whole: the completed image only
    ("nano-banana-or", "router", 0),  # chat completions answer whole too
])
def test_streams_through_each_provider(gw: GatewayServer, token: str, fake: Upstreams,
                                       model: str, kind: str, partials: int) -> None:
    sdk = openai.OpenAI(base_url=gw.url + "/v1", api_key=token, max_retries=0, timeout=60)
    events = list(sdk.images.generate(model=model, prompt="a lantern", stream=True,
                                      partial_images=2, size="1024x1024"))
    assert [e.type for e in events] == ["image_generation.partial_image"] * partials + [
        "image_generation.completed"]
    done = events[-1]
    assert Image.open(io.BytesIO(base64.b64decode(done.b64_json))).size == (1024, 1024)
    assert (done.model_extra or {})["task_id"]
    if kind == "vertex":  # twice when an earlier test revoked the cached token: 401, refresh
        for sent in fake.vertex.requests:
            assert sent.path.endswith("/gemini-3-pro-image-preview:streamGenerateContent")
            assert sent.query == {"alt": "sse"}
    no_secret(str([e.model_dump() for e in events]), fake)


def test_an_unreadable_vertex_key_file_is_said_at_startup(ups: Upstreams, tmp_path: Path) -> None:
    """Not at the first request: the model is listed unavailable, naming the file, and a
    model with another usable channel still serves."""
    good = ups.vertex.service_account_key(tmp_path / "sa.json")
    missing, folder = tmp_path / "gone.json", tmp_path / "keys"
    folder.mkdir()
    vertex = f"type: vertex, base_url: '{ups.vertex.base_url}', timeout: 5"
    config = tmp_path / "models.yaml"
    config.write_text(f"""
upstreams:
  v-missing: {{{vertex}, options: {{project: {PROJECT}, key_file: '{missing}'}}}}
  v-folder: {{{vertex}, options: {{project: {PROJECT}, key_file: '{folder}'}}}}
  v-good: {{{vertex}, options: {{project: {PROJECT}, key_file: '{good}'}}}}
models:
  nano-banana:
    family: nano-banana
    price: 0.04
    channels: [{{upstream: v-missing, model: gemini-2.5-flash-image}},
               {{upstream: v-folder, model: gemini-2.5-flash-image}}]
  nano-banana-2:
    family: nano-banana
    price: 0.04
    channels: [{{upstream: v-missing, model: gemini-2.5-flash-image}},
               {{upstream: v-good, model: gemini-2.5-flash-image, priority: 1}}]
""")
    with GatewayServer(tmp_path / "d", "--config", str(config), env=ENV) as server:
        token = server.token(credits=10)
        listed = {m["id"]: m for m in httpx.get(
            server.url + "/v1/models", headers={"authorization": f"Bearer {token}"}
        ).json()["data"]}
        assert not listed["nano-banana"]["available"]
        reason = listed["nano-banana"]["unavailable_reason"]
        assert f"options.key_file to a readable service-account key file ({missing}: " \
               "not found)" in reason
        assert f"({folder}: a directory)" in reason
        assert listed["nano-banana-2"]["available"]
        r = post(server, token, {"model": "nano-banana", "prompt": "x"})
        assert r.status_code == 500 and "is not available" in r.text and str(missing) in r.text
        assert "model_unavailable" in server.log() and str(missing) in server.log()
        r = post(server, token, {"model": "nano-banana-2", "prompt": "x"})
        assert r.status_code == 200, r.text
