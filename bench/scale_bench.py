"""Scale (issue 7, workload 6): writes/s and memory as the log grows, restart time at
that size, and 5 nodes against 3.

    .venv/bin/python bench/scale_bench.py              # 1,000,000 entries on 3 nodes, 200,000 on 5
    .venv/bin/python bench/scale_bench.py --quick      # 100,000 and 40,000
    .venv/bin/python bench/scale_bench.py --json FILE

A real cluster on 127.0.0.1 (fsync on, snapshots every 100,000 entries, the node
default) is written to by 256 concurrent clients (100-byte values on 10,000 keys, so
the state stays small and the log is what grows). After every tenth of the entries
it records the write rate of that tenth and each node's resident memory (VmRSS).
Then every node is stopped (SIGTERM) and started again, and the restart time is
taken until a write commits. `--json` writes:

    {"scale": {"<nodes>": {"entries": N, "segments": [{"entries", "writes_per_s",
     "rss_mb": {node: MB}}...], "restart_s": s, "rss_after_restart_mb": {...}}}}
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from _report import scale_markdown  # noqa: E402
from raftflow.cluster.local import launcher  # noqa: E402
from raftflow.cluster.client import AsyncClient, RaftflowError, run_sync  # noqa: E402

CLIENTS = 256
CLIENTS_PER_CONNECTION = 16
KEYS = 10_000
VALUE = b"v" * 100


def rss_mb(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


async def write(cluster: launcher.ClusterFile, count: int, start: int) -> float:
    """`count` puts by CLIENTS concurrent writers; the seconds it took."""
    connections = [AsyncClient(cluster.endpoints, credentials=cluster.credentials(), timeout=30.0, no_leader_timeout=10.0)
                   for _ in range(CLIENTS // CLIENTS_PER_CONNECTION)]
    next_n = start
    end = start + count

    async def writer(n: int) -> None:
        nonlocal next_n
        client = connections[n % len(connections)]
        while next_n < end:
            i = next_n
            next_n += 1
            await client.put(f"k{i % KEYS}", VALUE)

    started = time.perf_counter()
    try:
        await asyncio.gather(*(writer(n) for n in range(CLIENTS)))
    finally:
        await asyncio.gather(*(c.close() for c in connections))
    return time.perf_counter() - started


def measure(nodes: int, entries: int, workdir: str) -> dict:
    cluster = launcher.create(os.path.join(workdir, f"n{nodes}"), nodes, 0)
    segments = []
    try:
        for m in cluster.members:
            launcher.start_node(cluster, m)
        with cluster.client(timeout=10.0) as client:
            launcher.wait_for_leader(cluster, lambda e: client.cluster_status(timeout=0.5), timeout=30)
        step = max(1, entries // 10)
        for done in range(0, entries, step):
            seconds = run_sync(write(cluster, step, done))
            segment = {"entries": done + step, "writes_per_s": step / seconds,
                       "rss_mb": {m.id: round(rss_mb(m.pid), 1) for m in cluster.members}}
            segments.append(segment)
            print(f"  {nodes} nodes: {done + step:>9,} entries, {segment['writes_per_s']:8,.0f} writes/s, "
                  f"RSS MB {segment['rss_mb']}", file=sys.stderr, flush=True)
        for m in cluster.members:
            launcher.stop_node(cluster, m)
        started = time.perf_counter()
        for m in cluster.members:
            launcher.start_node(cluster, m)
        run_sync(_first_write(cluster))
        restart_s = time.perf_counter() - started
        after = {m.id: round(rss_mb(m.pid), 1) for m in cluster.members}
        print(f"  {nodes} nodes: restart to the first committed write {restart_s:.2f} s, RSS MB {after}",
              file=sys.stderr, flush=True)
        return {"entries": entries, "segments": segments, "restart_s": restart_s, "rss_after_restart_mb": after}
    finally:
        for m in cluster.members:
            launcher.stop_node(cluster, m, kill=True)


async def _first_write(cluster: launcher.ClusterFile) -> None:
    deadline = time.monotonic() + 120
    async with AsyncClient(cluster.endpoints, credentials=cluster.credentials(), timeout=5.0, no_leader_timeout=5.0) as client:
        while True:
            try:
                await client.put("after-restart", VALUE)
                return
            except RaftflowError:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.05)  # the nodes are still replaying their logs


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100,000 entries on 3 nodes, 40,000 on 5")
    parser.add_argument("--entries", type=int, help="entries on 3 nodes (default 1,000,000; 5 nodes get a fifth)")
    parser.add_argument("--json", metavar="FILE", help="also write the raw figures here")
    args = parser.parse_args()
    entries = args.entries or (100_000 if args.quick else 1_000_000)
    if entries < 10:
        parser.error(f"--entries {entries}: at least 10")
    workdir = tempfile.mkdtemp(prefix="raftflow-scale-")
    results = {}
    for nodes, count in ((3, entries), (5, max(10, entries // 5 if not args.quick else entries * 2 // 5))):
        print(f"raftflow scale: {nodes} nodes, {count:,} entries...", file=sys.stderr, flush=True)
        results[str(nodes)] = measure(nodes, count, workdir)
    print(scale_markdown(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"scale": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
