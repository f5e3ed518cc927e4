"""The official openai Node SDK iterates the gateway's streams (SPEC section 8): gpt-image-2
generations and edits and nano-banana-pro through the fake upstreams, and the error event.

The SDK is the version pinned in tests/node/package-lock.json, installed with ``npm ci``
into a cache directory keyed by the lock file, so it is fetched once per machine.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from imagegate.testing.records import Fault
from tests.support.edits import RED, picture
from tests.support.server import GatewayServer
from tests.support.upstreams import NO_BREAKER, Fakes, running_fakes, start_gateway

NODE = Path(__file__).parent / "node"


def node_sdk() -> Path:
    """Where ``npm ci`` put the pinned SDK; fails (never skips) without node and npm."""
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        pytest.fail("node and npm are needed for the Node SDK streaming test: install them "
                    "(Debian: apt-get install -y nodejs npm)")
    lock = (NODE / "package-lock.json").read_bytes()
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    target = cache / "imagegate-tests" / f"node-{hashlib.sha256(lock).hexdigest()[:16]}"
    if not (target / "node_modules" / "openai" / "package.json").exists():
        target.mkdir(parents=True, exist_ok=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(NODE / name, target / name)
        done = subprocess.run([npm, "ci", "--no-audit", "--no-fund"], cwd=target,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, f"npm ci failed:\n{done.stdout}\n{done.stderr}"
    shutil.copy(NODE / "stream.mjs", target / "stream.mjs")
    return target


@pytest.fixture(scope="module")
def fakes() -> Iterator[Fakes]:
    with running_fakes() as started:
        yield started


@pytest.fixture(scope="module")
def gw(fakes: Fakes, tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    server = start_gateway("sqlite", fakes, tmp_path_factory.mktemp("streaming-node"),
                           NO_BREAKER, max_retries=0)
    yield server
    server.stop()


def test_node_sdk_iterates_streams(gw: GatewayServer, fakes: Fakes, tmp_path: Path) -> None:
    where = node_sdk()
    image = tmp_path / "a.png"
    image.write_bytes(picture(RED, (512, 512)))
    # the fourth stream (the error case) loses its upstream after one partial image
    fakes[0].script(None, None, Fault(stream_cut=1))
    run = subprocess.run(["node", "stream.mjs", f"{gw.url}/v1", gw.token(credits=100),
                          str(image)], cwd=where, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr
    out = json.loads(run.stdout)
    generation = out["generation"]
    assert [e["type"] for e in generation] == ["image_generation.partial_image"] * 2 + [
        "image_generation.completed"]
    assert [e["partial_image_index"] for e in generation[:2]] == [0, 1]
    done = generation[-1]
    assert done["size"] == "1024x1024" and done["quality"] == "medium"
    assert done["usage"]["output_tokens"] > 0 and done["b64_bytes"] > 0
    assert done["url"].startswith(gw.url) and done["task_id"]
    assert [e["type"] for e in out["edit"]] == ["image_edit.partial_image",
                                                "image_edit.completed"]
    assert [e["type"] for e in out["nano"]] == ["image_generation.partial_image"] * 2 + [
        "image_generation.completed"]
    assert out["error"]["name"] == "APIError" and "connection failed" in out["error"]["message"]
