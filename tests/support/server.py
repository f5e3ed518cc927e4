"""Run `imagegate serve` as a real process on a free port, the way users run it."""

from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support import backend

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(*args: str, env: dict[str, str] | None = None, check: bool = True,
        timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imagegate", *args], capture_output=True, text=True,
        env={**os.environ, **(env or {})}, check=check, timeout=timeout,
    )


class GatewayServer:
    """One gateway process. ``start()`` returns once /healthz answers."""

    def __init__(self, data_dir: Path, *args: str, env: dict[str, str] | None = None,
                 port: int | None = None, open_files: int | None = None,
                 open_files_hard: int | None = None) -> None:
        """``open_files``: the soft limit on open files the process starts with;
        ``open_files_hard`` the hard one (which the gateway cannot lift)."""
        self.data_dir = data_dir
        self.open_files = open_files or open_files_hard
        self.open_files_hard = open_files_hard
        self.args = list(args)
        # generous request rates unless a test is about them
        self.env = {"IMAGEGATE_LOG_JSON": "true", "IMAGEGATE_DEFAULT_RPS": "100000",
                    "IMAGEGATE_DEFAULT_POLL_RPS": "100000", **(env or {})}
        self.database_url = backend.database_url_for(data_dir)
        if self.database_url and "--database-url" not in self.args:
            self.env["IMAGEGATE_DATABASE_URL"] = self.database_url
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[str] | None = None
        self.log_path = data_dir / f"server-{self.port}.log"

    def start(self, timeout: float = 60) -> GatewayServer:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = self.log_path.open("a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "imagegate", "serve", "--port", str(self.port),
             "--data-dir", str(self.data_dir), *self.args],
            stdout=log, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, **self.env}, preexec_fn=self._limits if self.open_files else None,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited early:\n{self.log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1).status_code == 200:
                    return self
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"gateway did not start in {timeout}s:\n{self.log()}")

    def _limits(self) -> None:
        _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        resource.setrlimit(resource.RLIMIT_NOFILE, (self.open_files, self.open_files_hard or hard))

    def log(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""

    def token(self, credits: float = 1000, name: str = "test", **env: str) -> str:
        return self.credential(credits, name, **env)[0]

    def credential(self, credits: float = 1000, name: str = "test", **env: str
                   ) -> tuple[str, str]:
        """A new token and its webhook secret."""
        out = cli("tokens", "create", "--name", name, "--credits", str(credits),
                  "--data-dir", str(self.data_dir), env={**self.env, **env})
        lines = out.stdout.strip().splitlines()
        secret = next(line.split(": ", 1)[1] for line in lines if "webhook secret" in line)
        return lines[-1], secret

    def demo_token(self) -> str:
        return (self.data_dir / "demo-token").read_text().strip()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)

    def __enter__(self) -> GatewayServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
