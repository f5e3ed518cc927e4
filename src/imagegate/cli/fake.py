"""`imagegate fake-upstream`: a fake OpenAI, Gemini, Azure OpenAI or OpenRouter upstream for
tests and demos."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console

err = Console(stderr=True)


def fake_upstream(
    kind: Annotated[str, typer.Argument(help="openai, gemini, azure or openrouter")],
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="0 picks a free port (the one bound is printed)")
                    ] = 9000,
    api_key: Annotated[str | None, typer.Option(
        envvar="IMAGEGATE_FAKE_API_KEY",
        help="The key clients must send (default: sk-test for openai, gm-test for gemini, "
             "az-test for azure, or-test for openrouter: the keys imagegate.testing uses)")
                       ] = None,
    latency: Annotated[float, typer.Option(
        min=0, help="Seconds added before every successful generation")] = 0.0,
    url_ttl: Annotated[float, typer.Option(
        min=0, help="Seconds an openai image link stays valid (dall-e style url results)")
                       ] = 3600.0,
) -> None:
    """Run a fake upstream (for tests and demos; no internet needed).

    The listening address goes to stderr once bound; the key is never printed.
    """
    from imagegate.testing import serve_forever

    if kind not in ("openai", "gemini", "azure", "openrouter"):
        err.print("kind must be openai, gemini, azure or openrouter")
        raise typer.Exit(2)
    serve_forever(kind, host, port, api_key, latency=latency, url_ttl=url_ttl)
