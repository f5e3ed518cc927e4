"""`imagegate generate` and `imagegate tasks get` against a running sandbox gateway."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.support.server import GatewayServer, cli, free_port


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    s = GatewayServer(tmp_path_factory.mktemp("cli-client"), "--sandbox",
                      env={"IMAGEGATE_POLL_INTERVAL": "0.2"}).start()
    yield s
    s.stop()


def env_of(server: GatewayServer) -> dict[str, str]:
    return {"IMAGEGATE_BASE_URL": server.url, "IMAGEGATE_TOKEN": server.demo_token()}


def test_generate_sync(server: GatewayServer, tmp_path: Path) -> None:
    out = cli("generate", "A red apple, on a table!", "--model", "nano-banana", "--size",
              "1536x1024", "--n", "2", "--format", "webp", "--out", str(tmp_path),
              env=env_of(server))
    lines = out.stdout.strip().splitlines()
    assert lines[-1].startswith("task ")
    task_id = lines[-1].split()[1]
    paths = [Path(p) for p in lines[:-1]]
    assert len(paths) == 2
    for i, path in enumerate(paths, start=1):
        assert path.name == f"a-red-apple-on-a-table-{task_id[:8]}-{i}.webp"
        image = Image.open(path)
        assert (image.format, image.size) == ("WEBP", (1536, 1024))
    assert "\x1b" not in out.stdout + out.stderr  # not a terminal: no control codes


def test_generate_async_polls_until_done(server: GatewayServer, tmp_path: Path) -> None:
    out = cli("generate", "async otter", "--model", "gpt-image-2", "--size", "1024x1024",
              "--async", "--out", str(tmp_path), env=env_of(server))
    assert "submitted" in out.stderr and "succeeded" in out.stderr
    assert "\x1b" not in out.stdout + out.stderr
    path = Path(out.stdout.strip().splitlines()[0])
    assert Image.open(path).size == (1024, 1024)
    task_id = out.stdout.strip().splitlines()[-1].split()[1]
    shown = cli("tasks", "get", task_id, env=env_of(server))
    task = json.loads(shown.stdout)
    assert task["id"] == task_id and task["status"] == "succeeded"


def test_b64_response_is_saved(server: GatewayServer, tmp_path: Path) -> None:
    out = cli("generate", "b64", "--model", "dall-e-3", "--response-format", "b64_json",
              "--out", str(tmp_path), env=env_of(server))
    path = Path(out.stdout.strip().splitlines()[0])
    assert path.suffix == ".png" and Image.open(path).size == (1024, 1024)


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--size", "7x7", "--model", "dall-e-3"], 2, "bad_request: size"),
    (["--model", "nope"], 2, "api_not_implemented"),
])
def test_api_errors_exit_non_zero(server: GatewayServer, tmp_path: Path, args: list[str],
                                  code: int, message: str) -> None:
    out = cli("generate", "x", *args, "--out", str(tmp_path), env=env_of(server), check=False)
    assert out.returncode == code
    assert message in out.stderr and out.stdout == ""


def test_bad_token_and_missing_token(server: GatewayServer, tmp_path: Path) -> None:
    out = cli("generate", "x", "--out", str(tmp_path), check=False,
              env={"IMAGEGATE_BASE_URL": server.url, "IMAGEGATE_TOKEN": "ig-wrong-wrong-wrong"})
    assert out.returncode == 2 and "invalid_token" in out.stderr
    out = cli("generate", "x", "--out", str(tmp_path), check=False,
              env={"IMAGEGATE_BASE_URL": server.url, "IMAGEGATE_TOKEN": ""})
    assert out.returncode == 2 and "no token" in out.stderr


def test_server_down(tmp_path: Path) -> None:
    out = cli("generate", "x", "--out", str(tmp_path), check=False,
              env={"IMAGEGATE_BASE_URL": f"http://127.0.0.1:{free_port()}",
                   "IMAGEGATE_TOKEN": "ig-whatever-123"})
    assert out.returncode == 1 and "cannot connect" in out.stderr


def test_unknown_task(server: GatewayServer) -> None:
    out = cli("tasks", "get", "00000000-0000-0000-0000-000000000000", env=env_of(server),
              check=False)
    assert out.returncode == 2 and "not found" in out.stderr
