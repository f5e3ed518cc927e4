"""The LiteLLM proxy as the peer of the overhead benchmark, in front of the same fake upstream.

LiteLLM is never a dependency of imagegate: it lives in its own virtual environment,
``bench/.litellm-venv`` (gitignored), made on first use with ``python -m venv`` and
``pip install 'litellm[proxy]'`` (several minutes). The proxy runs offline: its model cost
map is the copy bundled with the package (``LITELLM_LOCAL_MODEL_COST_MAP``) and nothing else
is fetched (``LITELLM_OFFLINE_MODE``), both documented on
https://docs.litellm.ai/docs/proxy/outbound_requests. Its config uses the keys of
https://docs.litellm.ai/docs/proxy/configs: ``model_list[].model_name``,
``litellm_params.{model, api_base, api_key}`` and ``general_settings.master_key``.

    python -m bench.litellm_peer   # only makes the environment
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from bench.common import ROOT, free_port, process, tmpdir

VENV = ROOT / "bench" / ".litellm-venv"
MASTER_KEY = "sk-litellm-bench-master-key"
PACKAGE = "litellm[proxy]"


def litellm_bin() -> Path:
    """The proxy's command, installing it into its own environment the first time."""
    exe = VENV / "bin" / "litellm"
    if exe.exists():
        return exe
    print(f"installing {PACKAGE} into {VENV} (first run only, several minutes)",
          file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    subprocess.run([str(VENV / "bin" / "pip"), "install", "-q", PACKAGE], check=True)
    return exe


def version() -> str:
    out = subprocess.run([str(VENV / "bin" / "python"), "-c",
                          "import importlib.metadata as m; print(m.version('litellm'))"],
                         capture_output=True, text=True, check=False)
    return out.stdout.strip() or "?"


def config(fake_url: str, model: str, api_key: str) -> str:
    return json.dumps({  # JSON is YAML
        "model_list": [{"model_name": model,
                        "litellm_params": {"model": f"openai/{model}",
                                           "api_base": f"{fake_url}/v1",
                                           "api_key": api_key}}],
        "general_settings": {"master_key": MASTER_KEY},
    })


@contextmanager
def litellm_proxy(fake_url: str, model: str, api_key: str, workers: int = 1
                  ) -> Iterator[tuple[str, int]]:
    """(base URL, pid) of a LiteLLM proxy before ``fake_url``: ``workers`` processes (its
    default is one per core; the comparison gives both gateways the same number)."""
    exe = litellm_bin()
    work = tmpdir()
    cfg = work / "litellm.yaml"
    cfg.write_text(config(fake_url, model, api_key))
    port = free_port()
    env = {"LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_OFFLINE_MODE": "true"}
    url = f"http://127.0.0.1:{port}"
    with process([str(exe), "--config", str(cfg), "--host", "127.0.0.1", "--port", str(port),
                  "--num_workers", str(workers)],
                 env=env, ready=f"{url}/health/liveliness", log=work / "litellm.log",
                 ready_timeout=180) as proc:
        yield url, proc.pid


if __name__ == "__main__":
    print(litellm_bin())
