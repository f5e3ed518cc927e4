"""Every seed model through the real providers to the fake upstreams, and every fault."""

from __future__ import annotations

import base64
import io
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from imagegate.testing import FakeGemini, FakeOpenAI, Fault
from tests.support import db
from tests.support.server import GatewayServer
from tests.support.upstreams import (
    FAST_RETRIES,
    GEMINI_KEY,
    NO_BREAKER,
    OPENAI_KEY,
    Fakes,
    assert_no_leak,
    error_of,
    fresh,
    post,
    registry_yaml,
    start_gateway,
    write_config,
)

# what these check happens above the database: SQLite only (the database layer runs on
# both in test_billing, test_crash_safety, test_hardening, test_scaleout ...)
pytestmark = [pytest.mark.usefixtures("backend"),
              pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    with FakeOpenAI(api_key=OPENAI_KEY, url_ttl=2) as openai, \
            FakeGemini(api_key=GEMINI_KEY) as gemini, \
            FakeOpenAI(api_key=OPENAI_KEY) as backup:
        yield openai, gemini, backup


@pytest.fixture(scope="module")
def gw(backend: str, fakes: Fakes, tmp_path_factory: pytest.TempPathFactory
       ) -> Iterator[GatewayServer]:
    server = start_gateway(backend, fakes, tmp_path_factory.mktemp(f"upstreams-{backend}"),
                           NO_BREAKER, upstream_timeout=1.5, max_retries=2)
    yield server
    server.stop()


@pytest.fixture()
def fake(fakes: Fakes) -> Iterator[Fakes]:
    with fresh(fakes) as clean:
        yield clean


@pytest.fixture(scope="module")
def token(gw: GatewayServer) -> str:
    return gw.token(credits=10000)


def image_of(r: httpx.Response, i: int = 0) -> Image.Image:
    assert r.status_code == 200, r.text
    item = r.json()["data"][i]
    data = (base64.b64decode(item["b64_json"]) if "b64_json" in item
            else httpx.get(item["url"]).content)
    image = Image.open(io.BytesIO(data))
    image.load()
    return image


def leaks(r: httpx.Response, *fakes: FakeOpenAI | FakeGemini) -> None:
    assert_no_leak(r.text, *fakes)


# --- each seed model, with the exact upstream request -------------------------------------

def test_dalle_3_is_served_by_gpt_image_2(gw: GatewayServer, token: str, fake) -> None:
    openai = fake[0]
    r = post(gw, token, {"model": "dall-e-3", "prompt": "A cute baby sea otter",
                         "quality": "hd", "style": "natural", "size": "1792x1024"})
    assert image_of(r).size == (1792, 1024)
    (sent,) = openai.requests
    assert sent.json == {"model": "gpt-image-2", "prompt": "A cute baby sea otter", "n": 1,
                         "size": "1792x1024", "quality": "high"}
    assert sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert r.json()["data"][0]["revised_prompt"] == "A cute baby sea otter"
    standard = post(gw, token, {"model": "dall-e-3", "prompt": "x"})
    assert standard.status_code == 200 and openai.requests[1].json["quality"] == "medium"
    leaks(r, openai)


def test_gpt_image_1_and_2(gw: GatewayServer, token: str, fake) -> None:
    openai = fake[0]
    r = post(gw, token, {"model": "gpt-image-1", "prompt": "poster", "size": "1024x1536",
                         "quality": "low", "n": 2})
    assert [image_of(r, i).size for i in range(2)] == [(1024, 1536)] * 2
    assert openai.requests[0].json == {
        "model": "gpt-image-2", "prompt": "poster", "n": 2, "size": "1024x1536",
        "quality": "low", "background": "auto", "output_format": "png", "moderation": "auto"}
    r = post(gw, token, {"model": "gpt-image-2", "prompt": "logo", "size": "2048x1152",
                         "background": "opaque", "output_format": "webp",
                         "output_compression": 80, "response_format": "b64_json",
                         "style": "vivid", "user": "u-1"})
    image = image_of(r)
    assert (image.format, image.size) == ("WEBP", (2048, 1152))
    sent = openai.requests[1].json
    assert sent["background"] == "opaque" and sent["output_compression"] == 80
    assert sent["user"] == "u-1"
    assert "style" not in sent and "response_format" not in sent
    rows = db.query(gw.data_dir, "SELECT usage FROM tasks WHERE id = ?", r.json()["task_id"])
    usage = rows[0][0] if isinstance(rows[0][0], dict) else __import__("json").loads(rows[0][0])
    assert usage["total_tokens"] > 0  # upstream usage is recorded on the task


@pytest.mark.parametrize(("model", "size", "ratio", "image_size", "upstream"), [
    ("nano-banana", "1024x1024", "1:1", None, "gemini-2.5-flash-image"),
    ("nano-banana", "1536x1024", "3:2", None, "gemini-2.5-flash-image"),
    ("nano-banana-2", "1792x1024", "16:9", "2K", "gemini-3.1-flash-image-preview"),
    ("nano-banana-pro", "1024x1024", "1:1", "1K", "gemini-3-pro-image-preview"),
])
def test_nano_banana_family(gw: GatewayServer, token: str, fake, model: str, size: str,
                            ratio: str, image_size: str | None, upstream: str) -> None:
    gemini = fake[1]
    r = post(gw, token, {"model": model, "prompt": "an apple", "size": size,
                         "quality": "hd", "style": "vivid"})
    assert r.status_code == 200, r.text
    (sent,) = gemini.requests
    assert sent.path == f"/v1beta/models/{upstream}:generateContent"
    assert sent.headers["x-goog-api-key"] == GEMINI_KEY
    config = {"aspectRatio": ratio, **({"imageSize": image_size} if image_size else {})}
    assert sent.json == {"contents": [{"role": "user", "parts": [{"text": "an apple"}]}],
                         "generationConfig": {"responseModalities": ["IMAGE"],
                                              "imageConfig": config}}
    w, h = image_of(r).size
    a, b = map(int, ratio.split(":"))
    assert abs(w / h - a / b) < 0.02
    assert r.json()["data"][0]["revised_prompt"] == "an apple"


def test_nano_banana_n_4_and_format_conversion(gw: GatewayServer, token: str, fake) -> None:
    gemini = fake[1]
    r = post(gw, token, {"model": "nano-banana", "prompt": "four", "n": 4,
                         "output_format": "jpeg", "response_format": "b64_json"})
    assert len(gemini.requests) == 4
    assert [image_of(r, i).format for i in range(4)] == ["JPEG"] * 4


def test_url_style_results_are_downloaded_and_rehosted(gw: GatewayServer, token: str,
                                                       fake) -> None:
    openai = fake[0]
    r = post(gw, token, {"model": "dall-e-classic", "prompt": "otter", "style": "vivid"})
    assert r.status_code == 200, r.text
    assert openai.requests[0].json["style"] == "vivid"
    assert [q.path.split("/")[1] for q in openai.requests] == ["v1", "files"]
    url = r.json()["data"][0]["url"]
    assert url.startswith(gw.url + "/files/dalle/")
    assert r.json()["data"][0]["revised_prompt"] != "otter"  # dall-e's own rewrite
    time.sleep(2.2)  # the upstream link has expired; ours is permanent
    assert httpx.get(url).status_code == 200


# --- faults --------------------------------------------------------------------------------

MODEL_OF = {"openai": "gpt-image-1", "gemini": "nano-banana"}  # one channel each, 2 retries
FAULTS = {  # what the fault looks like in the final error message
    "500": (Fault(status=500), "HTTP 500"),
    "reset": (Fault(reset=True), "connection failed"),
    "hang": (Fault(hang=True), "timed out"),
    "malformed-json": (Fault(malformed_json=True), "not JSON"),
    "html": (Fault(html=True, status=502), "text/html"),
    "truncated": (Fault(truncated_b64=True), "truncated"),
}


def target(fake, upstream: str) -> FakeOpenAI | FakeGemini:
    return fake[1] if upstream == "gemini" else fake[0]


def test_429_with_retry_after_is_retried(gw: GatewayServer, token: str, fake) -> None:
    openai = fake[0]
    openai.script(Fault(status=429, retry_after=1))
    r = post(gw, token, {"model": "gpt-image-2", "prompt": "x", "size": "1024x1024"})
    assert r.status_code == 200, r.text
    assert len(openai.requests) == 2
    assert openai.requests[1].time - openai.requests[0].time >= 0.9  # honoured Retry-After


def test_gemini_429_retry_info_in_the_body_is_honoured(gw: GatewayServer, token: str,
                                                       fake) -> None:
    gemini = fake[1]
    gemini.script(Fault(status=429, retry_after=1.2))  # no header: RetryInfo "1.2s" only
    r = post(gw, token, {"model": "nano-banana", "prompt": "x"})
    assert r.status_code == 200, r.text
    first, second = gemini.requests
    assert second.time - first.time >= 1.1  # the backoff alone would be 0.05 s
    leaks(r, gemini)


@pytest.mark.parametrize("upstream", ["openai", "gemini"])
@pytest.mark.parametrize("fault", list(FAULTS))
def test_transient_faults_are_retried(gw: GatewayServer, token: str, fake, fault: str,
                                      upstream: str) -> None:
    up = target(fake, upstream)
    up.script(FAULTS[fault][0])
    r = post(gw, token, {"model": MODEL_OF[upstream], "prompt": "x", "size": "1024x1024"})
    assert r.status_code == 200, r.text
    assert len(up.requests) == 2
    leaks(r, up)


@pytest.mark.parametrize("upstream", ["openai", "gemini"])
@pytest.mark.parametrize("fault", list(FAULTS))
def test_exhausted_faults_end_as_api_error_without_leaks(gw: GatewayServer, token: str, fake,
                                                         fault: str, upstream: str) -> None:
    up = target(fake, upstream)
    up.always(FAULTS[fault][0])
    r = post(gw, token, {"model": MODEL_OF[upstream], "prompt": "x", "size": "1024x1024"})
    message = error_of(r, 500, "api_error")
    assert FAULTS[fault][1] in message
    assert len(up.requests) == 3  # the first try and two retries
    leaks(r, *fake)


def test_failed_image_link_download_hides_the_link(gw: GatewayServer, token: str,
                                                   fake) -> None:
    openai = fake[0]
    openai.script(*[None, Fault(status=404)] * 3)  # each generation's link answers 404
    r = post(gw, token, {"model": "dall-e-classic", "prompt": "otter"})
    message = error_of(r, 500, "api_error")
    assert "image link answered HTTP 404" in message
    assert [q.path.split("/")[1] for q in openai.requests] == ["v1", "files"] * 3
    assert "/files/" not in r.text and "sig=" not in r.text
    leaks(r, *fake)


def test_exhausted_retries_fail_over_then_fail(gw: GatewayServer, token: str, fake) -> None:
    openai, _, backup = fake
    openai.always(Fault(status=500))
    r = post(gw, token, {"model": "gpt-image-2", "prompt": "failover", "size": "1024x1024"})
    assert r.status_code == 200, r.text  # the backup channel served it
    assert len(openai.requests) == 3 and len(backup.requests) == 1
    backup.always(Fault(status=503))
    r = post(gw, token, {"model": "gpt-image-2", "prompt": "x", "size": "1024x1024"})
    assert "503" in error_of(r, 500, "api_error")
    leaks(r, *fake)


def test_retry_after_past_the_time_limit_fails_over(gw: GatewayServer, token: str,
                                                    fake) -> None:
    openai, _, backup = fake
    openai.script(Fault(status=429, retry_after=3600))  # the model's limit is 600 s
    r = post(gw, token, {"model": "gpt-image-2", "prompt": "x", "size": "1024x1024"})
    assert r.status_code == 200, r.text
    assert (len(openai.requests), len(backup.requests)) == (1, 1)
    openai.script(Fault(status=429, retry_after=3600))
    r = post(gw, token, {"model": "gpt-image-1", "prompt": "x"})  # no other channel
    assert "600s limit" in error_of(r, 500, "api_error")
    assert len(openai.requests) == 2
    leaks(r, *fake)


def test_unknown_upstream_model_is_api_error_and_fails_over(gw: GatewayServer, token: str,
                                                            fake) -> None:
    openai, _, backup = fake
    openai.script(Fault(status=404, code="model_not_found"))
    r = post(gw, token, {"model": "gpt-image-2", "prompt": "x", "size": "1024x1024"})
    assert r.status_code == 200, r.text
    assert (len(openai.requests), len(backup.requests)) == (1, 1)  # no retry: failover
    openai.script(Fault(status=404, code="model_not_found"))
    r = post(gw, token, {"model": "gpt-image-1", "prompt": "x"})
    assert "does not know the model" in error_of(r, 500, "api_error")
    assert len(openai.requests) == 2


def test_exhausted_quota_fails_over_at_once(gw: GatewayServer, token: str, fake) -> None:
    openai, gemini, backup = fake
    openai.script(Fault(status=429, code="insufficient_quota"))
    r = post(gw, token, {"model": "gpt-image-2", "prompt": "x", "size": "1024x1024"})
    assert r.status_code == 200, r.text
    assert (len(openai.requests), len(backup.requests)) == (1, 1)
    gemini.script(Fault(status=429, retry_after=1,
                        quota_id="GenerateRequestsPerDayPerProjectPerModel-FreeTier"))
    r = post(gw, token, {"model": "nano-banana", "prompt": "x"})
    message = error_of(r, 500, "api_error")
    assert "out of quota" in message and "<url>" in message  # Google's links scrubbed
    assert len(gemini.requests) == 1  # a per-day quota is not retried within seconds


@pytest.mark.parametrize(("fault", "model", "reason"), [
    (Fault(status=400, code="moderation_blocked"), "gpt-image-2", "safety"),
    (Fault(status=403, code="forbidden", message="blocked by policy"), "gpt-image-2",
     "blocked by policy"),  # another imagegate as the upstream
    (Fault(safety="IMAGE_SAFETY"), "nano-banana", "image_safety"),
    (Fault(safety="NO_IMAGE"), "nano-banana", "no_image"),
    (Fault(safety="IMAGE_OTHER"), "nano-banana", "image_other"),
    (Fault(block_reason="PROHIBITED_CONTENT"), "nano-banana", "prohibited_content"),
])
def test_moderation_is_403_and_not_retried(gw: GatewayServer, token: str, fake,
                                           fault: Fault, model: str, reason: str) -> None:
    up = fake[1] if model == "nano-banana" else fake[0]
    up.script(fault)
    before = db.query(gw.data_dir, "SELECT balance FROM credentials WHERE name = 'test'")
    r = post(gw, token, {"model": model, "prompt": "something bad", "size": "1024x1024"})
    message = error_of(r, 403, "forbidden")
    assert reason in message.lower()
    if fault.safety:  # Gemini's finishMessage tells the user why
        assert "Prohibited Use policy" in message
    assert len(up.requests) == 1
    after = db.query(gw.data_dir, "SELECT balance FROM credentials WHERE name = 'test'")
    assert after == before  # refunded in full


def test_upstream_rejects_parameters_is_400(gw: GatewayServer, token: str, fake) -> None:
    openai = fake[0]
    openai.script(Fault(status=400, code="invalid_value", message="Invalid size"))
    r = post(gw, token, {"model": "gpt-image-2", "prompt": "x", "size": "1024x1024"})
    assert "Invalid size" in error_of(r, 400, "bad_request")
    assert len(openai.requests) == 1


def test_upstream_messages_are_scrubbed(gw: GatewayServer, token: str, fake) -> None:
    openai, gemini, _ = fake
    where = f"{openai.host}:{openai.port}"
    openai.script(Fault(status=400, code="invalid_value", message=(
        f"Invalid size from key {OPENAI_KEY} (Authorization: Bearer {OPENAI_KEY}); see "
        f"{openai.base_url}/v1/debug?key=1 or ask {where}; key sk-te******CRET")))
    r = post(gw, token, {"model": "gpt-image-2", "prompt": "x", "size": "1024x1024"})
    message = error_of(r, 400, "bad_request")
    assert message.startswith("the upstream rejected the request: upstream openai/gpt-image-2")
    assert "Invalid size" in message and "CRET" not in message
    leaks(r, *fake)
    gemini.always(Fault(status=500, message=f"backend {gemini.base_url} saw {GEMINI_KEY}"))
    r = post(gw, token, {"model": "nano-banana", "prompt": "x"})
    assert "backend <url> saw <redacted>" in error_of(r, 500, "api_error")
    leaks(r, *fake)


def test_big_and_truncated_images(gw: GatewayServer, token: str, fake) -> None:
    openai = fake[0]
    # every attempt: on a loaded machine the first can time out while the fake builds 27 MB
    # of base64; the retry then gets the same (cached) picture
    openai.always(Fault(image_bytes=20 * 1024 * 1024))
    r = post(gw, token, {"model": "gpt-image-2", "prompt": "big", "size": "1024x1024"})
    assert r.status_code == 200, r.text
    assert len(httpx.get(r.json()["data"][0]["url"]).content) > 19 * 1024 * 1024
    openai.always(Fault(malformed_json=True, image_bytes=3 * 1024 * 1024))  # parsed apart
    r = post(gw, token, {"model": "gpt-image-1", "prompt": "cut", "size": "1024x1024"})
    assert "not JSON" in error_of(r, 500, "api_error")
    openai.always(Fault(truncated_b64=True))
    before = len(openai.requests)  # the big image may have taken a retry under load
    r = post(gw, token, {"model": "gpt-image-1", "prompt": "cut", "size": "1024x1024"})
    assert "truncated" in error_of(r, 500, "api_error")
    assert len(openai.requests) - before == 3  # retried, then no other channel to try


def test_large_images_reuse_the_processes_memory(gw: GatewayServer, token: str, fake) -> None:
    """Each 4 MB image is a few buffers of megabytes (body, JSON string, decoded bytes);
    with glibc's default thresholds each came fresh from the kernel: ~5,000 page faults an
    image, most of the gateway's CPU for it (imagegate/allocator.py)."""
    fake[0].always(Fault(image_bytes=4 * 1024 * 1024))
    body = {"model": "gpt-image-2", "prompt": "big", "size": "1024x1024"}
    for _ in range(2):  # the heap grows to its working size
        assert post(gw, token, body).status_code == 200
    assert gw.proc is not None
    before = minor_faults(gw.proc.pid)
    for _ in range(4):
        assert post(gw, token, body).status_code == 200
    assert (minor_faults(gw.proc.pid) - before) / 4 < 1000  # 4 MB is 1,024 pages


def minor_faults(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[7])


def test_bad_upstream_key_names_the_channel_not_the_key(tmp_path: Path, fake) -> None:
    openai, gemini, _ = fake
    config = write_config(tmp_path / "m.yaml", registry_yaml(openai, gemini))
    env = {**FAST_RETRIES, "TEST_OPENAI_KEY": "sk-wrong-key-9876543210",
           "TEST_GEMINI_KEY": "gm-wrong-key-9876543210"}
    with GatewayServer(tmp_path / "d", "--config", str(config), env=env) as server:
        token = server.token(credits=5)
        r = post(server, token, {"model": "gpt-image-2", "prompt": "x"})
        message = error_of(r, 500, "api_error")
        assert "openai/gpt-image-2" in message and "TEST_OPENAI_KEY" in message
        g = post(server, token, {"model": "nano-banana", "prompt": "x"})
        message = error_of(g, 500, "api_error")
        assert "gemini/gemini-2.5-flash-image" in message and "TEST_GEMINI_KEY" in message
        assert (len(openai.requests), len(gemini.requests)) == (1, 1)  # not retried
        for text in (r.text, g.text):
            assert "wrong-key" not in text
            assert_no_leak(text, openai, gemini)
        time.sleep(0.2)
        assert "wrong-key" not in server.log()
        assert OPENAI_KEY not in server.log()


def test_total_time_over_the_model_timeout_is_504(tmp_path: Path, fake) -> None:
    openai, gemini, _ = fake
    config = write_config(tmp_path / "m.yaml", registry_yaml(openai, gemini, timeout=1.0,
                                                              upstream_timeout=5))
    openai.always(Fault(delay=3))
    with GatewayServer(tmp_path / "d", "--config", str(config), env=FAST_RETRIES) as server:
        token = server.token(credits=5)
        r = post(server, token, {"model": "gpt-image-2", "prompt": "slow"})
        error_of(r, 504, "timeout")
        assert db.query(server.data_dir, "SELECT balance FROM credentials WHERE name='test'"
                        ) == [(5_000_000,)]


def test_connections_are_pooled(gw: GatewayServer, token: str, fake) -> None:
    openai = fake[0]
    for _ in range(5):
        assert post(gw, token, {"model": "gpt-image-2", "prompt": "p",
                                "size": "1024x1024"}).status_code == 200
    assert len({q.connection for q in openai.requests}) == 1


def test_no_secret_in_the_logs(gw: GatewayServer, token: str, fakes) -> None:
    """Runs after the fault tests above on the same gateway: its whole log is clean."""
    time.sleep(0.2)
    log = gw.log()
    assert "upstream" in log  # the faults above were logged...
    assert token not in log  # ...without a key, a token or an upstream's address
    assert_no_leak(log, *fakes)
