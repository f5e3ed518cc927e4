"""Fake image upstreams (OpenAI, Gemini, Azure OpenAI, Vertex AI with Google's token endpoint,
OpenRouter) for tests and local development.

Real HTTP servers on real sockets (so connection pooling, timeouts and resets behave as in
production) that return real images, inject scripted faults and record every request::

    with FakeOpenAI(api_key="sk-test") as fake:
        fake.script(Fault(status=429, retry_after=2))
        ...  # point the gateway at fake.base_url
        assert fake.requests[0].json["model"] == "gpt-image-2"
"""

from __future__ import annotations

import signal
import sys
import threading

from imagegate.testing.azure_fake import FakeAzureOpenAI
from imagegate.testing.gemini_fake import FakeGemini
from imagegate.testing.openai_fake import FakeOpenAI
from imagegate.testing.openrouter_fake import FakeOpenRouter
from imagegate.testing.records import Fault, RecordedRequest, Response
from imagegate.testing.server import FakeServer
from imagegate.testing.vertex_fake import FakeGoogleOAuth, FakeVertex

__all__ = [
    "FakeAzureOpenAI",
    "FakeGemini",
    "FakeGoogleOAuth",
    "FakeOpenAI",
    "FakeOpenRouter",
    "FakeVertex",
    "FakeServer",
    "Fault",
    "RecordedRequest",
    "Response",
    "make_fake",
    "serve_forever",
]

# also `imagegate fake-upstream`'s
DEFAULT_KEYS = {"openai": "sk-test", "gemini": "gm-test", "azure": "az-test",
                "openrouter": "or-test"}


def make_fake(kind: str, *, host: str = "127.0.0.1", port: int = 0,
              api_key: str | None = None, latency: float = 0.0,
              url_ttl: float | None = None) -> FakeServer:
    """A fake of the given kind (openai, gemini, azure, openrouter), not yet started.

    ``url_ttl`` (seconds an OpenAI image link stays valid) only applies to openai.
    """
    key = api_key or DEFAULT_KEYS.get(kind, "")
    if kind == "openai":
        return FakeOpenAI(key, host=host, port=port, latency=latency,
                          **({"url_ttl": url_ttl} if url_ttl is not None else {}))
    if kind == "gemini":
        return FakeGemini(key, host=host, port=port, latency=latency)
    if kind == "azure":
        return FakeAzureOpenAI(key, host=host, port=port, latency=latency)
    if kind == "openrouter":
        return FakeOpenRouter(key, host=host, port=port, latency=latency)
    raise ValueError(f"unknown fake upstream kind {kind!r} (expected openai, gemini, azure "
                     "or openrouter)")


def serve_forever(kind: str, host: str, port: int, api_key: str | None = None, *,
                  latency: float = 0.0, url_ttl: float | None = None) -> None:
    """Run one fake until Ctrl-C or SIGTERM (what `imagegate fake-upstream` calls).

    Prints the address it really bound (port 0 picks a free one) and never the key, so the
    line can be logged. Faults can be driven from outside via POST /__fake__/script,
    /__fake__/always, /__fake__/reset, GET /__fake__/requests and GET /__fake__/count.
    """
    fake = make_fake(kind, host=host, port=port, api_key=api_key, latency=latency,
                     url_ttl=url_ttl)
    done = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: done.set())
    fake.start()
    print(f"fake {kind} upstream listening on {fake.base_url}", file=sys.stderr, flush=True)
    try:
        while not done.wait(0.5):
            pass
    except KeyboardInterrupt:
        pass
    finally:
        fake.stop()
