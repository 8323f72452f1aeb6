"""`raftflow demo`: a narrated run on a real local cluster.

Starts 3 node processes on 127.0.0.1, writes through the client library, kills
the leader with SIGKILL in the middle of the writes, restarts it, and checks the
promises: every acknowledged write is there exactly once, and every node holds
the same state. Prints a timeline and a verdict; stops every process it started.
"""

from __future__ import annotations

import os
import shutil
import signal
import tempfile
import time

from raftflow.cluster.local import launcher
from raftflow.cluster.client import AsyncClient, RaftflowError, run_sync
from raftflow.cluster.demos.narration import Narrator, leader_of, start_cluster


async def _write(cluster: launcher.ClusterFile, keys: list[str], acked: list[str]) -> float:
    """Put each key, one after another; returns the longest wait for one write."""
    longest = 0.0
    async with AsyncClient(cluster.endpoints, credentials=cluster.credentials(), timeout=10.0, no_leader_timeout=5.0, max_backoff=0.02) as client:
        for key in keys:
            started = time.monotonic()
            await client.put(key, key.encode())
            longest = max(longest, time.monotonic() - started)
            acked.append(key)
    return longest


def run_demo(directory: str | None = None, writes: int = 300) -> int:
    keep = directory is not None
    directory = directory or tempfile.mkdtemp(prefix="raftflow-demo-")
    t = Narrator()
    cluster = launcher.create(directory, 3, 0)
    problems: list[str] = []
    try:
        with cluster.client(timeout=10.0, no_leader_timeout=5.0) as client:
            leader = start_cluster(t, cluster, client)
            acked: list[str] = []
            keys = [f"order-{i:04d}" for i in range(writes)]
            started = time.monotonic()
            run_sync(_write(cluster, keys[: writes // 2], acked))
            rate = len(acked) / (time.monotonic() - started)
            t.say(f"{len(acked)} writes acknowledged, one at a time ({rate:.0f}/s, each fsynced on a majority)")

            victim = cluster.member(leader)
            os.kill(victim.pid, signal.SIGKILL)
            t.say(f"SIGKILL node {leader} (the leader), writes continue")
            stall = run_sync(_write(cluster, keys[writes // 2 :], acked))
            new_leader = leader_of(cluster, client, exclude=frozenset({leader}))
            t.say(f"node {new_leader} leads now; the write in flight at the kill waited {stall * 1000:.0f} ms "
                  f"(election included); all {len(acked)} writes acknowledged")

            launcher.stop_node(cluster, victim, kill=True)
            launcher.start_node(cluster, victim)
            t.say(f"restarted node {leader} with its data; it catches up from the leader")
            hashes = launcher.converged_hashes(cluster, client)
            t.say("every node applied index " + str(hashes[0]) + "; state hashes: "
                  + ", ".join(f"node {i} {h[:12]}" for i, h in sorted(hashes[1].items())))
            if len(set(hashes[1].values())) != 1:
                problems.append("the nodes' state hashes differ")

            read_back = {k: client.get(k).kv for k in acked}
            missing = [k for k, kv in read_back.items() if kv is None or kv.value != k.encode()]
            twice = [k for k, kv in read_back.items() if kv is not None and kv.version != 1]
            t.say(f"read back {len(acked)} acknowledged writes (linearizable reads): "
                  f"{len(missing)} missing, {len(twice)} applied twice")
            if missing:
                problems.append(f"{len(missing)} acknowledged writes missing, e.g. {missing[:3]}")
            if twice:
                problems.append(f"{len(twice)} writes applied twice, e.g. {twice[:3]}")
    except (RaftflowError, launcher.LauncherError) as exc:
        problems.append(str(exc))
    finally:
        for m in cluster.members:
            launcher.stop_node(cluster, m)
        t.say("stopped the cluster")
        if not keep:
            shutil.rmtree(directory, ignore_errors=True)
    if problems:
        print("verdict: FAILED: " + "; ".join(problems))
        return 1
    print("verdict: OK: a leader crash lost no acknowledged write and applied none twice; all nodes agree")
    return 0
