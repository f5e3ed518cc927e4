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
    gateway_pid: int
    data: Path

    def fault(self, **fault: object) -> None:
        """Apply a fault to every upstream request (the fake's control endpoint)."""
        httpx.post(f"{self.fake_url}/__fake__/always", json=fault or None, timeout=10)


def config(fake_url: str, max_connections: int, timeout: float) -> str:
    return json.dumps({
        "upstreams": {"openai": {"type": "openai", "base_url": fake_url,
                                 "api_key_env": "BENCH_OPENAI_KEY", "timeout": timeout,
                                 "max_connections": max_connections}},
        "models": {"gpt-image-2": {"family": "gpt-image", "price": 0.053, "sizes": "flexible",
                                   "timeout": timeout,
                                   "channels": [{"upstream": "openai", "model": "gpt-image-2",
                                                 "max_retries": 0}]}},
    })  # JSON is YAML


@contextmanager
def gateway_with_fake(*, max_connections: int = 200, timeout: float = 120,
                      extra_env: dict[str, str] | None = None) -> Iterator[Setup]:
    data = tmpdir()
    fake_port, gw_port = free_port(), free_port()
    fake_url = f"http://127.0.0.1:{fake_port}"
    cfg = data / "models.yaml"
    cfg.write_text(config(fake_url, max_connections, timeout))
    env = {**BIG_LIMITS, "BENCH_OPENAI_KEY": KEY, "IMAGEGATE_WORKERS": "0",
           "IMAGEGATE_SYNC_WAIT": "600", **(extra_env or {})}
    with ExitStack() as stack:
        stack.enter_context(process(imagegate("fake-upstream", "openai", "--port",
                                              str(fake_port), "--api-key", KEY),
                                    ready=f"{fake_url}/__fake__/requests"))
        gw = stack.enter_context(process(
            imagegate("serve", "--port", str(gw_port), "--data-dir", str(data / "d"),
                      "--config", str(cfg)), env=env,
            ready=f"http://127.0.0.1:{gw_port}/healthz"))
        token = create_token(data / "d", env)
        yield Setup(fake_url, f"http://127.0.0.1:{gw_port}", token, gw.pid, data)
