"""What the gateway adds to every call: the fake OpenAI upstream called directly, through
imagegate's full sync path (auth, validation, task row, upstream call, storage write,
billing), and a bare endpoint of the same server stack (FastAPI + uvicorn) as the ceiling.

    python -m bench.overhead [--duration 5] [--concurrency 1 16 64] [--processes N]
"""

from __future__ import annotations

import argparse
import sys

from bench.common import free_port, load, machine, process, table
from bench.upstream import BODY, KEY, gateway_with_fake


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--processes", type=int, default=1, help="imagegate serve --processes N")
    ap.add_argument("--upstreams", type=int, default=1, help="fake upstream processes")
    args = ap.parse_args()
    bare_port = free_port()
    rows: list[list[object]] = []
    summary: list[list[object]] = []
    with gateway_with_fake(processes=args.processes, upstreams=args.upstreams) as setup, process(
            [sys.executable, "-m", "bench.bare", str(bare_port)],
            ready=f"http://127.0.0.1:{bare_port}/docs"):
        targets = {
            "upstream direct": (f"{setup.fake_url}/v1/images/generations", KEY),
            "through imagegate": (f"{setup.gateway_url}/v1/images/generations", setup.token),
            "bare stack": (f"http://127.0.0.1:{bare_port}/v1/images/generations", "x"),
        }
        for c in args.concurrency:
            got = {}
            for name, (url, token) in targets.items():
                load(url, body=BODY, token=token, concurrency=c, duration=1)  # warm-up
                r = load(url, body=BODY, token=token, concurrency=c, duration=args.duration)
                got[name] = r
                bad = r["errors"] or set(r["statuses"]) - {"200"}
                rows.append([name, c, r["rps"], r["p50_ms"], r["p95_ms"], r["p99_ms"],
                             f"{r['statuses']} errors={r['errors']}" if bad else "ok"])
            direct, gw, bare = (got["upstream direct"], got["through imagegate"],
                                got["bare stack"])
            summary.append([
                c, round(float(gw["p50_ms"]) - float(direct["p50_ms"]), 2),
                round(float(gw["p99_ms"]) - float(direct["p99_ms"]), 2),
                f"{float(gw['rps']) / float(bare['rps']):.0%}",
                f"{float(gw['rps']) / float(direct['rps']):.0%}"])
    print(f"overhead benchmark, {args.duration:g}s per cell, gateway --processes "
          f"{args.processes}, {args.upstreams} fake upstream(s); {machine()}")
    print(table(rows, ["target", "conc", "req/s", "p50 ms", "p95 ms", "p99 ms", "status"]))
    print()
    print(table(summary, ["conc", "added p50 ms", "added p99 ms", "gateway/bare req/s",
                          "gateway/direct req/s"]))
    print("targets at concurrency 16: added p50 <= 3 ms, added p99 <= 15 ms, "
          "gateway >= 40% of bare")


if __name__ == "__main__":
    main()
