"""/openapi.json describes the API as it answers: schemathesis sends what the document says
is acceptable (and some that is not) and checks every answer against it."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from fastapi.openapi.utils import get_openapi
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from imagegate.api.app import create_app
from imagegate.api.openapi import build
from imagegate.core.routing.registry import load_registry
from imagegate.settings import Settings
from tests.support.server import GatewayServer

ADMIN_KEY = "adm-openapi-1-0123456789abcdef"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance,
          response_schema_conformance]


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    server = GatewayServer(tmp_path_factory.mktemp("openapi"), "--sandbox",
                           env={"IMAGEGATE_ADMIN_KEY": ADMIN_KEY,
                                "IMAGEGATE_SELF_SERVICE": "true"})
    yield server.start()
    server.stop()


@pytest.fixture(scope="module")
def token(gw: GatewayServer) -> str:
    return gw.token(credits=1_000_000, name="openapi")


def _document() -> dict[str, object]:
    """What the sandbox gateway below serves at /openapi.json (a test checks that)."""
    return build(create_app(Settings(sandbox=True, data_dir=Path("unused"))), load_registry())


schema = schemathesis.openapi.from_dict(_document())


@schema.parametrize()
@settings(max_examples=6, deadline=None, derandomize=True,
          suppress_health_check=list(HealthCheck))
def test_the_api_answers_as_documented(case: schemathesis.Case, gw: GatewayServer,
                                       token: str) -> None:
    secret = ADMIN_KEY if case.path.startswith("/admin") else token
    if isinstance(case.body, dict) and isinstance(case.body.get("n"), int):
        case.body["n"] = 1  # every n is valid; rendering ten large images is only slow
    case.call_and_validate(base_url=gw.url, headers={"authorization": f"Bearer {secret}"},
                           checks=CHECKS, timeout=60)


def test_every_api_route_is_documented(gw: GatewayServer) -> None:
    """A new endpoint needs a ``doc(...)`` on its decorator, or it is missing here."""
    app = create_app(Settings(sandbox=True, data_dir=Path("unused")))
    with warnings.catch_warnings():  # GET and HEAD of one route share an id
        warnings.simplefilter("ignore", UserWarning)
        every = get_openapi(title="all", version="0", routes=app.routes)["paths"]
    served = httpx.get(gw.url + "/openapi.json").json()["paths"]
    missing = [f"{method.upper()} {path}" for path, operations in every.items()
               for method in operations if method not in served.get(path, {})]
    assert missing == []


def test_the_document_is_served_with_bodies_errors_and_security(gw: GatewayServer) -> None:
    spec = httpx.get(gw.url + "/openapi.json").json()
    generate = spec["paths"]["/v1/images/generations"]["post"]
    assert generate["security"] == [{"token": []}]
    body = spec["components"]["schemas"]["GenerationRequest"]
    assert body["discriminator"]["mapping"]["gpt-image-2"].endswith("Generate_gpt-image-2")
    dalle = spec["components"]["schemas"]["Generate_dall-e-3"]["properties"]
    assert dalle["n"]["maximum"] == 1 and dalle["prompt"]["maxLength"] == 4000
    assert {"401", "403", "413", "429", "504"} <= set(generate["responses"])
    assert generate["responses"]["403"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Error"}
    assert spec["components"]["securitySchemes"]["token"]["scheme"] == "bearer"
    assert "422" not in str(spec["paths"])  # FastAPI's guess: this API answers 400
    assert spec == _document()
    page = httpx.get(gw.url + "/docs")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "cdn" not in page.text.lower() and "https://" not in page.text
