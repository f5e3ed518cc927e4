"""A gateway process wired to a fake OpenAI process: the setting of the overhead benches."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from bench.common import BIG_LIMITS, create_token, free_port, imagegate, process, tmpdir

KEY = "sk-bench-key"
BODY = {"model": "gpt-image-2", "prompt": "bench", "size": "1024x1024"}


@dataclass
class Setup:
    fake_url: str
    gateway_url: str
    token: str
    gateway_pid: int  # with --processes N, the supervisor's (bench.common.tree_* count all)
    data: Path
    fake_urls: list[str]

    def fault(self, **fault: object) -> None:
        """Apply a fault to every upstream request (each fake's control endpoint)."""
        for url in self.fake_urls:
            httpx.post(f"{url}/__fake__/always", json=fault or None, timeout=10)


def config(fake_urls: list[str], max_connections: int, timeout: float) -> str:
    """One upstream per fake, as channels of equal priority: the load spreads over them."""
    names = [f"openai{i}" if i else "openai" for i in range(len(fake_urls))]
    return json.dumps({
        "upstreams": {name: {"type": "openai", "base_url": url,
                             "api_key_env": "BENCH_OPENAI_KEY", "timeout": timeout,
                             "max_connections": max_connections}
                      for name, url in zip(names, fake_urls, strict=True)},
        "models": {"gpt-image-2": {"family": "gpt-image", "price": 0.053, "sizes": "flexible",
                                   "timeout": timeout,
                                   "channels": [{"upstream": name, "model": "gpt-image-2",
                                                 "max_retries": 0} for name in names]}},
    })  # JSON is YAML


@contextmanager
def gateway_with_fake(*, max_connections: int = 200, timeout: float = 120,
                      extra_env: dict[str, str] | None = None, processes: int = 1,
                      upstreams: int = 1) -> Iterator[Setup]:
    """The gateway (``imagegate serve --processes N``) in front of ``upstreams`` fake
    OpenAI processes (one fake serves ~1,000-2,000 requests/s on one core)."""
    data = tmpdir()
    fake_ports, gw_port = [free_port() for _ in range(upstreams)], free_port()
    fake_urls = [f"http://127.0.0.1:{port}" for port in fake_ports]
    cfg = data / "models.yaml"
    cfg.write_text(config(fake_urls, max_connections, timeout))
    env = {**BIG_LIMITS, "BENCH_OPENAI_KEY": KEY, "IMAGEGATE_WORKERS": "0",
           "IMAGEGATE_SYNC_WAIT": "600", **(extra_env or {})}
    with ExitStack() as stack:
        for port, url in zip(fake_ports, fake_urls, strict=True):
            stack.enter_context(process(imagegate("fake-upstream", "openai", "--port",
                                                  str(port), "--api-key", KEY),
                                        ready=f"{url}/__fake__/requests",
                                        log=data / f"fake-{port}.log"))
        gw = stack.enter_context(process(
            imagegate("serve", "--port", str(gw_port), "--data-dir", str(data / "d"),
                      "--config", str(cfg), "--processes", str(processes)), env=env,
            ready=f"http://127.0.0.1:{gw_port}/healthz", ready_timeout=60 + 10 * processes,
            log=data / "gateway.log"))
        token = create_token(data / "d", env)
        yield Setup(fake_urls[0], f"http://127.0.0.1:{gw_port}", token, gw.pid, data,
                    fake_urls)
