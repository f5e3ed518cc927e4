"""multipart/form-data bodies as the fakes (and tests) see them: every part, in order.

A fake holds the whole body already, so parts are kept in memory; python-multipart does the
parsing (the same parser the gateway's form reading uses through Starlette).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from python_multipart.multipart import MultipartParser, parse_options_header


class FormError(ValueError):
    """The body is not readable multipart."""


@dataclass
class Part:
    name: str
    filename: str | None  # set for file parts
    content_type: str | None
    data: bytes

    @property
    def is_file(self) -> bool:
        return self.filename is not None

    @property
    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


@dataclass
class Form:
    parts: list[Part] = field(default_factory=list)

    def files(self, *names: str) -> list[Part]:
        return [p for p in self.parts if p.name in names and p.is_file]

    def fields(self) -> dict[str, str]:
        """Text fields; a repeated one keeps its last value."""
        return {p.name: p.text for p in self.parts if not p.is_file}

    def named(self, *names: str) -> list[Part]:
        return [p for p in self.parts if p.name in names]


def parse_form(body: bytes, content_type: str) -> Form:
    kind, options = parse_options_header(content_type)
    if kind != b"multipart/form-data" or b"boundary" not in options:
        raise FormError(f"expected multipart/form-data with a boundary; got {content_type!r}")
    form = Form()
    state: dict[str, bytes] = {"name": b"", "value": b""}
    headers: dict[bytes, bytes] = {}
    data = bytearray()

    def on_header_field(chunk: bytes, start: int, end: int) -> None:
        state["name"] += chunk[start:end]

    def on_header_value(chunk: bytes, start: int, end: int) -> None:
        state["value"] += chunk[start:end]

    def on_header_end() -> None:
        headers[state["name"].lower()] = state["value"]
        state["name"] = state["value"] = b""

    def on_part_begin() -> None:
        headers.clear()
        data.clear()

    def on_part_data(chunk: bytes, start: int, end: int) -> None:
        data.extend(chunk[start:end])

    def on_part_end() -> None:
        _, disposition = parse_options_header(headers.get(b"content-disposition", b""))
        name = disposition.get(b"name", b"").decode("utf-8", "replace")
        filename = disposition.get(b"filename")
        ctype = headers.get(b"content-type")
        form.parts.append(Part(name, filename.decode("utf-8", "replace") if filename is not None
                               else None, ctype.decode("latin-1") if ctype else None,
                               bytes(data)))

    parser = MultipartParser(options[b"boundary"], {
        "on_part_begin": on_part_begin, "on_part_data": on_part_data,
        "on_part_end": on_part_end, "on_header_field": on_header_field,
        "on_header_value": on_header_value, "on_header_end": on_header_end})
    try:
        parser.write(body)
        parser.finalize()
    except Exception as e:  # noqa: BLE001 - python-multipart raises several kinds
        raise FormError(f"malformed multipart body: {e}") from None
    return form
