"""The Dockerfile builds into an image that really runs: `deploy/check-image` builds it with
buildah on a Debian base (no Docker engine here), runs its default command and drives it.

Needs root, buildah and debootstrap (`.ci/run` installs them); skipped elsewhere, failed
on CI when they are missing."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.support.server import ROOT

TOOLS = ("buildah", "debootstrap")
missing = [tool for tool in TOOLS if shutil.which(tool) is None]
if missing or os.geteuid() != 0:
    if os.environ.get("CI"):
        raise RuntimeError(f"container check needs root and {', '.join(TOOLS)} "
                           "(.ci/run installs them)")
    pytest.skip(f"needs root and {', '.join(TOOLS)}", allow_module_level=True)

pytestmark = pytest.mark.timeout(1500)


def test_the_image_builds_runs_as_a_non_root_user_and_serves(tmp_path: Path) -> None:
    report_path = tmp_path / "report.json"
    out = subprocess.run([str(ROOT / "deploy" / "check-image"), str(report_path)],
                         capture_output=True, text=True, timeout=1400)
    assert out.returncode == 0, out.stderr[-4000:]
    report = json.loads(report_path.read_text())
    # settings from the environment only: sandbox, port and admin key were variables
    assert report["entrypoint"] == ["imagegate"] and report["cmd"] == ["serve"]
    assert {"IMAGEGATE_HOST=0.0.0.0", "IMAGEGATE_DATA_DIR=/data"} <= set(report["env"])
    assert report["readyz"] == {"status": "ok",
                                "checks": {"database": "ok", "storage": "ok"}}
    assert report["generation_status"] == 200 and report["generation"]["success"] is True
    assert report["image_png"] and report["image_type"] == "image/png"
    assert report["console_sign_in"] == 200 and report["console_chart_js"] == 200
    # not root, and its data (SQLite, images, the demo token) lands in the /data volume
    assert report["user"] == "10001:10001" and report["server_uid"] == 10001
    assert report["volumes"] == ["/data"] and report["data_owner"] == 10001
    assert report["data_volume_has_token"] is True
    assert report["healthcheck"] == ["CMD", "imagegate", "healthcheck"]
    assert report["healthcheck_exit"] == 0 and report["healthcheck_exit_when_down"] != 0
