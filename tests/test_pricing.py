"""Prices by quality, size and pixel band, as listed and as charged; upstream key defaults."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from imagegate.testing import FakeGemini, FakeOpenAI
from tests.support.server import GatewayServer, cli
from tests.support.upstreams import GEMINI_KEY, OPENAI_KEY, write_config

GEN = "/openai/images/generations"


@pytest.fixture(scope="module")
def sandbox_gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    """The packaged models.yaml's prices (the sandbox keeps names, families and prices)."""
    server = GatewayServer(tmp_path_factory.mktemp("pricing") / "d", "--sandbox").start()
    yield server
    server.stop()


def charged(gw: GatewayServer, **body: Any) -> str:
    r = httpx.post(gw.url + GEN, json={"prompt": "price", **body}, timeout=120,
                   headers={"authorization": f"Bearer {gw.demo_token()}"})
    assert r.status_code == 200, r.text
    return str(r.headers["x-credits-charged"])


@pytest.mark.parametrize(("body", "price"), [
    ({"model": "dall-e-3"}, "0.04"),
    ({"model": "dall-e-3", "quality": "hd"}, "0.08"),
    ({"model": "dall-e-3", "size": "1024x1792"}, "0.08"),
    ({"model": "dall-e-3", "quality": "hd", "size": "1792x1024"}, "0.12"),
    ({"model": "gpt-image-1"}, "0.042"),  # quality auto, size auto: medium, 1024x1024
    ({"model": "gpt-image-1", "quality": "low", "size": "1024x1024"}, "0.011"),
    ({"model": "gpt-image-1", "quality": "low", "size": "1536x1024"}, "0.016"),
    ({"model": "gpt-image-1", "quality": "medium", "size": "1024x1536"}, "0.063"),
    ({"model": "gpt-image-1", "quality": "high", "size": "1024x1024"}, "0.167"),
    ({"model": "gpt-image-1", "quality": "high", "size": "1536x1024", "n": 2}, "0.5"),
    ({"model": "gpt-image-2", "size": "auto"}, "0.053"),
    ({"model": "gpt-image-2", "quality": "low", "size": "1024x1024"}, "0.013"),
    ({"model": "gpt-image-2", "quality": "low", "size": "1024x640"}, "0.013"),
    ({"model": "gpt-image-2", "quality": "high", "size": "1536x1024"}, "0.316"),
    ({"model": "gpt-image-2", "quality": "medium", "size": "1040x1024"}, "0.08"),
    ({"model": "gpt-image-2", "quality": "low", "size": "2048x2048"}, "0.05"),
    ({"model": "gpt-image-2", "quality": "high", "size": "2048x1152"}, "0.84"),
    ({"model": "gpt-image-2", "size": "3840x2160"}, "0.42"),
    ({"model": "gpt-image-2", "quality": "high", "size": "2880x2880"}, "1.68"),
    ({"model": "nano-banana", "size": "1792x1024"}, "0.14"),
])
def test_charged_by_quality_and_size(sandbox_gw: GatewayServer, body: dict[str, Any],
                                     price: str) -> None:
    assert charged(sandbox_gw, **body) == price


def _listed_price(model: dict[str, Any], quality: str | None, size: str) -> Decimal:
    """What a client reading /v1/models works out: the most specific matching tier."""
    width, height = (int(x) for x in size.split("x"))
    best, score = Decimal(str(model["price"])), -1
    for tier in model["price_tiers"]:
        if tier.get("quality") not in (None, quality):
            continue
        if tier.get("size") and size not in tier["size"]:
            continue
        if not tier.get("min_pixels", 0) <= width * height <= tier.get("max_pixels", 10**9):
            continue
        this = ("quality" in tier) + any(k in tier for k in ("size", "min_pixels",
                                                                 "max_pixels"))
        if this >= score:
            best, score = Decimal(str(tier["price"])), this
    return best


def test_models_list_the_tiers_that_are_charged(sandbox_gw: GatewayServer) -> None:
    r = httpx.get(sandbox_gw.url + "/v1/models",
                  headers={"authorization": f"Bearer {sandbox_gw.demo_token()}"})
    models = {m["id"]: m for m in r.json()["data"]}
    assert {"quality": "high", "size": ["1536x1024", "1024x1536"], "price": 0.25} in (
        models["gpt-image-1"]["price_tiers"])
    bands = [t for t in models["gpt-image-2"]["price_tiers"] if "max_pixels" in t]
    assert max(t["max_pixels"] for t in bands) == 3840 * 2160  # the largest size allowed
    for model, quality, size in (("gpt-image-2", "high", "1536x1024"),
                                 ("gpt-image-2", "low", "3840x2160"),
                                 ("gpt-image-2", "medium", "2048x2048"),
                                 ("gpt-image-1", "low", "1024x1536"),
                                 ("dall-e-3", "hd", "1792x1024")):
        listed = _listed_price(models[model], quality, size)
        assert Decimal(charged(sandbox_gw, model=model, quality=quality, size=size)) == listed


@pytest.mark.parametrize(("tier", "why"), [
    ("{quality: low, price: -0.01}", "greater than or equal to 0"),
    ("{quality: low, price: 0.0000001}", "6 decimal places"),
    ("{min_pixels: 2000000, max_pixels: 1000000, price: 1}", "min_pixels"),
])
def test_a_bad_tier_stops_the_gateway_at_start(tmp_path: Path, tier: str, why: str) -> None:
    config = write_config(tmp_path / "models.yaml", f"""
upstreams:
  openai: {{type: openai}}
models:
  gpt-image-2:
    family: gpt-image
    sizes: flexible
    price: 0.053
    tiers:
      - {tier}
    channels:
      - {{upstream: openai, model: gpt-image-2}}
""")
    out = cli("serve", "--config", str(config), "--data-dir", str(tmp_path), check=False)
    assert out.returncode == 2 and "config error" in out.stderr and why in out.stderr, (
        out.stderr)


@pytest.fixture(scope="module")
def keyless_config(tmp_path_factory: pytest.TempPathFactory
                   ) -> Iterator[tuple[Path, FakeOpenAI, FakeGemini]]:
    """Upstreams that do not name their key's variable."""
    with FakeOpenAI(api_key=OPENAI_KEY) as openai, FakeGemini(api_key=GEMINI_KEY) as gemini:
        path = write_config(tmp_path_factory.mktemp("keys") / "models.yaml", f"""
upstreams:
  oa: {{type: openai, base_url: "{openai.base_url}"}}
  gm: {{type: gemini, base_url: "{gemini.base_url}"}}
models:
  gpt-image-2:
    family: gpt-image
    sizes: flexible
    price: 0.053
    channels: [{{upstream: oa, model: gpt-image-2}}]
  nano-banana:
    family: nano-banana
    price: 0.14
    channels: [{{upstream: gm, model: gemini-2.5-flash-image}}]
""")
        yield path, openai, gemini


def test_keys_default_to_the_provider_variables(
        tmp_path: Path, keyless_config: tuple[Path, FakeOpenAI, FakeGemini]) -> None:
    config, openai, gemini = keyless_config
    env = {"OPENAI_API_KEY": OPENAI_KEY, "GEMINI_API_KEY": GEMINI_KEY}
    with GatewayServer(tmp_path / "d", "--config", str(config), env=env) as server:
        token = server.token(credits=10)
        for model in ("gpt-image-2", "nano-banana"):
            r = httpx.post(server.url + GEN, json={"model": model, "prompt": "keys"},
                           headers={"authorization": f"Bearer {token}"}, timeout=60)
            assert r.status_code == 200, r.text
        listed = httpx.get(server.url + "/v1/models",
                           headers={"authorization": f"Bearer {token}"}).json()["data"]
        assert all(m["available"] for m in listed)
    assert openai.requests and gemini.requests  # the keys reached the fakes, which check them


def test_missing_default_keys_are_named(
        tmp_path: Path, keyless_config: tuple[Path, FakeOpenAI, FakeGemini]) -> None:
    config, _, _ = keyless_config
    env = {"OPENAI_API_KEY": "", "GEMINI_API_KEY": ""}
    with GatewayServer(tmp_path / "d", "--config", str(config), env=env) as server:
        token = server.token(credits=10)
        listed = {m["id"]: m for m in httpx.get(
            server.url + "/v1/models", headers={"authorization": f"Bearer {token}"}
        ).json()["data"]}
        assert listed["gpt-image-2"]["unavailable_reason"] == "set OPENAI_API_KEY"
        assert listed["nano-banana"]["unavailable_reason"] == "set GEMINI_API_KEY"
        r = httpx.post(server.url + GEN, json={"model": "nano-banana", "prompt": "keys"},
                       headers={"authorization": f"Bearer {token}"})
        assert "GEMINI_API_KEY" in r.json()["error"]["message"]
