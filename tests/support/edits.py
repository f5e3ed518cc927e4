"""Images to edit (good and deliberately bad), an image server for URL inputs, and what a
credential was charged, for the edit tests."""

from __future__ import annotations

import base64
import contextlib
import io
import struct
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
from PIL import Image

from tests.support import db
from tests.support.server import GatewayServer

EDITS = "/openai/images/edits"
RED, GREEN, BLUE = (220, 30, 30), (30, 200, 60), (40, 60, 220)


def picture(colour: tuple[int, int, int] = RED, size: tuple[int, int] = (384, 256),
            fmt: str = "PNG", mode: str = "RGB") -> bytes:
    out = io.BytesIO()
    Image.new(mode, size, colour).save(out, fmt)
    return out.getvalue()


def mask(size: tuple[int, int] = (384, 256)) -> bytes:
    """Opaque, with a fully transparent top-left quarter: the part to edit."""
    image = Image.new("RGBA", size, (0, 0, 0, 255))
    image.paste((0, 0, 0, 0), (0, 0, size[0] // 2, size[1] // 2))
    out = io.BytesIO()
    image.save(out, "PNG")
    return out.getvalue()


def _chunk(kind: bytes, payload: bytes) -> bytes:
    return (struct.pack(">I", len(payload)) + kind + payload
            + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF))


def bomb(side: int = 100_000) -> bytes:
    """A valid-looking PNG of a few hundred bytes that claims side x side pixels."""
    header = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)  # 8-bit greyscale
    body = zlib.compress(b"\0" * 4096, 9)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", body)
            + _chunk(b"IEND", b""))


def truncated() -> bytes:
    data = picture(size=(300, 300))
    return data[: len(data) * 2 // 3]


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def image_of(item: dict[str, Any]) -> Image.Image:
    raw = (base64.b64decode(item["b64_json"]) if item.get("b64_json")
           else httpx.get(item["url"], timeout=30).content)
    image = Image.open(io.BytesIO(raw))
    image.load()
    return image


def near(pixel: Any, colour: tuple[int, int, int], slack: int = 40) -> bool:
    return all(abs(int(a) - b) <= slack for a, b in zip(pixel[:3], colour, strict=True))


def standing(server: GatewayServer, token: str) -> tuple[float, int, int, int]:
    """Balance, ledger rows, tasks and stored inputs of a credential: what a refused
    request must leave as it found them."""
    me = httpx.get(server.url + "/api/credentials/me",
                   headers={"authorization": f"Bearer {token}"}, timeout=10).json()
    cred_id = me["credential"]["id"]
    ledger = db.query(server, "SELECT COUNT(*) FROM ledger WHERE credential_id = ?", cred_id)
    tasks = db.query(server, "SELECT COUNT(*) FROM tasks WHERE credential_id = ?", cred_id)
    inputs = server.data_dir / "files" / "inputs"
    stored = len(list(inputs.iterdir())) if inputs.exists() else 0
    return me["balance"], ledger[0][0], tasks[0][0], stored


class ImageSite:
    """A plain HTTP server with the URLs the edit tests fetch: an image, an HTML page, a
    slow image, a redirect to a private address and an image over a size."""

    def __init__(self, big: int = 3_000_000) -> None:
        site = self
        self.image = picture(GREEN, (320, 240))
        self.big = b"\x89PNG\r\n\x1a\n" + b"\0" * big
        self.hits: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802
                site.hits.append(self.path)
                if self.path.startswith("/green.png"):
                    self._send(200, site.image, "application/octet-stream")  # bytes decide
                elif self.path == "/page.html":
                    self._send(200, b"<!doctype html><title>not an image</title>", "image/png")
                elif self.path == "/slow.png":
                    time.sleep(3)
                    self._send(200, site.image, "image/png")
                elif self.path == "/to-metadata":
                    self.send_response(302)
                    self.send_header("location", "http://169.254.169.254/latest/meta-data/")
                    self.send_header("content-length", "0")
                    self.end_headers()
                elif self.path == "/big.png":
                    self._send(200, site.big, "image/png")
                else:
                    self._send(404, b"no", "text/plain")

            def _send(self, status: int, body: bytes, ctype: str) -> None:
                self.send_response(status)
                self.send_header("content-type", ctype)
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(OSError):
                    self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> ImageSite:
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()
