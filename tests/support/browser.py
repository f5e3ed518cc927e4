"""Headless Chromium for the playground tests: launch, open the page, keep a screenshot.

Skips the calling module when Debian's chromium is missing (fails on CI, where .ci/run
installs it).
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import ROOT, GatewayServer

CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / "test-artifacts"
ARGS = ["--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
        "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage"]
MODELS = 6

if not Path(CHROMIUM).exists() or shutil.which("chromium") is None:
    if os.environ.get("CI"):
        raise RuntimeError("Chromium is missing: .ci/run installs Debian's chromium package")
    pytest.skip("Debian's chromium is not installed here", allow_module_level=True)

from playwright.sync_api import (  # noqa: E402
    Browser,
    BrowserContext,
    Page,
    expect,
    sync_playwright,
)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """One headless Chromium per test module (import this fixture into the module)."""
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=ARGS)
        yield b
        b.close()


def open_playground(context: BrowserContext, server: GatewayServer, token: str | None = None
                    ) -> Page:
    """The page with a token typed in and the models loaded."""
    page = context.new_page()
    page.goto(server.url + "/playground")
    page.fill("#token", token or server.demo_token())
    page.dispatch_event("#token", "change")
    expect(page.locator("#model option")).to_have_count(MODELS)
    return page


def snapshot(page: Page, name: str) -> Path | None:
    """Called from fixture teardowns, so a failing test still leaves its picture behind."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / (re.sub(r"[^\w.-]+", "_", name) + ".png")
    try:
        page.screenshot(path=str(path), full_page=True)
    except Exception:  # the page may be gone; the test's own error is what matters
        return None
    return path


def record_status(page: Page) -> None:
    """Keep every text the status live region receives in window.statusLog."""
    page.evaluate("""() => {
        window.statusLog = [];
        const el = document.getElementById('status');
        new MutationObserver(() => window.statusLog.push(el.textContent))
            .observe(el, {childList: true, characterData: true, subtree: true});
    }""")


def status_log(page: Page) -> list[str]:
    return list(page.evaluate("window.statusLog"))
