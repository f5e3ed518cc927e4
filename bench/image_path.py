"""The image path: a 4 MB PNG from the upstream as b64 -> checked, stored -> served from
/files, in MB/s, against reading the same file from disk.

    python -m bench.image_path [--count 20] [--concurrency 1] [--processes 1]
"""

from __future__ import annotations

import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from bench.common import machine, table, tree_cpu_seconds
from bench.upstream import BODY, gateway_with_fake

MB = 1024 * 1024


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--size-mb", type=float, default=4.0)
    ap.add_argument("--processes", type=int, default=1, help="imagegate serve --processes N")
    ap.add_argument("--concurrency", type=int, default=1, help="images in flight at once")
    args = ap.parse_args()
    with gateway_with_fake(processes=args.processes) as setup:
        setup.fault(image_bytes=int(args.size_mb * MB))
        auth = {"authorization": f"Bearer {setup.token}"}
        limits = httpx.Limits(max_connections=args.concurrency)
        with httpx.Client(timeout=120, headers=auth, limits=limits) as client:
            client.post(f"{setup.gateway_url}/v1/images/generations", json=BODY)  # warm-up
            total_in = 0
            cpu = tree_cpu_seconds(setup.gateway_pid)
            t = time.perf_counter()

            def ingest_one(_: int) -> str:
                r = client.post(f"{setup.gateway_url}/v1/images/generations", json=BODY)
                r.raise_for_status()
                return str(r.json()["data"][0]["url"])

            with ThreadPoolExecutor(args.concurrency) as pool:
                urls = list(pool.map(ingest_one, range(args.count)))
            ingest = time.perf_counter() - t
            cpu = tree_cpu_seconds(setup.gateway_pid) - cpu
            t = time.perf_counter()
            for url in urls:
                total_in += len(client.get(url).content)
            serve = time.perf_counter() - t
        key = urls[0].split("/files/", 1)[1]
        path = setup.data / "d" / "files" / key
        t = time.perf_counter()
        for _ in range(args.count):
            with path.open("rb") as f:
                while f.read(MB):
                    pass
        disk = time.perf_counter() - t
    size = total_in / args.count / MB
    rows = [
        ["upstream b64 -> gateway -> stored (sync request)", f"{size * args.count / ingest:.1f}",
         f"{ingest / args.count * 1000:.0f}"],
        ["served from /files", f"{total_in / MB / serve:.1f}", f"{serve / args.count * 1000:.1f}"],
        ["read from disk", f"{size * args.count / disk:.1f}", f"{disk / args.count * 1000:.2f}"],
    ]
    print(f"image path: {args.count} images of {size:.1f} MB, {args.concurrency} at a time, "
          f"--processes {args.processes}; {machine()}")
    print(table(rows, ["stage", "MB/s", "ms per image"]))
    print(f"gateway CPU per image stored: {cpu / args.count * 1000:.1f} ms")
    print(f"serving / disk: {(total_in / MB / serve) / (size * args.count / disk):.0%}")


if __name__ == "__main__":
    main()
