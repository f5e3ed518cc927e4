"""`imagegate generate` while it waits: on a real terminal (a pty), with --timeout, Ctrl-C,
a flaky network, a broken server, and a disk that goes away, against a slow sandbox gateway
(IMAGEGATE_SANDBOX_LATENCY) with one task worker."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from PIL import Image

from tests.support.server import GatewayServer, cli

LATENCY = 2.0
SPINNER = set("⠋⠙⠹⠸⠼⠴⠦⠧⠇⠏")


@pytest.fixture(scope="module")
def slow(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    env = {"IMAGEGATE_POLL_INTERVAL": "0.2", "IMAGEGATE_SANDBOX_LATENCY": str(LATENCY),
           "IMAGEGATE_WORKERS": "1"}
    s = GatewayServer(tmp_path_factory.mktemp("cli-slow"), "--sandbox", env=env).start()
    yield s
    s.stop()


def env_of(server: GatewayServer, base_url: str | None = None) -> dict[str, str]:
    return {**os.environ, "IMAGEGATE_BASE_URL": base_url or server.url,
            "IMAGEGATE_TOKEN": server.demo_token()}


class Running:
    """The CLI as a child process whose stderr lines can be awaited one by one."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "imagegate", *args], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout: float = 30) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if found := re.search(pattern, line):
                    return found
            time.sleep(0.05)
        raise AssertionError(f"no {pattern!r} in {self.lines}")

    def finish(self, timeout: float = 60) -> tuple[int, str, list[str]]:
        assert self.proc.stdout is not None
        stdout = self.proc.stdout.read()
        code = self.proc.wait(timeout)
        self.reader.join(5)
        return code, stdout, self.lines


def in_terminal(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run the CLI with a pty as its terminal; everything it drew, as text."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 120, 0, 0))
    proc = subprocess.Popen([sys.executable, "-m", "imagegate", *args], stdin=slave,
                            stdout=slave, stderr=slave, env={**env, "TERM": "xterm-256color"})
    os.close(slave)
    chunks = []
    while True:
        ready, _, _ = select.select([master], [], [], 60)
        if not ready:
            proc.kill()
            break
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    return proc.wait(30), b"".join(chunks).decode(errors="replace")


@pytest.mark.parametrize("mode", [[], ["--async"]], ids=["sync", "async"])
def test_terminal_shows_a_spinner_and_the_elapsed_time(slow: GatewayServer, tmp_path: Path,
                                                       mode: list[str]) -> None:
    code, screen = in_terminal(env_of(slow), "generate", "on a terminal", *mode,
                               "--out", str(tmp_path))
    assert code == 0, screen
    assert SPINNER & set(screen), screen
    assert "\x1b[" in screen  # drawn in place, not as lines
    ticks = set(re.findall(r"0:00:0\d", screen))
    assert len(ticks) >= 2 and "0:00:00" in ticks, ticks  # the clock moved while waiting
    label = "task [0-9a-f]{8} running" if mode else "generating with nano-banana"
    assert re.search(label, screen), screen
    assert re.search(r"done in \d+\.\d s", screen)
    saved = re.search(r"(\S+-1\.png)", screen)
    assert saved and Image.open(saved.group(1)).size == (1024, 1024)


def test_async_timeout_says_where_the_task_is(slow: GatewayServer, tmp_path: Path) -> None:
    out = cli("generate", "slow", "--async", "--timeout", "1", "--out", str(tmp_path),
              env=env_of(slow), check=False)
    assert out.returncode == 1
    task_id = re.search(r"task (\S+) submitted", out.stderr).group(1)  # type: ignore[union-attr]
    assert re.fullmatch(rf"error: task {task_id} is still (queued|running); "
                        rf"see `imagegate tasks get {task_id}`", out.stderr.splitlines()[-1])
    assert out.stdout == "" and list(tmp_path.iterdir()) == []


def test_ctrl_c_while_polling_names_the_task(slow: GatewayServer, tmp_path: Path) -> None:
    run = Running(env_of(slow), "generate", "interrupt me", "--async", "--out", str(tmp_path))
    task_id = run.wait_for(r"task (\S+) submitted").group(1)
    run.proc.send_signal(signal.SIGINT)
    code, stdout, lines = run.finish()
    assert code == 130 and stdout == ""
    assert lines[-1] == f"interrupted; task {task_id} continues — imagegate tasks get {task_id}"
    assert not any("Traceback" in line for line in lines)


def test_images_made_but_not_saved_are_not_lost(slow: GatewayServer, tmp_path: Path) -> None:
    out_dir = tmp_path / "out"
    run = Running(env_of(slow), "generate", "lost?", "--async", "--n", "2", "--out",
                  str(out_dir))
    task_id = run.wait_for(r"task (\S+) submitted").group(1)
    shutil.rmtree(out_dir)  # the directory vanishes while the images are being made
    out_dir.write_text("now a file")
    code, stdout, lines = run.finish()
    assert code == 1
    assert lines[-1].startswith(f"error: could not save image 1 to {out_dir}")
    assert f"imagegate tasks get {task_id}" in lines[-1]
    printed = stdout.strip().splitlines()
    assert printed[-1] == f"task {task_id}" and len(printed) == 3
    for url in printed[:2]:
        assert httpx.get(url).status_code == 200  # the paid-for images are still there


class Flaky(BaseHTTPRequestHandler):
    """Forwards to the gateway, but drops the first task polls and answers 503 to the next."""

    upstream = ""
    drops = 1
    unavailable = 1
    polls = 0

    def _forward(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        if self.path == "/openai/tasks":
            Flaky.polls += 1
            if Flaky.polls <= Flaky.drops:
                self.close_connection = True
                return
            if Flaky.polls <= Flaky.drops + Flaky.unavailable:
                self._send(503, b'{"error": {"code": "busy", "message": "try again"}}')
                return
        r = httpx.request(self.command, Flaky.upstream + self.path, content=body or None,
                          headers={k: v for k, v in self.headers.items()
                                   if k.lower() in ("authorization", "content-type")})
        self._send(r.status_code, r.content)

    def _send(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = _forward

    def log_message(self, *args: object) -> None:
        pass


def test_polling_survives_a_flaky_network(slow: GatewayServer, tmp_path: Path) -> None:
    Flaky.upstream, Flaky.polls = slow.url, 0
    proxy = ThreadingHTTPServer(("127.0.0.1", 0), Flaky)
    threading.Thread(target=proxy.serve_forever, daemon=True).start()
    try:
        out = cli("generate", "flaky", "--async", "--out", str(tmp_path), check=False,
                  env=env_of(slow, f"http://127.0.0.1:{proxy.server_port}"))
    finally:
        proxy.shutdown()
    assert out.returncode == 0, out.stderr
    assert Flaky.polls > Flaky.drops + Flaky.unavailable
    assert "retrying" in out.stderr and "busy: try again" in out.stderr
    assert Image.open(out.stdout.splitlines()[0]).size == (1024, 1024)


def test_a_broken_server_is_one_line_not_a_traceback(tmp_path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0))

    def garbage() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                conn.recv(65536)
                conn.sendall(b"this is not HTTP\r\n\r\n")

    threading.Thread(target=garbage, daemon=True).start()
    try:
        for args in (["generate", "x", "--out", str(tmp_path)], ["tasks", "get", "abc"]):
            out = cli(*args, check=False, env={
                "IMAGEGATE_BASE_URL": f"http://127.0.0.1:{listener.getsockname()[1]}",
                "IMAGEGATE_TOKEN": "ig-x-123"})
            assert out.returncode == 1, out.stderr
            assert "Traceback" not in out.stderr
            assert out.stderr.splitlines()[-1].startswith("error: RemoteProtocolError talking to")
    finally:
        listener.close()
