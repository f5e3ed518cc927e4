"""The playground page in real headless Chromium against a sandbox gateway: the form, the
generated code (run for real), and sending requests."""

from __future__ import annotations

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
from tests.support.server import GatewayServer

FIELDS = ("size", "n", "quality", "style", "background", "output_format", "output_compression",
          "moderation", "response_format")
STATIC = {"style": ["", "vivid", "natural"], "background": ["", "auto", "opaque", "transparent"],
          "output_format": ["", "png", "jpeg", "webp"], "moderation": ["", "auto", "low"],
          "response_format": ["", "url", "b64_json"]}
DALLE_SIZES = ["1024x1024", "1792x1024", "1024x1792"]
GPT_SIZES = ["auto", "1024x1024", "1536x1024", "1024x1536"]
NANO_SIZES = ["1024x1024", "1792x1024", "1024x1792", "1536x1024", "1024x1536", "1024x768",
              "768x1024", "1792x768", "512x512"]
NANO_LARGE = ["2048x2048", "2048x1152", "1152x2048", "4096x4096", "4096x2304", "2304x4096"]
GPT_IMAGE = {"size", "n", "quality", "background", "output_format", "output_compression",
             "moderation", "response_format"}
NANO = {"size", "n", "output_format", "output_compression", "response_format"}
# model: (enabled fields, size values, quality values, n max)
FAMILIES = {
    "dall-e-3": ({"size", "quality", "style", "response_format"}, DALLE_SIZES,
                 ["", "standard", "hd"], "1"),
    "gpt-image-1": (GPT_IMAGE, GPT_SIZES, ["", "auto", "low", "medium", "high"], "10"),
    "gpt-image-2": (GPT_IMAGE, GPT_SIZES + ["2048x2048", "2048x1152", "3840x2160", "2160x3840",
                                           "custom"], ["", "auto", "low", "medium", "high"], "10"),
    "nano-banana": (NANO, NANO_SIZES + ["custom"], [""], "10"),
    "nano-banana-2": (NANO, NANO_SIZES + NANO_LARGE + ["custom"], [""], "10"),
    "nano-banana-pro": (NANO, NANO_SIZES + NANO_LARGE + ["custom"], [""], "10"),
}
NODE = shutil.which("node")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    env = {"IMAGEGATE_POLL_INTERVAL": "0.2"}
    s = GatewayServer(tmp_path_factory.mktemp("playground"), "--sandbox", env=env).start()
    yield s
    s.stop()


@pytest.fixture()
def page(browser: Browser, server: GatewayServer, request: pytest.FixtureRequest
         ) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = open_playground(context, server)
    yield pg
    snapshot(pg, request.node.name)
    context.close()


def enabled(page: Page) -> set[str]:
    return {name for name in FIELDS if page.is_enabled(f"#{name}")}


def values(page: Page, select: str) -> list[str]:
    return list(page.eval_on_selector(f"#{select}", "s => [...s.options].map(o => o.value)"))


def cost(page: Page) -> str:
    found = re.search(r"([0-9.]+) credits$", page.locator("#cost").inner_text())
    assert found, page.locator("#cost").inner_text()
    return found.group(1)


@pytest.mark.parametrize("model", list(FAMILIES))
def test_fields_follow_the_family(page: Page, model: str) -> None:
    fields, sizes, qualities, n_max = FAMILIES[model]
    page.select_option("#model", model)
    assert enabled(page) == fields
    for name in FIELDS:
        greyed = page.locator(f'[data-param="{name}"]').get_attribute("class") or ""
        assert ("off" in greyed.split()) is (name not in fields), name
    assert values(page, "size") == sizes
    assert values(page, "quality") == qualities
    for name, options in STATIC.items():
        assert values(page, name) == options, name
    assert page.get_attribute("#n", "max") == n_max and page.get_attribute("#n", "min") == "1"
    assert not page.is_enabled("#callback_url")
    assert "off" in (page.locator('[data-param="callback_url"]').get_attribute("class") or "")
    page.check("#async")
    assert page.is_enabled("#callback_url")
    assert "off" not in (page.locator('[data-param="callback_url"]').get_attribute("class") or "")


def test_values_the_model_refuses_cannot_be_chosen(page: Page, server: GatewayServer) -> None:
    """gpt-image-1 and -2 (both gpt-image-2 upstream) refuse transparent backgrounds: the
    option is disabled and says why; a model that takes it leaves it enabled."""
    disabled = "s => [...s.options].filter(o => o.disabled).map(o => [o.value, o.title])"
    page.select_option("#model", "gpt-image-1")
    page.select_option("#background", "opaque")
    assert page.eval_on_selector("#background", disabled) == [
        ["transparent", "gpt-image-1 does not accept background transparent"]]
    token = server.demo_token()
    listed = httpx.get(f"{server.url}/v1/models/gpt-image-2",
                       headers={"authorization": f"Bearer {token}"}).json()
    assert listed["unsupported"] == {"background": ["transparent"]}
    page.select_option("#model", "dall-e-3")  # the family ignores background altogether
    assert page.eval_on_selector("#background", disabled) == []
    assert values(page, "background") == STATIC["background"]


def test_custom_size_is_sent_and_checked(page: Page) -> None:
    page.select_option("#model", "nano-banana-2")
    expect(page.locator("#size-custom")).to_be_hidden()
    page.select_option("#size", "custom")
    expect(page.locator("#size-custom")).to_be_visible()
    page.fill("#size-custom", "2752x1536")
    assert '"size": "2752x1536"' in page.locator("#code").inner_text()
    page.fill("#size-custom", "big")
    page.click("#try")
    expect(page.locator("#error")).to_contain_text("size must be WxH")
    assert page.get_attribute("#size-custom", "aria-invalid") == "true"
    assert page.evaluate("document.activeElement.id") == "size-custom"


@pytest.mark.parametrize(("model", "choices"), [
    ("dall-e-3", {"#quality": "hd", "#size": "1792x1024"}),
    ("gpt-image-2", {"#quality": "high", "#size": "2048x1152"}),
    ("gpt-image-1", {"#quality": "low"}),
    ("nano-banana-pro", {}),
])
def test_cost_shown_is_what_the_gateway_charges(page: Page, model: str,
                                                choices: dict[str, str]) -> None:
    page.select_option("#model", model)
    for selector, value in choices.items():
        page.select_option(selector, value)
    if model != "dall-e-3":
        page.fill("#n", "2")
        expect(page.locator("#cost")).to_contain_text("× 2 =")
    shown = cost(page)
    with page.expect_response("**/openai/images/generations") as answer:
        page.click("#try")
    assert answer.value.status == 200
    assert answer.value.headers["x-credits-charged"] == shown
    expect(page.locator("#status")).to_contain_text(f"{shown} credits charged", timeout=30000)


def _run(lang: str, source: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    suffix = {"python": ".py", "openai": ".py", "curl": ".sh", "js": ".mjs"}[lang]
    script = tmp_path / f"snippet_{lang}{suffix}"
    script.write_text(source)
    command = {"python": [sys.executable], "openai": [sys.executable], "curl": ["bash"],
               "js": [NODE or "node"]}[lang]
    return subprocess.run([*command, str(script)], capture_output=True, text=True, timeout=90)


@pytest.mark.parametrize("mode", ["sync", "async", "stream"])
@pytest.mark.parametrize("lang", ["python", "openai", "curl", "js"])
def test_generated_code_runs_against_the_server(page: Page, lang: str, mode: str,
                                                tmp_path: Path) -> None:
    is_async = mode == "async"
    if lang == "js" and NODE is None:
        if os.environ.get("CI"):
            raise RuntimeError("node is missing: the JavaScript snippet cannot be run")
        pytest.skip("node is not installed here")
    page.select_option("#model", "nano-banana")
    page.select_option("#size", "1536x1024")
    page.fill("#prompt", "An otter's \"café\" — 海獭 $HOME `id` \\n")
    page.check("#with-token")
    if is_async:
        page.check("#async")
    if mode == "stream":
        page.check("#stream")
        page.fill("#partial_images", "1")
    page.click(f"#tab-{lang}")
    source = page.locator("#code").inner_text()
    assert "{token}" not in source
    if lang == "curl":
        assert source.count("curl -sS ") == (2 if is_async else 1)
    out = _run(lang, source, tmp_path)
    assert out.returncode == 0, out.stderr + out.stdout
    assert "/files/nano-banana/" in out.stdout, out.stdout
    if is_async:
        assert re.search(r'"status": ?"succeeded"', out.stdout), out.stdout
    if mode == "stream":  # a partial image, then the completed one with its URL
        assert "image_generation.partial_image" in out.stdout, out.stdout
        assert "image_generation.completed" in out.stdout, out.stdout
        return
    assert "café" in out.stdout or "caf\\u00e9" in out.stdout or lang == "openai"


def test_try_shows_the_image(page: Page) -> None:
    page.select_option("#model", "gpt-image-2")
    page.select_option("#size", "1536x1024")
    page.click("#try")
    image = page.locator("#images img").first
    expect(image).to_be_visible(timeout=30000)
    page.wait_for_function("document.querySelector('#images img').naturalWidth > 0")
    assert image.evaluate("i => [i.naturalWidth, i.naturalHeight]") == [1536, 1024]
    expect(page.locator("#images figcaption .info").first).to_have_text("1536×1024 · PNG")
    expect(page.locator("#images figcaption a").first).to_have_attribute(
        "download", "imagegate-1.png")
    expect(page.locator("#status")).to_contain_text("done in")
    assert '"success": true' in (page.locator("#raw").text_content() or "")
    expect(page.locator("#try")).to_have_attribute("aria-disabled", "false")
    snapshot(page, "playground")


def test_b64_webp_shows_as_webp(page: Page) -> None:
    page.select_option("#model", "nano-banana")
    page.select_option("#output_format", "webp")
    page.select_option("#response_format", "b64_json")
    page.click("#try")
    expect(page.locator("#images figcaption .info").first).to_have_text(
        "1024×1024 · WEBP", timeout=30000)
    assert page.get_attribute("#images img", "src").startswith("data:image/webp;base64,")


def test_token_stays_in_local_storage(page: Page, server: GatewayServer) -> None:
    token = server.demo_token()
    assert page.evaluate("localStorage.getItem('imagegate.token')") == token
    assert page.evaluate("document.cookie") == ""
    page.reload()
    assert page.input_value("#token") == token
    expect(page.locator("#model option")).to_have_count(6)
    assert page.evaluate("document.cookie") == ""


def test_page_loads_without_errors(browser: Browser, server: GatewayServer) -> None:
    context = browser.new_context()
    page = context.new_page()
    problems: list[str] = []
    page.on("console", lambda m: m.type == "error" and problems.append(m.text))
    page.on("response", lambda r: r.status >= 400 and problems.append(f"{r.status} {r.url}"))
    page.on("pageerror", lambda e: problems.append(str(e)))
    page.goto(server.url + "/playground")
    page.fill("#token", server.demo_token())
    page.dispatch_event("#token", "change")
    expect(page.locator("#model option")).to_have_count(6)
    page.click("#try")
    expect(page.locator("#status")).to_contain_text("done in", timeout=30000)
    assert problems == []
    assert page.evaluate("document.querySelector('link[rel=icon]').href").startswith("data:")
    context.close()


def test_invalid_token_shows_the_error(browser: Browser, server: GatewayServer) -> None:
    context = browser.new_context()
    page = context.new_page()
    page.goto(server.url + "/playground")
    page.fill("#token", "ig-not-a-real-token-000000")
    page.dispatch_event("#token", "change")
    expect(page.locator("#model-help")).to_contain_text("invalid_token")
    page.click("#try")
    expect(page.locator("#error")).to_contain_text("invalid_token: invalid token")
    expect(page.locator("#status")).to_have_text("failed (HTTP 401)")
    context.close()


def test_code_tabs_keyboard_and_copy(page: Page) -> None:
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    for tab in page.locator("[role=tab]").all():
        assert tab.get_attribute("aria-controls") == "code"
    page.focus("#tab-python")
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.id") == "tab-openai"
    expect(page.locator("#tab-openai")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#code")).to_contain_text("from openai import OpenAI")
    assert page.get_attribute("#code", "aria-labelledby") == "tab-openai"
    page.keyboard.press("End")
    expect(page.locator("#tab-js")).to_have_attribute("aria-selected", "true")
    page.keyboard.press("ArrowRight")
    expect(page.locator("#tab-python")).to_have_attribute("aria-selected", "true")
    page.keyboard.press("ArrowLeft")
    expect(page.locator("#tab-js")).to_have_attribute("aria-selected", "true")
    assert [t.get_attribute("tabindex") for t in page.locator("[role=tab]").all()] == [
        "-1", "-1", "-1", "0"]
    page.click("#copy")
    expect(page.locator("#copy-status")).to_have_text("Copied")
    assert page.get_attribute("#copy-status", "role") == "status"
    assert page.evaluate("navigator.clipboard.readText()") == page.locator("#code").inner_text()


def test_async_request_shows_its_final_state(page: Page) -> None:
    page.select_option("#model", "nano-banana")
    page.check("#async")
    page.click("#try")
    expect(page.locator("#status")).to_contain_text("succeeded in", timeout=30000)
    expect(page.locator("#images img").first).to_be_visible()
    assert '"status": "succeeded"' in (page.locator("#raw").text_content() or "")


@pytest.mark.parametrize("width", [375, 390])
def test_phone_width_and_keyboard(browser: Browser, server: GatewayServer, width: int) -> None:
    context = browser.new_context(viewport={"width": width, "height": 812}, is_mobile=True,
                                  has_touch=True)
    page = open_playground(context, server)
    try:
        overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
        assert overflow <= 0
        page.focus("#prompt")
        page.keyboard.press("Control+Enter")
        image = page.locator("#images img").first
        expect(image).to_be_visible(timeout=30000)
        expect(page.locator("#result-title")).to_be_focused()
        expect(page.locator("#result-title")).to_be_in_viewport()
        page.wait_for_function("document.querySelector('#images img').naturalWidth > 0")
        expect(image).to_be_in_viewport()
        page.focus("#try")
        page.keyboard.press("Enter")
        expect(page.locator("#status")).to_contain_text("done in", timeout=30000)
        page.select_option("#model", "dall-e-3")
        page.click("#try")
        expect(page.locator("#status")).to_contain_text("done in", timeout=30000)
        expect(page.locator("#result-title")).to_be_in_viewport()
    finally:
        snapshot(page, f"playground-phone-{width}")
        context.close()
