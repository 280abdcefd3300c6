"""Throughput and latency of smsgw against a bare aiohttp proxy, measured in the same run.

Each proxy runs in its own process (with its own vendor); the load comes from this process over
loopback, a fixed number of requests at a fixed concurrency, bounded in time. Prints a ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import ssl
import statistics
import subprocess
import sys
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.servers import PASSWORD, USER

FORM = {"To": "+37255512367", "From": "MyBank", "Body": "Your code is 123456"}


async def load(
    port: int, cafile: str, requests: int, concurrency: int, deadline_s: float
) -> dict[str, float]:
    ctx = ssl.create_default_context(cafile=cafile)
    ctx.check_hostname = False
    url = f"https://127.0.0.1:{port}/2010-04-01/Accounts/{USER}/Messages.json"
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    remaining = requests
    stop_at = time.monotonic() + deadline_s
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(ssl=ctx, limit=concurrency),
        headers={"Authorization": "Basic " + base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()},
    ) as session:

        async def worker() -> None:
            nonlocal remaining
            while remaining > 0 and time.monotonic() < stop_at:
                remaining -= 1
                t0 = time.perf_counter()
                async with session.post(url, data=FORM) as resp:
                    await resp.read()
                    statuses[resp.status] = statuses.get(resp.status, 0) + 1
                latencies.append(time.perf_counter() - t0)

        for _ in range(concurrency):  # warm-up: connections and handshakes
            async with session.post(url, data=FORM) as resp:
                await resp.read()
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "requests": len(latencies),
        "rps": len(latencies) / elapsed,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] * 1000,
        "ok": statuses.get(201, 0),
    }


def measure(mode: str, args: argparse.Namespace) -> dict[str, float]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "bench.servers", mode],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
    )
    try:
        assert proc.stdout is not None
        port, cafile = proc.stdout.readline().split()
        return asyncio.run(load(int(port), cafile, args.requests, args.concurrency, args.deadline))
    finally:
        proc.stdin.close()  # type: ignore[union-attr]
        proc.wait(timeout=10)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--deadline", type=float, default=60.0)
    args = parser.parse_args()
    bare = measure("bare", args)
    gw = measure("gateway", args)
    for name, r in (("bare aiohttp proxy", bare), ("smsgw", gw)):
        print(
            f"{name:20s} {r['requests']:6.0f} req  {r['rps']:8.1f} req/s  p50 {r['p50_ms']:6.2f} ms"
            f"  p99 {r['p99_ms']:6.2f} ms  201s {r['ok']:.0f}"
        )
    print(f"smsgw/bare throughput ratio: {gw['rps'] / bare['rps']:.2f}")


if __name__ == "__main__":
    main()
