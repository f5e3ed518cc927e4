from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import backend as backends
from tests.support.server import GatewayServer


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest) -> Iterator[str]:
    """API test modules use this (pytestmark) to run once on SQLite and once on PostgreSQL."""
    backends.current = request.param
    yield request.param
    backends.current = "sqlite"
    backends.drop_all()


@pytest.fixture(autouse=True)
def _database_of_this_test(request: pytest.FixtureRequest) -> Iterator[None]:
    """Gateways a test starts itself use its backend parameter; unmarked tests use SQLite.

    Reset afterwards: the module-scoped servers of the next module start before this
    fixture runs for its first test, and must not inherit a PostgreSQL parameter."""
    callspec = getattr(request.node, "callspec", None)
    backends.current = callspec.params.get("backend", "sqlite") if callspec else "sqlite"
    yield
    backends.current = "sqlite"


@pytest.fixture(scope="session")
def sandbox(backend: str, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[GatewayServer]:
    """A sandbox gateway shared by the tests that only read and generate."""
    backends.current = backend  # set up before the per-test fixture above runs
    server = GatewayServer(tmp_path_factory.mktemp(f"sandbox-{backend}"), "--sandbox").start()
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
