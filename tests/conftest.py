from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.server import GatewayServer


@pytest.fixture(scope="session")
def sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GatewayServer]:
    """A sandbox gateway shared by the tests that only read and generate."""
    server = GatewayServer(tmp_path_factory.mktemp("sandbox"), "--sandbox").start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def token(sandbox: GatewayServer) -> str:
    return sandbox.token(credits=100000)


@pytest.fixture()
def client(sandbox: GatewayServer, token: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=sandbox.url, timeout=60,
                      headers={"authorization": f"Bearer {token}"}) as c:
        yield c


@pytest.fixture()
def data_dir(tmp_path: Path) -> Path:
    return tmp_path / "data"
