"""A small closed-loop HTTP/1.1 load generator: C keep-alive connections, each sending the
same request back to back. Run as its own process so it never shares a core's event loop
with the server it measures. Prints one JSON object.

    python -m bench.loadgen URL --body '{"x":1}' -H 'authorization: Bearer T' -c 16 -n 2000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from urllib.parse import urlsplit


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


async def read_response(reader: asyncio.StreamReader) -> int:
    status_line = await reader.readline()
    if not status_line:
        raise ConnectionError("closed")
    status = int(status_line.split()[1])
    length = 0
    chunked = False
    while True:
        line = await reader.readline()
        if line in (b"\r\n", b""):
            break
        name, _, value = line.decode("latin-1").partition(":")
        if name.lower() == "content-length":
            length = int(value)
        elif name.lower() == "transfer-encoding" and "chunked" in value.lower():
            chunked = True
    if chunked:
        while True:
            size = int((await reader.readline()).strip(), 16)
            await reader.readexactly(size + 2)
            if size == 0:
                break
    elif length:
        await reader.readexactly(length)
    return status


async def worker(host: str, port: int, request: bytes, deadline: float, budget: list[int],
                 latencies: list[float], statuses: dict[int, int], errors: list[str],
                 per_request: float) -> None:
    reader = writer = None
    while time.monotonic() < deadline and budget[0] > 0:
        budget[0] -= 1
        try:
            if writer is None:
                reader, writer = await asyncio.open_connection(host, port)
            start = time.perf_counter()
            writer.write(request)
            status = await asyncio.wait_for(read_response(reader), per_request)  # type: ignore[arg-type]
            latencies.append(time.perf_counter() - start)
            statuses[status] = statuses.get(status, 0) + 1
        except (OSError, ConnectionError, asyncio.IncompleteReadError, TimeoutError) as e:
            errors.append(type(e).__name__)
            if writer is not None:
                writer.close()
            reader = writer = None
    if writer is not None:
        writer.close()


async def run(url: str, body: bytes | None, headers: list[str], concurrency: int,
              requests: int, duration: float, per_request: float, ramp: float
              ) -> dict[str, object]:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    method = "POST" if body is not None else "GET"
    head = [f"{method} {path} HTTP/1.1", f"host: {host}:{port}", "connection: keep-alive"]
    head += headers
    if body is not None:
        head += ["content-type: application/json", f"content-length: {len(body)}"]
    request = ("\r\n".join(head) + "\r\n\r\n").encode() + (body or b"")
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors: list[str] = []
    budget = [requests]
    started = time.monotonic()
    deadline = started + duration
    tasks = []
    for i in range(concurrency):
        tasks.append(asyncio.create_task(worker(host, port, request, deadline, budget,
                                                latencies, statuses, errors, per_request)))
        if ramp and i % 100 == 99:
            await asyncio.sleep(ramp)
    await asyncio.gather(*tasks)
    elapsed = time.monotonic() - started
    return {
        "url": url, "concurrency": concurrency, "requests": len(latencies),
        "errors": len(errors), "error_kinds": sorted(set(errors)), "statuses": statuses,
        "seconds": round(elapsed, 3), "rps": round(len(latencies) / elapsed, 1),
        "p50_ms": round(percentile(latencies, 50) * 1000, 3),
        "p95_ms": round(percentile(latencies, 95) * 1000, 3),
        "p99_ms": round(percentile(latencies, 99) * 1000, 3),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("url")
    ap.add_argument("--body")
    ap.add_argument("-H", "--header", action="append", default=[])
    ap.add_argument("-c", "--concurrency", type=int, default=1)
    ap.add_argument("-n", "--requests", type=int, default=10**9)
    ap.add_argument("-d", "--duration", type=float, default=10.0)
    ap.add_argument("--timeout", type=float, default=120.0)
    ap.add_argument("--ramp", type=float, default=0.0, help="pause after each 100 connections")
    args = ap.parse_args()
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    result = asyncio.run(run(args.url, args.body.encode() if args.body else None, args.header,
                             args.concurrency, args.requests, args.duration, args.timeout,
                             args.ramp))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
