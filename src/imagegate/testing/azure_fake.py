"""A fake Azure OpenAI resource: image model deployments over real sockets.

What it holds to, from Microsoft's Azure OpenAI REST reference (azure-ai-docs, "Azure
OpenAI latest preview inference API", sections "Image generations - Create", "Image
generations - Edit" and the schemas ``dalleErrorResponse``, ``dalleInnerError``,
``innerErrorCode``, ``dalleFilterResults``):

- ``POST /openai/deployments/{deployment-id}/images/generations?api-version=...`` (JSON) and
  ``.../images/edits`` (multipart); ``api-version`` is required (without it Azure answers
  404 "Resource not found"); the deployment decides the model, the body names none.
- Authentication by the ``api-key`` header or ``Authorization: Bearer`` (an Entra token:
  a fixed one, or those its ``entra`` issuer grants at ``/{tenant}/oauth2/v2.0/token``,
  entra_fake.py; a bearer token it does not take is 401 "Unauthorized. Access token is
  missing, invalid, audience is incorrect (https://cognitiveservices.azure.com), or have
  expired.");
  a wrong key is 401 ``{"error": {"code": "401", "message": "Access denied due to invalid
  subscription key or wrong API endpoint. ..."}}`` with an ``apim-request-id`` header (the
  body and headers quoted from Azure in SciSharp/BotSharp issue 386).
- Each image in a 200 carries ``prompt_filter_results`` and ``content_filter_results``
  (hate, sexual, violence, self_harm: ``{filtered, severity}``; profanity, jailbreak:
  ``{filtered, detected}``), as in the reference's example response.
- A content filter refusal is HTTP 400 ``{"error": {"code": "content_policy_violation",
  "inner_error": {"code": "ResponsibleAIPolicyViolation", "content_filter_results": {..}},
  "message": "Your request was rejected as a result of our safety system. ...", "type":
  "invalid_request_error"}}`` (the body quoted from Azure in BerriAI/litellm issue 16072).
- 429 says "Requests to the ... Operation under Azure OpenAI API version ... have exceeded
  call rate limit ... Please retry after N seconds." with a Retry-After header; an unknown
  deployment is 404 ``DeploymentNotFound`` "The API deployment for this resource does not
  exist." (as Azure clients' test suites on GitHub quote it).

The image rules themselves (sizes, qualities, gpt-image-2 and transparency) are the OpenAI
fake's, applied to the deployment's model.
"""

from __future__ import annotations

import asyncio
import hmac
import re
from typing import Any

import orjson

from imagegate.testing.entra_fake import AUDIENCE, EntraIssuer
from imagegate.testing.multipart import FormError, Part, parse_form
from imagegate.testing.openai_edit_rules import validate_edit
from imagegate.testing.openai_fake import FakeOpenAI
from imagegate.testing.openai_rules import OpenAIError, validate
from imagegate.testing.records import Fault, RecordedRequest, Response, json_response

_PATH = re.compile(r"^/openai/deployments/([^/]+)/images/(generations|edits)$")
_TOKEN_PATH = re.compile(r"^/([^/]+)/oauth2/v2\.0/token$")
_SAFE = {"filtered": False, "severity": "safe"}
PROMPT_FILTER_RESULTS: dict[str, Any] = {
    "hate": _SAFE, "self_harm": _SAFE, "sexual": _SAFE, "violence": _SAFE,
    "profanity": {"detected": False, "filtered": False},
    "jailbreak": {"detected": False, "filtered": False},
    "custom_blocklists": {"filtered": False, "details": []},
}
CONTENT_FILTER_RESULTS: dict[str, Any] = {
    "hate": _SAFE, "self_harm": _SAFE, "sexual": _SAFE, "violence": _SAFE}
REFUSAL = ("Your request was rejected as a result of our safety system. Your prompt may "
           "contain text that is not allowed by our safety system.")
DEFAULT_DEPLOYMENTS = {m: m for m in ("gpt-image-2", "gpt-image-1", "gpt-image-1-mini",
                                      "dall-e-3")}


def azure_error(status: int, code: str, message: str, **extra: Any) -> Response:
    return json_response(status, {"error": {"code": code, "message": message, **extra}},
                         [("apim-request-id", "00000000-0000-0000-0000-000000000000"),
                          ("x-ms-region", "East US")])


class FakeAzureOpenAI(FakeOpenAI):
    """One Azure OpenAI resource; ``deployments`` maps deployment names to models."""

    kind = "azure"
    server_header = "Microsoft-HTTPAPI/2.0"

    def __init__(self, api_key: str = "az-test", *, deployments: dict[str, str] | None = None,
                 bearer_token: str | None = None, entra: EntraIssuer | None = None,
                 host: str = "127.0.0.1", port: int = 0, latency: float = 0.0) -> None:
        super().__init__(api_key, host=host, port=port, latency=latency)
        self.deployments = dict(deployments or DEFAULT_DEPLOYMENTS)
        self.bearer_token = bearer_token
        self.entra = entra

    def error_response(self, status: int, fault: Fault) -> Response:
        if fault.code in ("content_policy_violation", "ResponsibleAIPolicyViolation"):
            results = {**CONTENT_FILTER_RESULTS, "violence": {"filtered": True,
                                                              "severity": "high"}}
            return azure_error(status, "content_policy_violation", fault.message or REFUSAL,
                               type="invalid_request_error", inner_error={
                                   "code": "ResponsibleAIPolicyViolation",
                                   "content_filter_results": results})
        if status == 429:
            return azure_error(429, "429", fault.message or (
                "Requests to the ImageGenerations_Create Operation under Azure OpenAI API "
                "version 2025-04-01-preview have exceeded call rate limit of your current "
                "OpenAI S0 pricing tier. Please retry after "
                f"{int(fault.retry_after or 60)} seconds. Please go here: "
                "https://aka.ms/oai/quotaincrease if you would like to further increase the "
                "default rate limit."))
        if status == 401:
            return self._denied()
        return azure_error(status, fault.code or str(status), fault.message or (
            "The server had an error processing your request." if status >= 500
            else f"HTTP {status}"))

    def _denied(self) -> Response:
        return azure_error(401, "401", "Access denied due to invalid subscription key or wrong "
                           "API endpoint. Make sure to provide a valid key for an active "
                           "subscription and use a correct regional API endpoint for your "
                           "resource.")

    def _refused(self, request: RecordedRequest) -> Response | None:
        key = request.headers.get("api-key")
        if key is not None:
            return None if hmac.compare_digest(key.encode(), self.api_key.encode()) \
                else self._denied()
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return self._denied()
        if self.bearer_token is not None and hmac.compare_digest(token.encode(),
                                                                 self.bearer_token.encode()):
            return None
        if self.entra is not None and self.entra.valid(token):
            return None
        return azure_error(401, "401", "Unauthorized. Access token is missing, invalid, "
                           f"audience is incorrect ({AUDIENCE}), or have expired.")

    async def handle(self, request: RecordedRequest, fault: Fault | None) -> Response:
        if request.path.startswith("/files/") and request.method in ("GET", "HEAD"):
            return await super().handle(request, fault)
        token_path = _TOKEN_PATH.match(request.path)
        if token_path is not None and self.entra is not None and request.method == "POST":
            if self.entra.delay > 0:
                await asyncio.sleep(self.entra.delay)
            return self.entra.grant(token_path.group(1), request)
        match = _PATH.match(request.path)
        if match is None or request.method != "POST" or not request.query.get("api-version"):
            return azure_error(404, "404", "Resource not found")
        refused = self._refused(request)
        if refused is not None:
            return refused
        deployment, operation = match.groups()
        model = self.deployments.get(deployment)
        if model is None:
            return azure_error(404, "DeploymentNotFound", "The API deployment for this "
                               "resource does not exist. If you created the deployment "
                               "within the last 5 minutes, please wait a moment and try "
                               "again.")
        try:
            if operation == "edits":
                form = parse_form(request.body, request.headers.get("content-type", ""))
                form.parts = [p for p in form.parts if p.name != "model"]
                form.parts.append(Part("model", None, None, model.encode()))
                edit = await self.run_sync(validate_edit, form)
                params = edit.params
            else:
                body = orjson.loads(request.body)
                if not isinstance(body, dict):
                    raise OpenAIError(400, "The request body must be a JSON object.")
                edit, params = None, validate({**body, "model": model})
        except (FormError, orjson.JSONDecodeError):
            return azure_error(400, "BadRequest", "The request body could not be read.")
        except OpenAIError as exc:
            return self._error(exc)
        if self.latency > 0:
            await asyncio.sleep(self.latency)
        payload = orjson.loads(await self.run_sync(
            self._generate, params, fault or Fault(), self._public_base(request), edit))
        for item in payload["data"]:
            item["prompt_filter_results"] = PROMPT_FILTER_RESULTS
            item["content_filter_results"] = CONTENT_FILTER_RESULTS
        return json_response(200, payload, [("apim-request-id", "0" * 36)])
