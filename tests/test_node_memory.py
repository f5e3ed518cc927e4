"""The memory the processes of one node share (`serve --processes N`): one request rate for
real processes hammering it at once, and a table that never fails when it fills up."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from typing import Any

from limits import RateLimitItemPerSecond
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from imagegate.core.accounts.node_limits import NodeMemoryStorage
from imagegate.core.node_memory import SLOTS, NodeMemory, key_hash

LIMIT = 50
WARM, COUNTED = 1.5, 3.0  # past the first window, and long enough to average out a stall


def _hammer(memory: NodeMemory, start_at: float, out: Any) -> None:
    async def run() -> tuple[int, int]:
        limiter = SlidingWindowCounterRateLimiter(NodeMemoryStorage(memory))
        item = RateLimitItemPerSecond(LIMIT)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        attempts = admitted = 0
        while (now := time.time()) < start_at + WARM + COUNTED:
            attempts += 1
            if await limiter.hit(item, "credential", "c1") and now >= start_at + WARM:
                admitted += 1
        return attempts, admitted

    out.send(asyncio.run(run()))


def test_two_processes_hammering_one_limit_admit_it_within_ten_percent() -> None:
    memory = NodeMemory.create()
    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + 3.0
    pipes, procs = [], []
    for _ in range(2):
        mine, theirs = ctx.Pipe()
        proc = ctx.Process(target=_hammer, args=(memory, start_at, theirs))
        proc.start()
        pipes.append(mine)
        procs.append(proc)
    results = [pipe.recv() for pipe in pipes]
    for proc in procs:
        proc.join(10)
    memory.close()
    attempts = [a for a, _ in results]
    admitted = sum(n for _, n in results)
    assert min(attempts) > LIMIT * (WARM + COUNTED) * 4, attempts  # both far over the limit
    # counters kept per process would admit about twice the limit
    assert LIMIT * COUNTED * 0.9 <= admitted <= LIMIT * COUNTED * 1.1, (admitted, results)


def _count(memory: NodeMemory, start_at: float, times: int, out: Any) -> None:
    async def run() -> None:
        storage = NodeMemoryStorage(memory)
        await asyncio.sleep(max(0.0, start_at - time.time()))
        for _ in range(times):
            await storage.incr("credential/c1", 600)

    asyncio.run(run())
    out.send(times)


def test_no_count_is_lost_between_processes() -> None:
    """Both processes add at once; without the lock about one in fifty additions is lost
    to the other's read-modify-write."""
    memory = NodeMemory.create()
    ctx = multiprocessing.get_context("spawn")
    start_at = time.time() + 3.0
    pipes, procs = [], []
    for _ in range(2):
        mine, theirs = ctx.Pipe()
        proc = ctx.Process(target=_count, args=(memory, start_at, 40_000, theirs))
        proc.start()
        pipes.append(mine)
        procs.append(proc)
    sent = sum(pipe.recv() for pipe in pipes)
    for proc in procs:
        proc.join(10)
    try:
        assert asyncio.run(NodeMemoryStorage(memory).get("credential/c1")) == sent == 80_000
    finally:
        memory.close()


def test_a_full_table_drops_the_oldest_window_and_keeps_counting() -> None:
    memory = NodeMemory.create()
    try:
        now = 1_000_000.0
        with memory.locked():
            for i in range(SLOTS + 5_000):  # more live keys than slots
                at = memory.slot(key_hash(f"k{i}"), 60, now)
                memory.roll(at, now)
                memory.add(at, 1)
            assert memory.evictions > 0
            last = memory.find(key_hash(f"k{SLOTS + 4_999}"))
            assert last is not None and memory.roll(last, now) == (0, 1)
            # a minute and more later every window is over: slots are reused, none evicted
            evicted = memory.evictions
            later = now + 121
            for i in range(5_000):
                memory.slot(key_hash(f"new{i}"), 1, later)
            assert memory.evictions == evicted
    finally:
        memory.close()


def test_windows_move_forward_only() -> None:
    """A process that read the clock just before another moved the window on counts in
    the new window; it does not wipe it."""
    memory = NodeMemory.create()
    try:
        with memory.locked():
            at = memory.slot(key_hash("k"), 1, 100.2)
            memory.roll(at, 100.2)
            memory.add(at, 7)
            assert memory.roll(at, 101.1) == (7, 0)
            memory.add(at, 3)
            assert memory.roll(at, 100.99) == (7, 3)  # an earlier clock reading
            assert memory.roll(at, 101.5) == (7, 3)
    finally:
        memory.close()
