"""`imagegate edit` against a running sandbox gateway: files, URLs, a mask, --async, and the
same progress lines, errors and exit codes as `imagegate generate`."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import pytest
from PIL import Image

from tests.support.edits import BLUE, RED, mask, near, picture
from tests.support.server import GatewayServer, cli

CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    s = GatewayServer(tmp_path_factory.mktemp("cli-edit"), "--sandbox",
                      env={"IMAGEGATE_POLL_INTERVAL": "0.2"}).start()
    yield s
    s.stop()


def env_of(server: GatewayServer) -> dict[str, str]:
    return {"IMAGEGATE_BASE_URL": server.url, "IMAGEGATE_TOKEN": server.demo_token()}


def outputs(out: str) -> tuple[list[Path], str]:
    lines = out.strip().splitlines()
    assert lines[-1].startswith("task "), out
    return [Path(p) for p in lines[:-1]], lines[-1].split()[1]


def test_edit_files_with_a_mask(server: GatewayServer, tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(picture(RED, (384, 256)))
    (tmp_path / "b.jpg").write_bytes(picture(BLUE, fmt="JPEG"))
    (tmp_path / "m.png").write_bytes(mask((384, 256)))
    done = cli("edit", str(tmp_path / "a.png"), str(tmp_path / "b.jpg"), "--prompt",
               "A sun, top left", "--mask", str(tmp_path / "m.png"), "--model", "gpt-image-1",
               "--size", "1536x1024", "--format", "webp", "--out", str(tmp_path / "out"),
               env=env_of(server))
    (path,), task_id = outputs(done.stdout)
    assert path.name == f"a-sun-top-left-{task_id[:8]}-1.webp"
    image = Image.open(path)
    assert (image.format, image.size) == ("WEBP", (1536, 1024))
    assert near(image.getpixel((1200, 500)), RED) and not near(image.getpixel((10, 10)), RED)
    assert not CONTROL.search(done.stdout + done.stderr)
    lines = done.stderr.splitlines()
    assert lines[0] == "editing with gpt-image-1…" and re.fullmatch(r"done in \d+\.\d s",
                                                                    lines[-1])


def test_edit_a_url_async(server: GatewayServer, tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(picture(BLUE))
    first = cli("edit", str(tmp_path / "a.png"), "-p", "first", "--response-format", "url",
                "--out", str(tmp_path), env=env_of(server))
    _, task_id = outputs(first.stdout)
    url = f"{server.url}/files/nano-banana/{task_id}_0.png"
    done = cli("edit", url, "-p", "second", "--async", "--model", "nano-banana-2",
               "--out", str(tmp_path), env=env_of(server))
    (path,), second_id = outputs(done.stdout)
    assert near(Image.open(path).convert("RGB").getpixel((200, 100)), BLUE)
    lines = done.stderr.splitlines()
    assert lines[0] == f"task {second_id} submitted"
    assert lines[-2].split()[2] == "succeeded"


@pytest.mark.parametrize(("make", "extra", "message"), [
    (lambda d: (d / "notes.txt").write_text("hello"), ["--model", "gpt-image-2"],
     "error: bad_request: image ('notes.txt') is not an image: its bytes are text"),
    (lambda d: (d / "a.png").write_bytes(picture()), ["--mask", "MASK"],
     "error: bad_request: mask is not supported by nano-banana"),
    (lambda d: None, [], "error: cannot read"),
])
def test_edit_errors_are_one_line_and_exit_2(server: GatewayServer, tmp_path: Path, make,
                                             extra: list[str], message: str) -> None:
    make(tmp_path)
    name = next((p.name for p in tmp_path.iterdir()), "missing.png")
    (tmp_path / "MASK").write_bytes(mask())
    args = [a.replace("MASK", str(tmp_path / "MASK")) for a in extra]
    done = cli("edit", str(tmp_path / name), "-p", "x", *args, "--out", str(tmp_path),
               env=env_of(server), check=False)
    assert done.returncode == 2, done.stderr
    assert done.stdout == ""
    assert done.stderr.strip().splitlines()[-1].startswith(message), done.stderr


def test_edit_stream_shows_partials_as_progress(server: GatewayServer, tmp_path: Path) -> None:
    (tmp_path / "a.png").write_bytes(picture(RED))
    done = cli("edit", str(tmp_path / "a.png"), "-p", "bluer", "--model", "nano-banana-pro",
               "--stream", "--partial-images", "1", "--out", str(tmp_path), env=env_of(server))
    paths, _ = outputs(done.stdout)
    assert Image.open(paths[0]).format == "PNG"
    lines = done.stderr.splitlines()
    assert lines[0] == "editing with nano-banana-pro…"
    assert lines[1].startswith("image 1: partial image 1 (") and lines[2].startswith(
        "image 1 completed (")
