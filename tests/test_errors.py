"""The SPEC section 4 error table, one test per row that applies to the gateway core."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from tests.support import db
from tests.support.server import GatewayServer

pytestmark = pytest.mark.usefixtures("backend")  # SQLite and PostgreSQL

GEN = "/openai/images/generations"


def assert_error(r: httpx.Response, status: int, code: str, *words: str) -> dict[str, object]:
    assert r.status_code == status, r.text
    body = r.json()
    assert body["success"] is False
    assert body["error"]["code"] == code
    assert body["trace_id"] == r.headers["x-trace-id"]
    for word in words:
        assert word in body["error"]["message"], body["error"]["message"]
    assert "Traceback" not in r.text
    return body


# --- 400 bad_request ------------------------------------------------------------------------

def test_malformed_json(client: httpx.Client) -> None:
    r = client.post(GEN, content=b'{"model": "dall-e-3", "prompt": ',
                    headers={"content-type": "application/json"})
    assert_error(r, 400, "bad_request", "not valid JSON")


def test_empty_body(client: httpx.Client) -> None:
    r = client.post(GEN, content=b"", headers={"content-type": "application/json"})
    assert_error(r, 400, "bad_request", "empty")


def test_body_not_an_object(client: httpx.Client) -> None:
    assert_error(client.post(GEN, json=["dall-e-3"]), 400, "bad_request", "JSON object")


def test_wrong_content_type(client: httpx.Client) -> None:
    r = client.post(GEN, content=b"model=dall-e-3", headers={
        "content-type": "application/x-www-form-urlencoded"})
    assert_error(r, 415, "bad_request", "application/json")


@pytest.mark.parametrize(("payload", "words"), [
    ({"prompt": "x"}, ["model", "required"]),
    ({"model": "dall-e-3"}, ["prompt", "required"]),
    ({"model": "dall-e-3", "prompt": "   "}, ["prompt", "empty"]),
    ({"model": "dall-e-3", "prompt": 5}, ["prompt", "string"]),
    ({"model": "dall-e-3", "prompt": "x" * 4001}, ["prompt", "4000"]),
    ({"model": "gpt-image-2", "prompt": "x" * 32001}, ["prompt", "32000"]),
    ({"model": "dall-e-3", "prompt": "x", "n": 2}, ["n", "1"]),
    ({"model": "gpt-image-2", "prompt": "x", "n": 11}, ["n", "1 to 10"]),
    ({"model": "gpt-image-2", "prompt": "x", "n": "2"}, ["n", "integer"]),
    ({"model": "gpt-image-2", "prompt": "x", "n": True}, ["n", "integer"]),
    ({"model": "dall-e-3", "prompt": "x", "quality": "high"}, ["quality", "standard, hd"]),
    ({"model": "gpt-image-2", "prompt": "x", "quality": "hd"},
     ["quality", "low, medium, high, auto"]),
    ({"model": "dall-e-3", "prompt": "x", "style": "pop"}, ["style", "vivid, natural"]),
    ({"model": "dall-e-3", "prompt": "x", "response_format": "png"},
     ["response_format", "url, b64_json"]),
    ({"model": "gpt-image-2", "prompt": "x", "background": "clear"},
     ["background", "transparent, opaque, auto"]),
    ({"model": "gpt-image-2", "prompt": "x", "background": "transparent",
      "output_format": "jpeg"}, ["transparent", "png or webp"]),
    ({"model": "gpt-image-2", "prompt": "x", "output_format": "gif"},
     ["output_format", "png, jpeg, webp"]),
    ({"model": "gpt-image-2", "prompt": "x", "output_compression": 101},
     ["output_compression", "0 to 100"]),
    ({"model": "gpt-image-2", "prompt": "x", "moderation": "off"}, ["moderation", "low, auto"]),
    ({"model": "dall-e-3", "prompt": "x", "async": "yes"}, ["async", "true or false"]),
    ({"model": "dall-e-3", "prompt": "x", "trace_id": "t" * 129}, ["trace_id", "128"]),
    ({"prompt": "x", "model": 7}, ["model", "dall-e-3", "nano-banana-pro"]),
    ({"prompt": "x"}, ["model", "required", "gpt-image-2"]),
    ({"model": "dall-e-3", "prompt": "x", "n": "2"}, ["n must be 1", '"2"']),
    ({"model": "gpt-image-2", "prompt": "x", "quality": "q" * 5000}, ["quality", "..."]),
])
def test_invalid_fields(client: httpx.Client, payload: dict[str, object],
                        words: list[str]) -> None:
    assert_error(client.post(GEN, json=payload), 400, "bad_request", *words)


@pytest.mark.parametrize(("model", "size", "words"), [
    ("dall-e-3", "512x512", ["size", "1024x1024, 1792x1024, 1024x1792"]),
    ("dall-e-3", 1024, ["size", "string"]),
    ("gpt-image-1", "1792x1024", ["size", "auto, 1024x1024, 1536x1024, 1024x1536"]),
    ("gpt-image-2", "1000x1000", ["size", "multiples of 16"]),
    ("gpt-image-2", "4096x1024", ["size", "3840"]),
    ("gpt-image-2", "3360x1024", ["size", "3:1"]),
    ("gpt-image-2", "512x512", ["size", "655,360"]),
    ("gpt-image-2", "big", ["size", "WxH"]),
    ("nano-banana", "huge", ["size", "WxH"]),
    ("nano-banana", "10000x10000", ["size", "8192"]),
    ("nano-banana", "0x100", ["size", "WxH"]),
])
def test_bad_sizes_per_family(client: httpx.Client, model: str, size: object,
                              words: list[str]) -> None:
    r = client.post(GEN, json={"model": model, "prompt": "x", "size": size})
    assert_error(r, 400, "bad_request", *words)


@pytest.mark.parametrize("trace_id", ["a\r\nSet-Cookie: x=1", "t\x00", "caf\u00e9", "two words",
                                      " ", ""])
def test_trace_ids_that_cannot_go_in_a_header(client: httpx.Client, trace_id: str) -> None:
    r = client.post(GEN, json={"model": "dall-e-3", "prompt": "x", "trace_id": trace_id})
    body = assert_error(r, 400, "bad_request", "trace_id", "visible ASCII")
    assert body["trace_id"] != trace_id  # the server's own id, not the rejected one


def test_a_byte_order_mark_is_accepted(client: httpx.Client) -> None:
    r = client.post(GEN, content=b'\xef\xbb\xbf{"model": "nano-banana", "prompt": "x"}',
                    headers={"content-type": "application/json"})
    assert r.status_code == 200, r.text


def test_long_values_are_cut_short_in_messages(client: httpx.Client) -> None:
    r = client.post(GEN, json={"model": "gpt-image-2", "prompt": "x", "quality": "q" * 5000})
    assert len(r.json()["error"]["message"]) < 200


def test_unknown_fields_are_ignored(client: httpx.Client) -> None:
    r = client.post(GEN, json={"model": "nano-banana", "prompt": "x", "seed": 3, "foo": {}})
    assert r.status_code == 200, r.text


# --- 400 api_not_implemented, 404 no_api, 413 ------------------------------------------------

def test_unknown_model(client: httpx.Client) -> None:
    r = client.post(GEN, json={"model": "midjourney", "prompt": "x"})
    assert_error(r, 400, "api_not_implemented", "midjourney", "dall-e-3")


@pytest.mark.parametrize(("method", "path"), [
    ("GET", "/nope"), ("POST", "/v1/chat/completions"), ("GET", "/openai/images"),
])
def test_no_api(client: httpx.Client, method: str, path: str) -> None:
    assert_error(client.request(method, path), 404, "no_api", path)


def test_two_mib_body(client: httpx.Client) -> None:
    payload = b'{"model": "gpt-image-2", "prompt": "' + b"x" * (2 * 1024 * 1024) + b'"}'
    r = client.post(GEN, content=payload, headers={"content-type": "application/json"})
    assert_error(r, 413, "request_too_large", "limit")


def test_two_mib_chunked_body(client: httpx.Client) -> None:
    def chunks():  # no content-length: the limit must hold while streaming
        yield b'{"model": "gpt-image-2", "prompt": "'
        for _ in range(32):
            yield b"x" * 65536
        yield b'"}'

    r = client.post(GEN, content=chunks(), headers={"content-type": "application/json"})
    assert_error(r, 413, "request_too_large")


# --- 401 / 403 credential errors -------------------------------------------------------------

@pytest.mark.parametrize("header", [None, "", "Bearer", "Basic abc:def", "Bearer a b c",
                                    "Bearer ig-unknown-token-123456789"])
def test_invalid_token(sandbox: GatewayServer, header: str | None) -> None:
    headers = {} if header is None else {"authorization": header}
    r = httpx.post(sandbox.url + GEN, json={"model": "dall-e-3", "prompt": "x"}, headers=headers)
    assert_error(r, 401, "invalid_token")


def _alter(sandbox: GatewayServer, sql: str) -> str:
    token = sandbox.token(credits=10, name="altered")
    db.execute(sandbox.data_dir, sql.format(prefix=token[:8]))
    return token


def _gen(sandbox: GatewayServer, token: str) -> httpx.Response:
    return httpx.post(sandbox.url + GEN, json={"model": "nano-banana", "prompt": "x"},
                      headers={"authorization": f"Bearer {token}"}, timeout=30)


def test_token_mismatched(sandbox: GatewayServer) -> None:
    token = _alter(sandbox, "UPDATE credentials SET scopes='[\"suno-audio\"]' "
                            "WHERE token_prefix='{prefix}'")
    assert_error(_gen(sandbox, token), 400, "token_mismatched", "openai-images")


def test_token_expired(sandbox: GatewayServer) -> None:
    token = _alter(sandbox, f"UPDATE credentials SET expires_at={time.time() - 5} "
                            "WHERE token_prefix='{prefix}'")
    assert_error(_gen(sandbox, token), 401, "token_expired")


def test_disabled(sandbox: GatewayServer) -> None:
    token = _alter(sandbox, "UPDATE credentials SET disabled=true WHERE token_prefix='{prefix}'")
    assert_error(_gen(sandbox, token), 403, "disabled")


def test_used_up(sandbox: GatewayServer) -> None:
    token = sandbox.token(credits=0.1, name="poor")
    assert_error(_gen(sandbox, token), 403, "used_up", "costs 0.14", "balance is 0.1")


# --- 500 api_error and 504 timeout -----------------------------------------------------------

def test_model_without_upstream_key(tmp_path: Path) -> None:
    env = {"OPENAI_API_KEY": "", "GEMINI_API_KEY": ""}
    with GatewayServer(tmp_path / "d", env=env) as server:
        token = server.token(credits=5)
        auth = {"authorization": f"Bearer {token}"}
        r = httpx.post(server.url + GEN, json={"model": "gpt-image-2", "prompt": "x"},
                       headers=auth)
        assert_error(r, 500, "api_error", "OPENAI_API_KEY")
        r = httpx.post(server.url + GEN, json={"model": "nano-banana", "prompt": "x"},
                       headers=auth)
        assert_error(r, 500, "api_error", "GEMINI_API_KEY")
        models = httpx.get(server.url + "/v1/models", headers=auth).json()["data"]
        assert {m["id"]: m["available"] for m in models} == dict.fromkeys(
            ["dall-e-3", "gpt-image-1", "gpt-image-2", "nano-banana", "nano-banana-2",
             "nano-banana-pro"], False)
        # nothing was charged for requests that could not run
        assert db.query(server.data_dir, "SELECT count(*) FROM tasks") == [(0,)]


def test_internal_fault_has_no_stack_trace(tmp_path: Path) -> None:
    with GatewayServer(tmp_path / "d", "--sandbox") as server:
        token = server.token(credits=5)
        # a file where the store wants a directory: every dalle write now fails
        (server.data_dir / "files").mkdir(exist_ok=True)
        (server.data_dir / "files" / "dalle").write_text("in the way")
        r = httpx.post(server.url + GEN, json={"model": "dall-e-3", "prompt": "x"},
                       headers={"authorization": f"Bearer {token}"})
        body = assert_error(r, 500, "api_error", "internal error")
        assert str(server.data_dir) not in r.text
        time.sleep(0.2)
        log = server.log()
        assert "Traceback" in log and body["trace_id"] in log
        # the failed task was not charged
        assert db.query(server.data_dir, "SELECT status, error_code FROM tasks") == [
            ("failed", "api_error")]
        balance = db.query(server.data_dir, "SELECT balance FROM credentials WHERE name='test'")
        assert balance == [(5_000_000,)]


def test_sync_wait_timeout_keeps_the_task(tmp_path: Path) -> None:
    env = {"IMAGEGATE_SYNC_WAIT": "0.5", "IMAGEGATE_SANDBOX_LATENCY": "1.5"}
    with GatewayServer(tmp_path / "d", "--sandbox", env=env) as server:
        token = server.token(credits=5)
        r = httpx.post(server.url + GEN, json={"model": "nano-banana", "prompt": "x"},
                       headers={"authorization": f"Bearer {token}"}, timeout=30)
        assert_error(r, 504, "timeout", "keeps running")
        (task_id,) = db.query(server.data_dir, "SELECT id FROM tasks")[0]
        assert task_id in r.json()["error"]["message"]
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if db.query(server.data_dir, "SELECT status FROM tasks") == [("succeeded",)]:
                break
            time.sleep(0.1)
        assert db.query(server.data_dir, "SELECT status FROM tasks") == [("succeeded",)]
