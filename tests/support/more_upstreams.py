"""A gateway wired to the Azure OpenAI, Vertex AI and OpenRouter fakes (issue 18): every seed
model each of them can serve, bad-credential twins, and one model failing over across types."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from imagegate.testing import FakeAzureOpenAI, FakeOpenRouter, FakeVertex
from tests.support.upstreams import write_config

AZURE_KEY = "az-test-0123456789abcdefSECRET"
ENTRA_TOKEN = "eyJ0eXAiOiJKV1Qi-entra-0123456789SECRET"
OPENROUTER_KEY = "sk-or-v1-0123456789abcdefSECRET"
PROJECT = "imagegate-test"
API_VERSION = "2025-04-01-preview"
ENV = {"IMAGEGATE_RETRY_BACKOFF_BASE": "0.05", "IMAGEGATE_BREAKER_THRESHOLD": "1000",
       "TEST_AZURE_KEY": AZURE_KEY, "TEST_AZURE_TOKEN": ENTRA_TOKEN,
       "TEST_AZURE_BAD_KEY": "az-wrong-0123456789abcdefWRONG",
       "TEST_OPENROUTER_KEY": OPENROUTER_KEY,
       "TEST_OPENROUTER_BAD_KEY": "sk-or-v1-wrong-0123456789WRONG"}
SECRETS = (AZURE_KEY, ENTRA_TOKEN, OPENROUTER_KEY)


@dataclass
class Upstreams:
    azure: FakeAzureOpenAI
    vertex: FakeVertex
    router: FakeOpenRouter

    def all(self) -> tuple[FakeAzureOpenAI, FakeVertex, FakeOpenRouter]:
        return self.azure, self.vertex, self.router

    def reset(self) -> None:
        for fake in self.all():
            fake.reset()
        self.vertex.locations.clear()


def key_files(vertex: FakeVertex, where: Path) -> tuple[Path, Path]:
    """A good service-account key file, and one whose private key is another account's (its
    JWTs carry a signature the token endpoint must refuse)."""
    good = vertex.service_account_key(where / "sa.json")
    stranger = vertex.oauth.service_account("stranger@x.iam.gserviceaccount.com", PROJECT)
    forged = json.loads(good.read_text()) | {"private_key": stranger["private_key"]}
    bad = where / "sa-forged.json"
    bad.write_text(json.dumps(forged))
    return good, bad


def registry(ups: Upstreams, good_key: Path, bad_key: Path, *, timeout: float = 1.5) -> str:
    vertex = f"""
    type: vertex
    base_url: {ups.vertex.base_url}
    timeout: {timeout}"""
    return f"""
upstreams:
  azure:
    type: azure
    base_url: {ups.azure.base_url}
    api_key_env: TEST_AZURE_KEY
    timeout: {timeout}
    options: {{api_version: {API_VERSION}}}
  azure-entra:
    type: azure
    base_url: {ups.azure.base_url}/openai
    api_key_env: TEST_AZURE_TOKEN
    timeout: {timeout}
    options: {{auth: bearer}}
  azure-bad-key:
    type: azure
    base_url: {ups.azure.base_url}
    api_key_env: TEST_AZURE_BAD_KEY
  vertex:{vertex}
    options: {{project: {PROJECT}, location: us-central1, key_file: {good_key}}}
  vertex-global:{vertex}
    options: {{project: {PROJECT}, location: global, key_file: {good_key}}}
  vertex-forged-key:{vertex}
    options: {{project: {PROJECT}, location: us-central1, key_file: {bad_key}}}
  openrouter:
    type: openrouter
    base_url: {ups.router.base_url}/api/v1
    api_key_env: TEST_OPENROUTER_KEY
    timeout: {timeout}
    options: {{referer: "https://imagegate.example", title: imagegate}}
  openrouter-bad-key:
    type: openrouter
    base_url: {ups.router.base_url}/api
    api_key_env: TEST_OPENROUTER_BAD_KEY
models:
  dall-e-3:
    family: dalle
    price: 0.04
    channels:
      - upstream: azure
        model: gpt-image-2
        send: [prompt, n, size, quality, user]
        map: {{quality: {{standard: medium, hd: high}}}}
  gpt-image-1:
    family: gpt-image
    price: 0.042
    sizes: [1024x1024, 1536x1024, 1024x1536]
    channels:
      - upstream: azure
        model: gpt-image-2
        unsupported: {{background: [transparent]}}
  gpt-image-2:
    family: gpt-image
    price: 0.053
    sizes: flexible
    channels:
      - upstream: azure
        model: gpt-image-2
  gpt-image-2-entra:
    family: gpt-image
    price: 0.053
    sizes: flexible
    channels:
      - {{upstream: azure-entra, model: gpt-image-2}}
  gpt-image-2-bad-key:
    family: gpt-image
    price: 0.053
    sizes: flexible
    channels:
      - {{upstream: azure-bad-key, model: gpt-image-2}}
  nano-banana:
    family: nano-banana
    price: 0.14
    channels:
      - {{upstream: vertex, model: gemini-2.5-flash-image}}
  nano-banana-2:
    family: nano-banana
    price: 0.28
    extra_ratios: ["1:4", "4:1", "1:8", "8:1"]
    channels:
      - {{upstream: vertex-global, model: gemini-3.1-flash-image-preview, image_size: true}}
  nano-banana-pro:
    family: nano-banana
    price: 0.35
    channels:
      - {{upstream: vertex-global, model: gemini-3-pro-image-preview, image_size: true}}
  nano-banana-forged-key:
    family: nano-banana
    price: 0.14
    channels:
      - {{upstream: vertex-forged-key, model: gemini-2.5-flash-image}}
  nano-banana-or:
    family: nano-banana
    price: 0.14
    channels:
      - {{upstream: openrouter, model: google/gemini-2.5-flash-image}}
  nano-banana-2-or:
    family: nano-banana
    price: 0.28
    extra_ratios: ["1:4", "4:1", "1:8", "8:1"]
    channels:
      - {{upstream: openrouter, model: google/gemini-3.1-flash-image-preview, image_size: true}}
  nano-banana-pro-or:
    family: nano-banana
    price: 0.35
    channels:
      - {{upstream: openrouter, model: google/gemini-3-pro-image-preview, image_size: true}}
  nano-banana-or-bad-key:
    family: nano-banana
    price: 0.14
    channels:
      - {{upstream: openrouter-bad-key, model: google/gemini-2.5-flash-image}}
  nano-banana-failover:
    family: nano-banana
    price: 0.14
    channels:
      - {{upstream: vertex, model: gemini-2.5-flash-image, max_retries: 0}}
      - {{upstream: openrouter, model: google/gemini-2.5-flash-image, priority: 1}}
"""


def write_registry(ups: Upstreams, data: Path) -> Path:
    data.mkdir(parents=True, exist_ok=True)
    good, bad = key_files(ups.vertex, data)
    return write_config(data / "models.yaml", registry(ups, good, bad))
