"""Closed-loop write load against a raftflow cluster: N concurrent clients, each
putting 100-byte values one after another; prints one JSON line of figures.

    python bench/_loadgen.py --endpoints A,B,C --clients 64 --seconds 5

Clients share connections: every 16 of them multiplex their commands on one
AsyncClient (one session, one stream), as a service with many users would.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _report import percentile, quantiles_ms  # noqa: E402
from raftflow.cluster.client import AsyncClient, Credentials  # noqa: E402

CLIENTS_PER_CONNECTION = 16


async def run(endpoints: list[str], clients: int, seconds: float, value_bytes: int, credentials: Credentials) -> dict:
    connections = [
        AsyncClient(endpoints, credentials=credentials, timeout=30.0, no_leader_timeout=10.0)
        for _ in range(max(1, (clients + CLIENTS_PER_CONNECTION - 1) // CLIENTS_PER_CONNECTION))
    ]
    value = b"v" * value_bytes
    latencies: list[float] = []
    errors = 0
    warmup_end = time.perf_counter() + min(1.0, seconds / 4)
    end = warmup_end + seconds
    counted_from = None

    async def one(n: int) -> None:
        nonlocal errors
        client = connections[n % len(connections)]
        i = 0
        while True:
            now = time.perf_counter()
            if now >= end:
                return
            started = now
            try:
                await client.put(f"c{n}-{i % 1000}", value)
            except Exception:  # noqa: BLE001 (counted and reported)
                errors += 1
                continue
            done = time.perf_counter()
            if started >= warmup_end:
                latencies.append(done - started)
            i += 1

    # Open the sessions before the clock starts.
    await asyncio.gather(*(c.put("warmup", value) for c in connections))
    counted_from = warmup_end
    await asyncio.gather(*(one(n) for n in range(clients)))
    elapsed = end - counted_from
    for c in connections:
        await c.close()
    return {
        "clients": clients, "ops": len(latencies), "ops_per_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.50) * 1000, "p99_ms": percentile(latencies, 0.99) * 1000,
        "errors": errors, "quantiles_ms": quantiles_ms(latencies),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--endpoints", required=True)
    parser.add_argument("--dir", required=True, help="the cluster folder: its CA and admin token (or plaintext)")
    parser.add_argument("--clients", type=int, default=1)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--value-bytes", type=int, default=100)
    args = parser.parse_args()
    try:  # the same event loop the nodes use when it is installed (raftflow[fast])
        import uvloop  # noqa: PLC0415

        uvloop.install()
    except ImportError:
        pass
    credentials = Credentials.from_cluster_dir(args.dir)
    result = asyncio.run(run(args.endpoints.split(","), args.clients, args.seconds, args.value_bytes, credentials))
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
