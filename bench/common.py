"""Process plumbing shared by the benchmarks: start servers, run the load generator, read RSS."""

from __future__ import annotations

import http.client
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit

import httpx

ROOT = Path(__file__).resolve().parents[1]
BIG_LIMITS = {"IMAGEGATE_DEFAULT_RPS": "1000000", "IMAGEGATE_DEFAULT_POLL_RPS": "1000000",
              "IMAGEGATE_DEFAULT_CONCURRENCY": "100000", "IMAGEGATE_MAX_QUEUED": "10000000",
              "IMAGEGATE_LOG_LEVEL": "info", "IMAGEGATE_LOG_JSON": "true"}


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_ready(url: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not come up")


@contextmanager
def process(args: list[str], env: dict[str, str] | None = None, ready: str | None = None,
            log: Path | None = None, ready_timeout: float = 30
            ) -> Iterator[subprocess.Popen[bytes]]:
    out = log.open("ab") if log else subprocess.DEVNULL
    proc = subprocess.Popen(args, env={**os.environ, **(env or {})}, stdout=out,
                            stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        if ready:
            wait_ready(ready, ready_timeout)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(40)
        except subprocess.TimeoutExpired:
            proc.kill()


def imagegate(*args: str) -> list[str]:
    return [sys.executable, "-m", "imagegate", *args]


def create_token(data_dir: Path, env: dict[str, str], credits: float = 1e9) -> str:
    out = subprocess.run(imagegate("tokens", "create", "--credits", str(credits),
                                   "--data-dir", str(data_dir)),
                         env={**os.environ, **env}, capture_output=True, text=True, check=True)
    return out.stdout.strip().splitlines()[-1]


def load(url: str, *, body: dict[str, object] | None = None, token: str | None = None,
         concurrency: int = 1, duration: float = 5.0, requests: int | None = None,
         timeout: float = 120.0, ramp: float = 0.0) -> dict[str, object]:
    args = [sys.executable, "-m", "bench.loadgen", url, "-c", str(concurrency),
            "-d", str(duration), "--timeout", str(timeout), "--ramp", str(ramp)]
    if requests:
        args += ["-n", str(requests)]
    if body is not None:
        args += ["--body", json.dumps(body)]
    if token:
        args += ["-H", f"authorization: Bearer {token}"]
    out = subprocess.run(args, capture_output=True, text=True, cwd=ROOT, check=True)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def probe_ms(url: str, timeout: float = 10.0) -> float:
    """One GET on a fresh connection, as a load balancer's health check does, in ms (the
    full timeout if it does not answer). Not httpx.get: building its client costs ~45 ms."""
    parts = urlsplit(url)
    started = time.perf_counter()
    conn = http.client.HTTPConnection(parts.hostname or "127.0.0.1", parts.port, timeout=timeout)
    try:
        conn.request("GET", parts.path or "/")
        conn.getresponse().read()
    except OSError:
        return timeout * 1000
    finally:
        conn.close()
    return (time.perf_counter() - started) * 1000


def tree(pid: int) -> list[int]:
    """``pid`` and every process under it (a `serve --processes N` supervisor's children)."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = [], [pid]
    while todo:
        current = todo.pop()
        found.append(current)
        todo.extend(parents.get(current, []))
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU of one process so far."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    return sum(cpu_seconds(p) for p in tree(pid))


def tree_rss_kb(pid: int) -> int:
    return sum(rss_kb(p) for p in tree(pid))


def rss_kb(pid: int) -> int:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return 0
    for line in text.splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def machine() -> str:
    cpu = "unknown cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return (f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores ({cpu}), "
            f"Python {platform.python_version()}")


def table(rows: list[list[object]], header: list[str]) -> str:
    cells = [header] + [[str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    lines = [" | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    lines.insert(1, "-+-".join("-" * w for w in widths))
    return "\n".join(lines)


def tmpdir() -> Path:
    return Path(tempfile.mkdtemp(prefix="imagegate-bench-"))
