"""`imagegate fake-upstream`: a fake OpenAI or Gemini upstream for tests and demos."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

err = Console(stderr=True)


def fake_upstream(
    kind: Annotated[str, typer.Argument(help="openai or gemini")],
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 9000,
    api_key: Annotated[str, typer.Option(help="The key clients must send")] = "test-key",
) -> None:
    """Run a fake OpenAI or Gemini upstream (for tests and demos; no internet needed)."""
    from imagegate.testing import serve_forever

    if kind not in ("openai", "gemini"):
        err.print("kind must be openai or gemini")
        raise typer.Exit(2)
    print(f"fake {kind} upstream on http://{host}:{port} (api key {api_key!r})", flush=True)
    serve_forever(kind, host, port, api_key)
