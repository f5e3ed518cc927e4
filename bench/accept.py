"""How connections spread over the processes of `serve --processes N`: one listening socket
shared by all of them (what uvicorn --workers and gunicorn do) against a socket per
process with SO_REUSEPORT (what imagegate does). Each round opens C connections at once, as
a load balancer or a client pool does after a quiet spell, and asks each which process
accepted it.

    python -m bench.accept [--processes 2] [--connections 16] [--rounds 20]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import socket
import statistics
import time
from collections import Counter
from typing import Any

import uvicorn

from bench.common import free_port, machine, table
from imagegate.cli.processes import Listener, _bind


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    body = str(os.getpid()).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


def serve(listener: Listener) -> None:
    config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(listener.sockets())


async def ask(port: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n")
    data = await reader.read()
    writer.close()
    return int(data.rsplit(b"\r\n", 1)[1])


async def rounds(port: int, connections: int, count: int) -> list[Counter[int]]:
    found = []
    for _ in range(count):
        found.append(Counter(await asyncio.gather(*(ask(port) for _ in range(connections)))))
        await asyncio.sleep(0.2)  # a quiet spell: every process back in its event loop
    return found


def measure(mode: str, processes: int, connections: int, count: int) -> list[Counter[int]]:
    port = free_port()
    if mode == "shared":
        sock = _bind("127.0.0.1", port, reuse_port=False)
        sock.listen(1024)
        listener = Listener("127.0.0.1", port, 1024, shared=sock)
    else:
        listener = Listener.open("127.0.0.1", port, 1024)
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=serve, args=(listener,)) for _ in range(processes)]
    for proc in procs:
        proc.start()
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:  # every process answering
            try:
                seen = asyncio.run(rounds(port, 4 * processes, 3))
            except OSError:  # nobody listening yet
                time.sleep(0.2)
                continue
            if len(set().union(*seen)) == processes:
                break
        return asyncio.run(rounds(port, connections, count))
    finally:
        for proc in procs:
            proc.terminate()
            proc.join(10)
        listener.close()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--connections", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=20)
    args = ap.parse_args()
    rows = []
    fair = args.connections / args.processes
    modes = {"one shared socket": "shared"}
    if hasattr(socket, "SO_REUSEPORT"):
        modes["a socket per process, SO_REUSEPORT (imagegate)"] = "reuseport"
    for name, mode in modes.items():
        found = measure(mode, args.processes, args.connections, args.rounds)
        busiest = [max(c.values()) for c in found]
        idle = sum(len(c) < args.processes for c in found)
        rows.append([name, f"{statistics.mean(busiest):.1f}", max(busiest), f"{fair:g}",
                     f"{idle}/{args.rounds}"])
    print(f"{args.rounds} rounds of {args.connections} connections opened at once, "
          f"{args.processes} processes; {machine()}")
    print(table(rows, ["accepting", "busiest process, mean", "worst", "even share",
                       "rounds with a process left idle"]))


if __name__ == "__main__":
    main()
