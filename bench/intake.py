"""Async intake: submissions per second with "async": true (each task durable before the
answer), on SQLite and on PostgreSQL. Workers are off so only intake is measured.

    python -m bench.intake [--duration 5] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import uuid

import asyncpg

from bench.common import (
    BIG_LIMITS,
    create_token,
    free_port,
    imagegate,
    load,
    machine,
    process,
    table,
    tmpdir,
    tree_cpu_seconds,
)

PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"


async def _pg(sql: str) -> None:
    conn = await asyncpg.connect(PG_ADMIN)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def measure(database_url: str | None, duration: float, concurrency: int, processes: int = 1
            ) -> dict[str, object]:
    data = tmpdir()
    port = free_port()
    env = {**BIG_LIMITS, "IMAGEGATE_WORKERS": "0"}
    if database_url:
        env["IMAGEGATE_DATABASE_URL"] = database_url
    with process(imagegate("serve", "--sandbox", "--port", str(port), "--data-dir", str(data),
                           "--processes", str(processes)),
                 env=env, ready=f"http://127.0.0.1:{port}/healthz", ready_timeout=60) as gateway:
        token = create_token(data, env)
        url = f"http://127.0.0.1:{port}/v1/images/generations"
        body = {"model": "nano-banana", "prompt": "intake", "async": True}
        load(url, body=body, token=token, concurrency=concurrency, duration=1)  # warm-up
        before = tree_cpu_seconds(gateway.pid)
        result = load(url, body=body, token=token, concurrency=concurrency, duration=duration)
        cpu = tree_cpu_seconds(gateway.pid) - before
        return {**result, "cpu_ms": round(cpu / max(1, int(result["requests"])) * 1000, 3)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--processes", type=int, default=1, help="imagegate serve --processes N")
    args = ap.parse_args()
    rows = []
    sqlite = measure(None, args.duration, args.concurrency, args.processes)
    rows.append(["SQLite", sqlite["rps"], sqlite["cpu_ms"], sqlite["p50_ms"], sqlite["p99_ms"],
                 sqlite["errors"], sqlite["statuses"]])
    name = f"ig_bench_{uuid.uuid4().hex[:8]}"
    try:
        asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
        pg = measure(f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}", args.duration,
                     args.concurrency, args.processes)
        rows.append(["PostgreSQL", pg["rps"], pg["cpu_ms"], pg["p50_ms"], pg["p99_ms"],
                     pg["errors"], pg["statuses"]])
    finally:
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    print(f"async intake, concurrency {args.concurrency}, {args.duration:g}s each, "
          f"--processes {args.processes}; {machine()}; load average "
          + " ".join(f"{x:.1f}" for x in os.getloadavg()))
    print(table(rows, ["database", "submissions/s", "gateway CPU ms/submission", "p50 ms",
                       "p99 ms", "errors", "statuses"]))
    print("targets: >= 2000/s on SQLite, >= 1000/s on PostgreSQL, <= 0.5 ms of gateway CPU "
          "per submission")


if __name__ == "__main__":
    main()
