"""What `imagegate serve`, `worker` and `db upgrade` do before they start: one clear line
for an operator's mistake, a working demo token, settings from the environment."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from tests.support.server import ROOT, GatewayServer, cli, free_port


@pytest.mark.parametrize(("args", "env", "words"), [
    (["serve", "--database-url", "foo://bar"], {}, ["database URL", "foo://bar"]),
    (["serve", "--database-url", "postgresql://u:secret@127.0.0.1:1/x"], {},
     ["cannot use the database", "127.0.0.1:1"]),
    (["serve", "--log-level", "verbose"], {}, ["log_level", "debug, info"]),
    (["serve", "--storage-url", "ftp://x/y"], {}, ["storage URL", "ftp://x/y"]),
    (["serve", "--storage-url", "file://relative/dir"], {}, ["storage URL", "absolute"]),
    (["serve", "--port", "80000"], {}, ["port", "65535"]),
    (["serve"], {"IMAGEGATE_SYNC_WAIT": "0"}, ["sync_wait", "greater than 0"]),
    (["serve"], {"IMAGEGATE_ADMIN_KEY": "secret-but-short"}, ["admin_key", "24 characters"]),
    (["serve"], {"IMAGEGATE_ADMIN_LOGIN_LIMIT": "lots"}, ["admin_login_limit", "5/minute"]),
    (["worker", "--sandbox"], {}, ["public URL", "--public-base-url"]),
    (["db", "upgrade", "--database-url", "foo://bar"], {}, ["database URL"]),
])
def test_operator_mistakes_are_one_line(tmp_path: Path, args: list[str], env: dict[str, str],
                                        words: list[str]) -> None:
    out = cli(*args, "--data-dir", str(tmp_path), env=env, check=False)
    assert out.returncode == 2, out.stdout + out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    for word in words:
        assert word in lines[0], lines[0]
    assert "secret" not in out.stderr  # a database password never reaches the terminal
    assert "listening" not in out.stdout


def test_sandbox_prints_a_working_token_even_on_a_new_database(tmp_path: Path) -> None:
    data = tmp_path / "d"
    port = free_port()
    for round_ in range(2):
        proc = subprocess.Popen(
            [sys.executable, "-m", "imagegate", "serve", "--sandbox", "--port", str(port),
             "--data-dir", str(data)], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
            text=True, cwd=ROOT)
        try:
            assert proc.stdout is not None
            lines = [proc.stdout.readline() for _ in range(4)]
            token = next(line.split(": ", 1)[1].strip() for line in lines
                         if line.startswith("demo token:"))
            assert any(f"127.0.0.1:{port}" in line for line in lines)
            url = f"http://127.0.0.1:{port}"
            _wait_healthy(url)
            r = httpx.post(url + "/v1/images/generations", timeout=30,
                           headers={"authorization": f"Bearer {token}"},
                           json={"model": "nano-banana", "prompt": "x"})
            assert r.status_code == 200, (round_, r.text)
        finally:
            proc.terminate()
            proc.wait(15)
        for db_file in data.glob("imagegate.db*"):  # a new database, the old token file
            db_file.unlink()


def _wait_healthy(url: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/healthz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise AssertionError("the gateway did not come up")


def test_log_level_from_the_environment(tmp_path: Path) -> None:
    def events(level: str | None) -> list[str]:
        env = {"IMAGEGATE_LOG_LEVEL": level} if level else {}
        with GatewayServer(tmp_path / (level or "default"), "--sandbox", env=env) as server:
            httpx.post(server.url + "/v1/images/generations", timeout=30,
                       headers={"authorization": f"Bearer {server.demo_token()}"},
                       json={"model": "nano-banana", "prompt": "x"})
        return [json.loads(line)["event"] for line in server.log().splitlines()
                if line.startswith("{")]

    assert "request" in events(None)  # info by default: a line per request
    assert "request" not in events("warning")


def test_a_data_directory_with_a_space(tmp_path: Path) -> None:
    data = tmp_path / "my data"
    with GatewayServer(data, "--sandbox") as server:
        r = httpx.post(server.url + "/v1/images/generations", timeout=30,
                       headers={"authorization": f"Bearer {server.demo_token()}"},
                       json={"model": "nano-banana", "prompt": "x"})
        url = r.json()["data"][0]["url"]
        served = httpx.get(url)
        assert served.status_code == 200 and served.headers["content-type"] == "image/png"
    key = url.split("/files/", 1)[1]
    assert (data / "files" / key).is_file()
    assert not (tmp_path / "my%20data").exists()
    shutil.rmtree(data)
