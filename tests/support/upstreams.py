"""A gateway wired to the fake OpenAI and Gemini upstreams, through a registry YAML."""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx

from imagegate.testing import FakeGemini, FakeOpenAI
from tests.support import backend as backends
from tests.support.server import GatewayServer

GEN = "/openai/images/generations"
OPENAI_KEY = "sk-test-0123456789abcdefSECRET"
GEMINI_KEY = "gm-test-0123456789abcdefSECRET"


def registry_yaml(openai: FakeOpenAI, gemini: FakeGemini, *, backup: FakeOpenAI | None = None,
                  timeout: float = 600, upstream_timeout: float = 10, max_retries: int = 2,
                  versioned: bool = False) -> str:
    """The packaged routes, pointed at the fakes; `backup` adds a second gpt-image-2 channel.

    ``versioned`` writes the base URLs the way users copy them: ending in /v1 or /v1beta.
    """
    v1, v1beta = ("/v1", "/v1beta/") if versioned else ("", "")
    backup_upstream = backup_channel = ""
    if backup is not None:
        backup_upstream = f"""
  openai-backup:
    type: openai
    base_url: {backup.base_url}{v1}
    api_key_env: BACKUP_OPENAI_KEY
    timeout: {upstream_timeout}"""
        backup_channel = f"""
      - upstream: openai-backup
        model: gpt-image-2
        priority: 1
        max_retries: {max_retries}"""
    return f"""
upstreams:
  openai:
    type: openai
    base_url: {openai.base_url}{v1}
    api_key_env: TEST_OPENAI_KEY
    timeout: {upstream_timeout}{backup_upstream}
  gemini:
    type: gemini
    base_url: {gemini.base_url}{v1beta}
    api_key_env: TEST_GEMINI_KEY
    timeout: {upstream_timeout}
models:
  dall-e-3:
    family: dalle
    price: 0.04
    timeout: {timeout}
    channels:
      - upstream: openai
        model: gpt-image-2
        send: [prompt, n, size, quality, user]
        map: {{quality: {{standard: medium, hd: high}}}}
        max_retries: {max_retries}
  gpt-image-1:
    family: gpt-image
    price: 0.042
    sizes: [1024x1024, 1536x1024, 1024x1536]
    timeout: {timeout}
    channels:
      - upstream: openai
        model: gpt-image-2
        max_retries: {max_retries}
  gpt-image-2:
    family: gpt-image
    price: 0.053
    sizes: flexible
    timeout: {timeout}
    channels:
      - upstream: openai
        model: gpt-image-2
        max_retries: {max_retries}{backup_channel}
  dall-e-classic:
    family: dalle
    price: 0.04
    timeout: {timeout}
    channels:
      - upstream: openai
        model: dall-e-3
        send: [prompt, n, size, quality, style]
        max_retries: {max_retries}
  nano-banana:
    family: nano-banana
    price: 0.14
    timeout: {timeout}
    channels:
      - upstream: gemini
        model: gemini-2.5-flash-image
        max_retries: {max_retries}
  nano-banana-2:
    family: nano-banana
    price: 0.28
    extra_ratios: ["1:4", "4:1", "1:8", "8:1"]
    timeout: {timeout}
    channels:
      - upstream: gemini
        model: gemini-3.1-flash-image-preview
        image_size: true
        max_retries: {max_retries}
  nano-banana-pro:
    family: nano-banana
    price: 0.35
    timeout: {timeout}
    channels:
      - upstream: gemini
        model: gemini-3-pro-image-preview
        image_size: true
        max_retries: {max_retries}
"""


Fakes = tuple[FakeOpenAI, FakeGemini, FakeOpenAI]  # openai, gemini, a backup openai


def start_gateway(backend: str, fakes: Fakes, data: Path, env: dict[str, str],
                  **registry: Any) -> GatewayServer:
    """A gateway on ``backend`` whose registry (``registry_yaml(**registry)``) points at
    ``fakes``, the backup as gpt-image-2's second channel."""
    backends.current = backend
    openai, gemini, backup = fakes
    config = write_config(data / "models.yaml",
                          registry_yaml(openai, gemini, backup=backup, **registry))
    return GatewayServer(data / "d", "--config", str(config), env=env).start()


@contextmanager
def running_fakes() -> Iterator[Fakes]:
    """The upstreams ``start_gateway`` routes to (OpenAI, Gemini, a backup OpenAI), running."""
    with FakeOpenAI(api_key=OPENAI_KEY) as openai, FakeGemini(api_key=GEMINI_KEY) as gemini, \
            FakeOpenAI(api_key=OPENAI_KEY) as backup:
        yield openai, gemini, backup


@contextmanager
def fresh(fakes: Fakes) -> Iterator[Fakes]:
    """The fakes with no scripted faults or recorded requests, before and after a test."""
    for f in fakes:
        f.reset()
    yield fakes
    for f in fakes:
        f.reset()


def write_config(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


FAST_RETRIES = {"IMAGEGATE_RETRY_BACKOFF_BASE": "0.05", "IMAGEGATE_BREAKER_THRESHOLD": "3",
                "IMAGEGATE_BREAKER_COOLDOWN": "1.5", "TEST_OPENAI_KEY": OPENAI_KEY,
                "TEST_GEMINI_KEY": GEMINI_KEY, "BACKUP_OPENAI_KEY": OPENAI_KEY}
# the shared gateway of the fault tests: no breaker state carried from one test to the next
NO_BREAKER = {**FAST_RETRIES, "IMAGEGATE_BREAKER_THRESHOLD": "1000"}
# the breaker and backoff tests: timings large enough to measure, cooldowns short enough
BREAKER_COOLDOWN = 2.5
BREAKER = {**FAST_RETRIES, "IMAGEGATE_RETRY_BACKOFF_BASE": "0.2",
           "IMAGEGATE_BREAKER_THRESHOLD": "4", "IMAGEGATE_BREAKER_COOLDOWN": str(BREAKER_COOLDOWN)}


def assert_no_leak(text: str, *fakes: FakeOpenAI | FakeGemini) -> None:
    """No upstream key (whole, or a recognisable piece of it) and no upstream address."""
    for key in (OPENAI_KEY, GEMINI_KEY):
        for piece in (key, key[:10], key[-10:]):
            assert piece not in text, f"{piece!r} leaked: {text[:500]}"
    assert "Bearer " not in text
    for fake in fakes:
        assert fake.base_url not in text
        assert f"{fake.host}:{fake.port}" not in text, text[:500]
        assert not re.search(rf":{fake.port}(?!\d)", text), text[:500]


def post(gw: GatewayServer, token: str, payload: dict[str, object]) -> httpx.Response:
    return httpx.post(gw.url + GEN, json=payload, headers={"authorization": f"Bearer {token}"},
                      timeout=60)


def error_of(r: httpx.Response, status: int, code: str) -> str:
    """The error message, once the status and SPEC code are the expected ones."""
    assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
    return str(r.json()["error"]["message"])
