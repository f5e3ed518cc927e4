"""The `imagegate` command line."""

from __future__ import annotations

from pathlib import Path

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
