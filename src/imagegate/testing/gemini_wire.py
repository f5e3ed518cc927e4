"""What Google's Gemini API accepts and answers, for the fake Gemini (and the fakes built on
it): output sizes per model and ratio, the proto-JSON fields it knows (unknown ones are
errors; camelCase or snake_case), its error statuses and pages, and its checks of an
``inlineData`` input image. Sources are cited in gemini_fake.py.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
import math
import re
from typing import Any

from PIL import Image

RATIOS_25: dict[str, tuple[int, int]] = {
    "1:1": (1024, 1024), "2:3": (832, 1248), "3:2": (1248, 832), "3:4": (864, 1184),
    "4:3": (1184, 864), "4:5": (896, 1152), "5:4": (1152, 896), "9:16": (768, 1344),
    "16:9": (1344, 768), "21:9": (1536, 672),
}
RATIOS_3: dict[str, tuple[int, int]] = {  # 1K; 2K and 4K are x2 and x4
    "1:1": (1024, 1024), "2:3": (848, 1264), "3:2": (1264, 848), "3:4": (896, 1200),
    "4:3": (1200, 896), "4:5": (928, 1152), "5:4": (1152, 928), "9:16": (768, 1376),
    "16:9": (1376, 768), "21:9": (1584, 672),
}
RATIOS_31_EXTRA: dict[str, tuple[int, int]] = {
    "1:4": (512, 2048), "4:1": (2048, 512), "1:8": (384, 3072), "8:1": (3072, 384)}
MODELS: dict[str, dict[str, tuple[int, int]]] = {
    "gemini-2.5-flash-image": RATIOS_25,
    "gemini-3-pro-image-preview": RATIOS_3,
    "gemini-3.1-flash-image-preview": {**RATIOS_3, **RATIOS_31_EXTRA},
}
IMAGE_SIZES = {"1K": 1, "2K": 2, "4K": 4}

_FIELDS: dict[str, set[str]] = {
    "": {"contents", "tools", "toolConfig", "safetySettings", "systemInstruction",
         "generationConfig", "cachedContent", "model"},
    "content": {"role", "parts"},
    "part": {"text", "inlineData", "fileData", "thought", "thoughtSignature", "functionCall",
             "functionResponse", "executableCode", "codeExecutionResult", "videoMetadata",
             "partMetadata", "mediaResolution"},
    "generationConfig": {
        "stopSequences", "responseMimeType", "responseSchema", "responseJsonSchema",
        "candidateCount", "maxOutputTokens", "temperature", "topP", "topK", "seed",
        "presencePenalty", "frequencyPenalty", "responseLogprobs", "logprobs",
        "enableEnhancedCivicAnswers", "responseModalities", "speechConfig", "thinkingConfig",
        "imageConfig", "mediaResolution"},
    "imageConfig": {"aspectRatio", "imageSize"},
    "blob": {"mimeType", "data"},
}
IMAGE_MIMES = ("image/png", "image/jpeg", "image/webp", "image/heic", "image/heif")
MAX_PAYLOAD = 20 * 1024 * 1024
_UNPROCESSABLE = ("Unable to process input image. Please retry or report in "
                  "https://developers.generativeai.google/guide/troubleshooting")
STATUS: dict[int, tuple[str, str]] = {
    400: ("INVALID_ARGUMENT", "Request contains an invalid argument."),
    401: ("UNAUTHENTICATED", "Request had invalid authentication credentials."),
    403: ("PERMISSION_DENIED", "The caller does not have permission"),
    404: ("NOT_FOUND", "Requested entity was not found."),
    409: ("ABORTED", "The operation was aborted."),
    429: ("RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    499: ("CANCELLED", "The operation was cancelled."),
    500: ("INTERNAL", "An internal error has occurred. Please retry or report in "
          "https://developers.generativeai.google/guide/troubleshooting"),
    501: ("UNIMPLEMENTED", "Operation is not implemented, or supported, or enabled."),
    503: ("UNAVAILABLE", "The model is overloaded. Please try again later."),
    504: ("DEADLINE_EXCEEDED", "Deadline expired before operation could complete."),
}
PATH = re.compile(r"^/v1beta/models/([^/:]+):(generateContent|streamGenerateContent)$")
GOOGLE_HTML = (
    "<!DOCTYPE html>\n<html lang=en>\n  <meta charset=utf-8>\n  <title>Error {status} "
    "({reason})!!1</title>\n  <p><b>{status}.</b> <ins>That\u2019s an error.</ins>\n  <p>{text}"
    "  <ins>That\u2019s all we know.</ins>\n")
JSON_TYPE = "application/json; charset=UTF-8"


class GeminiError(Exception):
    def __init__(self, code: int, message: str, status: str | None = None,
                 details: list[dict[str, Any]] | None = None) -> None:
        super().__init__(message)
        self.code, self.message = code, message
        self.status = status or STATUS.get(code, ("UNKNOWN", ""))[0]
        self.details = details


def _camel(name: str) -> str:
    head, *rest = name.split("_")
    return head + "".join(word.title() for word in rest)


def proto_object(value: Any, kind: str, where: str) -> dict[str, Any]:
    """Check a proto message: a JSON object whose fields Google knows; keys made camelCase."""
    if not isinstance(value, dict):
        raise GeminiError(400, f"Invalid JSON payload received. Expected an object at "
                          f"'{where}'." if where else "Invalid JSON payload received.")
    out: dict[str, Any] = {}
    for name, item in value.items():
        if _camel(name) not in _FIELDS[kind]:
            at = f" at '{where}'" if where else ""
            raise GeminiError(400, f'Invalid JSON payload received. Unknown name "{name}"{at}: '
                              "Cannot find field.")
        out[_camel(name)] = item
    return out


def inline_image(raw: Any, where: str) -> tuple[int, int, str]:
    """One inlineData input: a Blob proto whose bytes must be an image Google decodes."""
    blob = proto_object(raw, "blob", where)
    mime = blob.get("mimeType")
    data = blob.get("data")
    if not isinstance(data, str) or not data:
        raise GeminiError(400, f"* GenerateContentRequest.{where}.data: inline data must not "
                          "be empty.\n")
    try:
        decoded = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise GeminiError(400, f"Invalid value at '{where}.data' (TYPE_BYTES), Base64 decoding "
                          f"failed for \"{data[:40]}\"") from None
    if not isinstance(mime, str) or mime.lower() not in IMAGE_MIMES:
        raise GeminiError(400, f"Unsupported MIME type: {mime}")
    try:
        with Image.open(io.BytesIO(decoded)) as image:
            image.load()
            width, height = image.size
    except Exception:  # noqa: BLE001 - what Pillow cannot decode, the model cannot see
        raise GeminiError(400, _UNPROCESSABLE) from None
    return width, height, hashlib.sha256(decoded).hexdigest()


def nearest(table: dict[str, tuple[int, int]], width: int, height: int) -> str:
    target = math.log(width / height)
    return min(table, key=lambda r: abs(math.log(table[r][0] / table[r][1]) - target))
