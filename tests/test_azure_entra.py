"""Azure OpenAI with Microsoft Entra ID: the gateway gets its own tokens for a service
principal (client credentials), keeps one until near its expiry, renews it once for all
requests, replaces a revoked one, and never shows the secret."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from imagegate.testing import FakeAzureOpenAI
from imagegate.testing.entra_fake import SCOPE, EntraIssuer
from tests.support.server import GatewayServer
from tests.support.upstreams import error_of, post, write_config

TENANT, CLIENT = "7f0c3c9e-0000-4000-8000-00000000aaaa", "2b1d5e8f-0000-4000-8000-00000000bbbb"
SECRET = "entra-secret-0123456789abcdefSECRET"
ENV = {"IMAGEGATE_RETRY_BACKOFF_BASE": "0.05", "IMAGEGATE_BREAKER_THRESHOLD": "1000",
       "AZURE_CLIENT_SECRET": SECRET, "WRONG_SECRET": "entra-wrong-0123456789WRONG"}
BODY = {"model": "gpt-image-2", "prompt": "entra", "size": "1024x1024"}


@pytest.fixture()
def azure() -> Iterator[FakeAzureOpenAI]:
    with FakeAzureOpenAI("az-unused", entra=EntraIssuer(TENANT, CLIENT, SECRET)) as fake:
        yield fake


def registry(azure: FakeAzureOpenAI) -> str:
    principal = (f"{{auth: entra, tenant_id: '{TENANT}', client_id: '{CLIENT}', "
                 f"authority: '{azure.base_url}'}}")
    return f"""
upstreams:
  azure:
    type: azure
    base_url: {azure.base_url}
    timeout: 5
    options: {principal}
  azure-wrong-secret:
    type: azure
    base_url: {azure.base_url}
    api_key_env: WRONG_SECRET
    options: {principal}
models:
  gpt-image-2:
    family: gpt-image
    price: 0.053
    sizes: flexible
    channels: [{{upstream: azure, model: gpt-image-2}}]
  gpt-image-2-wrong-secret:
    family: gpt-image
    price: 0.053
    sizes: flexible
    channels: [{{upstream: azure-wrong-secret, model: gpt-image-2}}]
"""


def gateway(azure: FakeAzureOpenAI, tmp_path: Path, **env: str) -> GatewayServer:
    """Not started: ``with`` starts and stops it."""
    config = write_config(tmp_path / "models.yaml", registry(azure))
    return GatewayServer(tmp_path / "d", "--config", str(config), env={**ENV, **env})


def bearer_tokens(azure: FakeAzureOpenAI) -> list[str]:
    return [r.headers["authorization"].removeprefix("Bearer ") for r in azure.requests
            if r.path.startswith("/openai/")]


def test_one_grant_serves_every_request_until_near_expiry(azure: FakeAzureOpenAI,
                                                          tmp_path: Path) -> None:
    entra = azure.entra
    assert entra is not None
    entra.delay = 0.5  # the others arrive while the first request's grant is under way
    with gateway(azure, tmp_path) as gw:
        token = gw.token(credits=10)

        async def together() -> list[int]:
            async with httpx.AsyncClient(timeout=60) as client:
                answers = await asyncio.gather(*(client.post(
                    gw.url + "/v1/images/generations", json=BODY,
                    headers={"authorization": f"Bearer {token}"}) for _ in range(6)))
            return [a.status_code for a in answers]

        assert asyncio.run(together()) == [200] * 6  # six at once, during the one grant
        assert post(gw, token, BODY).status_code == 200
        assert entra.grants == [{"grant_type": "client_credentials", "client_id": CLIENT,
                                 "client_secret": "***", "scope": SCOPE}]
        sent = bearer_tokens(azure)
        assert len(sent) == 7 and len(set(sent)) == 1 and entra.valid(sent[0])
        assert SECRET not in gw.log() and sent[0] not in gw.log()


def test_a_token_is_renewed_before_it_expires(azure: FakeAzureOpenAI, tmp_path: Path) -> None:
    entra = azure.entra
    assert entra is not None
    entra.lifetime = 301  # fresh for one second: tokens are renewed 300 s before expiry
    with gateway(azure, tmp_path) as gw:
        token = gw.token(credits=10)
        assert post(gw, token, BODY).status_code == 200
        time.sleep(1.3)
        assert post(gw, token, BODY).status_code == 200
        first, second = bearer_tokens(azure)
        assert len(entra.grants) == 2 and first != second
        assert entra.valid(first)  # renewed while the old one was still good


def test_a_revoked_token_is_replaced_on_the_retry(azure: FakeAzureOpenAI,
                                                  tmp_path: Path) -> None:
    entra = azure.entra
    assert entra is not None
    with gateway(azure, tmp_path) as gw:
        token = gw.token(credits=10)
        assert post(gw, token, BODY).status_code == 200
        entra.revoke_all()
        assert post(gw, token, BODY).status_code == 200  # 401, then a new token
        first, refused, second = bearer_tokens(azure)
        assert refused == first and second != first and len(entra.grants) == 2


def test_a_refused_grant_names_the_cause_never_the_secret(azure: FakeAzureOpenAI,
                                                          tmp_path: Path) -> None:
    with gateway(azure, tmp_path) as gw:
        token = gw.token(credits=10)
        r = post(gw, token, {**BODY, "model": "gpt-image-2-wrong-secret"})
        message = error_of(r, 500, "api_error")
        assert "no Entra ID token" in message and "invalid_client" in message
        assert "AADSTS7000215" in message and "WRONG_SECRET" in message
        assert bearer_tokens(azure) == []  # nothing reached the deployment
        for text in (r.text, gw.log()):
            assert ENV["WRONG_SECRET"] not in text and SECRET not in text


def test_without_the_secret_the_model_is_listed_unavailable(azure: FakeAzureOpenAI,
                                                            tmp_path: Path) -> None:
    with gateway(azure, tmp_path, AZURE_CLIENT_SECRET="") as gw:
        token = gw.token(credits=10)
        models = {m["id"]: m for m in httpx.get(
            gw.url + "/v1/models", headers={"authorization": f"Bearer {token}"},
            timeout=10).json()["data"]}
        assert models["gpt-image-2"]["available"] is False
        message = error_of(post(gw, token, BODY), 500, "api_error")
        assert "AZURE_CLIENT_SECRET" in message and azure.entra is not None
        assert azure.entra.grants == []
