"""Real node processes on 127.0.0.1: elections, leader crashes (SIGKILL), restarts,
catch-up through a snapshot, and no acknowledged write lost or applied twice."""

from __future__ import annotations

import asyncio
import random
import subprocess
import sys
import time

import pytest

from raftflow.cluster.client import AsyncClient, OutcomeUnknown, Unavailable, run_sync
from raftflow.raft.types import Role
from procnet import ProcCluster, wait_until


@pytest.fixture
def make_cluster(tmp_path):
    clusters = []

    def make(nodes: int, **settings) -> ProcCluster:
        c = ProcCluster(str(tmp_path / f"c{len(clusters)}"), nodes, **settings)
        clusters.append(c)
        c.start()
        return c

    yield make
    for c in clusters:
        c.close()


@pytest.mark.parametrize("nodes", [3, 5])
def test_leader_crash_new_leader_and_catch_up(make_cluster, nodes):
    c = make_cluster(nodes)
    leader = c.wait_leader()
    for i in range(20):
        c.client.put(f"before-{i}", b"x")
    c.kill(leader)
    started = time.monotonic()
    new_leader = c.wait_leader(timeout=10, exclude={leader})
    assert new_leader != leader
    # Bounded: the election timeout is 150-300 ms; allow for a loaded CI machine.
    assert time.monotonic() - started < 5.0
    for i in range(20):
        c.client.put(f"after-{i}", b"y")
    c.start(leader)
    hashes = c.wait_converged()
    assert len(set(hashes.values())) == 1, hashes
    assert c.client.get("before-0").value == b"x"
    assert c.client.get("after-19").value == b"y"


def test_restarted_node_catches_up_through_a_snapshot(make_cluster):
    c = make_cluster(3, snapshot_entries=50)
    leader = c.wait_leader()
    lagging = next(m.id for m in c.cluster.members if m.id != leader)
    c.kill(lagging)
    for i in range(300):  # > snapshot_entries: the others compact past what it has
        c.client.put(f"k{i % 40}", str(i).encode())
    statuses = c.statuses()
    assert all(s.snapshot_index > 0 for s in statuses.values()), {i: s.snapshot_index for i, s in statuses.items()}
    c.start(lagging)
    hashes = c.wait_converged()
    assert len(set(hashes.values())) == 1, hashes
    log = open(c.cluster.member(lagging).log).read()
    assert "installed a snapshot" in log
    assert c.client.get("k39", consistency="linearizable").value == b"279"  # the last i with i % 40 == 39


def test_graceful_stop_and_restart_keep_everything(make_cluster):
    c = make_cluster(3)
    c.wait_leader()
    for i in range(30):
        c.client.put(f"g{i}", b"v")
    for m in c.cluster.members:
        c.stop(m.id)  # SIGTERM: finish the batch, fsync, close
    c.start()
    c.wait_leader()
    assert [c.client.get(f"g{i}").value for i in range(30)] == [b"v"] * 30
    hashes = c.wait_converged()
    assert len(set(hashes.values())) == 1


async def _writer(cluster, writer: int, stop: asyncio.Event, acked: list, unknown: list, seed: int) -> None:
    """Puts unique keys; records which were acknowledged. Every retry inside the
    client reuses the command's (session, seq)."""
    rng = random.Random(seed)
    async with AsyncClient(cluster.endpoints, credentials=cluster.credentials(), timeout=8.0, no_leader_timeout=6.0, rng=rng) as client:
        n = 0
        while not stop.is_set():
            key = f"w{writer}-{n}"
            try:
                await client.put(key, key.encode())
                acked.append(key)
            except (OutcomeUnknown, Unavailable):
                unknown.append(key)
            n += 1


def test_no_acknowledged_write_lost_or_applied_twice_across_leader_kills(make_cluster):
    """Concurrent clients write while the leader is killed again and again. Every
    acknowledged key must be in the final state exactly once: version 1 means the
    put was applied once, even when the client retried it."""
    c = make_cluster(3)
    seed = 20261126
    endpoints = c.cluster.endpoints
    acked: list[str] = []
    unknown: list[str] = []

    async def wait_for(condition, what: str, timeout: float = 20.0):
        """Poll an async condition on this loop until it holds (with a deadline)."""
        deadline = time.monotonic() + timeout
        while not (value := await condition()):
            assert time.monotonic() < deadline, f"timed out waiting for {what} (seed {seed})"
            await asyncio.sleep(0.02)  # polling other processes: there is no event to wait on
        return value

    async def run() -> None:
        stop = asyncio.Event()
        writers = [asyncio.create_task(_writer(c.cluster, w, stop, acked, unknown, seed + w)) for w in range(4)]
        async with AsyncClient(endpoints, credentials=c.cluster.credentials(), timeout=2.0) as admin:

            async def leader(exclude: set[int]) -> int:
                up = [s for _, s in await admin.cluster_status(timeout=0.5) if not isinstance(s, str)]
                up = [s for s in up if s.id not in exclude]
                leaders = [s.id for s in up if s.role is Role.LEADER]
                return leaders[0] if len(leaders) == 1 and {s.leader_id for s in up} == set(leaders) else 0

            async def progressed(floor: int) -> bool:
                return len(acked) >= floor + 20

            for _ in range(4):  # kill the leader, wait for a successor, restart the old one
                old = await wait_for(lambda: leader(set()), "a leader")
                floor = len(acked)
                await wait_for(lambda: progressed(floor), "writes to go on")
                c.kill(old)
                await wait_for(lambda: leader({old}), f"a leader other than node {old}")
                c.start(old)
        stop.set()
        await asyncio.gather(*writers)

    run_sync(run())
    hashes = c.wait_converged()
    assert len(set(hashes.values())) == 1, hashes
    assert len(acked) > 100, f"only {len(acked)} writes acknowledged (seed {seed})"

    async def check() -> list[str]:
        problems = []
        async with AsyncClient(endpoints, credentials=c.cluster.credentials(), timeout=10.0, no_leader_timeout=5.0) as client:
            for key in acked:
                r = await client.get(key)
                if r.kv is None:
                    problems.append(f"{key}: acknowledged but missing")
                elif r.kv.version != 1 or r.kv.value != key.encode():
                    problems.append(f"{key}: version {r.kv.version}, value {r.kv.value!r}")
            for key in unknown:  # outcome unknown: absent or present once, never twice
                r = await client.get(key)
                if r.kv is not None and r.kv.version != 1:
                    problems.append(f"{key}: applied {r.kv.version} times")
        return problems

    problems = run_sync(check())
    assert not problems, f"seed {seed}: {problems[:10]} ({len(problems)} problems)"


def test_a_slow_disk_costs_no_leadership(make_cluster):
    """Every log write takes 3 election timeouts (900 ms vs 150-300 ms): the fsync
    runs off the event loop, so heartbeats keep flowing and the leader stays."""
    c = make_cluster(3, slow_disk_ms=900)
    leader = c.wait_leader(timeout=30)
    term = c.statuses()[leader].term
    for i in range(4):  # each write waits for the slow disks; leadership must hold throughout
        c.client.put(f"slow-{i}", b"v")
    statuses = c.statuses()
    assert {s.leader_id for s in statuses.values()} == {leader}
    assert {s.term for s in statuses.values()} == {term}, {i: s.term for i, s in statuses.items()}


def test_the_demo_runs_its_story_and_says_ok(tmp_path):
    """`make demo` runs this: a real cluster, a leader SIGKILLed mid-way, checks."""
    result = subprocess.run(
        [sys.executable, "-m", "raftflow", "demo", "kv", "--writes", "40", "--dir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SIGKILL node" in result.stdout
    assert "0 missing, 0 applied twice" in result.stdout
    assert result.stdout.strip().endswith("all nodes agree")


def test_a_command_refused_for_lack_of_quorum_is_unavailable_not_outcome_unknown(make_cluster):
    """Found by review: the no-leader message contains "unknown", which the client
    once read as "the command may have been applied". Outcome unknown is now an
    explicit flag set only for commands that reached the log."""
    c = make_cluster(3)
    leader = c.wait_leader()
    c.client.put("before", b"x")  # the session is open
    survivor = next(m.id for m in c.cluster.members if m.id != leader)
    for m in c.cluster.members:
        if m.id != survivor:
            c.kill(m.id)
    def knows_no_leader() -> bool:
        status = c.statuses().get(survivor)  # None when its answer was late (a loaded machine)
        return status is not None and status.leader_id == 0

    wait_until(knows_no_leader, 10, f"node {survivor} to know no leader")
    client = c.client_of([c.address(survivor)], timeout=3.0, no_leader_timeout=0.5)
    try:
        with pytest.raises(Unavailable) as err:
            client.put("after", b"y")
    finally:
        client.close()
    assert "no quorum: 1 of 3 nodes reachable" in str(err.value)
