"""`imagegate generate`, `imagegate edit` and `imagegate tasks get`: a terminal client for any
imagegate.

Exit codes: 0 success; 2 the request was refused (a 4xx: bad input, token, credits, limits)
or the command line was wrong; 1 anything else (server errors, timeouts, the server
unreachable, images made but not saved); 130 interrupted with Ctrl-C.
"""

from __future__ import annotations

import base64
import json
import os
import re
import sys
import time
import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from imagegate.formats import sniff_mime

DEFAULT_BASE_URL = "http://127.0.0.1:8000"
EXTENSIONS = {"png": "png", "jpeg": "jpg", "jpg": "jpg", "webp": "webp", "gif": "gif"}
STATES = ("queued", "running", "succeeded", "failed")
TRANSIENT_STATUS = {429, 500, 502, 503, 504}
POLL_REQUEST_TIMEOUT = 30.0
# Parameters each family accepts and ignores (core/routing/params.py), so a user learns at once that
# e.g. --quality does nothing for nano-banana instead of wondering why the image looks the same.
IGNORED = {"dalle": ("background", "output_format", "output_compression", "moderation",
                     "input_fidelity"),
           "gpt-image": ("style",),
           "nano-banana": ("quality", "style", "background", "moderation", "input_fidelity")}
FLAGS = {"output_format": "--format", "response_format": "--response-format"}


class ClientError(Exception):
    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.message = " ".join(message.split())  # one error, one line, even in a pipe
        self.exit_code = exit_code


class Transient(ClientError):
    """Worth asking again: the network or an overloaded server, not the request itself."""


class Unsaved(ClientError):
    """The images were made (and paid for) but could not be written: say where they are."""

    def __init__(self, message: str, task_id: str, urls: list[str], saved: list[Path]) -> None:
        super().__init__(message, 1)
        self.task_id, self.urls, self.saved = task_id, urls, saved


def check_base_url(url: str) -> str:
    """httpx's own error for '127.0.0.1:8000' is a traceback about protocols; say what to type."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        hint = f" (did you mean http://{url}?)" if "://" not in url else ""
        raise ClientError(f"error: --base-url must look like {DEFAULT_BASE_URL}; "
                          f"got {url!r}{hint}", 2)
    return url.rstrip("/")


def prepare_out(out: Path) -> None:
    """Checked before anything is submitted, so a typo in --out never costs credits."""
    if out.exists() and not out.is_dir():
        raise ClientError(f"error: --out {out} exists and is not a directory", 2)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ClientError(f"error: cannot create --out {out}: {e.strerror or e}", 2) from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise ClientError(f"error: --out {out} is not writable", 2)


def slug(text: str, limit: int = 40) -> str:
    """A readable file name from any script: accents dropped, CJK and the like kept."""
    plain = "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c))
    words = re.sub(r"[\W_]+", "-", unicodedata.normalize("NFC", plain).lower()).strip("-")
    return words[:limit].rstrip("-") or "image"


def sniff(data: bytes) -> str | None:
    """The real format of image bytes; a family may ignore --format, the bytes never lie."""
    return {"image/png": "png", "image/jpeg": "jpg", "image/webp": "webp",
            "image/gif": "gif"}.get(sniff_mime(data) or "")


def ignored_flags(family: str | None, body: dict[str, Any]) -> list[str]:
    return [FLAGS.get(key, "--" + key.replace("_", "-"))
            for key in IGNORED.get(family or "", ()) if key in body]


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Client:
    def __init__(self, base_url: str, token: str, *, timeout: float = 900.0,
                 console: Console | None = None) -> None:
        self.base_url = check_base_url(base_url)
        self.timeout = timeout
        self.http = httpx.Client(base_url=self.base_url,
                                 timeout=httpx.Timeout(timeout, connect=min(timeout, 15.0)),
                                 headers={"authorization": f"Bearer {token}"})
        self.console = console or Console(stderr=True, soft_wrap=True)
        self.live = self.console.is_terminal

    def close(self) -> None:
        self.http.close()

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None,
              timeout: float | None = None, **form: Any) -> dict[str, Any]:
        """``form``: ``data`` and ``files`` of a multipart request instead of a JSON body."""
        try:
            r = self.http.request(method, path, json=body,
                                  timeout=timeout if timeout is not None else self.http.timeout,
                                  **form)
        except httpx.ConnectError:
            raise Transient(f"error: cannot connect to {self.base_url}") from None
        except httpx.TimeoutException:
            raise Transient(f"error: {self.base_url} did not answer in time") from None
        except httpx.HTTPError as e:
            raise Transient(f"error: {type(e).__name__} talking to {self.base_url}: {e}"
                            ) from None
        try:
            payload = r.json()
        except ValueError:
            kind = Transient if r.status_code in TRANSIENT_STATUS else ClientError
            raise kind(f"error: HTTP {r.status_code} with a body that is not JSON") from None
        if r.status_code >= 400:
            err = payload.get("error", {}) if isinstance(payload, dict) else {}
            kind = Transient if r.status_code in TRANSIENT_STATUS else ClientError
            raise kind(f"error: {err.get('code', 'http_' + str(r.status_code))}: "
                       f"{err.get('message', '')}", 2 if r.status_code < 500 else 1)
        return payload if isinstance(payload, dict) else {}

    @contextmanager
    def _waiting(self, label: str) -> Iterator[_Spinner | None]:
        """A live spinner with elapsed time on a terminal; nothing here otherwise (the caller
        prints plain lines when something changes)."""
        if not self.live:
            yield None
            return
        with _Spinner(self.console, label) as spinner:
            yield spinner

    def family(self, model: str) -> str | None:
        """The model's family, or None when the server cannot say (the request will)."""
        try:
            return self._call("GET", f"/v1/models/{model}", timeout=15).get("family")
        except ClientError:
            return None

    def generate(self, body: dict[str, Any], out: Path, *, poll_every: float = 1.0
                 ) -> tuple[str, list[Path]]:
        prepare_out(out)
        self._warn_ignored(body)
        return self._run("generating", body, out, poll_every, lambda: self._call(
            "POST", "/openai/images/generations", body))

    def edit(self, body: dict[str, Any], images: list[str], mask: str | None, out: Path, *,
             poll_every: float = 1.0) -> tuple[str, list[Path]]:
        """Files go up as multipart (image[] parts, as the OpenAI SDKs send them); URLs
        alone go as JSON. Every file is read before anything is sent."""
        prepare_out(out)
        self._warn_ignored(body)
        request = edit_request(body, images, mask)
        return self._run("editing", body, out, poll_every, lambda: self._call(
            "POST", "/openai/images/edits", **request))

    def _warn_ignored(self, body: dict[str, Any]) -> None:
        if any(key in body for keys in IGNORED.values() for key in keys):
            for flag in ignored_flags(self.family(body["model"]), body):
                note(f"warning: {body['model']} ignores {flag}")

    def _run(self, doing: str, body: dict[str, Any], out: Path, poll_every: float,
             send: Callable[[], dict[str, Any]]) -> tuple[str, list[Path]]:
        started = time.monotonic()
        task_id = ""
        try:
            if body.get("async"):
                submitted = send()
                task_id = str(submitted.get("task_id", ""))
                note(f"task {task_id} submitted")
                result = self.wait(task_id, started + self.timeout, poll_every)
            else:
                label = f"{doing} with {body['model']}…"
                with self._waiting(label) as spinner:
                    if spinner is None:
                        note(label)
                    result = send()
                task_id = str(result.get("task_id", ""))
        except KeyboardInterrupt:
            if task_id:
                raise ClientError(f"interrupted; task {task_id} continues — "
                                  f"imagegate tasks get {task_id}", 130) from None
            raise ClientError("interrupted", 130) from None
        paths = self.save(result.get("data", []), out, body["prompt"], task_id)
        note(f"done in {time.monotonic() - started:.1f} s")
        return task_id, paths

    def wait(self, task_id: str, deadline: float, poll_every: float = 1.0) -> dict[str, Any]:
        """Poll until the task ends or ``deadline`` (monotonic) passes; network hiccups and
        busy servers are retried, since the task carries on regardless of this client."""
        short, state, problem = task_id[:8], "submitted", None
        started = time.monotonic()
        delay, failures = poll_every, 0
        with self._waiting(f"task {short} submitted") as spinner:
            while True:
                try:
                    left = max(1.0, min(POLL_REQUEST_TIMEOUT, deadline - time.monotonic()))
                    task = self._call("POST", "/openai/tasks",
                                      {"action": "retrieve", "id": task_id}, timeout=left)
                except Transient as e:
                    if spinner is not None:
                        spinner.update(f"task {short} {state} (retrying: {e.message})")
                    elif e.message != problem:
                        note(f"task {short}: {e.message}; retrying")
                    problem, failures = e.message, failures + 1
                    delay = min(poll_every * 2 ** (failures - 1), 10.0)
                else:
                    problem, delay, failures = None, poll_every, 0
                    if not task:
                        raise ClientError(f"error: task {task_id} not found")
                    new = task.get("status")
                    if new not in STATES:
                        raise ClientError(f"error: task {task_id} has an unexpected status {new!r}")
                    if new != state:
                        if spinner is not None:
                            spinner.update(f"task {short} {new}")
                        else:
                            note(f"task {short} {new} ({time.monotonic() - started:.1f} s)")
                        state = new
                    if state == "succeeded":
                        return task.get("response") or {}
                    if state == "failed":
                        err = (task.get("response") or {}).get("error", {})
                        raise ClientError(f"error: {err.get('code', 'api_error')}: "
                                          f"{err.get('message', 'the task failed')}")
                if time.monotonic() + delay > deadline:
                    raise ClientError(f"error: task {task_id} is still {state}; "
                                      f"see `imagegate tasks get {task_id}`")
                time.sleep(delay)

    def save(self, items: list[dict[str, Any]], out: Path, prompt: str, task_id: str
             ) -> list[Path]:
        """Write each image; on any failure raise Unsaved listing what was and was not kept."""
        urls = [str(item["url"]) for item in items if item.get("url")]
        paths: list[Path] = []
        for i, item in enumerate(items):
            try:
                data, ext = self._image(item)
                path = out / f"{slug(prompt)}-{task_id[:8]}-{i + 1}.{ext}"
                path.write_bytes(data)
            except (ClientError, OSError, ValueError) as e:
                why = e.message if isinstance(e, ClientError) else str(e)
                raise Unsaved(f"error: could not save image {i + 1} to {out}: {why}",
                              task_id, urls, paths) from None
            paths.append(path)
        return paths

    def _image(self, item: dict[str, Any]) -> tuple[bytes, str]:
        if item.get("b64_json"):
            data = base64.b64decode(item["b64_json"], validate=True)
            return data, sniff(data) or "png"
        url = str(item["url"])
        try:
            r = httpx.get(url, timeout=120, follow_redirects=True)
        except httpx.HTTPError as e:
            raise ClientError(f"cannot download {url}: {type(e).__name__}: {e}") from None
        if r.status_code != 200:
            raise ClientError(f"cannot download {url}: HTTP {r.status_code}")
        suffix = httpx.URL(url).path.rsplit("/", 1)[-1].rpartition(".")[2].lower()
        return r.content, sniff(r.content) or EXTENSIONS.get(suffix, "png")

    def task(self, task_id: str) -> dict[str, Any]:
        task = self._call("GET", f"/v1/tasks/{task_id}")
        if not task:
            raise ClientError(f"error: task {task_id} not found", 2)
        return task


LINK_PREFIXES = ("http://", "https://", "data:", "/files/")


def edit_request(body: dict[str, Any], images: list[str], mask: str | None) -> dict[str, Any]:
    """``json`` when every input is a URL; else ``data`` and ``files`` of a multipart form
    (a URL among files goes as a text image[] field, which the gateway fetches)."""
    inputs = [*images, *([mask] if mask else [])]
    if all(arg.startswith(LINK_PREFIXES) for arg in inputs):
        payload: dict[str, Any] = {**body, "image": images}
        if mask:
            payload["mask"] = mask
        return {"body": payload}
    data: dict[str, Any] = {k: _form_text(v) for k, v in body.items()}
    files: list[tuple[str, tuple[str, bytes]]] = []
    links: list[str] = []
    for arg, name in [*((i, "image[]") for i in images), *(((mask, "mask"),) if mask else ())]:
        if arg.startswith(LINK_PREFIXES):
            if name == "mask":
                data["mask"] = arg
            else:
                links.append(arg)
            continue
        path = Path(arg)
        try:
            files.append((name, (path.name, path.read_bytes())))
        except OSError as e:
            raise ClientError(f"error: cannot read {arg}: {e.strerror or e}", 2) from None
    if links:
        data["image[]"] = links
    return {"data": data, "files": files}


def _form_text(value: Any) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else str(value)


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
