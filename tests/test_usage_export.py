"""Usage and ledger exports: GET /admin/usage.csv and /admin/ledger.csv with their filters,
and `imagegate usage export|ledger`, which answer the same CSV from the database."""

from __future__ import annotations

import csv
import datetime as dt
import io
import time
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import openai
import pytest

from imagegate.testing import Fault
from tests.support import db
from tests.support.server import GatewayServer, cli
from tests.support.upstreams import (
    FAST_RETRIES,
    Fakes,
    post,
    running_fakes,
    start_gateway,
)

pytestmark = pytest.mark.usefixtures("backend")  # SQLite and PostgreSQL
KEY = "usage-export-admin-key-0123456789"
ADMIN = {"authorization": f"Bearer {KEY}"}
DAY = 86400


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    with running_fakes() as started:
        yield started


@pytest.fixture(scope="module")
def gw(backend: str, fakes: Fakes, tmp_path_factory: pytest.TempPathFactory
       ) -> Iterator[GatewayServer]:
    env = {**FAST_RETRIES, "IMAGEGATE_ADMIN_KEY": KEY, "IMAGEGATE_BREAKER_THRESHOLD": "1000"}
    server = start_gateway(backend, fakes, tmp_path_factory.mktemp(f"usage-{backend}"), env,
                           max_retries=0)
    yield server
    server.stop()


def create(gw: GatewayServer, name: str, credits: float = 100) -> dict[str, Any]:
    r = httpx.post(gw.url + "/admin/credentials", headers=ADMIN,
                   json={"name": name, "credits": credits})
    assert r.status_code == 201, r.text
    return dict(r.json())


def day(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).date().isoformat()


@pytest.fixture(scope="module")
def seeded(gw: GatewayServer, fakes: Fakes) -> dict[str, Any]:
    """alice: 2 nano-banana images today, 1 gpt-image-2 two days ago; bob: 1 nano-banana
    image and 1 failed nano-banana-pro today."""
    alice, bob = create(gw, "alice"), create(gw, "=bob")  # '=': a spreadsheet formula
    assert post(gw, alice["token"], {"model": "nano-banana", "prompt": "a", "n": 2}
                ).status_code == 200
    old = post(gw, alice["token"], {"model": "gpt-image-2", "prompt": "b"})
    assert old.status_code == 200
    assert post(gw, bob["token"], {"model": "nano-banana", "prompt": "c"}).status_code == 200
    fakes[1].script(Fault(status=500))
    assert post(gw, bob["token"], {"model": "nano-banana-pro", "prompt": "d"}).status_code == 500
    db.execute(gw, "UPDATE tasks SET created_at = created_at - ? WHERE id = ?", 2 * DAY,
               old.json()["task_id"])
    today = day(time.time())
    return {"alice": alice, "bob": bob, "today": today, "before": day(time.time() - 2 * DAY)}


def rows(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text)))


def usage_csv(gw: GatewayServer, **params: str) -> httpx.Response:
    return httpx.get(gw.url + "/admin/usage.csv", params=params, headers=ADMIN, timeout=30)


def test_usage_is_grouped_by_the_columns_asked_for(gw: GatewayServer, seeded: dict[str, Any]
                                                   ) -> None:
    r = usage_csv(gw, by="credential,model,day")
    assert r.status_code == 200 and r.headers["content-type"] == "text/csv; charset=utf-8"
    assert r.headers["content-disposition"].startswith('attachment; filename="imagegate-usage-')
    head, *body = rows(r.text)
    assert head == ["credential_id", "credential_name", "model", "day", "tasks", "succeeded",
                    "failed", "images", "credits"]
    a, b, today, before = (seeded["alice"]["id"], seeded["bob"]["id"], seeded["today"],
                           seeded["before"])
    assert sorted(body) == sorted([
        [a, "alice", "gpt-image-2", before, "1", "1", "0", "1", "0.053"],
        [a, "alice", "nano-banana", today, "1", "1", "0", "2", "0.28"],
        [b, "'=bob", "nano-banana", today, "1", "1", "0", "1", "0.14"],
        [b, "'=bob", "nano-banana-pro", today, "1", "0", "1", "0", "0"],  # failed: free
    ])
    assert [row[3] for row in body] == sorted(row[3] for row in body)  # oldest day first
    _, *by_day = rows(usage_csv(gw, by="day").text)
    assert by_day == [[before, "1", "1", "0", "1", "0.053"],
                      [today, "3", "2", "1", "3", "0.42"]]


def test_filters_narrow_the_usage(gw: GatewayServer, seeded: dict[str, Any]) -> None:
    only_before = rows(usage_csv(gw, by="model", **{"from": seeded["before"],
                                                     "to": seeded["before"]}).text)
    assert only_before[1:] == [["gpt-image-2", "1", "1", "0", "1", "0.053"]]
    bob = rows(usage_csv(gw, by="model", credential=seeded["bob"]["id"]).text)[1:]
    assert [row[0] for row in bob] == ["nano-banana", "nano-banana-pro"]
    one_model = rows(usage_csv(gw, by="credential", model="nano-banana").text)[1:]
    assert sorted(row[1] for row in one_model) == ["'=bob", "alice"]
    assert rows(usage_csv(gw, type="images_edits").text)[1:] == []


@pytest.mark.parametrize(("params", "words"), [
    ({"from": "2026-13-01"}, "from must be a date"), ({"to": "yesterday"}, "to must be a date"),
    ({"from": "2026-02-02", "to": "2026-02-01"}, "from must not be after to"),
    ({"by": "day,week"}, "unknown column 'week'"), ({"type": "images_variations"}, "type must"),
])
def test_bad_filters_are_400_naming_the_problem(gw: GatewayServer, params: dict[str, str],
                                                words: str) -> None:
    for path in ("/admin/usage.csv", "/admin/ledger.csv"):
        if path.endswith("ledger.csv") and "by" in params:
            continue
        r = httpx.get(gw.url + path, params=params, headers=ADMIN)
        assert r.status_code == 400, r.text
        body = r.json()
        assert body["success"] is False and body["error"]["code"] == "bad_request"
        assert words in body["error"]["message"] and body["trace_id"]


def test_the_ledger_adds_up_to_each_balance(gw: GatewayServer, seeded: dict[str, Any]) -> None:
    r = httpx.get(gw.url + "/admin/ledger.csv", headers=ADMIN)
    assert r.status_code == 200 and r.headers["content-type"] == "text/csv; charset=utf-8"
    head, *body = rows(r.text)
    assert head == ["id", "time", "credential_id", "credential_name", "kind", "amount",
                    "balance_after", "task_id", "model", "type"]
    for who in ("alice", "bob"):
        cred = seeded[who]
        mine = [row for row in body if row[2] == cred["id"]]
        balance = httpx.get(f"{gw.url}/admin/credentials/{cred['id']}", headers=ADMIN
                            ).json()["credits"]
        assert sum(Decimal(row[5]) for row in mine) == Decimal(str(balance))
        assert Decimal(mine[-1][6]) == Decimal(str(balance))
        assert mine[0][4] == "grant" and mine[0][7:] == ["", "", ""]
    bob = rows(httpx.get(gw.url + "/admin/ledger.csv", headers=ADMIN,
                         params={"credential": seeded["bob"]["id"],
                                 "model": "nano-banana-pro"}).text)[1:]
    assert [row[4] for row in bob] == ["reserve", "release"]  # the failure was refunded
    assert {row[3] for row in bob} == {"'=bob"} and {row[9] for row in bob} == {
        "images_generations"}
    ids = [int(row[0]) for row in body]
    assert ids == sorted(ids)


def test_the_cli_exports_what_the_api_answers(gw: GatewayServer, seeded: dict[str, Any]
                                              ) -> None:
    args = ["--from", seeded["before"], "--to", seeded["today"], "--by", "credential,model,day"]
    out = cli("usage", "export", *args, "--data-dir", str(gw.data_dir), env=gw.env)
    assert out.stdout == usage_csv(gw, **{"from": seeded["before"], "to": seeded["today"],
                                          "by": "credential,model,day"}).text
    prefix = seeded["bob"]["token_prefix"]  # as `imagegate tokens list` shows it
    out = cli("usage", "ledger", "--credential", prefix, "--data-dir", str(gw.data_dir),
              env=gw.env)
    http = httpx.get(gw.url + "/admin/ledger.csv", headers=ADMIN,
                     params={"credential": seeded["bob"]["id"]})
    assert out.stdout == http.text and len(rows(out.stdout)) == 6  # grant + 2 tasks' rows
    bad = cli("usage", "export", "--by", "week", "--data-dir", str(gw.data_dir), env=gw.env,
              check=False)
    assert bad.returncode == 2 and "unknown column 'week'" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_the_openai_sdk_reads_an_export_with_the_admin_key(gw: GatewayServer,
                                                           seeded: dict[str, Any]) -> None:
    """Scripts often already hold an OpenAI client pointed at the gateway."""
    client = openai.OpenAI(base_url=gw.url, api_key=KEY)
    raw = client.get("/admin/usage.csv", cast_to=httpx.Response, options={
        "params": {"by": "model", "credential": seeded["alice"]["id"]}})
    assert rows(raw.text)[1:] == [["gpt-image-2", "1", "1", "0", "1", "0.053"],
                                  ["nano-banana", "1", "1", "0", "2", "0.28"]]
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=gw.url, api_key="wrong-key", max_retries=0).get(
            "/admin/ledger.csv", cast_to=httpx.Response)
