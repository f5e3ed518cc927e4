"""The admin key: wrong keys are throttled per client address through the JSON admin API
and the console's sign-in form alike, and a console session ends when the key changes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import GatewayServer

KEY = "admin-access-key-0123456789abcdef"
LIMIT = 3
SIGN_IN = "/admin/console/sign-in"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    server = GatewayServer(tmp_path_factory.mktemp("admin-access") / "d", "--sandbox", env={
        "IMAGEGATE_ADMIN_KEY": KEY, "IMAGEGATE_ADMIN_LOGIN_LIMIT": f"{LIMIT}/minute"}).start()
    yield server
    server.stop()


def api(gw: GatewayServer, address: str, key: str) -> httpx.Response:
    """The JSON admin API, from ``address`` (the gateway believes X-Forwarded-For from
    127.0.0.1, as it would from a proxy listed in IMAGEGATE_FORWARDED_ALLOW_IPS)."""
    return httpx.get(gw.url + "/admin/credentials", timeout=30, headers={
        "authorization": f"Bearer {key}", "x-forwarded-for": address})


def sign_in(gw: GatewayServer, address: str, key: str) -> httpx.Response:
    return httpx.post(gw.url + SIGN_IN, timeout=30, data={"key": key}, headers={
        "x-forwarded-for": address, "origin": gw.url})


def locked(r: httpx.Response) -> None:
    assert r.status_code == 429, r.text
    assert 1 <= int(r.headers["retry-after"]) <= 60


def test_wrong_keys_at_the_api_lock_out_that_address_everywhere(gw: GatewayServer) -> None:
    here, elsewhere = "198.51.100.1", "198.51.100.2"
    for _ in range(LIMIT):
        r = api(gw, here, "not-the-key")
        assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_token", r.text
    r = api(gw, here, KEY)  # even the right key waits: it is not compared while locked out
    locked(r)
    assert r.json()["error"]["code"] == "too_many_requests"
    locked(sign_in(gw, here, KEY))  # the console's form shares the count
    assert api(gw, elsewhere, KEY).status_code == 200  # other addresses are not affected
    assert "not-the-key" not in gw.log() and KEY not in gw.log()  # neither key is logged


def test_wrong_keys_at_the_sign_in_form_lock_out_that_address_everywhere(
        gw: GatewayServer) -> None:
    here = "198.51.100.3"
    for _ in range(LIMIT):
        r = sign_in(gw, here, "guess")
        assert r.status_code == 401 and "wrong admin key" in r.text
        assert "set-cookie" not in r.headers and "guess" not in r.text
    r = sign_in(gw, here, KEY)
    locked(r)
    assert "too many wrong admin keys" in r.text and "set-cookie" not in r.headers
    locked(api(gw, here, KEY))


def test_right_keys_are_never_counted(gw: GatewayServer) -> None:
    here = "198.51.100.4"
    for _ in range(LIMIT * 3):
        assert api(gw, here, KEY).status_code == 200
    r = sign_in(gw, here, KEY)
    assert r.status_code == 303 and "imagegate_admin=" in r.headers["set-cookie"]


def test_a_console_session_ends_when_the_admin_key_changes(tmp_path: Path) -> None:
    data = tmp_path / "d"
    with GatewayServer(data, "--sandbox", env={"IMAGEGATE_ADMIN_KEY": KEY}) as first:
        r = sign_in(first, "127.0.0.1", KEY)
        cookies = {"imagegate_admin": r.cookies["imagegate_admin"]}
        page = httpx.get(first.url + "/admin/console/credentials", cookies=cookies)
        assert page.status_code == 200 and "Sign out" in page.text
    other = KEY[::-1]
    with GatewayServer(data, "--sandbox", port=first.port,
                       env={"IMAGEGATE_ADMIN_KEY": other}) as second:
        page = httpx.get(second.url + "/admin/console/credentials", cookies=cookies)
        assert page.status_code == 303 and page.headers["location"].startswith(SIGN_IN)


def test_without_an_admin_key_there_is_no_admin_at_all(sandbox: GatewayServer) -> None:
    for path in ("/admin", "/admin/console/sign-in", "/admin/console/credentials",
                 "/admin/console/static/console.css", "/admin/usage.csv", "/admin/tasks/x"):
        r = httpx.get(sandbox.url + path)
        assert r.status_code == 404 and r.json()["error"]["code"] == "no_api", path
    r = httpx.post(sandbox.url + SIGN_IN, data={"key": "anything-at-all-0123456789"})
    assert r.status_code == 404


def test_admin_leads_to_the_console(gw: GatewayServer) -> None:
    r = httpx.get(gw.url + "/admin")
    assert r.status_code == 303 and r.headers["location"] == "/admin/console/credentials"
    r = httpx.get(gw.url + "/admin/console/credentials")
    assert r.headers["location"] == "/admin/console/sign-in?next=/admin/console/credentials"
    page = httpx.get(gw.url + SIGN_IN)
    assert page.status_code == 200 and page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
