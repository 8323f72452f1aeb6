"""Workflows on a real 3-node cluster: the client API, the CLI and a worker process,
as a user runs them (127.0.0.1, free ports; every process stopped at the end).

One cluster and one `raftflow worker` (the example order saga's activities) serve
the module; each test uses its own workflow ids. The leader-crash story is the saga
demo's (`test_the_saga_demo_...`), run as `make demo` runs it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from raftflow.cluster.local import launcher
from raftflow.cluster.security import pki
from raftflow.cluster.client import AlreadyExists, FailedPrecondition, InvalidArgument, NotFound
from procnet import ProcCluster, sync_channel, wait_until
from test_cli_cluster import one_line_error, raftflow, succeeded

ROOT = Path(__file__).resolve().parent.parent
SAGA = ROOT / "examples" / "order_saga" / "order_saga.yaml"
ACTIVITIES = ROOT / "examples" / "order_saga" / "activities.py"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    directory = tmp_path_factory.mktemp("wf")
    pc = ProcCluster(str(directory / "cluster"), 3, rearm_grace_ms=1000)
    worker = None
    try:
        pc.start()
        pc.wait_leader()
        endpoints = ",".join(pc.cluster.endpoints)
        log = open(directory / "worker.log", "wb")  # noqa: SIM115 (closed below)
        # The worker runs as users will run it on another host: the CA file and a
        # worker token for its one queue, from the environment.
        token = pc.client.issue_token("worker", queues=["orders"], name="saga worker").token
        worker = subprocess.Popen(
            [sys.executable, "-m", "raftflow", "worker", "--activities", str(ACTIVITIES), "--task-queue", "orders",
             "--endpoints", endpoints],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
            env={**os.environ, "RAFTFLOW_LEDGER": str(directory / "ledger"), "RAFTFLOW_TOKEN": token,
                 "RAFTFLOW_CA_FILE": pki.local_paths(pc.cluster.dir, 1).ca},
        )
        pc.endpoints_text = endpoints
        pc.dir_text = pc.cluster.dir
        pc.ledger = directory / "ledger"
        pc.worker_log = directory / "worker.log"
        pc.client.workflows.register(_saga_type())
        yield pc
    finally:
        if worker is not None:
            launcher.stop_process(worker)
            log.close()
        pc.close()


def _saga_type():
    from raftflow.statemachine.workflow.definitions import load_definition

    return load_definition(SAGA)


def cli(world, *args: str) -> subprocess.CompletedProcess:
    return raftflow(*args, "--endpoints", world.endpoints_text, "--dir", world.dir_text)


def order(i: int, address: str | None = None) -> dict:
    return {"order_id": i, "amount": 10, "address": address or f"{i} Main St"}


# --- the client API ---------------------------------------------------------------------


def test_sagas_close_as_their_orders_call_for(world):
    wf = world.client.workflows
    for i in (101, 105, 112):  # 105: address nowhere -> compensated
        wf.start("order_saga", workflow_id=f"api-{i}", input=order(i, "nowhere" if i == 105 else None))
    outcomes = {i: wf.wait(f"api-{i}", timeout=30) for i in (101, 105, 112)}
    assert outcomes[101].status == "completed" and outcomes[101].result == {"tracking": "T-101"}
    assert outcomes[112].status == "completed"
    assert outcomes[105].status == "compensated"
    events = [e.type for e in wf.history("api-105")]
    assert events[0] == "WorkflowExecutionStarted" and events[-1] == "WorkflowExecutionCompensated"
    undone = [e.activity for e in wf.history("api-105")
              if e.type == "ActivityTaskCompleted" and e.compensation]
    assert undone == ["refund_card", "release_inventory"]
    listed = {w.workflow_id: w.status for w in wf.list(status="compensated")}
    assert listed.get("api-105") == "compensated" and "api-101" not in listed


def test_a_duplicate_start_is_refused_or_attaches_when_asked(world):
    wf = world.client.workflows
    # Never handed out: the queue has no worker, so the run stays open.
    world.client.workflows.register({"name": "idle", "version": 1, "steps": [
        {"type": "activity", "name": "wait", "activity": "never", "task_queue": "nobody-polls"}]})
    first = wf.start("idle", workflow_id="dup-1")
    with pytest.raises(AlreadyExists, match="dup-1"):
        wf.start("idle", workflow_id="dup-1")
    again = wf.start("idle", workflow_id="dup-1", return_running=True)
    assert again.existing and again.run_id == first.run_id
    assert wf.terminate("dup-1", "test over") == "terminated"
    with pytest.raises(FailedPrecondition):
        wf.cancel("dup-1")


def test_bad_input_is_refused_and_changes_nothing(world):
    wf = world.client.workflows
    with pytest.raises(NotFound, match="no_such_type"):
        wf.start("no_such_type", workflow_id="x-1")
    with pytest.raises(InvalidArgument, match=r"steps\[0\].*retry.*initial_interval"):
        wf.register({"name": "broken", "version": 1, "steps": [
            {"type": "activity", "name": "a", "activity": "a", "task_queue": "q", "retry": {"initial_interval": -1}}]})
    with pytest.raises(NotFound):
        wf.start("broken", workflow_id="x-2")  # nothing was registered
    with pytest.raises(NotFound, match="nope"):
        wf.describe("nope")
    with pytest.raises(FailedPrecondition):
        wf.complete_activity(999_999, 1, "result")  # no such task: a stale token


def test_describe_says_why_a_workflow_is_stuck(world):
    wf = world.client.workflows
    wf.register({"name": "stuck", "version": 1, "steps": [
        {"type": "activity", "name": "only", "activity": "unknown_activity", "task_queue": "orders",
         "retry": {"initial_interval": 30, "maximum_attempts": 5}}]})
    wf.start("stuck", workflow_id="stuck-1")
    # The worker does not know the activity: the attempt fails (retryable) and waits 30 s.
    described = wait_until(lambda: (d := wf.describe("stuck-1")).last_error and d, 20, "a failed attempt")
    assert described.status == "running" and described.step == "only"
    assert "ActivityNotRegistered" in str(described.last_error)
    assert described.next_retry_ms and described.next_retry_ms > described.start_ms
    text = succeeded(cli(world, "workflow", "describe", "stuck-1"))
    assert "last error" in text and "next retry" in text and "ActivityNotRegistered" in text
    wf.terminate("stuck-1")


# --- the CLI ------------------------------------------------------------------------------


def test_cli_register_start_wait_show_list(world, tmp_path):
    assert "registered order_saga version 1" in succeeded(cli(world, "workflow", "register", str(SAGA)))
    out = succeeded(cli(world, "workflow", "start", "order_saga", "--id", "cli-1", "--input",
                        json.dumps(order(201)), "--wait"))
    assert "workflow cli-1 completed" in out and "T-201" in out
    failed = cli(world, "workflow", "start", "order_saga", "--id", "cli-2", "--input",
                 json.dumps(order(202, "nowhere")), "--wait")
    assert failed.returncode == 1 and "compensated" in failed.stdout
    timeline = succeeded(cli(world, "workflow", "show", "cli-2"))
    assert "ActivityTaskFailed" in timeline and "AddressInvalid" in timeline and "refund_card" in timeline
    events = json.loads(succeeded(cli(world, "workflow", "show", "cli-2", "-o", "json")))
    assert events[0]["event_type"] == "WorkflowExecutionStarted"
    rows = json.loads(succeeded(cli(world, "workflow", "list", "--status", "completed", "-o", "json")))
    assert "cli-1" in {r["workflow_id"] for r in rows}


def test_cli_errors_are_one_line(world, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: bad\nversion: 1\nsteps:\n  - {type: activity, name: a, activity: a, task_queue: q, colour: red}\n")
    one_line_error(cli(world, "workflow", "register", str(bad)), "colour", "unknown field", code=2)
    one_line_error(cli(world, "workflow", "register", str(tmp_path / "missing.yaml")), "missing.yaml", code=2)
    one_line_error(cli(world, "workflow", "start", "order_saga", "--input", "{not json"), "--input", "not JSON", code=2)
    one_line_error(cli(world, "workflow", "describe", "no-such-workflow"), "no-such-workflow")
    one_line_error(cli(world, "workflow", "cancel", "no-such-workflow"), "no-such-workflow")
    one_line_error(cli(world, "workflow", "start", "no_such_type"), "no_such_type")
    one_line_error(raftflow("worker", "--activities", "no_such_module_xyz", "--task-queue", "q",
                            "--endpoints", world.endpoints_text, "--dir", world.dir_text), "no_such_module_xyz", code=2)


# --- the demo ---------------------------------------------------------------------------


def test_the_saga_demo_survives_a_leader_crash_and_says_ok(tmp_path):
    """`make demo` runs this story: sagas through a SIGKILLed leader; outcomes, effects
    once per idempotency key, equal state on every node."""
    result = subprocess.run(
        [sys.executable, "-m", "raftflow", "demo", "--workflows", "21", "--dir", str(tmp_path / "demo")],
        capture_output=True, text=True, timeout=240, stdin=subprocess.DEVNULL, cwd=ROOT,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "verdict: OK" in result.stdout
    assert "SIGKILL node" in result.stdout and "history of order-" in result.stdout


# --- what the issue asks of the real cluster ----------------------------------------------

TEST_ACTIVITIES = ROOT / "tests" / "workflow_activities.py"


def start_worker(world, queue: str, log_path: Path) -> subprocess.Popen:
    log = open(log_path, "ab")  # noqa: SIM115 (the child holds it; closed when the test's tmp dir goes)
    return subprocess.Popen(
        [sys.executable, "-m", "raftflow", "worker", "--activities", str(TEST_ACTIVITIES), "--task-queue", queue,
         "--endpoints", world.endpoints_text, "--dir", world.dir_text, "--verbose"],
        stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT, start_new_session=True,
    )


def test_a_worker_killed_mid_activity_leads_to_a_timeout_and_a_retry(world, tmp_path):
    wf = world.client.workflows
    wf.register({"name": "held", "version": 1, "steps": [
        {"type": "activity", "name": "work", "activity": "hold", "task_queue": "held-q", "input": "$input",
         "timeouts": {"start_to_close": 1}, "retry": {"initial_interval": 0.05, "maximum_attempts": 3}}]})
    args = {"started": str(tmp_path / "started"), "release": str(tmp_path / "release")}
    first = start_worker(world, "held-q", tmp_path / "w1.log")
    second = None
    try:
        wf.start("held", workflow_id="held-1", input=args)
        wait_until(lambda: (tmp_path / "started.1").exists(), 20, "attempt 1 to start on the first worker")
        first.kill()  # SIGKILL mid-activity: it never reports
        first.wait()
        (tmp_path / "release").write_text("go")
        second = start_worker(world, "held-q", tmp_path / "w2.log")
        outcome = wf.wait("held-1", timeout=30)
    finally:
        for proc in (first, second):
            if proc is not None:
                launcher.stop_process(proc)
    assert outcome.status == "completed" and outcome.result["attempt"] == 2
    events = wf.history("held-1")
    timed_out = [e for e in events if e.type == "ActivityTaskTimedOut"]
    assert [(e.attempt, e.error_type) for e in timed_out] == [(1, "StartToCloseTimeout")]


def test_a_retried_start_is_applied_once(world):
    """The same (session, seq) sent twice, as a client does after a lost reply: one
    run, the same answer both times, never "already running"."""
    from raftflow.proto import client_pb2, client_pb2_grpc
    import msgpack

    leader = world.wait_leader()
    with sync_channel(world.address(leader)) as channel:
        stub = client_pb2_grpc.ClientStub(channel)
        session = stub.OpenSession(client_pb2.OpenSessionRequest(), timeout=5).session_id
        cmd = client_pb2.Command(request_id=1, session_id=session, seq=1, ack_floor=1)
        cmd.start_workflow.workflow_id = "retried-1"
        cmd.start_workflow.type_name = "order_saga"
        cmd.start_workflow.input = msgpack.packb(order(301))
        first = stub.Execute(cmd, timeout=5)
        second = stub.Execute(cmd, timeout=5)
    assert first.code == second.code == 0
    assert first.workflow.run_id == second.workflow.run_id and first.workflow.workflow_id == "retried-1"
    assert world.client.workflows.wait("retried-1", timeout=30).status == "completed"
    starts = [e for e in world.client.workflows.history("retried-1") if e.type == "WorkflowExecutionStarted"]
    assert len(starts) == 1


def test_a_timer_and_a_signal_wake_a_waiting_workflow(world, tmp_path):
    wf = world.client.workflows
    wf.register({"name": "approval", "version": 1, "steps": [
        {"type": "timer", "name": "cool_off", "duration": 0.3},
        {"type": "signal", "name": "approved", "signal": "approve", "timeout": 60},
        {"type": "activity", "name": "ship", "activity": "echo", "task_queue": "approval-q",
         "input": "$steps.approved.result"}]})
    worker = start_worker(world, "approval-q", tmp_path / "w.log")
    try:
        wf.start("approval", workflow_id="approval-1")
        waiting = wait_until(lambda: (d := wf.describe("approval-1")).awaited_signal and d, 20,
                             "the timer to fire and the signal wait to begin")
        assert waiting.awaited_signal == "approve"
        assert succeeded(cli(world, "workflow", "signal", "approval-1", "approve", "--input", '{"by": "ops"}'))
        outcome = wf.wait("approval-1", timeout=30)
    finally:
        launcher.stop_process(worker)
    assert outcome.status == "completed" and outcome.result == {"by": "ops"}
    kinds = [e.type for e in wf.history("approval-1")]
    assert kinds.index("TimerStarted") < kinds.index("TimerFired") < kinds.index("WorkflowExecutionSignaled")
    fired = next(e for e in wf.history("approval-1") if e.type == "TimerFired")
    started = next(e for e in wf.history("approval-1") if e.type == "TimerStarted")
    assert fired.time_ms - started.time_ms >= 300


def test_cancel_runs_the_compensations_of_completed_steps(world, tmp_path):
    wf = world.client.workflows
    wf.register({"name": "cancellable", "version": 1, "steps": [
        {"type": "activity", "name": "reserve", "activity": "echo", "task_queue": "cancel-q", "input": "$input",
         "compensation": {"activity": "undo", "input": "$steps.reserve.result"}},
        {"type": "signal", "name": "go", "signal": "go"},
        {"type": "activity", "name": "ship", "activity": "echo", "task_queue": "cancel-q"}]})
    worker = start_worker(world, "cancel-q", tmp_path / "w.log")
    try:
        wf.start("cancellable", workflow_id="cancel-1", input={"sku": 7})
        wait_until(lambda: wf.describe("cancel-1").awaited_signal == "go", 20, "the workflow to wait for 'go'")
        out = succeeded(cli(world, "workflow", "cancel", "cancel-1"))
        assert "canceled cancel-1" in out
        outcome = wf.wait("cancel-1", timeout=30)
    finally:
        launcher.stop_process(worker)
    assert outcome.status == "canceled"
    undone = [e for e in wf.history("cancel-1") if e.type == "ActivityTaskCompleted" and e.compensation]
    assert [(e.activity, e.payload) for e in undone] == [("undo", {"undone": {"sku": 7}})]
    assert not any(e.step == "ship" for e in wf.history("cancel-1"))
