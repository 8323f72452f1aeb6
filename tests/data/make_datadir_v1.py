"""Writes tests/data/datadir-v1/ and tests/data/datadir-v1.json: what a real 3-node
cluster of this build leaves on disk, for tests/test_data_compat.py to read with every
later build.

    .venv/bin/python tests/data/make_datadir_v1.py

It starts a local cluster (`raftflow cluster up`, a snapshot every SNAPSHOT_ENTRIES
applied entries) and an order-saga worker, drives key-value ops (put, delete, a Cas
that succeeds and one that fails) and workflows (two types registered; sagas that
complete, retry a failed activity, and compensate; a timer, a signal, a cancel, a
terminate, one left waiting), waits until every node has applied the same entries,
records each node's state hash, stops the cluster gracefully and copies each node's
data directory: raftflow.meta, wal/ and snap/, with the zeros a preallocated WAL
segment ends in cut off. It then opens the copies as the test does and checks that
they read back as what the running nodes reported.

Run it only to create a new data directory (a datadir-v2 for a new format, with its
own script): the committed datadir-v1 stands for the data that older builds left on
disk, so regenerating it to make the test pass would defeat the test.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from raftflow.raft.wal import read_segment, segment_number
from raftflow.statemachine import Machine

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))  # tests/, for the reader the test uses
from datadir_reader import apply_committed, read_node, wal_entries  # noqa: E402

OUT = HERE / "datadir-v1"
EXPECTED = HERE / "datadir-v1.json"
NODES = 3
# About 110 entries in all: one snapshot about halfway, so that the snapshot holds keys,
# types and closed sagas, and the log after it workflow ops and keys (checked below).
SNAPSHOT_ENTRIES = 60
WAIT_S = 60.0  # the longest any step may take
RAFTFLOW = [str(Path(sys.executable).with_name("raftflow"))]

# A second type: a timer, a wait for a signal, and a compensation a cancel runs.
APPROVAL_YAML = """\
name: approval
version: 1
steps:
  - type: activity
    name: reserve
    activity: reserve_inventory
    task_queue: orders
    input: $input
    timeouts: {start_to_close: 2}
    compensation: {activity: release_inventory, input: $steps.reserve.result, timeouts: {start_to_close: 2}}
  - {type: timer, name: cool_off, duration: 0.2}
  - {type: signal, name: approved, signal: approve, timeout: 3600}
  - type: activity
    name: ship
    activity: ship_order
    task_queue: orders
    input: {order: $input}
    timeouts: {start_to_close: 2}
"""


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="make-datadir-v1-"))
    cluster_dir = work / "cluster"
    worker = None
    done = False
    try:
        run("cluster", "up", "--nodes", str(NODES), "--snapshot-entries", str(SNAPSHOT_ENTRIES),
            "--base-port", str(free_port_range(NODES)), cluster_dir=cluster_dir)
        cluster = json.loads((cluster_dir / "cluster.json").read_text())
        (work / "approval.yaml").write_text(APPROVAL_YAML)
        env = dict(os.environ, RAFTFLOW_LEDGER=str(work / "ledger"))
        with open(work / "worker.log", "wb") as worker_log:
            worker = subprocess.Popen(
                [*RAFTFLOW, "worker", "--activities", str(ROOT / "examples/order_saga/activities.py"),
                 "--task-queue", "orders", "--dir", str(cluster_dir)],
                stdout=worker_log, stderr=subprocess.STDOUT, env=env,
            )
        drive(cluster_dir, work)
        worker.terminate()
        worker.wait(timeout=WAIT_S)
        worker = None
        live = quiesce(cluster)
        keys = {key: kv_get(cluster_dir, key) for key in KEYS}
        statuses = {row["workflow_id"]: row["status"] for row in run_json("workflow", "list", cluster_dir=cluster_dir)}
        run("cluster", "down", cluster_dir=cluster_dir)
        copy_data(cluster)
        expected = read_back(cluster, live, keys, statuses, work)
        EXPECTED.write_text(json.dumps(expected, indent=2, sort_keys=True) + "\n")
        done = True
    finally:
        if worker is not None:
            worker.kill()
            worker.wait()
        if (cluster_dir / "cluster.json").exists():
            subprocess.run([*RAFTFLOW, "cluster", "down", "--dir", str(cluster_dir)], capture_output=True)
        if done:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"failed: the cluster's logs and the worker's are in {work}", file=sys.stderr)
    size = sum(f.stat().st_size for f in OUT.rglob("*") if f.is_file())
    print(f"wrote {OUT.relative_to(ROOT)} ({size} bytes) and {EXPECTED.relative_to(ROOT)}")
    return 0


KEYS = ["a", "b", "c", "d", "e", "greeting"]


def drive(cluster_dir: Path, work: Path) -> None:
    """The ops the data directory holds. Keys and sagas first, so that the snapshot
    holds them; signals, a cancel, a terminate and more keys last, so that the log
    after the snapshot holds them."""
    d = cluster_dir
    run("kv", "put", "a", "1", cluster_dir=d)
    run("kv", "put", "b", "2", cluster_dir=d)
    run("kv", "put", "c", "3", cluster_dir=d)
    run("kv", "cas", "a", "1", "10", cluster_dir=d)  # succeeds
    run("kv", "cas", "b", "nope", "20", cluster_dir=d, ok=(1,))  # fails: b is 2
    run("kv", "delete", "c", cluster_dir=d)
    run("kv", "put", "d", "4", cluster_dir=d)
    run("workflow", "register", str(ROOT / "examples/order_saga/order_saga.yaml"), cluster_dir=d)
    run("workflow", "register", str(work / "approval.yaml"), cluster_dir=d)
    order = {"items": 2, "amount": 30, "address": "home"}
    run("workflow", "start", "order_saga", "--id", "order-1", "--input", json.dumps({"order_id": 1, **order}), "--wait",
        cluster_dir=d)
    # The gateway times out on order 3's first charge: a FailActivity, a retry timer, a Tick.
    run("workflow", "start", "order_saga", "--id", "order-3", "--input", json.dumps({"order_id": 3, **order}), "--wait",
        cluster_dir=d)
    # Shipping to "nowhere" fails for good: the refund and the release run (compensated).
    run("workflow", "start", "order_saga", "--id", "order-7",
        "--input", json.dumps({"order_id": 7, **order, "address": "nowhere"}), "--wait", cluster_dir=d, ok=(1,))
    # A new leader: its no-op and RearmTimeouts, and entries of a second term.
    status = run_json("cluster", "status", cluster_dir=d)
    leader = next(row["id"] for row in status if row.get("role") == "leader")
    run("cluster", "transfer-leader", str(min(row["id"] for row in status if row["id"] != leader)), cluster_dir=d)
    for n in (1, 2, 3, 4):
        payload = json.dumps({"order_id": 100 + n, **order})
        run("workflow", "start", "approval", "--id", f"approval-{n}", "--input", payload, cluster_dir=d)
    run("workflow", "signal", "approval-1", "approve", "--input", json.dumps({"by": "ops"}), cluster_dir=d)
    wait_for_status(d, "approval-1", "completed")
    wait_for_step(d, "approval-2", "approved")
    run("workflow", "cancel", "approval-2", cluster_dir=d)  # the reservation is released: canceled
    wait_for_status(d, "approval-2", "canceled")
    run("workflow", "terminate", "approval-3", "--reason", "customer called", cluster_dir=d)
    wait_for_step(d, "approval-4", "approved")  # left waiting for its signal: running
    run("kv", "put", "e", "5", cluster_dir=d)
    run("kv", "put", "a", "11", cluster_dir=d)
    run("kv", "delete", "d", cluster_dir=d)
    run("kv", "cas", "e", "5", "50", cluster_dir=d)
    run("kv", "put", "greeting", "héllo wörld", cluster_dir=d)


def run(*args: str, cluster_dir: Path, ok: tuple[int, ...] = (0,)) -> str:
    proc = subprocess.run([*RAFTFLOW, *args, "--dir", str(cluster_dir)], capture_output=True, text=True, timeout=WAIT_S)
    if proc.returncode not in ok:
        raise SystemExit(f"raftflow {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}{proc.stderr}")
    return proc.stdout


def run_json(*args: str, cluster_dir: Path, ok: tuple[int, ...] = (0,)) -> object:
    return json.loads(run(*args, "-o", "json", cluster_dir=cluster_dir, ok=ok))


def kv_get(cluster_dir: Path, key: str) -> str | None:
    reply = run_json("kv", "get", key, cluster_dir=cluster_dir, ok=(0, 1))
    return reply["kv"]["value"] if reply["found"] else None


def wait_for(what: str, condition) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"gave up after {WAIT_S:.0f}s waiting for {what}")
        time.sleep(0.1)  # polling a cluster in other processes: there is no event to wait on


def wait_for_status(cluster_dir: Path, workflow_id: str, status: str) -> None:
    wait_for(f"{workflow_id} to be {status}",
             lambda: run_json("workflow", "describe", workflow_id, cluster_dir=cluster_dir)["status"] == status)


def wait_for_step(cluster_dir: Path, workflow_id: str, step: str) -> None:
    wait_for(f"{workflow_id} to reach step {step}",
             lambda: run_json("workflow", "describe", workflow_id, cluster_dir=cluster_dir).get("step") == step)


def quiesce(cluster: dict) -> dict[int, tuple[int, str]]:
    """Wait until every node has applied the same entries and reports the same state
    hash; returns node id -> (applied_index, state_hash)."""
    from raftflow.cluster.client import Client  # noqa: PLC0415 (only the generator needs the cluster package)

    members = {m["id"]: m["address"] for m in cluster["members"]}
    with Client(list(members.values()), timeout=5.0) as client:
        answers: dict[int, tuple[int, str]] = {}

        def settled() -> bool:
            answers.clear()
            for node_id, address in members.items():
                reply = client.state_hash(address)
                answers[node_id] = (reply.applied_index, reply.hash)
            return len(set(answers.values())) == 1

        wait_for("every node to apply the same entries", settled)
        return dict(answers)


def free_port_range(n: int) -> int:
    """The first of n consecutive ports that are free now."""
    rng = random.Random()
    for _ in range(100):
        base = rng.randrange(20_000, 60_000)
        if all(port_free(base + i) for i in range(n)):
            return base
    raise SystemExit(f"found no {n} consecutive free ports")


def port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def copy_data(cluster: dict) -> None:
    """Each node's data directory, without the zeros after a WAL segment's data (up
    to segment_bytes_max of preallocation: recovery reads zeros there as the clean
    end of the segment, and cuts them off itself)."""
    shutil.rmtree(OUT, ignore_errors=True)
    for member in cluster["members"]:
        source, target = Path(member["data_dir"]), OUT / f"data-{member['id']}"
        (target / "wal").mkdir(parents=True)
        (target / "snap").mkdir()
        shutil.copyfile(source / "raftflow.meta", target / "raftflow.meta")
        for name in sorted(os.listdir(source / "snap")):
            if name.endswith(".snap"):
                shutil.copyfile(source / "snap" / name, target / "snap" / name)
        names = sorted(name for name in os.listdir(source / "wal") if segment_number(name) is not None)
        for pos, name in enumerate(names):
            data = (source / "wal" / name).read_bytes()
            _, valid = read_segment(name, data, last=pos == len(names) - 1)
            assert not any(data[valid:]), f"{name}: bytes other than zeros after its data at {valid}"
            (target / "wal" / name).write_bytes(data[:valid])


def read_back(cluster: dict, live: dict[int, tuple[int, str]], keys: dict, statuses: dict, work: Path) -> dict:
    """Open a copy of each node's data with the test's reader, check it against what
    the running cluster reported, and return what the test checks."""
    nodes = {}
    for member in cluster["members"]:
        node_id = member["id"]
        scratch = work / f"read-{node_id}"
        shutil.copytree(OUT / f"data-{node_id}", scratch)
        node = read_node(scratch, cluster["cluster_id"], node_id)
        applied, live_hash = live[node_id]
        assert node.snapshot_index > 0, f"node {node_id} took no snapshot; lower SNAPSHOT_ENTRIES"
        assert {"Put", "StartWorkflow", "SignalWorkflow"} <= set(node.ops_after_snapshot), (
            f"node {node_id}: the log after the snapshot at {node.snapshot_index} holds only "
            f"{node.ops_after_snapshot}; move SNAPSHOT_ENTRIES so that it holds workflow and key-value ops"
        )
        assert node.hashes.get(applied) == live_hash, f"node {node_id}: the data read back is not what the node held"
        replayed = Machine()
        _, ops_in_wal = apply_committed(replayed, wal_entries(scratch), node.commit)
        assert replayed.state_hash() == node.machine.state_hash(), f"node {node_id}: snapshot and log disagree"
        for key, value in keys.items():
            kv = node.machine.get(key)
            assert (kv.value.decode() if kv else None) == value, (node_id, key, kv, value)
        for workflow_id, status in statuses.items():
            assert node.machine.workflow.run_status(workflow_id)[1].value == status, (node_id, workflow_id, status)
        nodes[str(node_id)] = {
            "last_index": node.last_index,
            "commit": node.commit,
            "term": node.term,
            "snapshot_index": node.snapshot_index,
            "state_hash": node.machine.state_hash(),  # after the whole committed log
            # What the running node answered (the StateHash RPC) before the cluster was
            # stopped; stopping it may commit more (a new leader's no-op, say).
            "live": {"applied_index": applied, "state_hash": live_hash},
            "ops_after_snapshot": node.ops_after_snapshot,
            "ops_in_wal": ops_in_wal,  # the committed entries from index 1, the snapshot's too
        }
    return {
        "cluster_id": cluster["cluster_id"],
        "snapshot_entries": SNAPSHOT_ENTRIES,
        "nodes": nodes,
        "keys": keys,
        "workflows": statuses,
    }


if __name__ == "__main__":
    sys.exit(main())
