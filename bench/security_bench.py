"""What TLS plus bearer tokens cost: the same writes and sagas on a 3-node cluster
secured (the default) and in plaintext (`launcher.create(..., insecure=True)`: no
certificates, no tokens), measured in the same run on this machine.

    .venv/bin/python bench/security_bench.py                  # 3 rounds, 5 s per write point
    .venv/bin/python bench/security_bench.py --quick          # 3 rounds, 2 s per point, 300 sagas
    .venv/bin/python bench/security_bench.py --rounds 5 --json /tmp/security.json
    .venv/bin/python bench/security_bench.py --profile /tmp/prof   # + a 64-client run per mode under py-spy

The modes: "tls" is what `raftflow cluster up` makes (clients over TLS with the admin
token on every call, checked by each RPC's guard; peers over mutual TLS), "plaintext"
the same cluster made with insecure=True. Each measurement starts a fresh 3-node
cluster (fsync on, the default) in a fresh temporary folder, and stops it after:
- writes/s and p50/p99 at 1 and 64 closed-loop clients: 100-byte puts from a separate
  load-generator process (bench/_loadgen.py, as the cluster bench's), and at 64 the
  nodes' CPU per write (their CPU over the whole load-generator run, warm-up included,
  over the writes it made at its measured rate: an estimate, made alike in both modes);
- sagas/s: N order sagas started at once and waited for, with one worker process (the
  workflow bench's raftflow saga: RaftflowSaga.batch after 20 warm-up sagas), and
  the CPU per saga in the nodes and in the worker plus this process.

Noise on a small machine is as large as the effect looked for, so the modes take
turns: each round measures writes in plaintext then with TLS, then sagas likewise
(A B A B ...). The figure per mode is the median over the rounds; the cost is how much
lower TLS's rate is (or how much higher its latency or CPU), in % of plaintext's median,
negative when TLS did better, and it is shown round by round too. The aim: TLS + tokens
at most 15% lower on every rate.

--json FILE: {"rounds", "seconds", "sagas", "cpus", "date", "load_average": [start, end],
"kinds": {kind: label}, "runs": {kind: {"plaintext": [run, ...], "tls": [...]}},
"summary": {kind: {field: {"plaintext", "tls", "cost_pct", "round_cost_pct": [...]}}},
"aim_cost_pct"}, the kinds being writes_1, writes_64 and sagas, a run {"rate", "p50_ms",
"p99_ms", "errors" (failed puts; for sagas, wrong outcomes), "node_cpu_ms" (writes_64
and sagas) and "client_cpu_ms" (sagas), CPU ms per write or saga}.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [os.path.dirname(BENCH), BENCH]

from _report import SECURITY_AIM_PCT, SECURITY_MODES, percentile, security_markdown, security_summary  # noqa: E402
from cluster_bench import RaftflowCluster  # noqa: E402
from workflow_bench import (  # noqa: E402
    SEED, WARMUP_SAGAS, WORKER_CONCURRENCY, Profiler, RaftflowSaga, _event_loop_policy, cpu_seconds, make_orders,
)

SETTINGS = {"plaintext": {"insecure": True}, "tls": {}}  # launcher.create's, per mode
WRITE_CLIENTS = (1, 64)
CPU_CLIENTS = PROFILE_CLIENTS = 64  # at 1 client the nodes' idle work (ticks, heartbeats) would swamp CPU per write
SAGAS, QUICK_SAGAS = 1000, 300  # started at once: the workflow bench's largest run
SECONDS, QUICK_SECONDS = 5.0, 2.0


def _temp_dir(what: str, mode: str) -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix=f"raftflow-secbench-{what}-{mode}-", dir=os.environ.get("BENCH_DIR"))


def _nodes_cpu_s(cluster: RaftflowCluster) -> float:
    return sum(cpu_seconds(m.pid) for m in cluster.cluster.members)


def measure_writes(mode: str, seconds: float) -> dict[str, dict]:
    """{"writes_N": run} for each client count, on one fresh cluster."""
    out = {}
    with _temp_dir("writes", mode) as directory, RaftflowCluster(os.path.join(directory, "cluster"),
                                                                 **SETTINGS[mode]) as cluster:
        for clients in WRITE_CLIENTS:
            before = _nodes_cpu_s(cluster)
            run = cluster.writes(clients, seconds)
            out[f"writes_{clients}"] = {
                "rate": run["ops_per_s"], "p50_ms": run["p50_ms"], "p99_ms": run["p99_ms"], "errors": run["errors"],
            }
            if clients == CPU_CLIENTS:
                # the load generator warms up min(1, seconds / 4) s before it counts
                writes = run["ops_per_s"] * (seconds + min(1.0, seconds / 4))
                out[f"writes_{clients}"]["node_cpu_ms"] = (_nodes_cpu_s(cluster) - before) * 1000 / writes
    return out


async def measure_sagas(mode: str, sagas: int) -> dict:
    """One batch of `sagas` started at once on a fresh cluster with one worker."""
    rng = random.Random(SEED)  # the same orders, the same ones failing, in both modes
    with _temp_dir("sagas", mode) as directory:
        async with RaftflowSaga(directory, WORKER_CONCURRENCY, **SETTINGS[mode]) as rf:
            await rf.sequential(make_orders(WARMUP_SAGAS, rng), "warmup")
            run = await rf.batch(make_orders(sagas, rng), "run")
    cpu = run["cpu_ms_per_saga"]
    return {
        "rate": run["sagas_per_s"], "p50_ms": percentile(run["latencies_s"], 0.5) * 1000,
        "p99_ms": percentile(run["latencies_s"], 0.99) * 1000, "errors": run["wrong"],
        "node_cpu_ms": sum(ms for name, ms in cpu.items() if name.startswith("node ")),
        "client_cpu_ms": sum(ms for name, ms in cpu.items() if not name.startswith("node ")),
    }


def profile_writes(directory: str, seconds: float, say) -> None:
    """A 64-client write run per mode with py-spy recording the leader: raw
    collapsed stacks in DIRECTORY/<mode>/leader.txt."""
    for mode in SECURITY_MODES:
        with _temp_dir("profile", mode) as workdir, RaftflowCluster(os.path.join(workdir, "cluster"),
                                                                    **SETTINGS[mode]) as cluster:
            leader = cluster.cluster.member(cluster.leader())
            profiler = Profiler(os.path.join(directory, mode), {"leader": leader.pid})
            try:
                run = cluster.writes(PROFILE_CLIENTS, seconds)
            finally:
                profiler.stop()
            say(f"  profiled {mode}: {run['ops_per_s']:,.0f} writes/s at {PROFILE_CLIENTS} clients, "
                f"leader node {leader.id} (pid {leader.pid}); stacks in {os.path.join(directory, mode)}")


def main() -> int:
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: every `finally` stops its processes
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3, help="rounds of plaintext then TLS (default 3)")
    parser.add_argument("--quick", action="store_true",
                        help=f"{QUICK_SECONDS:g} s per write point, {QUICK_SAGAS} sagas per batch")
    parser.add_argument("--seconds", type=float, default=None, help=f"seconds per write point (default {SECONDS:g})")
    parser.add_argument("--sagas", type=int, default=None, help=f"sagas started at once (default {SAGAS:,})")
    parser.add_argument("--profile", metavar="DIR", help="then one 64-client write run per mode with py-spy on the leader")
    parser.add_argument("--json", metavar="FILE", help="also write the figures here")
    args = parser.parse_args()
    if args.rounds < 1:
        parser.error(f"--rounds {args.rounds}: at least 1")
    seconds = args.seconds or (QUICK_SECONDS if args.quick else SECONDS)
    sagas = args.sagas or (QUICK_SAGAS if args.quick else SAGAS)
    _event_loop_policy()

    def say(text: str) -> None:
        print(text, file=sys.stderr, flush=True)

    kinds = {f"writes_{n}": f"{n} client{'s' if n > 1 else ''}" for n in WRITE_CLIENTS}
    kinds["sagas"] = f"{sagas:,} sagas at once"
    runs: dict = {kind: {mode: [] for mode in SECURITY_MODES} for kind in kinds}
    load_start = os.getloadavg()[0]
    for r in range(1, args.rounds + 1):
        for mode in SECURITY_MODES:
            for kind, run in measure_writes(mode, seconds).items():
                runs[kind][mode].append(run)
                say(f"round {r}/{args.rounds} {mode}: {kinds[kind]} {run['rate']:,.0f} writes/s, "
                    f"p50 {run['p50_ms']:.2f} ms")
        for mode in SECURITY_MODES:
            run = asyncio.run(measure_sagas(mode, sagas))
            runs["sagas"][mode].append(run)
            say(f"round {r}/{args.rounds} {mode}: {run['rate']:,.0f} sagas/s, p50 {run['p50_ms']:.0f} ms")
    if args.profile:
        profile_writes(args.profile, seconds, say)
    results = {
        "rounds": args.rounds, "seconds": seconds, "sagas": sagas, "cpus": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d %H:%M"), "load_average": [load_start, os.getloadavg()[0]],
        "aim_cost_pct": SECURITY_AIM_PCT, "kinds": kinds, "runs": runs, "summary": security_summary(runs),
    }
    print(security_markdown(results))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
