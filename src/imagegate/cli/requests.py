"""`imagegate generate`, `imagegate edit` and `imagegate tasks get`: the command-line client
of a gateway.

Only typer is imported at module level: `imagegate --help` must not pay for httpx or rich.
Errors go to stderr with plain print, one line each, so a pipe or a log never sees an error
hard-wrapped at 80 columns.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from imagegate.cli.api_client import Client

BaseUrl = Annotated[str, typer.Option(envvar="IMAGEGATE_BASE_URL",
                                      help="The gateway [env IMAGEGATE_BASE_URL]")]
Token = Annotated[str | None, typer.Option(envvar="IMAGEGATE_TOKEN",
                                           help="API token [env IMAGEGATE_TOKEN]")]


def _fail(message: str, code: int) -> typer.Exit:
    print(message, file=sys.stderr, flush=True)
    return typer.Exit(code)


def _client(base_url: str, token: str | None, timeout: float = 900.0) -> Client:
    from imagegate.cli.api_client import Client, ClientError

    if not token:
        raise _fail("error: no token: pass --token or set IMAGEGATE_TOKEN", 2)
    try:
        return Client(base_url, token, timeout=timeout)
    except ClientError as e:
        raise _fail(e.message, e.exit_code) from None


@contextmanager
def _reporting(client: Client) -> Iterator[None]:
    """An API error or Ctrl-C as one line and an exit code; the client closed either way."""
    from imagegate.cli.api_client import ClientError

    try:
        yield
    except ClientError as e:
        raise _fail(e.message, e.exit_code) from None
    except KeyboardInterrupt:
        raise _fail("interrupted", 130) from None
    finally:
        client.close()


def generate(
    prompt: Annotated[str, typer.Argument(help="What to draw")],
    model: Annotated[str, typer.Option(help="Model name")] = "nano-banana",
    size: Annotated[str | None, typer.Option(help="WxH, e.g. 1536x1024")] = None,
    n: Annotated[int | None, typer.Option("--n", help="How many images")] = None,
    quality: Annotated[str | None, typer.Option(help="Quality, per model family")] = None,
    style: Annotated[str | None, typer.Option(help="dall-e-3: vivid or natural")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="png, jpeg or webp")] = None,
    background: Annotated[str | None, typer.Option(help="gpt-image: transparent…")] = None,
    response_format: Annotated[str | None, typer.Option(help="url or b64_json")] = None,
    is_async: Annotated[bool, typer.Option("--async", help="Submit, then poll the task")
                        ] = False,
    stream: Annotated[bool, typer.Option("--stream", help="Show partial images as they "
                                         "arrive (gpt-image, nano-banana)")] = False,
    partial_images: Annotated[int, typer.Option(help="With --stream: partial images, 0-3")
                              ] = 2,
    out: Annotated[Path, typer.Option(help="Directory for the images")] = Path("."),
    base_url: BaseUrl = "http://127.0.0.1:8000",
    token: Token = None,
    timeout: Annotated[float, typer.Option(
        help="Seconds to wait for the images (with --async: for the task to finish)")] = 900.0,
) -> None:
    """Generate images and save them; prints each file's path and the task id."""
    body: dict[str, Any] = {"model": model, "prompt": prompt}
    for key, value in (("size", size), ("n", n), ("quality", quality), ("style", style),
                       ("output_format", fmt), ("background", background),
                       ("response_format", response_format)):
        if value is not None:
            body[key] = value
    if is_async:
        body["async"] = True
    client = _client(base_url, token, timeout)
    if stream:
        from imagegate.cli import streaming

        body.update(stream=True, partial_images=partial_images)
        _saving(client, lambda: streaming.generate(client, body, out))
        return
    _saving(client, lambda: client.generate(body, out))


def edit(
    images: Annotated[list[str], typer.Argument(
        help="Images to edit (up to 16): files, or http(s), data: or this gateway's /files/ "
             "URLs", show_default=False)],
    prompt: Annotated[str, typer.Option("--prompt", "-p", help="What to change",
                                        show_default=False)],
    mask: Annotated[str | None, typer.Option(
        help="PNG whose transparent pixels mark what to edit (gpt-image, dall-e-3)")] = None,
    model: Annotated[str, typer.Option(help="Model name")] = "nano-banana",
    size: Annotated[str | None, typer.Option(help="WxH; nano-banana: the first image's "
                                             "ratio when left out")] = None,
    n: Annotated[int | None, typer.Option("--n", help="How many images")] = None,
    quality: Annotated[str | None, typer.Option(help="Quality, per model family")] = None,
    fmt: Annotated[str | None, typer.Option("--format", help="png, jpeg or webp")] = None,
    background: Annotated[str | None, typer.Option(help="gpt-image: transparent…")] = None,
    input_fidelity: Annotated[str | None, typer.Option(help="gpt-image: high or low")] = None,
    response_format: Annotated[str | None, typer.Option(help="url or b64_json")] = None,
    is_async: Annotated[bool, typer.Option("--async", help="Submit, then poll the task")
                        ] = False,
    stream: Annotated[bool, typer.Option("--stream", help="Show partial images as they "
                                         "arrive (gpt-image, nano-banana)")] = False,
    partial_images: Annotated[int, typer.Option(help="With --stream: partial images, 0-3")
                              ] = 2,
    out: Annotated[Path, typer.Option(help="Directory for the images")] = Path("."),
    base_url: BaseUrl = "http://127.0.0.1:8000",
    token: Token = None,
    timeout: Annotated[float, typer.Option(
        help="Seconds to wait for the images (with --async: for the task to finish)")] = 900.0,
) -> None:
    """Edit images and save the results; prints each file's path and the task id."""
    body: dict[str, Any] = {"model": model, "prompt": prompt}
    for key, value in (("size", size), ("n", n), ("quality", quality), ("output_format", fmt),
                       ("background", background), ("input_fidelity", input_fidelity),
                       ("response_format", response_format)):
        if value is not None:
            body[key] = value
    if is_async:
        body["async"] = True
    client = _client(base_url, token, timeout)
    if stream:
        from imagegate.cli import streaming

        body.update(stream=True, partial_images=partial_images)
        _saving(client, lambda: streaming.edit(client, body, images, mask, out))
        return
    _saving(client, lambda: client.edit(body, images, mask, out))


def _saving(client: Client, run: Callable[[], tuple[str, list[Path]]]) -> None:
    """Run a request that saves images; print the paths and the task id, or say where the
    images are when they were made but not saved."""
    from imagegate.cli.api_client import Unsaved

    with _reporting(client):
        try:
            task_id, paths = run()
        except Unsaved as e:
            for path in e.saved:
                print(path)
            for url in e.urls:
                print(url)
            print(f"task {e.task_id}", flush=True)
            raise _fail(f"{e.message}; the images are at the URLs above and in "
                        f"`imagegate tasks get {e.task_id}`", e.exit_code) from None
    for path in paths:
        print(path)
    print(f"task {task_id}")


tasks_app = typer.Typer(no_args_is_help=True, help="Look at tasks on a gateway.")


@tasks_app.command("get")
def tasks_get(task_id: Annotated[str, typer.Argument(help="The task id")],
              base_url: BaseUrl = "http://127.0.0.1:8000", token: Token = None) -> None:
    """Print a task as JSON."""
    from imagegate.cli.api_client import dumps

    client = _client(base_url, token, 60.0)
    with _reporting(client):
        print(dumps(client.task(task_id)))
