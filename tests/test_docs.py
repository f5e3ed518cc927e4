"""docs/deploy.md lists every setting, with the default the code really has."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from imagegate.settings import Settings

DEPLOY = Path(__file__).resolve().parents[1] / "docs" / "deploy.md"


def documented() -> dict[str, tuple[str, str]]:
    """Each row of the 'Every setting' table: env name -> (default, meaning)."""
    text = DEPLOY.read_text("utf-8")
    section = text.split("## Every setting", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[str, str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split(" | ")]
        names = re.findall(r"`(IMAGEGATE_[A-Z0-9_]+)`", cells[0]) if len(cells) == 3 else []
        for name in names:
            rows[name] = (cells[1], cells[2])
    return rows


def shown(value: Any) -> list[str]:
    """The ways a default may be written in the table (in backticks)."""
    if value is None:
        return []
    if isinstance(value, bool):
        return [str(value).lower()]
    if isinstance(value, float):
        return [f"{value:g}", f"{value:.1f}"] if value.is_integer() else [f"{value:g}"]
    if isinstance(value, int | str | Path):
        return [str(value)]
    return [json.dumps(value)]


def test_every_setting_is_documented_with_its_default() -> None:
    rows = documented()
    fields = {f"IMAGEGATE_{name.upper()}": field for name, field in
              Settings.model_fields.items()}
    assert sorted(set(fields) - set(rows)) == [], "settings missing from docs/deploy.md"
    assert sorted(set(rows) - set(fields)) == [], "docs/deploy.md lists unknown settings"
    for name, field in fields.items():
        default, meaning = rows[name]
        assert default and meaning, name
        value = field.get_default(call_default_factory=True)
        if value is None:
            assert default.startswith("unset"), (name, default)
        else:
            assert any(f"`{form}`" in default for form in shown(value)), (name, default, value)
