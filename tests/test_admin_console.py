"""The admin console in headless Chromium: signing in (and failing to), every credential
action, the usage charts, the task list, health, and forms posted from another origin."""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from PIL import Image
from playwright.sync_api import Browser, BrowserContext, Page, expect

from imagegate.testing import Fault
from tests.support.browser import ARTIFACTS, browser, snapshot  # noqa: F401 (fixture)
from tests.support.server import GatewayServer, free_port
from tests.support.upstreams import (
    FAST_RETRIES,
    Fakes,
    post,
    running_fakes,
    start_gateway,
)

KEY = "console-admin-key-0123456789abcdef"
ADMIN = {"authorization": f"Bearer {KEY}"}
CONSOLE = "/admin/console"
PAGES = ("credentials", "usage", "tasks", "health")
SERIES = ((0x2F, 0x5B, 0xEA), (0xE8, 0x59, 0x0C))  # the first two lines' colours (charts.js)


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    with running_fakes() as started:
        yield started


@pytest.fixture(scope="module")
def gw(fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    env = {**FAST_RETRIES, "IMAGEGATE_ADMIN_KEY": KEY, "IMAGEGATE_BREAKER_THRESHOLD": "2",
           "IMAGEGATE_BREAKER_COOLDOWN": "600", "IMAGEGATE_ADMIN_LOGIN_LIMIT": "1000/minute",
           "IMAGEGATE_CALLBACK_ALLOW": '["127.0.0.0/8"]', "IMAGEGATE_CALLBACK_TIMEOUT": "2",
           "IMAGEGATE_CALLBACK_MAX_ATTEMPTS": "1", "IMAGEGATE_POLL_INTERVAL": "0.2"}
    server = start_gateway("sqlite", fakes, tmp_path_factory.mktemp("console"), env,
                           max_retries=0)
    yield server
    server.stop()


@pytest.fixture(scope="module")
def seeded(gw: GatewayServer, fakes: Fakes) -> dict[str, Any]:
    """Tasks of every kind the pages show: images, failures (which open a breaker) and a
    callback that could not be delivered."""
    token = gw.token(credits=1000, name="seed-owner")
    for payload in ({"model": "nano-banana", "prompt": "two apples", "n": 2},
                    {"model": "gpt-image-2", "prompt": "a lighthouse"}):
        assert post(gw, token, payload).status_code == 200
    fakes[1].script(Fault(status=500), Fault(status=500))
    for _ in range(2):
        assert post(gw, token, {"model": "nano-banana-pro", "prompt": "fails"}).status_code == 500
    hook = f"http://127.0.0.1:{free_port()}/hook"  # nothing listens: the delivery fails
    r = post(gw, token, {"model": "nano-banana", "prompt": "called back", "callback_url": hook})
    callback_task = r.json()["task_id"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        task = httpx.get(f"{gw.url}/admin/tasks/{callback_task}", headers=ADMIN).json()
        if task["callback"]["state"] == "failed":
            break
        time.sleep(0.2)
    else:
        raise AssertionError(f"callback never failed: {task}")
    return {"token": token, "callback_task": callback_task}


def sign_in(gw: GatewayServer) -> httpx.Cookies:
    r = httpx.post(gw.url + CONSOLE + "/sign-in", data={"key": KEY}, headers={"origin": gw.url})
    assert r.status_code == 303, r.text
    return r.cookies


@pytest.fixture()
def context(browser: Browser, gw: GatewayServer,  # noqa: F811 (the fixture)
            request: pytest.FixtureRequest) -> Iterator[BrowserContext]:
    ctx = browser.new_context(viewport={"width": 1300, "height": 900})
    yield ctx
    for i, pg in enumerate(ctx.pages):
        snapshot(pg, f"console-{request.node.name}-{i}")
    ctx.close()


@pytest.fixture()
def page(context: BrowserContext, gw: GatewayServer) -> Page:
    """A page of a signed-in console."""
    cookie = sign_in(gw)["imagegate_admin"]
    context.add_cookies([{"name": "imagegate_admin", "value": cookie, "url": gw.url}])
    return context.new_page()


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html[:500]
    return found.group(1)


def credential(gw: GatewayServer, cid: str) -> dict[str, Any]:
    return dict(httpx.get(f"{gw.url}/admin/credentials/{cid}?", headers=ADMIN).json())


def new_credential(gw: GatewayServer, name: str) -> dict[str, Any]:
    r = httpx.post(gw.url + "/admin/credentials", headers=ADMIN, json={"name": name,
                                                                      "credits": 5})
    assert r.status_code == 201, r.text
    return dict(r.json())


def test_nothing_is_reachable_without_a_session(gw: GatewayServer, seeded: dict[str, Any]
                                                ) -> None:
    cid = new_credential(gw, "untouchable")["id"]
    forged = {"imagegate_admin": "x" * 43}
    for cookies in ({}, forged):
        for name in PAGES:
            r = httpx.get(f"{gw.url}{CONSOLE}/{name}", cookies=cookies)
            assert r.status_code == 303, (name, r.status_code)
            assert r.headers["location"] == f"{CONSOLE}/sign-in?next={CONSOLE}/{name}"
            assert "seed-owner" not in r.text
        for action in ("disable", "delete", "topup", ""):
            r = httpx.post(f"{gw.url}{CONSOLE}/credentials/{cid}/{action}".rstrip("/"),
                           data={"credits": "5", "name": "x"}, cookies=cookies,
                           headers={"origin": gw.url})
            assert r.status_code == 303 and "/sign-in" in r.headers["location"], action
        for path in ("/admin/usage.csv", "/admin/ledger.csv",
                     f"/admin/tasks/{seeded['callback_task']}"):
            r = httpx.get(gw.url + path, cookies=cookies)
            assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_token", path
    after = credential(gw, cid)
    assert (after["disabled"], after["credits"], after["deleted_at"]) == (False, 5, None)


def test_a_wrong_key_is_refused_and_the_right_one_signs_in_and_out(
        context: BrowserContext, gw: GatewayServer) -> None:
    pg = context.new_page()
    pg.goto(f"{gw.url}{CONSOLE}/tasks")
    expect(pg).to_have_url(re.compile(r"/admin/console/sign-in\?next="))
    pg.fill("#key", "not-the-admin-key-at-all")
    with pg.expect_response(lambda r: r.request.method == "POST") as answer:
        pg.click("#sign-in button")
    assert answer.value.status == 401
    expect(pg.locator(".error")).to_contain_text("wrong admin key")
    assert context.cookies() == []
    pg.fill("#key", KEY)
    pg.click("#sign-in button")
    expect(pg).to_have_url(f"{gw.url}{CONSOLE}/tasks")  # back where it was going
    (cookie,) = context.cookies()
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict" and cookie["path"] == "/admin"
    # the key is in no page, no storage and no cookie: only a random session id is
    assert KEY not in pg.content() and KEY not in cookie["value"]
    assert pg.evaluate("JSON.stringify(localStorage) + JSON.stringify(sessionStorage)") == "{}{}"
    pg.click("text=Sign out")
    expect(pg.locator(".notice")).to_have_text("Signed out.")
    # the old cookie is dead on the server too, not just forgotten by this browser
    r = httpx.get(f"{gw.url}{CONSOLE}/credentials", cookies={"imagegate_admin": cookie["value"]})
    assert r.status_code == 303


def test_create_shows_the_token_once_with_a_copy_button(page: Page, context: BrowserContext,
                                                        gw: GatewayServer) -> None:
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=gw.url)
    page.goto(f"{gw.url}{CONSOLE}/credentials")
    page.click("#create summary")
    page.fill("#create input[name=name]", "bob-console")
    page.fill("#create input[name=credits]", "12.5")
    page.fill("#create input[name=rps]", "9")
    page.click("#create button.primary")
    token = page.input_value("#token")
    assert token.startswith("ig-")
    page.click("button[data-copy=token]")
    expect(page.locator("button[data-copy=token]")).to_have_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == token
    me = httpx.get(gw.url + "/api/credentials/me", headers={"authorization": f"Bearer {token}"})
    assert me.status_code == 200 and me.json()["balance"] == 12.5
    assert me.json()["credential"]["rate_limits"] == {"rps": 9}
    page.click("text=Open the credential")
    assert token not in page.content() and token[:12] not in page.content()
    page.goto(f"{gw.url}{CONSOLE}/credentials?q=BOB-CONS")  # search: any case
    expect(page.locator("#credentials tbody tr")).to_have_count(1)
    expect(page.locator("#credentials tbody tr")).to_contain_text("12.5")
    assert token not in page.content()


def test_top_up_disable_enable_edit_and_delete(page: Page, gw: GatewayServer) -> None:
    cred = new_credential(gw, "carol-console")
    auth = {"authorization": f"Bearer {cred['token']}"}
    page.goto(f"{gw.url}{CONSOLE}/credentials?q=carol-console")
    row = page.locator(f"tr[data-id='{cred['id']}']")
    row.locator("input[name=credits]").fill("2.25")
    row.locator("text=Add").click()
    expect(page.locator(".notice")).to_have_text("Credits added.")
    expect(page.locator("#balance")).to_have_text("7.25")
    page.click("#toggle")
    expect(page.locator(".notice")).to_contain_text("disabled")
    assert httpx.get(gw.url + "/v1/models", headers=auth).status_code == 403
    page.click("#toggle")
    expect(page.locator(".notice")).to_have_text("Credential enabled.")
    assert httpx.get(gw.url + "/v1/models", headers=auth).status_code == 200
    page.fill("#edit input[name=name]", "carol-renamed")
    page.fill("#edit input[name=concurrency]", "3")
    page.fill("#edit input[name=expires_at]", "2031-05-06T07:08")
    page.click("#edit button.primary")
    expect(page.locator(".notice")).to_have_text("Changes saved.")
    after = credential(gw, cred["id"])
    assert (after["name"], after["rate_limits"], after["scopes"]) == (
        "carol-renamed", {"concurrency": 3}, ["openai-images"])
    assert after["expires_at"] == 1935817680  # 2031-05-06 07:08 UTC
    page.uncheck("#edit input[name=scopes]")  # no scope at all is refused, not saved
    page.click("#edit button.primary")
    expect(page.locator(".error")).to_contain_text("scopes must be a non-empty list")
    assert credential(gw, cred["id"])["scopes"] == ["openai-images"]
    page.on("dialog", lambda dialog: dialog.accept())
    page.click("#delete")
    expect(page.locator(".notice")).to_contain_text("deleted")
    assert httpx.get(gw.url + "/v1/models", headers=auth).status_code == 401
    page.goto(f"{gw.url}{CONSOLE}/credentials?q=carol")
    expect(page.locator("#credentials tbody")).to_contain_text("No credentials match")
    page.check("input[name=deleted]")
    page.click(".search button")
    expect(page.locator(f"tr[data-id='{cred['id']}'] .badge")).to_have_text("deleted")


def test_a_bad_amount_is_explained_on_the_page(page: Page, gw: GatewayServer) -> None:
    cred = new_credential(gw, "dave-console")
    page.goto(f"{gw.url}{CONSOLE}/credentials/{cred['id']}")
    for amount, words in (("lots", "credits must be a number"),
                          ("0.0000001", "at most 6 decimal places"),
                          ("-3", "must be positive")):
        page.fill("#topup input[name=credits]", amount)
        with page.expect_response(lambda r: r.request.method == "POST") as answer:
            page.click("#topup button")
        assert answer.value.status == 400
        expect(page.locator(".error")).to_contain_text(words)
    assert credential(gw, cred["id"])["credits"] == 5


def evil_site(target: str) -> tuple[ThreadingHTTPServer, str]:
    """Another origin whose page posts a console form as soon as it loads."""
    html = (f'<form id="f" method="post" action="{target}"><input name="csrf" value="guess">'
            '</form><script>document.getElementById("f").submit()</script>').encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server spelling
            self.send_response(200)
            self.send_header("content-type", "text/html")
            self.end_headers()
            self.wfile.write(html)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_port}/"


def test_a_form_posted_from_another_origin_is_refused(page: Page, gw: GatewayServer) -> None:
    cred = new_credential(gw, "erin-console")
    target = f"{gw.url}{CONSOLE}/credentials/{cred['id']}/disable"
    server, url = evil_site(target)
    try:
        # same site (127.0.0.1), another port: the browser sends the session cookie along
        with page.expect_response(target) as answer:
            page.goto(url)
        assert answer.value.status == 403
        expect(page.locator(".error")).to_contain_text("sent from another site")
    finally:
        server.shutdown()
    assert credential(gw, cred["id"])["disabled"] is False
    # the token is checked as well as the origin
    cookies = sign_in(gw)
    html = httpx.get(f"{gw.url}{CONSOLE}/credentials", cookies=cookies).text
    for form, origin in (({"credits": "1"}, gw.url), ({"csrf": "guess"}, gw.url),
                         ({"csrf": csrf_of(html)}, "http://127.0.0.1:1")):
        r = httpx.post(target, data=form, cookies=cookies, headers={"origin": origin})
        assert r.status_code == 403, (form, origin)
    assert credential(gw, cred["id"])["disabled"] is False
    r = httpx.post(target, data={"csrf": csrf_of(html)}, cookies=cookies,
                   headers={"origin": gw.url})
    assert r.status_code == 303 and credential(gw, cred["id"])["disabled"] is True


def coloured(path: Path, colour: tuple[int, int, int]) -> int:
    """Pixels within a small distance of ``colour`` (lines are anti-aliased)."""
    image = Image.open(path).convert("RGB")
    return sum(1 for px in image.getdata()
               if sum(abs(a - b) for a, b in zip(px, colour, strict=True)) < 60)


def test_usage_charts_render_the_models_and_match_the_csv(page: Page, gw: GatewayServer,
                                                          seeded: dict[str, Any]) -> None:
    page.goto(f"{gw.url}{CONSOLE}/usage")
    for chart in ("#chart-images", "#chart-credits"):
        expect(page.locator(f"{chart}[data-rendered=chart]")).to_have_count(1)
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shot = ARTIFACTS / f"console-{chart[1:]}.png"
        page.locator(chart).screenshot(path=str(shot))
        legend = page.locator(f"{chart} .u-legend .u-label").all_inner_texts()
        assert legend[-3:] == ["gpt-image-2", "nano-banana", "nano-banana-pro"], legend
        for colour in SERIES:  # a drawn line per model, not an empty canvas
            assert coloured(shot, colour) > 40, (chart, colour)
    images = int(page.inner_text("#total-images"))
    csv = httpx.get(gw.url + "/admin/usage.csv?by=model", headers=ADMIN).text.splitlines()
    assert csv[0] == "model,tasks,succeeded,failed,images,credits"
    rows = {line.split(",")[0]: line.split(",") for line in csv[1:]}
    assert int(rows["nano-banana"][4]) + int(rows["gpt-image-2"][4]) == images == 4
    assert rows["nano-banana-pro"][1:6] == ["2", "0", "2", "0", "0"]  # failed: no charge
    for link, name in (("Usage CSV", "imagegate-usage-"), ("Ledger CSV", "imagegate-ledger-")):
        with page.expect_download() as download:  # the session cookie is enough
            page.click(f"text={link}")
        assert download.value.suggested_filename.startswith(name)
        assert Path(download.value.path()).read_text().count("\n") > 1
    page.goto(f"{gw.url}{CONSOLE}/usage?from=2001-01-01&to=2001-01-31")
    expect(page.locator("#chart-images .empty")).to_have_text("No tasks in this range.")


def test_tasks_are_filtered_with_thumbnails_failures_and_callbacks(
        page: Page, gw: GatewayServer, seeded: dict[str, Any]) -> None:
    page.goto(f"{gw.url}{CONSOLE}/tasks")
    page.select_option("select[name=status]", "failed")
    page.click("text=Apply")
    rows = page.locator("#tasks tbody tr")
    expect(rows).to_have_count(2)
    for i in range(2):
        expect(rows.nth(i).locator(".failure")).to_contain_text("api_error")
        expect(rows.nth(i)).to_contain_text("nano-banana-pro")
    page.goto(f"{gw.url}{CONSOLE}/tasks?model=nano-banana&status=succeeded")
    thumbs = page.locator("#tasks .thumbs img")
    expect(thumbs).to_have_count(3)  # n=2, and the called-back task's one
    page.wait_for_function("[...document.querySelectorAll('#tasks .thumbs img')]"
                           ".every(i => i.complete && i.naturalWidth > 0)")
    row = page.locator(f"tr[data-id='{seeded['callback_task']}']")
    row.locator(".callback summary").click()
    expect(row.locator(".callback summary")).to_have_text("failed · 1 attempt")
    expect(row.locator(".callback li")).to_contain_text("no answer")
    row.locator("a.json").click()
    expect(page).to_have_url(f"{gw.url}/admin/tasks/{seeded['callback_task']}")
    assert f'"id": "{seeded["callback_task"]}"' in page.content()


def test_health_shows_the_open_breaker_and_the_queue(page: Page, gw: GatewayServer,
                                                    seeded: dict[str, Any]) -> None:
    page.goto(f"{gw.url}{CONSOLE}/health")
    pro = page.locator("tr[data-channel='gemini/gemini-3-pro-image-preview']")
    expect(pro.locator(".badge")).to_have_text("open")
    expect(pro.locator("td.num")).to_have_text("2")  # failures in a row
    expect(page.locator("tr[data-channel='gemini/gemini-2.5-flash-image'] .badge")
           ).to_have_text("closed")
    metrics = httpx.get(gw.url + "/metrics").text
    depth = re.search(r"^imagegate_queue_depth (\S+)", metrics, re.M)
    assert depth and page.inner_text("#queue-depth") == str(int(float(depth.group(1))))
    expect(page.locator(".card", has_text="database")).to_contain_text("ok")
