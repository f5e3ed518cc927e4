"""JSON Schemas of what the API takes and answers, for the OpenAPI document.

Handlers read raw JSON and check it themselves (core/routing/params.py for generations), so
these schemas describe those rules; they are not used to validate. Generation requests are
built from the model registry: one schema per public model, chosen by its ``model`` field.
"""

from __future__ import annotations

from typing import Any

from imagegate.core.routing.params import (
    DALLE_SIZES,
    FORMATS,
    GPT_IMAGE_DEFAULT_SIZES,
    MAX_TRACE_ID,
    NANO_RATIOS,
    PROMPT_LIMITS,
)
from imagegate.core.routing.registry import ModelConfig, Registry
from imagegate.core.tasks.queries import MAX_LIMIT, TYPES

Schema = dict[str, Any]


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(properties: Schema, required: tuple[str, ...] = (), **extra: Any) -> Schema:
    return {"type": "object", "properties": properties, "required": list(required), **extra}


STRING, NUMBER, BOOLEAN = {"type": "string"}, {"type": "number"}, {"type": "boolean"}
NULLABLE_NUMBER = {"type": ["number", "null"]}
TRACE_ID = {"type": "string", "pattern": f"^[\\x21-\\x7e]{{1,{MAX_TRACE_ID}}}$",
            "description": "your own id for the request: visible ASCII, no spaces"}


def _enum(values: tuple[str, ...], description: str = "") -> Schema:
    out: Schema = {"type": "string", "enum": list(values)}
    return {**out, "description": description} if description else out


def _size(model: ModelConfig) -> Schema:
    if model.family == "dalle":
        return _enum(DALLE_SIZES, "default 1024x1024")
    if model.family == "nano-banana":
        ratios = ", ".join(NANO_RATIOS + model.extra_ratios)
        return {"type": "string", "pattern": "^[1-9][0-9]{0,3}x[1-9][0-9]{0,3}$",
                "description": f"WxH, sides up to 8192 (default 1024x1024); sent upstream as "
                               f"the nearest aspect ratio ({ratios})"}
    if model.sizes == "flexible":
        return {"type": "string", "pattern": "^(auto|[1-9][0-9]{0,4}x[1-9][0-9]{0,4})$",
                "description": "auto, or WxH with both sides multiples of 16, the longest "
                               "side at most 3840, a ratio of at most 3:1 and 655,360 to "
                               "8,294,400 pixels (anything else is a 400 naming the rule)"}
    return _enum(("auto", *(model.sizes or GPT_IMAGE_DEFAULT_SIZES)), "default auto")


STREAM_FIELDS: Schema = {
    "stream": {"type": "boolean", "description": "answer with Server-Sent Events (SPEC "
               "section 8; not with async or callback_url, not for dall-e-3)"},
    "partial_images": {"type": "integer", "minimum": 0, "maximum": 3,
                       "description": "partial images to stream before each image (default 0)"},
}


def generation_request(model: ModelConfig) -> Schema:
    """What ``model`` accepts (SPEC section 2); unknown fields are ignored."""
    family = model.family
    props: Schema = {
        "model": {"type": "string", "enum": [model.name]},
        "prompt": {"type": "string", "minLength": 1, "maxLength": PROMPT_LIMITS[family],
                   "pattern": "\\S", "description": "not blank"},
        "n": {"type": "integer", "minimum": 1, "maximum": 1 if family == "dalle" else 10,
              "description": "images to make (default 1)"},
        "size": _size(model),
        "response_format": _enum(("url", "b64_json"), "default url (a permanent link)"),
        "user": {"type": "string", "maxLength": 256},
        "callback_url": {"type": "string", "maxLength": 2048, "format": "uri",
                         "description": "answer at once with a task id, then POST the result "
                                        "here (signed; see X-Imagegate-Signature)"},
        "async": {"type": "boolean", "description": "answer at once with a task id"},
        "trace_id": TRACE_ID,
    }
    if family == "dalle":
        props["quality"] = _enum(("standard", "hd"), "default standard")
        props["style"] = _enum(("vivid", "natural"), "accepted, not sent upstream")
    elif family == "gpt-image":
        props["quality"] = _enum(("low", "medium", "high", "auto"), "default auto")
        props["background"] = _enum(("transparent", "opaque", "auto"),
                                    "transparent needs output_format png or webp")
        props["moderation"] = _enum(("low", "auto"))
    if family != "dalle":
        props["output_format"] = _enum(FORMATS, "default png")
        props["output_compression"] = {"type": "integer", "minimum": 0, "maximum": 100}
        props.update(STREAM_FIELDS)
    return _obj(props, ("model", "prompt"), title=f"{model.name} ({family} family)")


def generation_requests(registry: Registry) -> tuple[Schema, dict[str, Schema]]:
    """The request body (one of the models' schemas) and each model's schema by name."""
    named = {f"Generate_{name}": generation_request(model)
             for name, model in registry.models.items()}
    body = {"oneOf": [ref(n) for n in named],
            "discriminator": {"propertyName": "model", "mapping": {
                name: f"#/components/schemas/Generate_{name}" for name in registry.models}}}
    return body, named


def edit_request(registry: Registry, *, multipart: bool) -> Schema:
    """SPEC section 7: the images and mask as files (multipart, what the SDKs send) or as
    URLs (JSON), beside a generation's fields; each family's rules apply as for
    generations (the generation schemas say which)."""
    binary: Schema = {"type": "string", "format": "binary"}
    url: Schema = {"type": "string", "minLength": 1,
                   "description": "https/http URL (fetched through the SSRF guard), a data:image"
                                  "/...;base64 URI, or one of this gateway's /files/ URLs"}
    fields: Schema = {
        "model": {"type": "string", "enum": list(registry.models)},
        "prompt": {"type": "string", "minLength": 1, "pattern": "\\S"},
        "n": {"type": "integer", "minimum": 1, "maximum": 10},
        "size": STRING, "quality": STRING, "background": STRING,
        "output_format": _enum(FORMATS), "output_compression": {
            "type": "integer", "minimum": 0, "maximum": 100},
        "input_fidelity": _enum(("high", "low"), "gpt-image only"),
        "moderation": _enum(("low", "auto")), "user": {"type": "string", "maxLength": 256},
        "response_format": _enum(("url", "b64_json")),
        "callback_url": {"type": "string", "maxLength": 2048, "format": "uri"},
        "async": BOOLEAN, "trace_id": TRACE_ID, **STREAM_FIELDS,
    }
    if multipart:
        images: Schema = {
            "image": binary,
            "image[]": {"type": "array", "items": binary, "maxItems": 16,
                        "description": "several images, in order (png, jpeg or webp)"},
            "mask": {**binary, "description": "a PNG with alpha, the first image's size "
                                              "(gpt-image and dall-e-3 only)"}}
        return _obj({**images, **fields}, ("model", "prompt"),
                    title="multipart edit (as the OpenAI SDKs send it)")
    images = {"image": {"oneOf": [url, {"type": "array", "items": url, "minItems": 1,
                                        "maxItems": 16}]},
              "mask": url}
    return _obj({**images, **fields}, ("model", "prompt", "image"), title="JSON edit")


IMAGE = _obj({"url": {"type": "string", "format": "uri"}, "b64_json": STRING,
              "revised_prompt": {"type": ["string", "null"]}})
TASK_RECORD = _obj({
    "id": STRING, "trace_id": STRING, "type": _enum(TYPES), "model": STRING,
    "request": {"type": "object", "description": "the fields of the request its family reads"},
    "response": {"type": ["object", "null"]},
    "status": _enum(("queued", "running", "succeeded", "failed")),
    "created_at": NUMBER, "started_at": NULLABLE_NUMBER, "finished_at": NULLABLE_NUMBER,
    "elapsed": NULLABLE_NUMBER, "credential_id": STRING,
    "credits": {"type": "number", "description": "charged once succeeded, 0 once failed, "
                                                 "held while queued or running"},
    "attempts": {"type": "integer"}, "usage": {"type": ["object", "null"]},
    "callback": {"type": ["object", "null"], "description": "delivery state and attempts"},
}, ("id", "trace_id", "type", "status", "created_at"))
IDS = {"type": "array", "items": STRING, "maxItems": MAX_LIMIT}
CREDENTIAL = _obj({
    "id": STRING, "name": STRING, "application": STRING, "token_prefix": STRING,
    "scopes": {"type": "array", "items": STRING}, "credits": NUMBER,
    "expires_at": NULLABLE_NUMBER, "disabled": BOOLEAN, "rate_limits": {"type": "object"},
    "created_at": NUMBER, "last_used_at": NULLABLE_NUMBER, "deleted_at": NULLABLE_NUMBER,
}, ("id", "name", "credits", "disabled"))
LIMITS = _obj({k: {"type": "integer", "minimum": 1, "maximum": 1_000_000}
               for k in ("rps", "poll_rps", "concurrency")}, additionalProperties=False)
TEXT = {"type": "string", "minLength": 1, "maxLength": 200, "pattern": "\\S"}
CREDITS = {"type": "number", "minimum": 0, "maximum": 1e9,
           "description": "at most 6 decimal places"}

COMPONENTS: dict[str, Schema] = {
    "Error": _obj({
        "success": {"type": "boolean", "enum": [False]},
        "error": _obj({"code": _enum((
            "bad_request", "token_mismatched", "api_not_implemented", "invalid_token",
            "token_expired", "disabled", "used_up", "forbidden", "no_api", "conflict",
            "request_too_large", "too_many_requests", "api_error", "timeout")),
            "message": STRING}, ("code", "message")),
        "trace_id": STRING}, ("success", "error", "trace_id"),
        description="SPEC section 4: every error, whatever the endpoint"),
    "Image": IMAGE,
    "GenerationResult": _obj({
        "success": {"type": "boolean", "enum": [True]}, "task_id": STRING,
        "trace_id": STRING, "created": {"type": "integer"},
        "data": {"type": "array", "items": ref("Image")},
        "size": STRING, "quality": STRING, "background": STRING, "output_format": STRING,
        "usage": {"type": "object"}}, ("success", "task_id", "trace_id", "created", "data")),
    "ImageStreamEvent": _obj({
        "type": _enum(("image_generation.partial_image", "image_generation.completed",
                       "image_edit.partial_image", "image_edit.completed")),
        "b64_json": STRING, "created_at": {"type": "integer"}, "size": STRING,
        "quality": STRING, "background": STRING, "output_format": STRING,
        "partial_image_index": {"type": "integer", "description": "partial images only"},
        "image_index": {"type": "integer", "description": "which image (n > 1)"},
        "usage": {"type": "object", "description": "completed, gpt-image models"},
        "url": {"type": "string", "format": "uri", "description": "completed: the hosted "
                "image (beyond OpenAI)"},
        "task_id": {"type": "string", "description": "completed (beyond OpenAI)"},
        "revised_prompt": STRING}, ("type", "b64_json", "created_at"),
        description="the data of one streamed event (OpenAI's ImageGenStreamEvent and "
                    "ImageEditStreamEvent fields, plus url and task_id on completed)"),
    "GenerationAccepted": _obj({"task_id": STRING, "trace_id": STRING},
                               ("task_id", "trace_id"),
                               description="async or callback_url: the task is queued"),
    "TaskQuery": {"oneOf": [
        _obj({"action": _enum(("retrieve",)), "id": STRING, "trace_id": STRING},
             ("action",), title="retrieve (trace_id wins over id)"),
        _obj({"action": _enum(("retrieve_batch",)), "ids": IDS, "trace_ids": IDS,
              "created_at_min": NUMBER, "created_at_max": NUMBER, "type": _enum(TYPES),
              "offset": {"type": "integer", "minimum": 0, "maximum": 10**9},
              "limit": {"type": "integer", "minimum": 1, "maximum": MAX_LIMIT}},
             ("action",), title="retrieve_batch")]},
    "TaskRecord": TASK_RECORD,
    "TaskOrNothing": {"anyOf": [ref("TaskRecord"), _obj({}, maxProperties=0)],
                      "description": "{} when there is no such task of yours"},
    "TaskPage": _obj({
        "items": {"type": "array", "items": ref("TaskRecord")}, "count": {"type": "integer"},
        "next_offset": {"type": ["integer", "null"], "description": "the next page's offset; "
                        "a page ends early at IMAGEGATE_TASK_QUERY_MAX_BYTES"}},
        ("items", "count", "next_offset")),
    "Model": _obj({"id": STRING, "object": _enum(("model",)), "created": {"type": "integer"},
                   "owned_by": STRING, "family": _enum(("dalle", "gpt-image", "nano-banana")),
                   "available": BOOLEAN, "unavailable_reason": {"type": ["string", "null"]},
                   "unsupported": {"type": "object", "description": "values of a parameter "
                                   "that every channel of the model refuses (a 400)",
                                   "additionalProperties": {"type": "array",
                                                            "items": STRING}},
                   "price": NUMBER, "price_tiers": {"type": "array", "items": {"type": "object"}}},
                  ("id", "object", "family", "available", "price")),
    "ModelList": _obj({"object": _enum(("list",)),
                       "data": {"type": "array", "items": ref("Model")}}, ("object", "data")),
    "Health": _obj({"status": _enum(("ok",))}, ("status",)),
    "Ready": _obj({"status": _enum(("ok", "unavailable")),
                   "checks": {"type": "object", "additionalProperties": STRING}},
                  ("status", "checks")),
    "Credential": CREDENTIAL,
    "IssuedCredential": {"allOf": [ref("Credential"), _obj(
        {"token": STRING, "webhook_secret": STRING}, ("token", "webhook_secret"))],
        "description": "the token is shown this once"},
    "CredentialList": _obj({"items": {"type": "array", "items": ref("Credential")},
                            "count": {"type": "integer"}}, ("items", "count")),
    "NewCredential": _obj({
        "name": TEXT, "application": TEXT, "credits": CREDITS,
        "scopes": {"type": "array", "items": _enum(("openai-images",)), "minItems": 1},
        "expires_at": NULLABLE_NUMBER, "rate_limits": LIMITS}, additionalProperties=False),
    "CredentialChange": _obj({
        "name": TEXT, "application": TEXT,
        "scopes": {"type": "array", "items": _enum(("openai-images",)), "minItems": 1},
        "expires_at": NULLABLE_NUMBER, "rate_limits": LIMITS, "disabled": BOOLEAN},
        additionalProperties=False, minProperties=1),
    "TopUp": _obj({"credits": {**CREDITS, "exclusiveMinimum": 0}}, ("credits",),
                  additionalProperties=False),
    "Deleted": _obj({"deleted": STRING}, ("deleted",)),
    "Usage": _obj({"credential": ref("Credential"), "balance": NUMBER,
                   "ledger_balance": NUMBER, "by_model": {"type": "object"},
                   "recent_tasks": {"type": "array", "items": {"type": "object"}},
                   "as_of": NUMBER}, ("credential", "balance", "ledger_balance")),
}
