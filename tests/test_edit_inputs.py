"""Every input problem of an edit is answered with the SPEC error body naming the image and
why, before anything is charged: the balance, the ledger, the task list and the stored
inputs are as they were."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import httpx
import openai
import pytest

from tests.support import backend as backends
from tests.support.edits import (
    EDITS,
    ImageSite,
    bomb,
    mask,
    picture,
    standing,
    truncated,
)
from tests.support.server import GatewayServer

# what these check happens above the database: SQLite only (the database layer runs on
# both in test_billing, test_crash_safety, test_hardening, test_scaleout ...)
pytestmark = [pytest.mark.usefixtures("backend"),
              pytest.mark.parametrize("backend", ["sqlite"], indirect=True)]

MAX_IMAGE = 2_000_000
MAX_REQUEST = 5_000_000
Send = Callable[[GatewayServer, str, ImageSite], httpx.Response]


@pytest.fixture(scope="module")
def site() -> Iterator[ImageSite]:
    with ImageSite(big=MAX_IMAGE + 1000) as s:
        yield s


@pytest.fixture(scope="module")
def gw(backend: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    backends.current = backend
    server = GatewayServer(tmp_path_factory.mktemp(f"edit-inputs-{backend}"), "--sandbox", env={
        # the test site on 127.0.0.1 is reachable; private and link-local addresses are not
        "IMAGEGATE_CALLBACK_ALLOW": '["127.0.0.1/32"]',
        "IMAGEGATE_EDIT_MAX_IMAGE_BYTES": str(MAX_IMAGE),
        "IMAGEGATE_EDIT_MAX_REQUEST_BYTES": str(MAX_REQUEST),
        "IMAGEGATE_EDIT_MAX_PIXELS": "40000000", "IMAGEGATE_EDIT_FETCH_TIMEOUT": "1.5"})
    yield server.start()
    server.stop()


@pytest.fixture(scope="module")
def token(gw: GatewayServer) -> str:
    return gw.token(credits=50, name="edit-inputs")


def multipart(*files: tuple[str, str, bytes], model: str = "gpt-image-2", **fields: Any
              ) -> Send:
    def send(gw: GatewayServer, token: str, site: ImageSite) -> httpx.Response:
        form = {"model": model, "prompt": "edit it", **{k: str(v) for k, v in fields.items()}}
        return httpx.post(gw.url + EDITS, data=form, timeout=60,
                          files=[(name, (filename, data, "image/png"))
                                 for name, filename, data in files],
                          headers={"authorization": f"Bearer {token}"})
    return send


def as_json(image: Any, model: str = "nano-banana", **fields: Any) -> Send:
    def send(gw: GatewayServer, token: str, site: ImageSite) -> httpx.Response:
        value = image(site) if callable(image) else image
        return httpx.post(gw.url + EDITS, timeout=60, headers={"authorization": f"Bearer {token}"},
                          json={"model": model, "prompt": "edit it", "image": value, **fields})
    return send


PNG = picture()
CASES: dict[str, tuple[Send, int, str]] = {
    "text file": (multipart(("image", "notes.txt", b"just some notes\n")), 400,
                  "image ('notes.txt') is not an image: its bytes are text"),
    "empty file": (multipart(("image", "empty.png", b"")), 400,
                   "image ('empty.png') is empty (0 bytes)"),
    "truncated png": (multipart(("image", "cut.png", truncated())), 400,
                      "image ('cut.png') is a damaged or truncated png file"),
    "decompression bomb": (multipart(("image", "bomb.png", bomb())), 400,
                           "image ('bomb.png') decodes to 10,000,000,000 pixels, more than "
                           "the 40,000,000 pixel limit"),
    "image over the pixel limit": (multipart(("image", "wide.png", bomb(8000))), 400,
                                   "image ('wide.png') is 8000x8000: it decodes to 64,000,000 "
                                   "pixels, more than the 40,000,000 pixel limit"),
    "gif": (multipart(("image", "a.gif", picture(fmt="GIF"))), 400,
            "image ('a.gif') is a GIF image; edits take png, jpeg or webp"),
    "the third of three is text": (
        multipart(("image[]", "a.png", PNG), ("image[]", "b.png", PNG),
                  ("image[]", "c.txt", b"hello")), 400, "image 3 of 3 ('c.txt') is not an image"),
    "17 images": (multipart(*[("image[]", f"{i}.png", PNG) for i in range(17)]), 400,
                  "at most 16 images per edit; got 17"),
    "mask of another size": (
        multipart(("image", "a.png", PNG), ("mask", "m.png", mask((200, 200)))), 400,
        "mask ('m.png') is 200x200; it must have the first image's dimensions, 384x256"),
    "mask without alpha": (multipart(("image", "a.png", PNG), ("mask", "m.png", PNG)), 400,
                           "mask ('m.png') has no alpha channel"),
    "two masks": (multipart(("image", "a.png", PNG), ("mask", "m.png", mask()),
                            ("mask", "n.png", mask())), 400, "mask was given twice"),
    "prompt as a file": (multipart(("image", "a.png", PNG), ("prompt", "p.txt", b"x")), 400,
                         "prompt must be a text field, not a file"),
    "mask on nano-banana": (
        multipart(("image", "a.png", PNG), ("mask", "m.png", mask()), model="nano-banana"),
        400, "mask is not supported by nano-banana"),
    "no image": (as_json(None), 400, "image is required"),
    "a form with no file": (multipart(), 415, "content-type must be multipart/form-data"),
    "stream with async": (multipart(("image", "a.png", PNG), stream="true", **{"async": "true"}),
                          400, "stream cannot be combined with async or callback_url"),
    "n not a number": (multipart(("image", "a.png", PNG), n="two"), 400,
                       "n must be an integer; got \"two\""),
    "image over the per-image limit": (
        multipart(("image", "big.png", b"\x89PNG\r\n\x1a\n" + b"\0" * (MAX_IMAGE + 10))), 400,
        "image ('big.png') is over the 2,000,000 byte per-image limit"),
    "upload over the request limit": (
        multipart(*[("image[]", f"{i}.png", b"\x89PNG" + b"\0" * 1_900_000) for i in range(3)]),
        413, "request body is over the 5,000,000 byte limit"),
    "URL to a private address": (
        as_json("http://10.1.2.3/cat.png"), 400,
        "image (http://10.1.2.3/cat.png) URL address 10.1.2.3 is not allowed"),
    "URL to the metadata service": (
        as_json(["http://169.254.169.254/latest/meta-data/"]), 400, "is not allowed"),
    "URL redirecting to a private address": (
        as_json(lambda s: s.url + "/to-metadata"), 400,
        "URL address 169.254.169.254 is not allowed"),
    "URL that is not an image": (
        as_json(lambda s: s.url + "/page.html"), 400,
        "/page.html) is not an image: its bytes are HTML or XML"),
    "URL too slow": (as_json(lambda s: s.url + "/slow.png"), 400, "did not arrive within 1.5 s"),
    "URL over the per-image limit": (as_json(lambda s: s.url + "/big.png"), 400,
                                     "is over the 2,000,000 byte per-image limit"),
    "URL answering 404": (as_json(lambda s: s.url + "/missing.png"), 400,
                          "could not be fetched: its URL answered HTTP 404"),
    "no such file of ours": (as_json(lambda s: "/files/nano-banana/nope_0.png"), 400,
                             "is not a file on this gateway"),
    "data URI not base64": (as_json("data:image/png,plain"), 400,
                            "must be a base64 data URI"),
    "data URI with bad base64": (as_json("data:image/png;base64,@@@@"), 400,
                                 "is not valid base64"),
    "image of the wrong type": (as_json(42), 400, "image must be a URL or a list of URLs"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_refused_and_not_charged(gw: GatewayServer, token: str, site: ImageSite,
                                              case: str) -> None:
    send, status, message = CASES[case]
    before = standing(gw, token)
    r = send(gw, token, site)
    body = r.json()
    code = "request_too_large" if status == 413 else "bad_request"
    assert (r.status_code, body["success"], body["error"]["code"]) == (status, False, code), r.text
    assert message in body["error"]["message"], body
    assert body["trace_id"] == r.headers["x-trace-id"]
    assert standing(gw, token) == before  # balance, ledger rows, tasks, stored inputs


def test_a_good_request_after_them_is_charged(gw: GatewayServer, token: str,
                                              site: ImageSite) -> None:
    """The refusals above did cost nothing; the same checks see a good edit's charge (its
    input, stored for the run, is gone again once the task has ended)."""
    balance, ledger, tasks, stored = standing(gw, token)
    r = as_json(lambda s: s.url + "/green.png?sig=secret")(gw, token, site)
    assert r.status_code == 200, r.text
    assert standing(gw, token) == (round(balance - 0.14, 6), ledger + 2, tasks + 1, stored)


def test_sdk_sees_the_refusals_as_its_errors(gw: GatewayServer, token: str) -> None:
    sdk = openai.OpenAI(base_url=f"{gw.url}/v1", api_key=token, max_retries=0)
    with pytest.raises(openai.BadRequestError) as refused:
        sdk.images.edit(model="gpt-image-1", image=("notes.txt", b"text"), prompt="x")
    assert "is not an image" in str(refused.value)
    with pytest.raises(openai.APIStatusError) as too_large:
        sdk.images.edit(model="gpt-image-1", prompt="x",
                        image=[(f"{i}.png", b"\x89PNG" + b"\0" * 1_900_000) for i in range(3)])
    assert too_large.value.status_code == 413
