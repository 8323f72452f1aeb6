"""Partitions in the real cluster, caused from the CLI the way a user causes them:
5 node processes on 127.0.0.1, `raftflow partition ...`, and what each side answers.

The consistency/availability trade-off, shown: during a 2|3 split the majority keeps
(or elects) a leader and accepts writes; the minority refuses writes and
linearizable reads within a bounded time, with an error naming the cause, and
serves stale reads marked stale; after `heal` it catches up.
"""

from __future__ import annotations

import json
import time

import pytest

from raftflow.cluster.client import Client, RaftflowError, Unavailable
from raftflow.raft.types import Role
from procnet import ProcCluster, wait_until
from test_cli_cluster import one_line_error, raftflow, succeeded

REFUSE_WITHIN_S = 5.0  # a minority write must fail within this, never hang


@pytest.fixture
def five(tmp_path):
    pc = ProcCluster(str(tmp_path / "c"), 5)
    try:
        pc.start()
        pc.wait_leader()
        yield pc
    finally:
        pc.close()


def cli(pc: ProcCluster, *args: str):
    return raftflow(*args, "--dir", pc.cluster.dir)


def side_client(pc: ProcCluster, ids) -> Client:
    return pc.client_of([pc.address(i) for i in ids], timeout=REFUSE_WITHIN_S, no_leader_timeout=1.0)


def test_a_split_shows_the_trade_off_and_heal_converges(five):
    pc = five
    leader = pc.wait_leader()
    succeeded(cli(pc, "kv", "put", "k", "old"))
    minority = [leader, next(i for i in range(1, 6) if i != leader)]  # the old leader is in the minority
    majority = [i for i in range(1, 6) if i not in minority]
    out = succeeded(cli(pc, "partition", "split", f"{minority[0]},{minority[1]}|{','.join(map(str, majority))}"))
    assert f"node {majority[0]}: cut from" in out

    status = json.loads(succeeded(cli(pc, "cluster", "status", "-o", "json")))
    assert all(row["network"].startswith("cut from") for row in status)

    new_leader = pc.wait_leader(exclude=set(minority))  # the majority elects (or keeps) a leader
    assert new_leader in majority
    with side_client(pc, majority) as c:
        assert c.put("k", b"new").revision >= 2

    with side_client(pc, minority) as c:
        # Once the old leader has stepped down (CheckQuorum), nothing reaches a log there.
        wait_until(lambda: all(c.status(pc.address(i)).role is not Role.LEADER for i in minority), 10,
                   "the minority to have no leader")
        started = time.monotonic()
        with pytest.raises(Unavailable, match="no quorum|no leader"):
            c.put("k", b"lost")
        assert time.monotonic() - started < REFUSE_WITHIN_S
        with pytest.raises(RaftflowError):
            c.get("k", consistency="linearizable")
        stale = c.get("k", consistency="stale", endpoint=pc.address(minority[1]))
        assert stale.stale and stale.value == b"old"

    succeeded(cli(pc, "partition", "heal"))
    with side_client(pc, minority) as c:
        caught_up = wait_until(
            lambda: c.get("k", consistency="stale", endpoint=pc.address(minority[1])).value == b"new", 20,
            "the minority to catch up after heal",
        )
        assert caught_up
    assert len(set(pc.wait_converged().values())) == 1


def test_an_isolated_leader_steps_down_and_no_two_leaders_accept_writes(five):
    pc = five
    old = pc.wait_leader()
    succeeded(cli(pc, "partition", "isolate", str(old)))
    leaders_by_term: dict[int, set[int]] = {}
    with side_client(pc, [old]) as c:
        try:
            c.put("k", b"from the old leader")  # may reach its log; it can never commit
        except RaftflowError:
            pass

        def watch():
            for i in range(1, 6):
                try:
                    st = c.status(pc.address(i), timeout=0.5)
                except RaftflowError:
                    continue
                if st.role is Role.LEADER:
                    leaders_by_term.setdefault(st.term, set()).add(i)
            return c.status(pc.address(old)).role is not Role.LEADER and any(
                term > 0 and old not in ids for term, ids in leaders_by_term.items())

        # CheckQuorum: within an election timeout the isolated leader knows it leads no
        # one, and the others elect a new leader in a later term.
        wait_until(watch, 10, "the isolated leader to step down and a new one to be elected")
        with pytest.raises(RaftflowError):
            c.get("k", consistency="lease")  # no lease: it is not the leader any more
    assert all(len(ids) == 1 for ids in leaders_by_term.values()), f"two leaders in one term: {leaders_by_term}"
    with side_client(pc, [i for i in range(1, 6) if i != old]) as c:
        c.put("k", b"from the new leader")
    succeeded(cli(pc, "partition", "heal"))
    assert len(set(pc.wait_converged().values())) == 1
    assert pc.client.get("k").value == b"from the new leader"  # the old leader's write never committed


def test_oneway_delay_pause_and_bad_input(five):
    pc = five
    out = succeeded(cli(pc, "partition", "oneway", "1", "2"))
    assert "node 1: drops to 2" in out and "node 2: drops from 1" in out
    out = succeeded(cli(pc, "partition", "delay", "3", "40"))
    assert "node 3: +40ms both ways with 1,2,4,5" in out and "node 1: drops to 2" in out  # added, not replaced
    assert "drops to 2" in succeeded(cli(pc, "partition", "show"))
    succeeded(cli(pc, "kv", "put", "slow", "but fine"))
    succeeded(cli(pc, "partition", "heal"))
    assert succeeded(cli(pc, "partition", "show")).count("no faults") == 5

    one_line_error(cli(pc, "partition", "split", "1,2|3,4"), "5", "no side", code=2)
    one_line_error(cli(pc, "partition", "split", "1,2,3"), "two sides", code=2)
    one_line_error(cli(pc, "partition", "split", "1,2|2,3,4,5"), "more than one side", code=2)
    one_line_error(cli(pc, "partition", "isolate", "9"), "not a member", code=2)
    one_line_error(cli(pc, "partition", "delay", "1", "70000"), "60000", code=2)
    one_line_error(cli(pc, "partition", "oneway", "2", "2"), "both node 2", code=2)

    follower = next(i for i in range(1, 6) if i != pc.wait_leader())
    assert "paused" in succeeded(cli(pc, "node", "pause", str(follower)))
    try:
        succeeded(cli(pc, "kv", "put", "while", "paused"))  # 4 of 5 still commit
        rows = {r["id"] or 0: r for r in json.loads(succeeded(cli(pc, "cluster", "status", "-o", "json")))}
        assert not any(r["up"] and r["id"] == follower for r in rows.values())
    finally:
        assert "resumed" in succeeded(cli(pc, "node", "resume", str(follower)))
    assert len(set(pc.wait_converged().values())) == 1


def test_the_cap_demo_tells_its_story_and_says_ok(tmp_path):
    import subprocess
    import sys

    from raftflow.cluster.local import launcher

    try:
        result = subprocess.run(
            [sys.executable, "-m", "raftflow", "demo", "cap", "--dir", str(tmp_path / "cap")],
            capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL,
        )
    finally:  # a demo killed by the timeout leaves its nodes (their own sessions) behind
        try:
            for m in launcher.ClusterFile.load(str(tmp_path / "cap")).members:
                if launcher.process_alive(m.pid):
                    launcher.stop_node(launcher.ClusterFile.load(str(tmp_path / "cap")), m, kill=True)
        except launcher.LauncherError:
            pass
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert "verdict: OK" in out
    for step in ("split", "put color=green (majority)", "put color=red (minority)", "refused", "get color (stale)",
                 "blue (stale", "heal", "green: caught up", "equal on every node"):
        assert step in out, step
    assert "majority commits again after" in out and "minority refuses a write within" in out


def test_workflows_on_the_minority_fail_clearly_and_none_is_lost_after_heal(five, tmp_path):
    """Sagas running through a 2|3 split with the leader on the small side: commands
    sent to the minority fail with a clear error and change nothing; the worker
    follows the new leader; after heal every saga closes as its order calls for."""
    import os
    import subprocess
    import sys

    from raftflow.cluster.local import launcher
    from raftflow.cluster.demos.saga_demo import EXAMPLE, expected_status, orders
    from raftflow.statemachine.workflow.definitions import load_definition

    pc = five
    leader = pc.wait_leader()
    pc.client.workflows.register(load_definition(os.path.join(EXAMPLE, "order_saga.yaml")))
    worker = subprocess.Popen(
        [sys.executable, "-m", "raftflow", "worker", "--activities", os.path.join(EXAMPLE, "activities.py"),
         "--task-queue", "orders", "--endpoints", ",".join(pc.cluster.endpoints), "--dir", pc.cluster.dir],
        stdin=subprocess.DEVNULL, stdout=open(tmp_path / "worker.log", "wb"), stderr=subprocess.STDOUT,
        env={**os.environ, "RAFTFLOW_LEDGER": str(tmp_path / "ledger")}, start_new_session=True,
    )
    try:
        batch = orders(14)
        for order in batch[:7]:
            pc.client.workflows.start("order_saga", workflow_id=f"p-{order['order_id']}", input=order)
        minority = [leader, next(i for i in range(1, 6) if i != leader)]
        majority = [i for i in range(1, 6) if i not in minority]
        succeeded(cli(pc, "partition", "split", f"{minority[0]},{minority[1]}|{','.join(map(str, majority))}"))
        with side_client(pc, minority) as c:
            # Once the old leader has stepped down (CheckQuorum), nothing is proposed there.
            wait_until(lambda: all(c.status(pc.address(i)).role is not Role.LEADER for i in minority), 10,
                       "the minority to have no leader")
            with pytest.raises(Unavailable, match="no quorum|no leader"):
                c.workflows.start("order_saga", workflow_id="p-minority", input=batch[7])
        with side_client(pc, majority) as c:
            for order in batch[7:]:
                c.workflows.start("order_saga", workflow_id=f"p-{order['order_id']}", input=order)
        succeeded(cli(pc, "partition", "heal"))
        outcomes = {o["order_id"]: pc.client.workflows.wait(f"p-{o['order_id']}", timeout=60).status for o in batch}
    finally:
        launcher.stop_process(worker)
    assert outcomes == {o["order_id"]: expected_status(o) for o in batch}
    with pytest.raises(RaftflowError, match="p-minority"):
        pc.client.workflows.describe("p-minority")  # the refused start left nothing behind
    assert len(set(pc.wait_converged().values())) == 1
