"""The playground's edit mode in headless Chromium: upload, drag-and-drop and URL inputs, the
mask for the models that take one, the gateway's refusals on the page, and the multipart
and JSON code it writes, run for real."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect

from tests.support.browser import browser, open_playground, snapshot  # noqa: F401 (fixture)
from tests.support.edits import BLUE, RED, mask, picture
from tests.support.server import GatewayServer

NODE = shutil.which("node")
PNG = picture(RED, (384, 256))


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    s = GatewayServer(tmp_path_factory.mktemp("playground-edits"), "--sandbox",
                      env={"IMAGEGATE_POLL_INTERVAL": "0.2"}).start()
    yield s
    s.stop()


@pytest.fixture()
def page(browser: Browser, server: GatewayServer, request: pytest.FixtureRequest
         ) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 1000})
    pg = open_playground(context, server)
    pg.check("#mode-edit")
    yield pg
    snapshot(pg, request.node.name)
    context.close()


def choose(page: Page, *files: tuple[str, bytes]) -> None:
    page.set_input_files("#files", files=[{"name": name, "mimeType": "image/png",
                                           "buffer": data} for name, data in files])


def test_edit_mode_fields_and_the_mask_per_family(page: Page) -> None:
    expect(page.locator("#edit-inputs")).to_be_visible()
    expect(page.locator("#try")).to_have_text("Try the edit")
    page.select_option("#model", "nano-banana")
    assert not page.is_enabled("#mask")
    assert "off" in (page.get_attribute('[data-param="mask"]', "class") or "")
    for model in ("gpt-image-1", "gpt-image-2", "dall-e-3"):
        page.select_option("#model", model)
        assert page.is_enabled("#mask"), model
    page.check("#mode-generate")
    expect(page.locator("#edit-inputs")).to_be_hidden()
    expect(page.locator("#try")).to_have_text("Try")


def test_upload_with_a_mask_and_try(page: Page) -> None:
    page.select_option("#model", "gpt-image-2")
    page.select_option("#size", "1024x1024")
    choose(page, ("red.png", PNG))
    expect(page.locator("#chosen li")).to_have_count(1)
    page.set_input_files("#mask", files=[{"name": "m.png", "mimeType": "image/png",
                                          "buffer": mask((384, 256))}])
    code = page.locator("#code").inner_text()
    assert 'open("red.png", "rb")' in code and 'open("m.png", "rb")' in code
    shown = re.search(r"([0-9.]+) credits$", page.locator("#cost").inner_text()).group(1)
    with page.expect_request("**/openai/images/edits") as sent, \
            page.expect_response("**/openai/images/edits") as answer:
        page.click("#try")
    assert sent.value.headers["content-type"].startswith("multipart/form-data; boundary=")
    assert answer.value.status == 200
    assert answer.value.headers["x-credits-charged"] == shown
    expect(page.locator("#status")).to_contain_text(f"{shown} credits charged", timeout=30000)
    page.wait_for_function("() => document.querySelector('#images img').naturalWidth > 0")
    assert page.locator("#images img").first.evaluate(
        "i => [i.naturalWidth, i.naturalHeight]") == [1024, 1024]
    snapshot(page, "playground-edit")


def test_drag_and_drop(page: Page) -> None:
    page.select_option("#model", "nano-banana")
    page.evaluate("""(b64) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const data = new DataTransfer();
        data.items.add(new File([bytes], "dropped.png", { type: "image/png" }));
        for (const type of ["dragover", "drop"]) {
            document.getElementById("drop").dispatchEvent(
                new DragEvent(type, { dataTransfer: data, bubbles: true, cancelable: true }));
        }
    }""", base64.b64encode(PNG).decode())
    expect(page.locator("#chosen li")).to_have_count(1)
    expect(page.locator("#chosen li")).to_contain_text("dropped.png")
    page.click("#try")
    expect(page.locator("#status")).to_contain_text("done in", timeout=30000)
    page.locator("#chosen button").click()  # remove it again
    expect(page.locator("#chosen li")).to_have_count(0)


def test_a_result_is_edited_by_its_url(page: Page) -> None:
    page.check("#mode-generate")
    page.select_option("#model", "nano-banana")
    page.click("#try")
    expect(page.locator("#status")).to_contain_text("done in", timeout=30000)
    page.locator("#images figcaption button.edit").first.click()
    expect(page.locator("#edit-inputs")).to_be_visible()
    assert "/files/nano-banana/" in page.input_value("#urls")
    with page.expect_request("**/openai/images/edits") as sent:
        page.click("#try")
    assert sent.value.headers["content-type"] == "application/json"
    assert sent.value.post_data_json["image"].endswith(".png")
    expect(page.locator("#status")).to_contain_text("done in", timeout=30000)
    expect(page.locator("#images img")).to_have_count(1)


def test_the_gateways_refusal_shows_on_the_page(page: Page) -> None:
    page.select_option("#model", "gpt-image-1")
    page.set_input_files("#files", files=[{"name": "notes.txt", "mimeType": "text/plain",
                                           "buffer": b"not an image"}])
    page.click("#try")
    expect(page.locator("#error")).to_contain_text(
        "bad_request: image ('notes.txt') is not an image")
    expect(page.locator("#status")).to_have_text("failed (HTTP 400)")


def test_no_image_is_caught_before_sending(page: Page) -> None:
    sent: list[str] = []
    page.on("request", lambda r: "/images/edits" in r.url and sent.append(r.url))
    page.click("#try")
    expect(page.locator("#error")).to_contain_text("add an image to edit")
    assert sent == []


def _run(lang: str, source: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    suffix = {"python": ".py", "openai": ".py", "curl": ".sh", "js": ".mjs"}[lang]
    script = cwd / f"snippet_{lang}{suffix}"
    script.write_text(source)
    command = {"python": [sys.executable], "openai": [sys.executable], "curl": ["bash"],
               "js": [NODE or "node"]}[lang]
    return subprocess.run([*command, script.name], capture_output=True, text=True, timeout=90,
                          cwd=cwd)


@pytest.mark.parametrize(("lang", "form"), [
    ("python", "files"), ("openai", "files"), ("curl", "files"), ("js", "files"),
    ("python", "urls"), ("openai", "urls"), ("curl", "urls"), ("js", "urls"),
    ("openai", "files-async"), ("openai", "urls-stream"), ("python", "files-stream"),
])
def test_edit_code_runs_against_the_server(page: Page, server: GatewayServer, tmp_path: Path,
                                           lang: str, form: str) -> None:
    if lang == "js" and NODE is None:
        if os.environ.get("CI"):
            raise RuntimeError("node is missing: the JavaScript snippet cannot be run")
        pytest.skip("node is not installed here")
    page.select_option("#model", "gpt-image-1")
    page.fill("#prompt", "An otter's \"café\" — 海獭 $HOME `id`")
    page.check("#with-token")
    if form.startswith("files"):
        (tmp_path / "red.png").write_bytes(PNG)
        (tmp_path / "blue photo.png").write_bytes(picture(BLUE))
        (tmp_path / "m.png").write_bytes(mask((384, 256)))
        choose(page, ("red.png", PNG), ("blue photo.png", picture(BLUE)))
        page.set_input_files("#mask", files=[{"name": "m.png", "mimeType": "image/png",
                                              "buffer": mask((384, 256))}])
    else:
        made = httpx.post(server.url + "/openai/images/generations", timeout=60,
                          headers={"authorization": f"Bearer {server.demo_token()}"},
                          json={"model": "nano-banana", "prompt": "to edit"})
        page.fill("#urls", made.json()["data"][0]["url"])
    if form.endswith("async"):
        page.check("#async")
    if form.endswith("stream"):
        page.check("#stream")
    page.click(f"#tab-{lang}")
    source = page.locator("#code").inner_text()
    assert "{token}" not in source
    out = _run(lang, source, tmp_path)
    assert out.returncode == 0, out.stderr + out.stdout
    assert "/files/gpt-image/" in out.stdout, out.stdout
    if form.endswith("async"):
        assert re.search(r'"status": ?"succeeded"', out.stdout), out.stdout
    if form.endswith("stream"):
        assert "image_edit.partial_image" in out.stdout and "image_edit.completed" in out.stdout


def test_edit_mode_at_phone_width(browser: Browser, server: GatewayServer) -> None:
    context = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True,
                                  has_touch=True)
    page = open_playground(context, server)
    try:
        page.check("#mode-edit")
        choose(page, ("red.png", PNG), ("a-rather-long-file-name-for-a-phone.png", PNG))
        page.fill("#urls", "https://example.com/a/very/long/path/to/an/image/to/edit.png")
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0
        page.click("#try")
        expect(page.locator("#status")).to_contain_text("failed (HTTP 400)", timeout=30000)
        expect(page.locator("#error")).to_contain_text("example.com")  # not ours to fetch
    finally:
        snapshot(page, "playground-edit-phone")
        context.close()
