"""How the processes of one node (`imagegate serve --processes N`) can keep one request
rate per credential without Redis: what each way costs per request, and how close to the
limit it holds when N processes hammer one credential (evenly, or all the traffic on one
process, as one client's keep-alive connection does).

    python -m bench.ratelimit [--processes 2] [--seconds 5] [--limit 100]

Every store runs under `limits`' sliding-window counter, as in the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import tempfile
import threading
import time
from dataclasses import dataclass
from typing import Any

from limits import RateLimitItemPerSecond
from limits.aio.storage import MemoryStorage, RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter
from limits.storage import MemoryStorage as SyncMemoryStorage
from limits.strategies import SlidingWindowCounterRateLimiter as SyncLimiter

from bench.common import machine, table
from imagegate.core.accounts.node_limits import NodeMemoryStorage
from imagegate.core.node_memory import NodeMemory

REDIS = "async+redis://127.0.0.1:6379/0"
WARM = 1.0  # seconds of hammering before counting (the first window admits a burst)


@dataclass
class Result:
    hits: int
    accepted: int  # in the counted span
    cpu: float  # this process's CPU seconds over the run
    seconds: float


class SocketStorage:
    """The supervisor keeps the counters; each hit is a round trip over a Unix socket."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def hit(self, limit: int) -> bool:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_unix_connection(self.path)
        assert self.reader is not None
        self.writer.write(limit.to_bytes(4, "little"))
        return await self.reader.readexactly(1) == b"1"


def serve_counters(path: str, ready: threading.Event, stop: threading.Event,
                   cpu: list[float]) -> None:
    """The supervisor's side: a thread answering hits from one in-memory limiter."""
    limiter = SyncLimiter(SyncMemoryStorage())
    items: dict[int, Any] = {}

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while True:
            try:
                limit = int.from_bytes(await reader.readexactly(4), "little")
            except (asyncio.IncompleteReadError, ConnectionError):
                return
            item = items.get(limit) or items.setdefault(limit, RateLimitItemPerSecond(limit))
            writer.write(b"1" if limiter.hit(item, "credential", "k") else b"0")

    async def main() -> None:
        server = await asyncio.start_unix_server(handle, path)
        ready.set()
        started = time.thread_time()
        await asyncio.get_running_loop().run_in_executor(None, stop.wait)
        cpu.append(time.thread_time() - started)
        server.close()

    asyncio.run(main())


def hammer(kind: str, shared: Any, limit: int, start_at: float, seconds: float,
           out: Any) -> None:
    """One process: hit one credential's limit as fast as it can from ``start_at``."""
    async def run() -> Result:
        item = RateLimitItemPerSecond(limit)
        hit: Any
        if kind == "socket":
            remote = SocketStorage(shared)
            hit = lambda: remote.hit(limit)  # noqa: E731
        else:
            storage = {"memory": lambda: MemoryStorage(),
                       "node": lambda: NodeMemoryStorage(shared),
                       "redis": lambda: RedisStorage(REDIS, implementation="redispy",
                                                     key_prefix=shared)}[kind]()
            limiter = SlidingWindowCounterRateLimiter(storage)
            hit = lambda: limiter.hit(item, "credential", "k")  # noqa: E731
        await asyncio.sleep(max(0.0, start_at - time.time()))
        hits = accepted = 0
        cpu = time.process_time()
        began = time.time()
        end = start_at + WARM + seconds
        while (now := time.time()) < end:
            ok = await hit()
            hits += 1
            if ok and now >= start_at + WARM:
                accepted += 1
        return Result(hits, accepted, time.process_time() - cpu, time.time() - began)

    out.send(asyncio.run(run()))


def measure(kind: str, processes: int, busy: int, limit: int, seconds: float,
            shared: Any) -> tuple[list[Result], float]:
    """``busy`` of ``processes`` hammer; (their results, the supervisor thread's CPU)."""
    ctx = multiprocessing.get_context("spawn")
    stop, ready, server_cpu = threading.Event(), threading.Event(), []
    server = None
    if kind == "socket":
        server = threading.Thread(target=serve_counters, args=(shared, ready, stop, server_cpu))
        server.start()
        ready.wait()
    start_at = time.time() + 3.0  # every process started and waiting
    pipes, procs = [], []
    for _ in range(busy):
        mine, theirs = ctx.Pipe()
        proc = ctx.Process(target=hammer, args=(kind, shared, limit, start_at, seconds, theirs))
        proc.start()
        pipes.append(mine)
        procs.append(proc)
    results = [pipe.recv() for pipe in pipes]
    for proc in procs:
        proc.join()
    stop.set()
    if server is not None:
        server.join()
    return results, (server_cpu[0] if server_cpu else 0.0)


def redis_up() -> bool:
    try:
        socket.create_connection(("127.0.0.1", 6379), timeout=1).close()
        return True
    except OSError:
        return False


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--limit", type=int, default=100)
    args = ap.parse_args()
    n, limit = args.processes, args.limit
    memory = NodeMemory.create()
    sock_path = os.path.join(tempfile.mkdtemp(), "counters.sock")
    stores: dict[str, tuple[str, Any]] = {
        "each process its own counters (limits' MemoryStorage)": ("memory", None),
        "node shared memory (chosen)": ("node", memory),
        "the supervisor's counters, over a Unix socket": ("socket", sock_path),
    }
    if redis_up():
        stores["Redis (limits' RedisStorage, local)"] = ("redis", f"bench-{os.getpid()}")

    def run(kind: str, shared: Any, busy: int, each: int) -> tuple[list[Result], float]:
        if kind == "node":
            asyncio.run(NodeMemoryStorage(memory).reset())
        return measure(kind, n, busy, each, args.seconds, shared)

    costs = []
    for name, (kind, shared) in stores.items():
        results, server_cpu = run(kind, shared, n, 10**9)  # every hit admitted
        hits = sum(r.hits for r in results)
        costs.append([name, f"{hits / args.seconds:.0f}",
                      f"{sum(r.cpu for r in results) / hits * 1e6:.1f}",
                      f"{server_cpu / hits * 1e6:.1f}" if kind == "socket" else "-",
                      f"{sum(r.seconds for r in results) / hits * 1e6:.1f}"])
    accuracy = []
    cases = [("each process its own counters", "memory", None, n, limit, "even"),
             (f"a static split (limit/{n} each)", "memory", None, n, limit // n, "even"),
             (f"a static split (limit/{n} each)", "memory", None, 1, limit // n,
              "all on one process"),
             ("node shared memory (chosen)", "node", memory, n, limit, "even"),
             ("node shared memory (chosen)", "node", memory, 1, limit, "all on one process"),
             ("the supervisor over a Unix socket", "socket", sock_path, n, limit, "even")]
    if redis_up():
        cases.append(("Redis", "redis", f"bench-{os.getpid()}-a", n, limit, "even"))
    for name, kind, shared, busy, each, load in cases:
        results, _ = run(kind, shared, busy, each)
        admitted = sum(r.accepted for r in results) / args.seconds
        accuracy.append([name, load, f"{sum(r.hits for r in results) / args.seconds:.0f}",
                         f"{admitted:.1f}", f"{admitted / limit:.3f}x"])
    memory.close()
    print(f"{n} processes, {args.seconds:g}s counted after {WARM:g}s of warm-up; {machine()}")
    print(table(costs, ["store (no limit reached)", "hits/s, all processes", "CPU us/hit",
                        "+ supervisor CPU us/hit", "wall us/hit"]))
    print()
    print(f"one credential limited to {limit}/s, hammered by the processes:")
    print(table(accuracy, ["store", "load", "attempts/s", "admitted/s", "of the limit"]))


if __name__ == "__main__":
    main()
