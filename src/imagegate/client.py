"""`imagegate generate` and `imagegate tasks get`: a terminal client for any imagegate.

Exit codes: 0 success; 2 the request was refused (a 4xx: bad input, token, credits, limits);
1 anything else (server errors, timeouts, the server unreachable).
"""

from __future__ import annotations

import base64
import json
import re
import sys
import time
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
EXTENSIONS = {"png": "png", "jpeg": "jpg", "jpg": "jpg", "webp": "webp"}


class ClientError(Exception):
    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code


def slug(text: str, limit: int = 40) -> str:
    words = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    return (words[:limit].rstrip("-") or "image")


class Client:
    def __init__(self, base_url: str, token: str, *, timeout: float = 900.0,
                 console: Console | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = httpx.Client(base_url=self.base_url, timeout=timeout,
                                 headers={"authorization": f"Bearer {token}"})
        self.console = console or Console(stderr=True)
        self.live = self.console.is_terminal

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None
              ) -> dict[str, Any]:
        try:
            r = self.http.request(method, path, json=body)
        except httpx.ConnectError:
            raise ClientError(f"error: cannot connect to {self.base_url}") from None
        except httpx.TimeoutException:
            raise ClientError(f"error: {self.base_url} did not answer in time") from None
        try:
            payload = r.json()
        except ValueError:
            raise ClientError(f"error: HTTP {r.status_code} with a body that is not JSON"
                              ) from None
        if r.status_code >= 400:
            err = payload.get("error", {}) if isinstance(payload, dict) else {}
            raise ClientError(f"error: {err.get('code', 'http_' + str(r.status_code))}: "
                              f"{err.get('message', '')}", 2 if r.status_code < 500 else 1)
        return payload if isinstance(payload, dict) else {}

    def _waiting(self, label: str) -> AbstractContextManager[Any]:
        """A live spinner with elapsed time on a terminal; one plain line otherwise."""
        if self.live:
            return _Spinner(self.console, label)
        print(label, file=sys.stderr, flush=True)
        return nullcontext()

    def generate(self, body: dict[str, Any], out: Path, *, poll_every: float = 1.0
                 ) -> tuple[str, list[Path]]:
        started = time.monotonic()
        label = f"generating with {body['model']}…"
        if body.get("async"):
            submitted = self._call("POST", "/openai/images/generations", body)
            task_id = submitted["task_id"]
            print(f"task {task_id} submitted", file=sys.stderr, flush=True)
            result = self.wait(task_id, started, poll_every)
        else:
            with self._waiting(label) as status:
                if status is not None:
                    status.update(f"{label} (the request is in flight)")
                result = self._call("POST", "/openai/images/generations", body)
            task_id = result["task_id"]
        paths = self.save(result.get("data", []), out, body, task_id)
        return task_id, paths

    def wait(self, task_id: str, started: float, poll_every: float) -> dict[str, Any]:
        last = None
        with self._waiting(f"task {task_id[:8]} queued") as status:
            while True:
                task = self._call("POST", "/openai/tasks", {"action": "retrieve", "id": task_id})
                if not task:
                    raise ClientError(f"error: task {task_id} not found")
                state = task.get("status")
                elapsed = time.monotonic() - started
                if status is not None:
                    status.update(f"task {task_id[:8]} {state}")
                elif state != last:
                    print(f"task {task_id[:8]} {state} ({elapsed:.1f}s)", file=sys.stderr,
                          flush=True)
                last = state
                if state == "succeeded":
                    return task["response"]  # type: ignore[no-any-return]
                if state == "failed":
                    err = (task.get("response") or {}).get("error", {})
                    raise ClientError(f"error: {err.get('code', 'api_error')}: "
                                      f"{err.get('message', 'the task failed')}")
                time.sleep(poll_every)

    def save(self, items: list[dict[str, Any]], out: Path, body: dict[str, Any],
             task_id: str) -> list[Path]:
        out.mkdir(parents=True, exist_ok=True)
        paths = []
        for i, item in enumerate(items):
            if item.get("b64_json"):
                data = base64.b64decode(item["b64_json"])
                ext = EXTENSIONS.get(str(body.get("output_format", "png")), "png")
            else:
                url = item["url"]
                try:
                    r = httpx.get(url, timeout=120)
                except httpx.HTTPError as e:
                    raise ClientError(f"error: could not download {url}: {e}") from None
                if r.status_code != 200:
                    raise ClientError(f"error: could not download {url}: HTTP {r.status_code}")
                data = r.content
                ext = EXTENSIONS.get(url.rsplit(".", 1)[-1].lower(), "png")
            path = out / f"{slug(body['prompt'])}-{task_id[:8]}-{i + 1}.{ext}"
            path.write_bytes(data)
            paths.append(path)
        return paths

    def task(self, task_id: str) -> dict[str, Any]:
        task = self._call("GET", f"/v1/tasks/{task_id}")
        if not task:
            raise ClientError(f"error: task {task_id} not found", 2)
        return task


class _Spinner:
    """rich's progress display: spinner, what is happening, and the elapsed time."""

    def __init__(self, console: Console, label: str) -> None:
        self.progress = Progress(SpinnerColumn(), TextColumn("{task.description}"),
                                 TimeElapsedColumn(), console=console, transient=True)
        self.task = self.progress.add_task(label, total=None)

    def __enter__(self) -> _Spinner:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, label: str) -> None:
        self.progress.update(self.task, description=label)


def dumps(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False)
