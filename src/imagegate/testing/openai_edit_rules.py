"""What the fake OpenAI accepts at ``POST /v1/images/edits``, and how it refuses the rest.

Sources for the rules and the wording (quoted where OpenAI's own text is known):

- openai-python ``resources/images.py`` (``Images.edit``): files at ``image`` (one),
  ``image[]`` (a list: ``extract_files`` paths ``["image"], ["image", "<array>"],
  ["mask"]`` with brackets) and ``mask``; GPT image models take up to 16 png, webp or jpg
  files under 50MB each, dall-e-2 one square png under 4MB; the mask is a png under 4MB
  with the first image's dimensions whose fully transparent pixels mark the edit;
  ``input_fidelity`` high|low for gpt-image-1 and later, not gpt-image-1-mini.
- openai-node ``internal/uploads.ts`` (``addFormValue``): ``key[]`` per array entry,
  every other field as text (``String(value)``).
- Error texts reported from the live API: "Invalid file 'image': unsupported mimetype
  ('application/octet-stream'). Supported file formats are 'image/jpeg', 'image/png', and
  'image/webp'." (openai-ruby #147, ComfyUI #9329; 'image/png' alone for dall-e-2,
  openai-node #1468); "Invalid type for 'image': expected one of an array of files or
  file, but got a string instead." (openai-ruby #147); "Invalid image file or mode for
  image 1, please check your image file." with type image_generation_user_error and code
  invalid_image_file (LLMTornado #105); "Invalid mask image format - mask size does not
  match image size" and "... - mask image missing alpha channel" (reported by users of
  the edits endpoint). Other refusals use OpenAI's usual forms ("Missing required
  parameter", "array too long") and are this fake's wording, not verified text.
"""

from __future__ import annotations

import dataclasses
import io
from dataclasses import dataclass
from typing import Any

from PIL import Image

from imagegate.testing.multipart import Form, Part
from imagegate.testing.openai_rules import ImageParams, OpenAIError, listing, validate

EDIT_MODELS = ("dall-e-2", "gpt-image-1", "gpt-image-1-mini", "gpt-image-2")
FIDELITY_MODELS = ("gpt-image-1", "gpt-image-2")
GPT_IMAGE_MIMES = ("image/jpeg", "image/png", "image/webp")
MAX_IMAGES = {"dall-e-2": 1}
DEFAULT_MAX_IMAGES = 16
MAX_BYTES = {"dall-e-2": 4 * 1024 * 1024}
DEFAULT_MAX_BYTES = 50 * 1024 * 1024
MASK_MAX_BYTES = 4 * 1024 * 1024
_PIL_MIME = {"PNG": "image/png", "JPEG": "image/jpeg", "WEBP": "image/webp"}
_INTEGERS = ("n", "output_compression", "partial_images")
_BOOLEANS = ("stream",)
AUTO_SIZES = ((1024, 1024), (1536, 1024), (1024, 1536))


@dataclass(frozen=True)
class InputFile:
    data: bytes
    width: int
    height: int
    mime_type: str
    has_alpha: bool


@dataclass(frozen=True)
class EditParams:
    params: ImageParams
    images: list[InputFile]
    mask: InputFile | None
    input_fidelity: str | None


def _typed(fields: dict[str, str]) -> dict[str, Any]:
    """Form fields are text; OpenAI reads numbers and booleans out of them."""
    body: dict[str, Any] = dict(fields)
    for name in _INTEGERS:
        if name in body:
            try:
                body[name] = int(body[name])
            except ValueError:
                raise OpenAIError(400, f"Invalid type for '{name}': expected an integer, but "
                                  "got a string instead.", name, "invalid_type") from None
    for name in _BOOLEANS:
        if name in body:
            body[name] = body[name].strip().lower() == "true"
    return body


def _decode(part: Part, index: int) -> InputFile:
    try:
        with Image.open(io.BytesIO(part.data)) as image:
            image.load()
            mime = _PIL_MIME.get(image.format or "", "")
            has_alpha = image.mode in ("RGBA", "LA", "PA") or "transparency" in image.info
            size = image.size
    except Exception:  # noqa: BLE001 - whatever Pillow cannot read, OpenAI cannot either
        raise OpenAIError(400, f"Invalid image file or mode for image {index}, please check "
                          "your image file.", None, "invalid_image_file",
                          "image_generation_user_error") from None
    if not mime:
        raise OpenAIError(400, f"Invalid image file or mode for image {index}, please check "
                          "your image file.", None, "invalid_image_file",
                          "image_generation_user_error")
    return InputFile(part.data, size[0], size[1], mime, has_alpha)


def _check_file(part: Part, field: str, allowed: tuple[str, ...], max_bytes: int) -> None:
    mime = (part.content_type or "application/octet-stream").split(";")[0].strip().lower()
    if mime not in allowed:
        raise OpenAIError(400, f"Invalid file '{field}': unsupported mimetype ('{mime}'). "
                          f"Supported file formats are {listing(allowed)}.", field)
    if len(part.data) > max_bytes:
        raise OpenAIError(400, f"Invalid file '{field}': file is larger than the "
                          f"{max_bytes // (1024 * 1024)}MB limit.", field)


def validate_edit(form: Form) -> EditParams:
    """Check a multipart edit the way api.openai.com does; raise OpenAIError otherwise."""
    body = _typed(form.fields())
    model = body.get("model") or "dall-e-2"
    if model not in EDIT_MODELS:
        raise OpenAIError(400, f"Invalid value: '{model}'. Supported values are: "
                          f"{listing(EDIT_MODELS)}.", "model", "invalid_value")
    texts = [p for p in form.named("image", "image[]") if not p.is_file]
    if texts:
        raise OpenAIError(400, "Invalid type for 'image': expected one of an array of files "
                          "or file, but got a string instead.", "image", "invalid_type")
    parts = form.files("image", "image[]")
    if not parts:
        raise OpenAIError(400, "Missing required parameter: 'image'.", "image",
                          "missing_required_parameter")
    most = MAX_IMAGES.get(model, DEFAULT_MAX_IMAGES)
    if len(parts) > most:
        raise OpenAIError(400, f"Invalid 'image': array too long. Expected an array with "
                          f"maximum length {most}, but got an array with length {len(parts)} "
                          "instead.", "image", "array_above_max_length")
    allowed = ("image/png",) if model == "dall-e-2" else GPT_IMAGE_MIMES
    for part in parts:
        _check_file(part, "image", allowed, MAX_BYTES.get(model, DEFAULT_MAX_BYTES))
    images = [_decode(part, i) for i, part in enumerate(parts, start=1)]
    mask = _mask(form, images[0])
    fidelity = body.pop("input_fidelity", None)
    if fidelity is not None:
        if model not in FIDELITY_MODELS:
            raise OpenAIError(400, f"input_fidelity is not supported for model '{model}'.",
                              "input_fidelity", "unsupported_parameter")
        if fidelity not in ("high", "low"):
            raise OpenAIError(400, f"Invalid value: '{fidelity}'. Supported values are: "
                              "'high' and 'low'.", "input_fidelity", "invalid_value")
    params = validate({**body, "model": model})
    if params.rules.family == "gpt-image" and body.get("size") in (None, "auto"):
        width, height = min(AUTO_SIZES, key=lambda s: abs(
            s[0] / s[1] - images[0].width / images[0].height))
        params = dataclasses.replace(params, width=width, height=height)
    return EditParams(params, images, mask, fidelity)


def _mask(form: Form, first: InputFile) -> InputFile | None:
    named = form.named("mask")
    if not named:
        return None
    part = named[-1]
    if not part.is_file:
        raise OpenAIError(400, "Invalid type for 'mask': expected a file, but got a string "
                          "instead.", "mask", "invalid_type")
    _check_file(part, "mask", ("image/png",), MASK_MAX_BYTES)
    mask = _decode(part, 1)
    if mask.mime_type != "image/png" or not mask.has_alpha:
        raise OpenAIError(400, "Invalid mask image format - mask image missing alpha channel",
                          "mask")
    if (mask.width, mask.height) != (first.width, first.height):
        raise OpenAIError(400, "Invalid mask image format - mask size does not match image "
                          "size", "mask")
    return mask


def input_image_tokens(images: list[InputFile]) -> int:
    """A deterministic stand-in for OpenAI's input image tokens (not its formula)."""
    return sum(65 + 129 * max(1, (img.width // 512) * (img.height // 512)) for img in images)
