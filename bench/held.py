"""Thousands of held requests: N concurrent synchronous requests against an upstream that
answers after S seconds. Every one must succeed, the gateway's memory must grow by less
than 80 KB per held request, and a health check during the hold (once every request is
waiting on the upstream) must answer in < 50 ms.

    python -m bench.held [--requests 5000] [--upstream-seconds 30]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import threading
import time

import httpx

from bench.common import ROOT, machine, probe_ms, table, tree_rss_kb
from bench.upstream import BODY, gateway_with_fake

WARM_UP = 20


def open_files(needed: int) -> None:
    """A held request takes two sockets in the gateway (its client's and its upstream's) and
    the load generator holds the other end of one: raise the open-file limit the processes
    inherit (an operator's LimitNOFILE / ulimit -n; containers default far higher)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard != resource.RLIM_INFINITY and hard < needed:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (needed, needed))
        except (ValueError, OSError):
            print(f"open-file limit {hard} < {needed} needed: raise ulimit -n, or spread the "
                  "requests over more --processes (each has its own limit)", file=sys.stderr)
    elif soft < needed:
        resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=5000)
    ap.add_argument("--upstream-seconds", type=float, default=30.0)
    ap.add_argument("--processes", type=int, default=1, help="imagegate serve --processes N")
    args = ap.parse_args()
    n, hold = args.requests, args.upstream_seconds
    # per gateway process 2n/N sockets; the fake and the load generator n each
    open_files(max(2 * n // args.processes, n) + 1024)
    with gateway_with_fake(max_connections=n + 100, timeout=hold * 4,
                           processes=args.processes) as setup:
        # warm the whole path (pools, caches, imports) before taking the baseline
        for _ in range(WARM_UP):
            httpx.post(f"{setup.gateway_url}/v1/images/generations", json=BODY, timeout=30,
                       headers={"authorization": f"Bearer {setup.token}"})
        time.sleep(1)
        baseline = tree_rss_kb(setup.gateway_pid)
        setup.fault(delay=hold)
        loader = subprocess.Popen(
            [sys.executable, "-m", "bench.loadgen", f"{setup.gateway_url}/v1/images/generations",
             "--body", json.dumps(BODY), "-H", f"authorization: Bearer {setup.token}",
             "-c", str(n), "-n", str(n), "-d", str(hold * 6), "--timeout", str(hold * 5),
             "--ramp", "0.1"], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        peak = baseline
        health: list[float] = []
        stop = threading.Event()

        def watch() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, tree_rss_kb(setup.gateway_pid))
                time.sleep(0.2)

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        started = time.monotonic()

        def held() -> int:
            return int(httpx.get(f"{setup.fake_url}/__fake__/count", timeout=30)
                       .json()["requests"]) - WARM_UP

        # "during the hold": once every request waits on the upstream (or, if admission
        # is slower than that, at 80% of the upstream's delay, and the table says so)
        while held() < n and time.monotonic() - started < hold * 0.8:
            time.sleep(0.25)
        all_held_after = time.monotonic() - started
        held_at_probe = held()
        for _ in range(20):
            health.append(probe_ms(f"{setup.gateway_url}/healthz"))
            time.sleep(0.1)
        out, _ = loader.communicate()
        stop.set()
        watcher.join()
    result = json.loads(out)
    grown = peak - baseline
    rows = [
        ["requests sent / succeeded", f"{n} / {result['statuses'].get('200', 0)}"],
        ["errors", f"{result['errors']} {result['error_kinds']} {result['statuses']}"],
        ["all held upstream after (s)", f"{all_held_after:.1f}" if held_at_probe >= n
         else f"not yet ({held_at_probe} held)"],
        ["wall time (s)", result["seconds"]],
        ["latency p50 / p99 (s)", f"{result['p50_ms'] / 1000:.1f} / "
                                  f"{result['p99_ms'] / 1000:.1f}"],
        ["gateway RSS baseline / peak (MB)", f"{baseline / 1024:.0f} / {peak / 1024:.0f}"],
        ["memory per held request (KB)", f"{grown / n:.1f}"],
        ["/healthz during the hold: median / max (ms)",
         f"{statistics.median(health):.1f} / {max(health):.1f}"],
    ]
    print(f"held requests: {n} concurrent, upstream answers after {hold:g}s; {machine()}")
    print(table(rows, ["measure", "value"]))
    ok = (result["statuses"].get("200", 0) == n and grown / n < 80 and max(health) < 50)
    print(f"targets (all succeed, < 80 KB each, health < 50 ms): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
