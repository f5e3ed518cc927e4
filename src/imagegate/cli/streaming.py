"""`imagegate generate --stream` and `imagegate edit --stream`: partial images as progress.

The gateway answers with Server-Sent Events (SPEC section 8); each partial image is
reported as it arrives (a spinner line on a terminal, a plain line otherwise) and the
completed images are saved like any others.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from imagegate.cli.api_client import (
    TRANSIENT_STATUS,
    Client,
    ClientError,
    Transient,
    edit_request,
    note,
    prepare_out,
)


def generate(client: Client, body: dict[str, Any], out: Path) -> tuple[str, list[Path]]:
    prepare_out(out)
    client._warn_ignored(body)
    return _run(client, "generating", body, out, {"json": body},
                "/openai/images/generations")


def edit(client: Client, body: dict[str, Any], images: list[str], mask: str | None,
         out: Path) -> tuple[str, list[Path]]:
    prepare_out(out)
    client._warn_ignored(body)
    request = edit_request(body, images, mask)
    if "body" in request:
        request = {"json": request.pop("body")}
    return _run(client, "editing", body, out, request, "/openai/images/edits")


def events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """Server-Sent Events from the response's lines: (event type, its JSON data)."""
    name, data = "", []
    for line in lines:
        if line:
            field, _, value = line.partition(":")
            value = value.removeprefix(" ")
            if field == "event":
                name = value
            elif field == "data":
                data.append(value)
            continue
        if data:
            yield name, json.loads("\n".join(data))
        name, data = "", []
    if data:
        yield name, json.loads("\n".join(data))


def _run(client: Client, doing: str, body: dict[str, Any], out: Path, request: dict[str, Any],
         path: str) -> tuple[str, list[Path]]:
    started = time.monotonic()
    task_id = ""
    items: list[dict[str, Any]] = []
    label = f"{doing} with {body['model']}…"
    try:
        with client._waiting(label) as spinner:
            if spinner is None:
                note(label)
            with client.http.stream("POST", path, **request) as r:
                task_id = r.headers.get("x-task-id", "")
                if r.status_code != 200:
                    _refused(r)
                for name, data in events(r.iter_lines()):
                    if name == "error":
                        error = data.get("error") or {}
                        raise ClientError(f"error: {error.get('code', 'api_error')}: "
                                          f"{error.get('message', '')} (task {task_id})")
                    step = _progress(name, data, len(items), time.monotonic() - started)
                    if name.endswith(".completed"):
                        items.append({"b64_json": data.get("b64_json"), "url": data.get("url")})
                    if spinner is not None:
                        spinner.update(step)
                    else:
                        note(step)
    except httpx.ConnectError:
        raise Transient(f"error: cannot connect to {client.base_url}") from None
    except httpx.TimeoutException:
        raise Transient(f"error: {client.base_url} did not answer in time") from None
    except httpx.HTTPError as e:
        raise Transient(f"error: {type(e).__name__} talking to {client.base_url}: {e}") from None
    except KeyboardInterrupt:
        if task_id:
            raise ClientError(f"interrupted; task {task_id} continues — "
                              f"imagegate tasks get {task_id}", 130) from None
        raise ClientError("interrupted", 130) from None
    if not items:
        raise ClientError(f"error: the stream ended with no image (task {task_id})")
    paths = client.save(items, out, body["prompt"], task_id)
    note(f"done in {time.monotonic() - started:.1f} s")
    return task_id, paths


def _progress(name: str, data: dict[str, Any], done: int, elapsed: float) -> str:
    size = len(data.get("b64_json") or "") * 3 // 4 // 1024
    if name.endswith(".partial_image"):
        return (f"image {int(data.get('image_index', done)) + 1}: partial image "
                f"{int(data.get('partial_image_index', 0)) + 1} ({size} KB, {elapsed:.1f} s)")
    return f"image {done + 1} completed ({size} KB, {elapsed:.1f} s)"


def _refused(r: httpx.Response) -> None:
    r.read()
    try:
        error = r.json().get("error", {})
    except ValueError:
        error = {}
    kind = Transient if r.status_code in TRANSIENT_STATUS else ClientError
    raise kind(f"error: {error.get('code', 'http_' + str(r.status_code))}: "
               f"{error.get('message', '')}", 2 if r.status_code < 500 else 1)
