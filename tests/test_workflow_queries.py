"""Starting by latest version or answering with the running run, signals (buffered,
bounded), and the read-only queries a CLI needs: list_workflows, describe's "why is it
stuck" fields, next_deadline_ms covering retention."""

import pytest

from raftflow.statemachine import Machine
from raftflow.statemachine.commands import Command, OpenSession, encode_command
from raftflow.statemachine.workflow import RetryPolicy, activity, compensate, encode_definition, workflow
from raftflow.statemachine.workflow.engine import (
    ActivityError,
    Status,
    TaskState,
    WorkflowAccepted,
    WorkflowEngine,
    WorkflowRejectReason,
    WorkflowStarted,
    WorkflowSummary,
)
from raftflow.statemachine.workflow.events import EventType
from raftflow.statemachine.workflow.ops import SignalWorkflow, StartWorkflow, RegisterWorkflowType

THRICE = RetryPolicy(initial_interval=0.25, backoff_coefficient=2.0, maximum_attempts=3)


def pay(version, queue="q"):
    return workflow("pay", version=version, steps=[
        activity("charge", task_queue=queue, input="$input", retry=THRICE, heartbeat=5,
                 compensation=compensate("refund", input="$steps.charge.result")),
        activity("notify", task_queue=queue),
    ])  # fmt: skip


def engine_with(*types, **limits):
    engine = WorkflowEngine(**limits)
    for workflow_type in types:
        engine.register(workflow_type)
    return engine


# --- start: version 0, return_running ---------------------------------------------------


def test_version_zero_starts_the_latest_registered_version_at_apply_time():
    engine = engine_with(pay(1, "q1"), pay(3, "q3"), pay(2, "q2"))
    engine.start("a", "pay", 0, None, 0)
    assert engine.describe("a").version == 3 and engine.pending_tasks("q3", 5)[0].workflow_id == "a"
    engine.register(pay(4, "q4"))
    engine.start("b", "pay", 0, None, 1)
    assert engine.describe("b").version == 4
    engine.start("c", "pay", 2, None, 2)
    assert engine.describe("c").version == 2  # an explicit version is kept
    unknown = engine.start("d", "nope", 0, None, 3)
    assert unknown.reason is WorkflowRejectReason.UNKNOWN_TYPE and unknown.message == "workflow type 'nope' any version is not registered"


def test_return_running_answers_with_the_open_run_and_changes_nothing():
    engine = engine_with(pay(1), workflow("other", version=1, steps=[activity("x", task_queue="q")]))
    assert engine.start("w1", "pay", 1, "in", 0) == WorkflowStarted("w1", 1, existing=False)
    before = engine.snapshot_state()
    assert engine.start("w1", "pay", 0, "other input", 5, return_running=True) == WorkflowStarted("w1", 1, existing=True)
    assert engine.snapshot_state() == before
    refused = engine.start("w1", "pay", 1, "in", 5)
    assert refused.reason is WorkflowRejectReason.ALREADY_RUNNING and "type 'pay' version 1" in refused.message
    other_type = engine.start("w1", "other", 1, None, 5, return_running=True)
    assert other_type.reason is WorkflowRejectReason.ALREADY_RUNNING  # an id running another type is not "the same run"
    engine.terminate("w1", "stop", 6)
    assert engine.start("w1", "pay", 1, "in", 7, return_running=True) == WorkflowStarted("w1", 2, existing=False)


def test_start_with_return_running_through_the_machine():
    machine = Machine()
    apply = lambda cmd: machine.apply(machine.applied_index + 1, encode_command(cmd))  # noqa: E731
    session = apply(Command(0, 0, 0, 0, OpenSession())).session_id
    apply(Command(0, session, 1, 0, RegisterWorkflowType(encode_definition(pay(1)))))
    assert apply(Command(1, session, 2, 0, StartWorkflow("w1", "pay", 0, None, True))) == WorkflowStarted("w1", 1, False)
    assert apply(Command(2, session, 3, 0, StartWorkflow("w1", "pay", 0, None, True))) == WorkflowStarted("w1", 1, True)


# --- signals ----------------------------------------------------------------------------


def test_signal_is_recorded_and_buffered_in_order_and_bounded():
    engine = engine_with(pay(1), max_buffered_signals=3)
    engine.start("w1", "pay", 1, None, 0)
    for i, name in enumerate(["go", "stop", "go"]):
        assert engine.signal("w1", name, {"n": i}, 10 + i) == WorkflowAccepted("w1", Status.RUNNING)
    before = engine.snapshot_state()
    full = engine.signal("w1", "go", None, 20)
    assert full.reason is WorkflowRejectReason.RESOURCE_EXHAUSTED and "max_buffered_signals=3" in full.message
    assert engine.snapshot_state() == before
    assert engine.describe("w1").buffered_signals == ("go", "stop", "go")
    signaled = [(e.signal, e.payload, e.time_ms) for e in engine.history("w1") if e.type is EventType.WORKFLOW_EXECUTION_SIGNALED]
    assert signaled == [("go", {"n": 0}, 10), ("stop", {"n": 1}, 11), ("go", {"n": 2}, 12)]


def test_signal_to_a_missing_closed_or_unwinding_workflow_is_refused():
    engine = engine_with(pay(1))
    assert engine.signal("nope", "go", None, 0).reason is WorkflowRejectReason.NOT_FOUND
    engine.start("w1", "pay", 1, None, 0)
    engine.cancel("w1", 1)  # nothing to undo: canceled at once
    closed = engine.signal("w1", "go", None, 2)
    assert closed.reason is WorkflowRejectReason.NOT_RUNNING and closed.message == "workflow 'w1' is canceled; it cannot be signaled"
    engine.start("w2", "pay", 1, None, 3)
    (task,) = engine.pending_tasks("q", 1)
    engine.task_started(task.task_id, 1, 4)
    engine.complete(task.task_id, 1, "c", 5)
    engine.cancel("w2", 6)  # the refund runs: compensating
    assert engine.signal("w2", "go", None, 7).reason is WorkflowRejectReason.NOT_RUNNING


def test_buffered_signals_survive_snapshot_and_restore():
    engine = engine_with(pay(1))
    engine.start("w1", "pay", 1, None, 0)
    engine.signal("w1", "go", [1, "two"], 1)
    restored = WorkflowEngine()
    restored.restore_state(engine.snapshot_state())
    assert restored.snapshot_state() == engine.snapshot_state()
    assert restored.describe("w1").buffered_signals == ("go",)
    assert restored.signal("w1", "go", None, 2) == engine.signal("w1", "go", None, 2)


def test_signal_op_through_the_machine():
    machine = Machine()
    apply = lambda cmd: machine.apply(machine.applied_index + 1, encode_command(cmd))  # noqa: E731
    session = apply(Command(0, 0, 0, 0, OpenSession())).session_id
    apply(Command(0, session, 1, 0, RegisterWorkflowType(encode_definition(pay(1)))))
    apply(Command(1, session, 2, 0, StartWorkflow("w1", "pay", 1, None)))
    assert apply(Command(2, session, 3, 0, SignalWorkflow("w1", "go", {"ok": True}))) == WorkflowAccepted("w1", Status.RUNNING)
    # A retried signal (same seq) is answered from the session cache and buffered once.
    assert apply(Command(3, session, 3, 0, SignalWorkflow("w1", "go", {"ok": True}))) == WorkflowAccepted("w1", Status.RUNNING)
    assert machine.workflow.describe("w1").buffered_signals == ("go",)


# --- queries ----------------------------------------------------------------------------


def test_list_workflows_newest_first_ties_by_id_filtered_and_limited():
    engine = engine_with(pay(1))
    for workflow_id, now_ms in (("c", 5), ("b", 10), ("a", 10), ("d", 20)):
        engine.start(workflow_id, "pay", 1, None, now_ms)
    engine.terminate("d", "x", 30)
    listed = engine.list_workflows(None, 10)
    assert [s.workflow_id for s in listed] == ["d", "a", "b", "c"]
    assert listed[0] == WorkflowSummary("d", 4, "pay", 1, Status.TERMINATED, 20, 30)
    assert [s.workflow_id for s in engine.list_workflows(Status.RUNNING, 2)] == ["a", "b"]
    assert engine.list_workflows(Status.COMPLETED, 10) == [] and engine.list_workflows(None, 0) == []
    with pytest.raises(ValueError, match="limit=-1 must be an integer >= 0"):
        engine.list_workflows(None, -1)


def test_describe_says_why_a_workflow_is_stuck():
    engine = engine_with(pay(1))
    engine.start("w1", "pay", 1, "in", 0)
    described = engine.describe("w1")
    assert (described.step, described.task_state, described.task_queue, described.attempt) == ("charge", TaskState.SCHEDULED, "q", 1)
    assert described.last_error is None and described.next_retry_ms is None and len(described.tasks) == 1
    engine.task_started(1, 1, 100)
    engine.heartbeat(1, 1, {"pct": 40}, 150)
    described = engine.describe("w1")
    assert (described.task_state, described.last_heartbeat_ms, described.heartbeat_details) == (TaskState.STARTED, 150, {"pct": 40})
    engine.fail(1, 1, "CardDeclined", "insufficient funds", True, 200)
    described = engine.describe("w1")
    assert described.task_state is TaskState.BACKOFF and described.next_retry_ms == 450  # 200 + 0.25 s
    assert described.last_error == ActivityError("CardDeclined", "insufficient funds")
    assert described.last_heartbeat_ms is None and described.heartbeat_details is None  # they were attempt 1's
    engine.tick(450)
    engine.task_started(1, 2, 460)
    engine.tick(5460)  # no heartbeat within 5 s
    described = engine.describe("w1")
    assert described.last_error == ActivityError("HeartbeatTimeout", "HeartbeatTimeout of attempt 2")
    assert described.tasks[0].next_retry_ms == 5960 == described.next_retry_ms  # 0.5 s: the second interval


def test_describe_a_closed_workflow_has_no_task_fields():
    engine = engine_with(pay(1))
    engine.start("w1", "pay", 1, "in", 0)
    engine.terminate("w1", "operator", 1)
    described = engine.describe("w1")
    assert described.status is Status.TERMINATED and described.tasks == ()
    assert (described.step, described.task_id, described.task_state, described.task_queue, described.last_error) == (None,) * 5


def test_next_deadline_covers_retention_so_closed_workflows_go_without_other_timers():
    engine = engine_with(pay(1), retention_ms=1000)
    assert engine.next_deadline_ms() is None
    engine.start("w1", "pay", 1, None, 0)
    assert engine.next_deadline_ms() is None  # a scheduled task without timeouts waits for no one
    engine.terminate("w1", "x", 50)
    assert engine.next_deadline_ms() == 1050
    engine.start("w2", "pay", 1, None, 60)
    engine.task_started(2, 1, 70)  # heartbeat due 5070
    assert engine.next_deadline_ms() == 1050
    assert engine.tick(1050).removed == 1 and engine.describe("w1") is None
    assert engine.next_deadline_ms() == 5070
