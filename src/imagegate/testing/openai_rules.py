"""Request validation for the fake OpenAI Images API, mirroring the real API's errors.

Kept apart from the server so the rules (which change as OpenAI ships models) are easy to
read and update. Every failure is an ``OpenAIError`` carrying OpenAI's own error fields.

OpenAI-compatible resellers and relays (New-API, One-API and their kin) also serve Google's
image models on this endpoint: ``size`` picks the nearest aspect ratio, and since Gemini
makes one image per call they pass Google's refusal of ``n`` > 1 on as a 400
("Multiple candidates is not enabled for models/..."). The fake does the same for
``gemini-*`` models.

gpt-image-2 refuses ``background: transparent`` with a 400 naming ``background`` (type
``image_generation_user_error``): "Transparent background is not supported for this model."
(OpenAI's image generation guide: gpt-image-2 does not support transparent backgrounds;
reports of the exact error in public repositories and on dev.to, Aug-Oct 2026).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

GPT_IMAGE_PARAMS = frozenset({
    "model", "prompt", "n", "size", "quality", "background", "output_format",
    "output_compression", "moderation", "user", "stream", "partial_images",
})
DALLE3_PARAMS = frozenset({
    "model", "prompt", "n", "size", "quality", "style", "response_format", "user"})
DALLE2_PARAMS = frozenset({"model", "prompt", "n", "size", "quality", "response_format", "user"})
GEMINI_PARAMS = frozenset({"model", "prompt", "n", "size", "response_format", "user"})
GEMINI_1K = {"1:1": (1024, 1024), "2:3": (832, 1248), "3:2": (1248, 832), "3:4": (864, 1184),
             "4:3": (1184, 864), "4:5": (896, 1152), "5:4": (1152, 896), "9:16": (768, 1344),
             "16:9": (1344, 768), "21:9": (1536, 672)}


@dataclass(frozen=True)
class ModelRules:
    family: str  # "gpt-image" | "dalle" | "gemini" (Google's, through a relay)
    params: frozenset[str]
    sizes: tuple[str, ...] | None  # None: the gpt-image-2 arithmetic rule
    qualities: tuple[str, ...]
    max_n: int
    max_prompt: int
    transparent: bool = True  # background "transparent" accepted


GPT_IMAGE_SIZES = ("1024x1024", "1536x1024", "1024x1536", "auto")
GPT_IMAGE_QUALITIES = ("low", "medium", "high", "auto")
MODELS: dict[str, ModelRules] = {
    "gpt-image-2": ModelRules("gpt-image", GPT_IMAGE_PARAMS, None, GPT_IMAGE_QUALITIES, 10,
                              32000, transparent=False),
    "gpt-image-1": ModelRules("gpt-image", GPT_IMAGE_PARAMS, GPT_IMAGE_SIZES,
                              GPT_IMAGE_QUALITIES, 10, 32000),
    "gpt-image-1-mini": ModelRules("gpt-image", GPT_IMAGE_PARAMS, GPT_IMAGE_SIZES,
                                   GPT_IMAGE_QUALITIES, 10, 32000),
    "dall-e-3": ModelRules("dalle", DALLE3_PARAMS, ("1024x1024", "1792x1024", "1024x1792"),
                           ("standard", "hd"), 1, 4000),
    "dall-e-2": ModelRules("dalle", DALLE2_PARAMS, ("256x256", "512x512", "1024x1024"),
                           ("standard",), 10, 1000),
    **{name: ModelRules("gemini", GEMINI_PARAMS, None, ("auto",), 1, 32000)
       for name in ("gemini-2.5-flash-image", "gemini-3-pro-image-preview",
                    "gemini-3.1-flash-image-preview")},
}


class OpenAIError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None,
                 code: str | None = None, type_: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = (
            status, message, param, code, type_)

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param,
                          "code": self.code}}


@dataclass(frozen=True)
class ImageParams:
    """A validated request, with OpenAI's defaults resolved."""

    model: str
    rules: ModelRules
    prompt: str
    n: int
    width: int
    height: int
    quality: str
    output_format: str
    background: str
    response_format: str  # "b64_json" | "url"
    stream: bool = False
    partial_images: int = 0

    @property
    def size(self) -> str:
        return f"{self.width}x{self.height}"


def listing(values: tuple[str, ...]) -> str:
    """OpenAI's "'a', 'b', and 'c'" style."""
    quoted = [f"'{v}'" for v in values]
    if len(quoted) <= 2:
        return " and ".join(quoted)
    return ", ".join(quoted[:-1]) + ", and " + quoted[-1]


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    return {str: "a string", int: "an integer", float: "a decimal", list: "an array",
            dict: "an object"}.get(type(value), "null")


def _expect(body: dict[str, Any], name: str, kind: type, label: str) -> Any:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) and kind is not bool or not isinstance(value, kind):
        raise OpenAIError(400, f"Invalid type for '{name}': expected {label}, but got "
                          f"{_type_name(value)} instead.", name, "invalid_type")
    return value


def _choice(body: dict[str, Any], name: str, allowed: tuple[str, ...], default: str) -> str:
    value = _expect(body, name, str, "one of " + listing(allowed))
    if value is None:
        return default
    if value not in allowed:
        raise OpenAIError(400, f"Invalid value: '{value}'. Supported values are: "
                          f"{listing(allowed)}.", name, "invalid_value")
    return str(value)


def check_gpt_image_2_size(width: int, height: int) -> str | None:
    """The reason a gpt-image-2 size is refused, or None when it is fine."""
    if width % 16 or height % 16:
        return "width and height must both be multiples of 16"
    if max(width, height) > 3840:
        return "the longest side must be at most 3840 pixels"
    if max(width, height) > 3 * min(width, height):
        return "the aspect ratio must be at most 3:1"
    if not 655_360 <= width * height <= 8_294_400:
        return "the total pixels must be between 655,360 and 8,294,400"
    return None


def _size(body: dict[str, Any], rules: ModelRules) -> tuple[int, int]:
    default = "auto" if rules.family == "gpt-image" else "1024x1024"
    value = _expect(body, "size", str, "a string") or default
    if rules.family == "dalle" and value not in (rules.sizes or ()):
        raise OpenAIError(400, "The size is not supported by this model.", None, "invalid_size")
    if value == "auto":
        return 1024, 1024
    if rules.sizes is not None and value not in rules.sizes:
        raise OpenAIError(400, f"Invalid value: '{value}'. Supported values are: "
                          f"{listing(rules.sizes)}.", "size", "invalid_value")
    width_text, sep, height_text = value.partition("x")
    if not (sep and width_text.isdigit() and height_text.isdigit()):
        raise OpenAIError(400, f"Invalid value: '{value}'. Size must be 'auto' or of the "
                          "form WIDTHxHEIGHT.", "size", "invalid_value")
    width, height = int(width_text), int(height_text)
    reason = check_gpt_image_2_size(width, height) if rules.sizes is None else None
    if reason:
        raise OpenAIError(400, f"Invalid value: '{value}'. {reason[0].upper()}{reason[1:]}.",
                          "size", "invalid_value")
    return width, height


def validate(body: Any) -> ImageParams:
    """Check a request body the way api.openai.com does; raise OpenAIError when it doesn't."""
    if not isinstance(body, dict):
        raise OpenAIError(400, "Invalid type for body: expected an object.", None,
                          "invalid_type")
    model = _expect(body, "model", str, "a string") or "dall-e-2"
    rules = MODELS.get(model)
    if rules is None:
        raise OpenAIError(404, f"The model '{model}' does not exist or you do not have access "
                          "to it.", None, "model_not_found")
    for name in body:
        if name not in rules.params:
            raise OpenAIError(400, f"Unknown parameter: '{name}'.", name, "unknown_parameter")
    prompt = _expect(body, "prompt", str, "a string")
    if prompt is None:
        raise OpenAIError(400, "Missing required parameter: 'prompt'.", "prompt",
                          "missing_required_parameter")
    if not prompt:
        raise OpenAIError(400, "Invalid 'prompt': empty string. Expected a string with minimum "
                          "length 1, but got an empty string instead.", "prompt", "empty_string")
    if len(prompt) > rules.max_prompt:
        raise OpenAIError(400, f"Invalid 'prompt': string too long. Expected a string with "
                          f"maximum length {rules.max_prompt}, but got a string with length "
                          f"{len(prompt)} instead.", "prompt", "string_above_max_length")
    n = _expect(body, "n", int, "an integer")
    n = 1 if n is None else n
    if rules.family == "gemini":
        return _gemini(body, model, rules, prompt, n)
    if rules.max_n == 1 and n != 1:
        raise OpenAIError(400, "You must provide n=1 for this model.", "n", "invalid_value")
    if n < 1:
        raise OpenAIError(400, f"Invalid 'n': integer below minimum value. Expected a value >= "
                          f"1, but got {n} instead.", "n", "integer_below_min_value")
    if n > rules.max_n:
        raise OpenAIError(400, f"Invalid 'n': integer above maximum value. Expected a value <= "
                          f"{rules.max_n}, but got {n} instead.", "n", "integer_above_max_value")
    width, height = _size(body, rules)
    quality = _choice(body, "quality", rules.qualities, rules.qualities[-1]
                      if rules.family == "gpt-image" else "standard")
    if rules.family == "dalle":
        if "style" in rules.params:
            _choice(body, "style", ("vivid", "natural"), "vivid")
        response_format = _choice(body, "response_format", ("url", "b64_json"), "url")
        return ImageParams(model, rules, prompt, n, width, height, quality, "png", "opaque",
                           response_format)
    background = _choice(body, "background", ("transparent", "opaque", "auto"), "auto")
    output_format = _choice(body, "output_format", ("png", "jpeg", "webp"), "png")
    _choice(body, "moderation", ("low", "auto"), "auto")
    _expect(body, "user", str, "a string")
    compression = _expect(body, "output_compression", int, "an integer")
    if compression is not None and not 0 <= compression <= 100:
        raise OpenAIError(400, f"Invalid 'output_compression': expected a value between 0 and "
                          f"100, but got {compression} instead.", "output_compression",
                          "invalid_value")
    if compression is not None and compression < 100 and output_format == "png":
        raise OpenAIError(400, "Compression less than 100 is not supported for PNG output "
                          "format.", "output_compression", "invalid_value")
    if background == "transparent" and not rules.transparent:
        raise OpenAIError(400, "Transparent background is not supported for this model.",
                          "background", None, "image_generation_user_error")
    if background == "transparent" and output_format == "jpeg":
        raise OpenAIError(400, "Transparent background is not supported for output format "
                          "'jpeg'. Use 'png' or 'webp'.", "background", "invalid_value")
    stream = bool(_expect(body, "stream", bool, "a boolean"))
    partial = _expect(body, "partial_images", int, "an integer") or 0
    if partial > 3:
        raise OpenAIError(400, "Invalid 'partial_images': integer above maximum value. Expected "
                          f"a value <= 3, but got {partial} instead.", "partial_images",
                          "integer_above_max_value")
    if partial < 0:
        raise OpenAIError(400, "Invalid 'partial_images': integer below minimum value. Expected "
                          f"a value >= 0, but got {partial} instead.", "partial_images",
                          "integer_below_min_value")
    resolved_quality = "medium" if quality == "auto" else quality
    resolved_background = "transparent" if background == "transparent" else "opaque"
    return ImageParams(model, rules, prompt, n, width, height, resolved_quality, output_format,
                       resolved_background, "b64_json", stream, partial)


def _gemini(body: dict[str, Any], model: str, rules: ModelRules, prompt: str, n: int
            ) -> ImageParams:
    """A Gemini image model behind a relay: one image per call, the nearest ratio's size."""
    if n != 1:
        raise OpenAIError(400, f"Multiple candidates is not enabled for models/{model}", None,
                          None, "upstream_error")
    value = _expect(body, "size", str, "a string") or "1024x1024"
    width_text, sep, height_text = value.partition("x")
    if not (sep and width_text.isdigit() and height_text.isdigit() and int(width_text)
            and int(height_text)):
        raise OpenAIError(400, f"Invalid value: '{value}'. Size must be of the form "
                          "WIDTHxHEIGHT.", "size", "invalid_value")
    target = math.log(int(width_text) / int(height_text))

    def distance(ratio: str) -> float:
        a, b = ratio.split(":")
        return abs(math.log(int(a) / int(b)) - target)

    width, height = GEMINI_1K[min(GEMINI_1K, key=distance)]
    response_format = _choice(body, "response_format", ("url", "b64_json"), "b64_json")
    return ImageParams(model, rules, prompt, 1, width, height, "auto", "png", "opaque",
                       response_format)


OUTPUT_TOKENS_1024 = {"low": 272, "medium": 1056, "high": 4160}


def usage(params: ImageParams) -> dict[str, Any]:
    """Deterministic token accounting shaped like OpenAI's."""
    text_tokens = max(1, (len(params.prompt) + 3) // 4)
    per_image = OUTPUT_TOKENS_1024.get(params.quality, 1056) * params.width * params.height
    output_tokens = round(per_image / (1024 * 1024)) * params.n
    return {
        "input_tokens": text_tokens,
        "input_tokens_details": {"text_tokens": text_tokens, "image_tokens": 0},
        "output_tokens": output_tokens,
        "total_tokens": text_tokens + output_tokens,
    }
