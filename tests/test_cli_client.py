"""`imagegate generate` and `imagegate tasks get` against a running sandbox gateway."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.support.server import GatewayServer, cli, free_port

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # anything but \t and \n


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    s = GatewayServer(tmp_path_factory.mktemp("cli-client"), "--sandbox",
                      env={"IMAGEGATE_POLL_INTERVAL": "0.2"}).start()
    yield s
    s.stop()


def env_of(server: GatewayServer, token: str | None = None) -> dict[str, str]:
    return {"IMAGEGATE_BASE_URL": server.url, "IMAGEGATE_TOKEN": token or server.demo_token()}


def outputs(out: str) -> tuple[list[Path], str]:
    """stdout is the saved paths, then `task ID`."""
    lines = out.strip().splitlines()
    assert lines[-1].startswith("task "), out
    return [Path(p) for p in lines[:-1]], lines[-1].split()[1]


def test_generate_sync(server: GatewayServer, tmp_path: Path) -> None:
    out = cli("generate", "A red apple, on a table!", "--model", "nano-banana", "--size",
              "1536x1024", "--n", "2", "--format", "webp", "--out", str(tmp_path),
              env=env_of(server))
    paths, task_id = outputs(out.stdout)
    assert len(paths) == 2
    for i, path in enumerate(paths, start=1):
        assert path.name == f"a-red-apple-on-a-table-{task_id[:8]}-{i}.webp"
        image = Image.open(path)
        # Gemini answers 3:2 at 1K with 1248x832, and the sandbox renders what it would
        assert (image.format, image.size) == ("WEBP", (1248, 832))
    assert not CONTROL.search(out.stdout + out.stderr)  # not a terminal: no control codes
    assert out.stderr.splitlines() == ["generating with nano-banana…",
                                       out.stderr.splitlines()[-1]]
    assert re.fullmatch(r"done in \d+\.\d s", out.stderr.splitlines()[-1])


def test_generate_async_polls_until_done(server: GatewayServer, tmp_path: Path) -> None:
    out = cli("generate", "async otter", "--model", "gpt-image-2", "--size", "1024x1024",
              "--async", "--out", str(tmp_path), env=env_of(server))
    assert not CONTROL.search(out.stdout + out.stderr)
    paths, task_id = outputs(out.stdout)
    assert Image.open(paths[0]).size == (1024, 1024)
    lines = out.stderr.splitlines()
    assert lines[0] == f"task {task_id} submitted"
    states = [line.split()[2] for line in lines[1:-1]]
    assert states[-1] == "succeeded" and len(states) == len(set(states)), lines  # no repeats
    assert set(states) <= {"queued", "running", "succeeded"}
    assert re.fullmatch(r"done in \d+\.\d s", lines[-1])
    shown = cli("tasks", "get", task_id, env=env_of(server))
    task = json.loads(shown.stdout)
    assert task["id"] == task_id and task["status"] == "succeeded"


def test_b64_response_is_saved_by_its_real_format(server: GatewayServer, tmp_path: Path
                                                  ) -> None:
    out = cli("generate", "b64", "--model", "nano-banana", "--response-format", "b64_json",
              "--format", "webp", "--out", str(tmp_path), env=env_of(server))
    path = outputs(out.stdout)[0][0]
    assert path.suffix == ".webp" and Image.open(path).format == "WEBP"
    # dall-e ignores --format: the client says so, and names the file by the bytes it got
    out = cli("generate", "b64", "--model", "dall-e-3", "--response-format", "b64_json",
              "--format", "webp", "--out", str(tmp_path), env=env_of(server))
    path = outputs(out.stdout)[0][0]
    assert path.suffix == ".png" and Image.open(path).format == "PNG"
    assert "warning: dall-e-3 ignores --format" in out.stderr


def test_ignored_flag_warns(server: GatewayServer, tmp_path: Path) -> None:
    out = cli("generate", "x", "--model", "nano-banana", "--quality", "high", "--style",
              "vivid", "--out", str(tmp_path), env=env_of(server))
    assert "warning: nano-banana ignores --quality" in out.stderr
    assert "warning: nano-banana ignores --style" in out.stderr


def test_unicode_prompt_gives_a_readable_name(server: GatewayServer, tmp_path: Path) -> None:
    out_dir = tmp_path / "new" / "dir"  # created on the way
    out = cli("generate", "一只可爱的海獭, Café au lait", "--out", str(out_dir),
              env=env_of(server))
    paths, task_id = outputs(out.stdout)
    assert paths[0] == out_dir / f"一只可爱的海獭-cafe-au-lait-{task_id[:8]}-1.png"
    assert Image.open(paths[0]).format == "PNG"


@pytest.mark.parametrize(("args", "code", "message"), [
    (["--size", "7x7", "--model", "dall-e-3"], 2, "error: bad_request: size"),
    (["--model", "nope"], 2, "error: api_not_implemented"),
])
def test_api_errors_exit_non_zero_on_one_line(server: GatewayServer, tmp_path: Path,
                                              args: list[str], code: int, message: str
                                              ) -> None:
    out = cli("generate", "x", *args, "--out", str(tmp_path), env=env_of(server), check=False)
    assert out.returncode == code
    assert out.stdout == ""
    errors = [line for line in out.stderr.splitlines() if line.startswith("error")]
    assert len(errors) == 1 and errors[0].startswith(message), out.stderr
    assert out.stderr.splitlines()[-1] == errors[0]  # nothing wrapped onto further lines
    assert not CONTROL.search(out.stderr)


def test_long_errors_are_not_wrapped(server: GatewayServer, tmp_path: Path) -> None:
    out = cli("generate", "x", "--size", "4000x16", "--model", "gpt-image-2",
              "--out", str(tmp_path), env=env_of(server), check=False)
    assert out.returncode == 2
    first, error = out.stderr.splitlines()  # exactly two lines, however long the error
    assert first == "generating with gpt-image-2…"
    assert error.startswith("error: bad_request: size 4000x16") and len(error) > 120
    assert error.endswith("655,360-8,294,400 pixels)"), out.stderr


def test_bad_token_and_missing_token(server: GatewayServer, tmp_path: Path) -> None:
    out = cli("generate", "x", "--out", str(tmp_path), check=False,
              env={"IMAGEGATE_BASE_URL": server.url, "IMAGEGATE_TOKEN": "ig-wrong-wrong-wrong"})
    assert out.returncode == 2 and "invalid_token" in out.stderr
    out = cli("generate", "x", "--out", str(tmp_path), check=False,
              env={"IMAGEGATE_BASE_URL": server.url, "IMAGEGATE_TOKEN": ""})
    assert out.returncode == 2 and "no token" in out.stderr


def test_bad_out_is_refused_before_anything_is_charged(server: GatewayServer, tmp_path: Path
                                                       ) -> None:
    token = server.token(credits=10, name="bad-out")
    a_file = tmp_path / "a-file"
    a_file.write_text("not a directory")
    for out_dir, why in ((a_file, "is not a directory"), (a_file / "sub", "cannot create")):
        out = cli("generate", "x", "--out", str(out_dir), env=env_of(server, token),
                  check=False)
        assert out.returncode == 2 and why in out.stderr, out.stderr
        assert len(out.stderr.splitlines()) == 1 and "Traceback" not in out.stderr
    headers = {"authorization": f"Bearer {token}"}
    me = httpx.get(server.url + "/api/credentials/me", headers=headers).json()
    assert me["balance"] == 10
    batch = httpx.post(server.url + "/openai/tasks", headers=headers,
                       json={"action": "retrieve_batch"}).json()
    assert batch["count"] == 0


def test_server_down(tmp_path: Path) -> None:
    out = cli("generate", "x", "--out", str(tmp_path), check=False,
              env={"IMAGEGATE_BASE_URL": f"http://127.0.0.1:{free_port()}",
                   "IMAGEGATE_TOKEN": "ig-whatever-123"})
    assert out.returncode == 1 and "cannot connect" in out.stderr
    assert len(out.stderr.splitlines()) == 2  # "generating…" and the error


@pytest.mark.parametrize(("url", "command"), [
    ("127.0.0.1:18781", ["generate", "x"]), ("localhost:8000", ["tasks", "get", "abc"]),
    ("ftp://example.com", ["generate", "x"]),
])
def test_bad_base_url(url: str, command: list[str]) -> None:
    out = cli(*command, "--base-url", url, check=False, env={"IMAGEGATE_TOKEN": "ig-x-123"})
    assert out.returncode == 2, out.stderr
    assert out.stderr.startswith("error: --base-url must look like http://")
    assert len(out.stderr.splitlines()) == 1 and "Traceback" not in out.stderr
    if "://" not in url:
        assert f"did you mean http://{url}?" in out.stderr


def test_unknown_task(server: GatewayServer) -> None:
    out = cli("tasks", "get", "00000000-0000-0000-0000-000000000000", env=env_of(server),
              check=False)
    assert out.returncode == 2 and "not found" in out.stderr


def test_generate_stream_shows_partials_as_progress(server: GatewayServer, tmp_path: Path
                                                    ) -> None:
    out = cli("generate", "streamed heron", "--model", "gpt-image-2", "--size", "1024x1024",
              "--stream", "--partial-images", "2", "--out", str(tmp_path), env=env_of(server))
    paths, task_id = outputs(out.stdout)
    assert Image.open(paths[0]).size == (1024, 1024)
    lines = out.stderr.splitlines()
    assert lines[0] == "generating with gpt-image-2…"
    assert re.fullmatch(r"image 1: partial image 1 \(\d+ KB, \d+\.\d s\)", lines[1]), lines
    assert lines[2].startswith("image 1: partial image 2 (")
    assert lines[3].startswith("image 1 completed (")
    refused = cli("generate", "x", "--model", "dall-e-3", "--stream", "--out", str(tmp_path),
                  env=env_of(server), check=False)
    assert refused.returncode == 2 and "api_not_implemented" in refused.stderr
