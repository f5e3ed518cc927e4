"""The Dockerfile passes hadolint, and compose.yaml is the setup docs/deploy.md describes
(the image itself is built and driven by tests/test_container.py)."""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from imagegate.settings import Settings
from tests.test_docs import documented

ROOT = Path(__file__).resolve().parents[1]
DEPLOY = (ROOT / "docs" / "deploy.md").read_text("utf-8")
COMPOSE: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text("utf-8"))
SERVICES: dict[str, Any] = COMPOSE["services"]
CONDITIONS = {"done": "service_completed_successfully", "healthy": "service_healthy"}


def hadolint(path: Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("hadolint", path=str(Path(sys.executable).parent)) or "hadolint"
    return subprocess.run([binary, "--no-color", str(path)], capture_output=True, text=True,
                          timeout=60)


def test_dockerfile_passes_hadolint(tmp_path: Path) -> None:
    out = hadolint(ROOT / "Dockerfile")
    assert out.returncode == 0 and not out.stdout.strip(), out.stdout + out.stderr
    # and the linter really looks: the mistakes it is there for are reported
    bad = tmp_path / "Dockerfile"
    bad.write_text("FROM python:latest\nRUN pip install fastapi\nCMD imagegate serve\n")
    report = hadolint(bad).stdout
    assert {"DL3007", "DL3042", "DL3025"} <= set(re.findall(r"DL\d{4}", report)), report


def test_dockerfile_is_multi_stage_non_root_with_health_and_a_data_volume() -> None:
    text = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^ARG BASE=python:3\.\d+-slim$", text, re.M), "BASE defaults to slim"
    assert re.findall(r"^FROM \$\{BASE\}", text, re.M) == ["FROM ${BASE}"] * 2
    assert "COPY --from=build /opt/imagegate /opt/imagegate" in text
    user = re.search(r"^USER (\d+)", text, re.M)
    assert user and int(user.group(1)) >= 1000
    assert 'VOLUME ["/data"]' in text and "IMAGEGATE_DATA_DIR=/data" in text
    assert re.search(r'HEALTHCHECK .*\n\s+CMD \["imagegate", "healthcheck"\]', text)
    assert 'ENTRYPOINT ["imagegate"]' in text and 'CMD ["serve"]' in text
    # the build reads only what it needs: no .venv, .git or caches in the context
    ignore = (ROOT / ".dockerignore").read_text().split()
    assert ignore[ignore.index("*"):][:4] == ["*", "!pyproject.toml", "!README.md", "!src/"]


def compose_table() -> dict[str, tuple[str, str]]:
    """The deploy.md table: service -> (what it runs, what it waits for)."""
    section = DEPLOY.split("## The same setup in containers", 1)[1].split("\n## ", 1)[0]
    rows: dict[str, tuple[str, str]] = {}
    previous = ""
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        waits = previous if cells[2] == "the same" else cells[2]
        for name in re.findall(r"`([\w-]+)`", cells[0]):
            rows[name] = (cells[1], waits)
        previous = waits
    return rows


def waits_for(text: str) -> dict[str, str]:
    """"`migrate` and `bucket` done, `redis` healthy" -> {service: condition}."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        condition = CONDITIONS[part.split()[-1]]
        out.update({name: condition for name in re.findall(r"`([\w-]+)`", part)})
    return out


def test_compose_runs_the_services_deploy_md_describes() -> None:
    table = compose_table()
    assert sorted(table) == sorted(SERVICES)
    for name, (runs, waits) in table.items():
        service = SERVICES[name]
        command = re.search(r"`(imagegate [^`]+)`", runs)
        if command:  # our image, with the command the table gives
            assert service["image"] == "imagegate:latest" and service["build"] == "."
            assert ["imagegate", *service["command"]] == shlex.split(command.group(1)), name
        elif name != "bucket":
            image = re.search(r"`([^`]+)`", runs)
            assert image and service["image"].startswith(image.group(1)), (name, runs)
        depends = {k: v["condition"] for k, v in (service.get("depends_on") or {}).items()}
        assert depends == waits_for(waits), name


def test_the_worked_setup_and_compose_run_the_same_commands() -> None:
    """Steps 1-3 of the worked setup are what the compose services run."""
    worked = DEPLOY.split("## A worked setup", 1)[1].split("\n## ", 1)[0]
    for name in ("migrate", "node1", "worker"):
        command = "imagegate " + " ".join(SERVICES[name]["command"])
        if name == "node1":
            assert "imagegate serve --host 0.0.0.0 --port 8000 --workers 0" in worked
        else:
            assert command in worked, command


def test_every_node_shares_the_documented_environment() -> None:
    ours = [s for s in SERVICES.values() if s.get("image") == "imagegate:latest"]
    assert len(ours) == 4 and all(s["environment"] == ours[0]["environment"] for s in ours)
    environment: dict[str, str] = ours[0]["environment"]
    settings = documented()  # the 'Every setting' table
    section = DEPLOY.split("## The same setup in containers", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`((?:IMAGEGATE|AWS|OPENAI|GEMINI)_[A-Z_]+)", section))
    for variable in environment:
        assert variable in named, f"{variable} is set in compose.yaml but not in deploy.md"
        if variable.startswith("IMAGEGATE_"):
            assert variable in settings, f"{variable} is not a setting"
    assert named <= set(environment) | {"IMAGEGATE_FILES_BASE_URL", "IMAGEGATE_CONFIG",
                                        "IMAGEGATE_HOST", "IMAGEGATE_PORT",
                                        "IMAGEGATE_DATA_DIR", "IMAGEGATE_SYNC_WAIT"}
    # the migrate service upgrades once; the nodes then must not race to do it again
    assert SERVICES["migrate"]["command"] == ["db", "upgrade"]
    assert environment["IMAGEGATE_MIGRATE"] == "false"
    assert environment["IMAGEGATE_STORAGE_URL"].startswith("s3://")
    assert environment["AWS_ENDPOINT"] == "http://minio:9000"


def test_the_proxy_balances_both_nodes_and_outwaits_a_sync_request() -> None:
    conf = (ROOT / "deploy" / "nginx.conf").read_text()
    proxy = SERVICES["proxy"]
    assert "./deploy/nginx.conf:/etc/nginx/conf.d/default.conf:ro" in proxy["volumes"]
    port = SERVICES["node1"]["command"][SERVICES["node1"]["command"].index("--port") + 1]
    servers = sorted(re.findall(r"^\s*server (node\d):(\d+)", conf, re.M))
    assert servers == [("node1", port), ("node2", port)]
    timeout = re.search(r"proxy_read_timeout (\d+)s;", conf)
    assert timeout and int(timeout.group(1)) > Settings().sync_wait
    published = proxy["ports"][0].split(":")[0]
    assert f"http://localhost:{published}" in SERVICES["node1"]["environment"][
        "IMAGEGATE_PUBLIC_BASE_URL"]
