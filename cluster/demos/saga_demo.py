"""`raftflow demo` (what `make demo` runs): the order saga on a real 3-node cluster.

Starts 3 nodes on 127.0.0.1 and a worker process running examples/order_saga's
activities, registers the saga, starts a batch of orders (some fail at `ship` and
must be compensated; some hit a gateway timeout and are retried), SIGKILLs the
leader while they run, restarts it, and checks the promises:

- every workflow closed with the outcome its order calls for (completed, or
  compensated with a refund and a release);
- every effect happened exactly once per idempotency key, although some
  activities were delivered more than once (the ledger counts both);
- every node holds the same state.

Prints a timeline, one history, and a verdict; stops every process it started.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter

from raftflow.cluster.local import launcher
from raftflow.cluster.client import AsyncClient, Client, RaftflowError, WorkflowDescription, run_sync
from raftflow.statemachine.workflow.records import CLOSED
from raftflow.cluster.demos.narration import Narrator, leader_of, start_cluster

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))  # the repository
EXAMPLE = os.path.join(ROOT, "examples", "order_saga")
UNSHIPPABLE_EVERY = 7  # order ids divisible by this have address "nowhere": compensated
EFFECTS = {"completed": {"reserve", "charge", "ship"}, "compensated": {"reserve", "charge", "refund", "release"}}


def orders(count: int) -> list[dict]:
    return [
        {"order_id": i, "items": 1 + i % 3, "amount": 10 * (1 + i % 5),
         "address": "nowhere" if i % UNSHIPPABLE_EVERY == 0 else f"{i} Main St"}
        for i in range(1, count + 1)
    ]


def expected_status(order: dict) -> str:
    return "compensated" if order["address"] == "nowhere" else "completed"


def start_worker(directory: str, endpoints: list[str], ledger: str, token: str | None = None) -> subprocess.Popen:
    """The worker process; `token` (a worker token for 'orders') instead of the
    cluster folder's admin token, as a worker on another host would run."""
    log = launcher.open_log(os.path.join(directory, "worker.log"))  # the child keeps it
    return subprocess.Popen(
        [sys.executable, "-m", "raftflow", "worker", "--activities", os.path.join(EXAMPLE, "activities.py"),
         "--task-queue", "orders", "--concurrency", os.environ.get("RAFTFLOW_DEMO_CONCURRENCY", "16"), "--endpoints", ",".join(endpoints), "--dir", directory, "--timeout", "10", *(["--verbose"] if os.environ.get("RAFTFLOW_DEMO_VERBOSE") else [])],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=ROOT,
        env={**os.environ, "RAFTFLOW_LEDGER": ledger, **({"RAFTFLOW_TOKEN": token} if token else {})},
    )


async def _start_all(cluster: launcher.ClusterFile, batch: list[dict]) -> None:
    async with AsyncClient(cluster.endpoints, credentials=cluster.credentials(), timeout=20.0, no_leader_timeout=10.0) as client:
        await asyncio.gather(*(
            client.workflows.start("order_saga", workflow_id=f"order-{o['order_id']}", input=o) for o in batch
        ))


async def _wait_all(cluster: launcher.ClusterFile, batch: list[dict], timeout: float) -> dict[str, WorkflowDescription]:
    async with AsyncClient(cluster.endpoints, credentials=cluster.credentials(), timeout=10.0, no_leader_timeout=10.0) as client:
        outcomes = await asyncio.gather(*(
            client.workflows.wait(f"order-{o['order_id']}", timeout=timeout) for o in batch
        ))
    return {o.workflow_id: o for o in outcomes}


def _closed_count(client: Client) -> int:
    return sum(1 for w in client.workflows.list(limit=10_000) if w.status in CLOSED)


def read_ledger(ledger: str) -> tuple[dict[str, str], Counter]:
    """(idempotency key -> effect applied, deliveries per key)."""
    effects = {}
    for name in os.listdir(ledger):
        if name.endswith(".json"):
            with open(os.path.join(ledger, name)) as f:
                record = json.load(f)
            effects[record["key"]] = record["effect"]
    deliveries: Counter = Counter()
    path = os.path.join(ledger, "deliveries.jsonl")
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                deliveries[json.loads(line)["key"]] += 1
    return effects, deliveries


def check_effects(batch: list[dict], outcomes: dict[str, WorkflowDescription], effects: dict[str, str]) -> list[str]:
    problems = []
    by_workflow: dict[str, list[str]] = {}
    for key, effect in effects.items():
        by_workflow.setdefault(key.split("/")[0], []).append(effect)
    for order in batch:
        workflow_id = f"order-{order['order_id']}"
        described = outcomes.get(workflow_id)
        outcome = None if described is None else described.status.value
        if outcome != expected_status(order):
            problems.append(f"{workflow_id} is {outcome}, expected {expected_status(order)}")
            continue
        applied = by_workflow.get(workflow_id, [])
        if sorted(applied) != sorted(EFFECTS[outcome]):
            problems.append(f"{workflow_id} ({outcome}) has effects {sorted(applied)}, expected {sorted(EFFECTS[outcome])}")
    return problems


def print_history(client: Client, workflow_id: str) -> None:
    events = client.workflows.history(workflow_id)
    start = events[0].time_ms
    print(f"         history of {workflow_id}:")
    for e in events:
        what = " ".join(
            f"{k}={getattr(e, k)}" for k in ("step", "activity", "attempt", "error_type", "message")
            if getattr(e, k) is not None
        )
        undo = " (compensation)" if e.compensation else ""
        print(f"           +{(e.time_ms - start) / 1000:6.3f}s  {e.type.value:<32} {what}{undo}")


def run_saga_demo(directory: str | None = None, count: int = 40) -> int:
    keep = directory is not None
    directory = os.path.abspath(directory or tempfile.mkdtemp(prefix="raftflow-saga-"))
    ledger = os.path.join(directory, "ledger")
    t = Narrator()
    cluster = launcher.create(directory, 3, 0, rearm_grace_ms=2000)
    problems: list[str] = []
    worker = None
    batch = orders(count)
    try:
        with cluster.client(timeout=10.0, no_leader_timeout=5.0) as client:
            leader = start_cluster(t, cluster, client)
            from raftflow.statemachine.workflow.definitions import load_definition  # noqa: PLC0415

            registered = client.workflows.register(load_definition(os.path.join(EXAMPLE, "order_saga.yaml")))
            t.say(f"registered {registered.name} v{registered.version}: reserve inventory -> charge card -> ship "
                  "(undo: refund card, release inventory)")
            token = None if cluster.credentials().insecure else client.issue_token(
                "worker", queues=["orders"], name="saga demo worker").token
            worker = start_worker(directory, cluster.endpoints, ledger, token)
            t.say(f"started a worker (pid {worker.pid}) for task queue 'orders' running examples/order_saga/activities.py"
                  + (", with a worker token for that queue only" if token else ""))

            started = time.monotonic()
            run_sync(_start_all(cluster, batch))
            unshippable = sum(1 for o in batch if expected_status(o) == "compensated")
            t.say(f"started {count} order sagas ({unshippable} to the address 'nowhere', which ship refuses; "
                  f"every 3rd order's first charge attempt times out)")
            _wait_for(lambda: _closed_count(client) >= count // 3, 30, "a third of the workflows to close")
            victim = cluster.member(leader)
            os.kill(victim.pid, signal.SIGKILL)
            t.say(f"SIGKILL node {leader} (the leader) with {count - _closed_count_safe(client)} sagas still open")
            outcomes = run_sync(_wait_all(cluster, batch, timeout=60))
            new_leader = leader_of(cluster, client, exclude=frozenset({leader}))
            statuses = Counter(o.status.value for o in outcomes.values())
            t.say(f"node {new_leader} leads now; all {len(outcomes)} sagas closed in {time.monotonic() - started:.1f}s: "
                  + ", ".join(f"{n} {s}" for s, n in sorted(statuses.items())))

            launcher.stop_node(cluster, victim, kill=True)
            launcher.start_node(cluster, victim)
            t.say(f"restarted node {leader} with its data; it catches up from the leader")
            applied, hashes = launcher.converged_hashes(cluster, client)
            t.say(f"every node applied index {applied}; state hashes: "
                  + ", ".join(f"node {i} {h[:12]}" for i, h in sorted(hashes.items())))
            if len(set(hashes.values())) != 1:
                problems.append("the nodes' state hashes differ")

            effects, deliveries = read_ledger(ledger)
            redelivered = sum(n - 1 for n in deliveries.values() if n > 1)
            t.say(f"ledger: {len(effects)} effects for {len(effects)} idempotency keys; "
                  f"{sum(deliveries.values())} deliveries ({redelivered} repeated: retries and re-deliveries)")
            problems += check_effects(batch, outcomes, effects)
            shown = next(f"order-{o['order_id']}" for o in batch if expected_status(o) == "compensated"
                         and o["order_id"] % 3 == 0)
            print_history(client, shown)
    except (RaftflowError, launcher.LauncherError, TimeoutError) as exc:
        problems.append(str(exc))
    finally:
        if worker is not None:
            launcher.stop_process(worker)
        for m in cluster.members:
            launcher.stop_node(cluster, m)
        t.say("stopped the worker and the cluster")
        if not keep:
            shutil.rmtree(directory, ignore_errors=True)
    if problems:
        print("verdict: FAILED: " + "; ".join(problems[:5]) + (f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""))
        return 1
    print(f"verdict: OK: {count} sagas closed as their orders call for through a leader crash; "
          "every effect applied exactly once per idempotency key; all nodes agree")
    return 0


def _closed_count_safe(client: Client) -> int:
    try:
        return _closed_count(client)
    except RaftflowError:
        return 0


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"gave up waiting {timeout:.0f}s for {what}")
        time.sleep(0.05)  # polling the cluster over RPC
