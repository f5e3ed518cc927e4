"""The `imagegate` command line."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support import db
from tests.support.server import cli


def test_tokens_create_prints_token_last(tmp_path: Path) -> None:
    out = cli("tokens", "create", "--name", "alice", "--credits", "2.5",
              "--data-dir", str(tmp_path))
    token = out.stdout.strip().splitlines()[-1]
    assert token.startswith("ig-") and len(token) == 35
    assert "whsec_" in out.stdout
    rows = db.query(tmp_path, "SELECT name, balance, token_hash FROM credentials")
    assert rows[0][:2] == ("alice", 2_500_000)
    assert token not in rows[0][2]  # stored hashed only
    listing = cli("tokens", "list", "--data-dir", str(tmp_path)).stdout
    assert "alice" in listing and token[:8] in listing and token not in listing


def test_serve_rejects_a_broken_config(tmp_path: Path) -> None:
    bad = tmp_path / "models.yaml"
    bad.write_text("models:\n  x:\n    family: nope\n")
    out = cli("serve", "--config", str(bad), "--data-dir", str(tmp_path), check=False)
    assert out.returncode == 2
    assert "config error" in out.stderr and "family" in out.stderr


@pytest.fixture(scope="module")
def one_token(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    data = tmp_path_factory.mktemp("cli-amounts")
    out = cli("tokens", "create", "--credits", "2", "--data-dir", str(data))
    return data, out.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("args", [
    ("create", "--credits", "1e13"), ("create", "--credits", "nan"),
    ("create", "--credits", "inf"), ("create", "--credits", "0.0000001"),
    ("create", "--credits", "-1"), ("create", "--rps", "0"),
    ("create", "--expires-in", "inf"), ("topup", "PREFIX", "1e300"),
    ("topup", "PREFIX", "nan"), ("topup", "PREFIX", "0.0000001"),
    ("topup", "PREFIX", "999999999"),
])
def test_tokens_refuse_bad_amounts_in_one_line(one_token: tuple[Path, str],
                                               args: tuple[str, ...]) -> None:
    """Refused before or inside the transaction, never half done, never a traceback."""
    tmp_path, token = one_token
    args = tuple(token[:8] if a == "PREFIX" else a for a in args)
    out = cli("tokens", *args, "--data-dir", str(tmp_path), check=False)
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: bad_request: "), out.stderr
    assert db.query(tmp_path, "SELECT count(*), sum(balance) FROM credentials") == [
        (1, 2_000_000)]
    assert db.query(tmp_path, "SELECT sum(amount) FROM ledger") == [(2_000_000,)]
