"""The full sync path (auth, validation, task row, upstream call, storage write, billing)
with `imagegate serve --processes N` for several N in one run: requests/s and latency at
each concurrency, the gateway's CPU per request (all its processes), and the speed-up over
one process. The fake upstreams and load generators run beside it: give the machine
enough cores for N + upstreams + load generators, or the numbers measure the sharing.

    python -m bench.scaling [--processes 1 2 4 8] [--concurrency 16 64] [--duration 10]
                            [--upstreams K] [--loadgens L] [--postgres]

SQLite by default; --postgres gives each gateway a fresh database on the local server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import subprocess
import sys
import uuid
from collections.abc import Iterator

from bench.common import ROOT, load, machine, table, tree_cpu_seconds
from bench.intake import PG_ADMIN, _pg
from bench.upstream import BODY, KEY, gateway_with_fake


@contextlib.contextmanager
def database(postgres: bool) -> Iterator[dict[str, str]]:
    """The gateway's database settings: SQLite in its data dir, or a fresh PostgreSQL one."""
    if not postgres:
        yield {}
        return
    name = f"ig_bench_{uuid.uuid4().hex[:8]}"
    asyncio.run(_pg(f'CREATE DATABASE "{name}"'))
    try:
        base = PG_ADMIN.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://")
        yield {"IMAGEGATE_DATABASE_URL": f"{base}/{name}"}
    finally:
        asyncio.run(_pg(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def load_parallel(url: str, token: str, concurrency: int, duration: float, loadgens: int
                  ) -> dict[str, float]:
    """``loadgens`` load generator processes sharing ``concurrency`` connections: total
    requests/s; p50 and p99 are the worst of theirs."""
    shares = [concurrency // loadgens + (i < concurrency % loadgens) for i in range(loadgens)]
    procs = [subprocess.Popen(
        [sys.executable, "-m", "bench.loadgen", url, "-c", str(share), "-d", str(duration),
         "--body", json.dumps(BODY), "-H", f"authorization: Bearer {token}"],
        stdout=subprocess.PIPE, text=True, cwd=ROOT) for share in shares if share]
    results = [json.loads(p.communicate()[0]) for p in procs]
    return {"requests": sum(r["requests"] for r in results),
            "rps": sum(r["rps"] for r in results),
            "errors": sum(r["errors"] for r in results),
            "bad": sum(n for r in results for s, n in r["statuses"].items() if s != "200"),
            "p50_ms": max(r["p50_ms"] for r in results),
            "p99_ms": max(r["p99_ms"] for r in results)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2, 4, 8])
    ap.add_argument("--concurrency", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--upstreams", type=int, default=0,
                    help="fake upstream processes [default: half the gateway processes]")
    ap.add_argument("--loadgens", type=int, default=0,
                    help="load generator processes [default: a quarter of the gateway's]")
    ap.add_argument("--postgres", action="store_true", help="PostgreSQL instead of SQLite")
    args = ap.parse_args()
    rows: list[list[object]] = []
    rps: dict[tuple[int, int], float] = {}
    direct: dict[int, float] = {}
    for n in args.processes:
        upstreams = args.upstreams or max(1, math.ceil(n / 2))
        loadgens = args.loadgens or max(1, n // 4)
        with database(args.postgres) as db_env, gateway_with_fake(
                processes=n, upstreams=upstreams, max_connections=max(args.concurrency) * 2,
                extra_env=db_env) as setup:
            url = f"{setup.gateway_url}/v1/images/generations"
            load_parallel(url, setup.token, max(args.concurrency), 2, loadgens)  # warm-up
            for c in args.concurrency:
                if c not in direct:  # what one fake upstream serves alone, for reference
                    direct[c] = float(load(f"{setup.fake_url}/v1/images/generations",
                                           body=BODY, token=KEY, concurrency=c,
                                           duration=min(args.duration, 3))["rps"])
                before = tree_cpu_seconds(setup.gateway_pid)
                r = load_parallel(url, setup.token, c, args.duration, loadgens)
                cpu = tree_cpu_seconds(setup.gateway_pid) - before
                rps[(n, c)] = r["rps"]
                rows.append([n, upstreams, loadgens, c, f"{r['rps']:.0f}", r["p50_ms"],
                             r["p99_ms"], f"{cpu / max(1, r['requests']) * 1000:.2f}",
                             "ok" if not (r["errors"] or r["bad"])
                             else f"errors={r['errors']:.0f} non-200={r['bad']:.0f}"])
    print(f"scaling benchmark, {'PostgreSQL' if args.postgres else 'SQLite'}, "
          f"{args.duration:g}s per cell; {machine()}")
    print(table(rows, ["processes", "upstreams", "loadgens", "conc", "req/s", "p50 ms",
                       "p99 ms", "gateway CPU ms/req", "status"]))
    print()
    first = args.processes[0]
    summary = [[n, *(f"{rps[(n, c)] / rps[(first, c)]:.2f}x "
                     f"({rps[(n, c)] / rps[(first, c)] / (n / first):.0%})"
                     for c in args.concurrency)] for n in args.processes]
    print(table(summary, ["processes", *(f"speed-up at c={c} (per process)"
                                         for c in args.concurrency)]))
    print("one fake upstream alone: " + ", ".join(f"{direct[c]:.0f} req/s at c={c}"
                                                   for c in args.concurrency))


if __name__ == "__main__":
    main()
