"""What the gateway adds to every call: the fake OpenAI upstream called directly, through
imagegate's full sync path (auth, validation, task row, upstream call, storage write,
billing), through the LiteLLM proxy (the peer, same fake upstream, same number of
processes), and a bare endpoint of the same server stack (FastAPI + uvicorn) as the ceiling.
Each gateway's CPU per request is read from /proc over the measured cell (all its processes).

    python -m bench.overhead [--duration 5] [--concurrency 1 16 64] [--processes N]
                             [--no-litellm]

The first run installs LiteLLM into bench/.litellm-venv (see bench/litellm_peer.py).
"""

from __future__ import annotations

import argparse
import os
import sys
from contextlib import ExitStack

from bench.common import free_port, load, machine, process, table, tree_cpu_seconds
from bench.litellm_peer import MASTER_KEY, litellm_proxy, version
from bench.upstream import BODY, KEY, gateway_with_fake


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--duration", type=float, default=5.0)
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 16, 64])
    ap.add_argument("--processes", type=int, default=1,
                    help="imagegate serve --processes N (and LiteLLM --num_workers N)")
    ap.add_argument("--upstreams", type=int, default=1, help="fake upstream processes")
    ap.add_argument("--no-litellm", action="store_true", help="leave the peer out")
    args = ap.parse_args()
    bare_port = free_port()
    rows: list[list[object]] = []
    summary: list[list[object]] = []
    with ExitStack() as stack:
        setup = stack.enter_context(gateway_with_fake(processes=args.processes,
                                                      upstreams=args.upstreams))
        stack.enter_context(process([sys.executable, "-m", "bench.bare", str(bare_port)],
                                    ready=f"http://127.0.0.1:{bare_port}/docs"))
        targets: dict[str, tuple[str, str, int | None]] = {
            "upstream direct": (f"{setup.fake_url}/v1/images/generations", KEY, None),
            "through imagegate": (f"{setup.gateway_url}/v1/images/generations", setup.token,
                                  setup.gateway_pid),
        }
        if not args.no_litellm:
            peer_url, peer_pid = stack.enter_context(litellm_proxy(
                f"{setup.fake_url}", str(BODY["model"]), KEY, workers=args.processes))
            targets["through LiteLLM"] = (f"{peer_url}/v1/images/generations", MASTER_KEY,
                                          peer_pid)
        targets["bare stack"] = (f"http://127.0.0.1:{bare_port}/v1/images/generations", "x",
                                 None)
        for c in args.concurrency:
            got = {}
            cpu: dict[str, float] = {}
            for name, (url, token, pid) in targets.items():
                load(url, body=BODY, token=token, concurrency=c, duration=1)  # warm-up
                before = tree_cpu_seconds(pid) if pid else 0.0
                r = load(url, body=BODY, token=token, concurrency=c, duration=args.duration)
                if pid:
                    cpu[name] = (tree_cpu_seconds(pid) - before) / max(1, int(r["requests"]))
                got[name] = r
                bad = r["errors"] or set(r["statuses"]) - {"200"}
                rows.append([name, c, r["rps"], r["p50_ms"], r["p95_ms"], r["p99_ms"],
                             f"{cpu[name] * 1000:.2f}" if name in cpu else "",
                             f"{r['statuses']} errors={r['errors']}" if bad else "ok"])
            direct, gw, bare = (got["upstream direct"], got["through imagegate"],
                                got["bare stack"])
            line = [c, round(float(gw["p50_ms"]) - float(direct["p50_ms"]), 2),
                    round(float(gw["p99_ms"]) - float(direct["p99_ms"]), 2),
                    f"{float(gw['rps']) / float(bare['rps']):.0%}",
                    f"{float(gw['rps']) / float(direct['rps']):.0%}"]
            if "through LiteLLM" in got:
                peer = got["through LiteLLM"]
                line += [f"{float(gw['rps']) / max(float(peer['rps']), 1e-9):.1f}x",
                         f"{cpu['through LiteLLM'] / cpu['through imagegate']:.1f}x"]
            summary.append(line)
    print(f"overhead benchmark, {args.duration:g}s per cell, gateway --processes "
          f"{args.processes}, {args.upstreams} fake upstream(s)"
          + ("" if args.no_litellm else f", LiteLLM {version()} --num_workers {args.processes}")
          + f"; {machine()}; load average {' '.join(f'{x:.1f}' for x in os.getloadavg())}")
    print(table(rows, ["target", "conc", "req/s", "p50 ms", "p95 ms", "p99 ms",
                       "CPU ms/req", "status"]))
    print()
    header = ["conc", "added p50 ms", "added p99 ms", "gateway/bare req/s",
              "gateway/direct req/s"]
    if not args.no_litellm:
        header += ["imagegate/LiteLLM req/s", "LiteLLM/imagegate CPU per req"]
    print(table(summary, header))
    print("target: imagegate >= 10x LiteLLM's requests/s at concurrency 16; gateway CPU "
          "<= 2.0 ms per sync request")


if __name__ == "__main__":
    main()
