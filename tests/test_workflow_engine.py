"""The workflow engine core: sequential activity steps, retries, timeouts, fencing,
saga compensations, bounds, history and canonical snapshots. Time is passed in."""

import re

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftflow.statemachine.commands import SnapshotError
from raftflow.statemachine.workflow import RetryPolicy, activity, compensate, timer, workflow
from raftflow.statemachine.workflow.engine import (
    ENGINE_FORMAT,
    Status,
    TaskAccepted,
    WorkflowEngine,
    WorkflowRejected,
    WorkflowRejectReason,
    WorkflowStarted,
)

ONCE = RetryPolicy(maximum_attempts=1)
THRICE = RetryPolicy(initial_interval=0.2, backoff_coefficient=2.0, maximum_attempts=3)


def order_type(retry=ONCE, start_to_close=None):
    return workflow("order", version=1, steps=[
        activity("reserve", task_queue="q", input="$input", retry=retry,
                 compensation=compensate("release", input="$steps.reserve.result", retry=retry)),
        activity("charge", task_queue="q", input="$steps.reserve.result", retry=retry, start_to_close=start_to_close,
                 compensation=compensate("refund", input="$steps.charge.result", retry=retry)),
        activity("notify", task_queue="q", retry=retry),  # no compensation: skipped when unwinding
        activity("ship", task_queue="q", retry=retry),
    ])  # fmt: skip


def new_engine(retry=ONCE, start_to_close=None, **limits):
    engine = WorkflowEngine(**limits)
    engine.register(order_type(retry, start_to_close))
    return engine


def take(engine, now_ms, queue="q"):
    """The leader's part: pick the oldest scheduled task and propose task_started."""
    (pending,) = engine.pending_tasks(queue, 1)
    started = engine.task_started(pending.task_id, pending.attempt, now_ms)
    return started


def run(engine, now_ms, result="ok"):
    started = take(engine, now_ms)
    assert engine.complete(started.task_id, started.attempt, result, now_ms) == TaskAccepted(started.task_id, started.attempt)
    return started


def event_names(engine, workflow_id="w1"):
    return [(event.type.value, event.step, event.attempt, event.compensation) for event in engine.history(workflow_id)]


def test_happy_path_completes_with_events_in_order():
    engine = new_engine()
    assert engine.start("w1", "order", 1, {"sku": "a"}, 10) == WorkflowStarted("w1", 1)
    first = run(engine, 11, result="R1")
    assert first.input == {"sku": "a"} and first.activity == "reserve"
    assert run(engine, 12, result="C1").input == "R1"  # $steps.reserve.result
    run(engine, 13)
    run(engine, 14, result="shipped")
    described = engine.describe("w1")
    assert (described.status, described.close_ms, described.result) == (Status.COMPLETED, 14, "shipped")
    names = [event.type.value for event in engine.history("w1")]
    steps = ["ActivityTaskScheduled", "ActivityTaskStarted", "ActivityTaskCompleted"]
    assert names == ["WorkflowExecutionStarted", *steps * 4, "WorkflowExecutionCompleted"]
    assert [event.event_id for event in engine.history("w1")] == list(range(1, 15))


def test_step_failing_for_good_runs_compensations_in_reverse_and_skips_steps_without_one():
    engine = new_engine()
    engine.start("w1", "order", 1, "in", 0)
    run(engine, 1, result="R")
    run(engine, 2, result="C")
    run(engine, 3)
    ship = take(engine, 4)
    assert engine.fail(ship.task_id, 1, "CardDeclined", "no", False, 5) == TaskAccepted(ship.task_id, 1)
    assert engine.describe("w1").status is Status.COMPENSATING
    refund = run(engine, 6)
    release = run(engine, 7)
    assert (refund.activity, refund.input, refund.compensation) == ("refund", "C", True)
    assert (release.activity, release.input) == ("release", "R")
    described = engine.describe("w1")
    assert described.status is Status.COMPENSATED
    assert described.reason == "step 'ship' failed after attempt 1: CardDeclined: no"
    assert event_names(engine)[-8:] == [
        ("ActivityTaskFailed", "ship", 1, False),
        ("ActivityTaskScheduled", "charge", 1, True),
        ("ActivityTaskStarted", "charge", 1, True),
        ("ActivityTaskCompleted", "charge", 1, True),
        ("ActivityTaskScheduled", "reserve", 1, True),
        ("ActivityTaskStarted", "reserve", 1, True),
        ("ActivityTaskCompleted", "reserve", 1, True),
        ("WorkflowExecutionCompensated", None, None, False),
    ]


def test_compensation_failing_for_good_fails_the_workflow_and_stops_unwinding():
    engine = new_engine()
    engine.start("w1", "order", 1, "in", 0)
    run(engine, 1)
    run(engine, 2)
    charge_fail = take(engine, 3)  # notify
    engine.fail(charge_fail.task_id, 1, "Boom", "x", False, 3)
    refund = take(engine, 4)
    engine.fail(refund.task_id, 1, "Gone", "bank down", False, 5)
    described = engine.describe("w1")
    assert described.status is Status.FAILED and "compensation 'refund' of step 'charge'" in described.reason
    assert engine.pending_tasks("q", 10) == []


def test_retry_timer_fires_at_exactly_now_plus_interval_and_attempts_stop_at_maximum():
    engine = new_engine(retry=THRICE)
    engine.start("w1", "order", 1, "in", 0)
    first = take(engine, 100)
    engine.fail(first.task_id, 1, "Flaky", "first", True, 1000)
    assert engine.pending_tasks("q", 10) == [] and engine.next_deadline_ms() == 1200
    assert engine.tick(1199).fired == 0 and engine.pending_tasks("q", 10) == []
    assert engine.tick(1200).fired == 1
    second = take(engine, 1300)
    assert (second.task_id, second.attempt) == (first.task_id, 2)
    engine.fail(second.task_id, 2, "Flaky", "second", True, 1300)
    engine.tick(1700)  # 1300 + 400
    third = take(engine, 1800)
    assert third.attempt == 3
    engine.fail(third.task_id, 3, "Flaky", "third", True, 1800)  # the last of maximum_attempts=3
    assert engine.describe("w1").status is Status.COMPENSATED  # nothing had completed
    failures = [(e.attempt, e.message) for e in engine.history("w1") if e.type.value == "ActivityTaskFailed"]
    assert failures == [(1, "first"), (2, "second"), (3, "third")]
    assert max(e.attempt or 0 for e in engine.history("w1")) == 3


def test_stale_completion_is_rejected_and_changes_nothing():
    engine = new_engine(retry=THRICE)
    engine.start("w1", "order", 1, "in", 0)
    first = take(engine, 1)
    engine.fail(first.task_id, 1, "Flaky", "x", True, 2)
    engine.tick(202)
    take(engine, 203)  # attempt 2 is started
    before = engine.snapshot_state()
    rejected = engine.complete(first.task_id, 1, "late", 204)
    assert type(rejected) is WorkflowRejected and rejected.reason is WorkflowRejectReason.STALE_TASK
    for late in (engine.fail(first.task_id, 1, "E", "m", True, 204), engine.heartbeat(first.task_id, 1, None, 204)):
        assert late.reason is WorkflowRejectReason.STALE_TASK
    assert engine.snapshot_state() == before


def test_a_report_must_carry_the_secret_its_hand_out_was_given():
    engine = new_engine(retry=THRICE)
    engine.start("w1", "order", 1, "in", 0)
    (pending,) = engine.pending_tasks("q", 1)
    secret = bytes(range(16))
    started = engine.task_started(pending.task_id, pending.attempt, 1, secret)
    before = engine.snapshot_state()
    for guess in (b"", bytes(16)):  # (task id, attempt) alone, or a guess: refused, nothing changes
        for report in (
            engine.complete(started.task_id, 1, "forged", 2, guess),
            engine.fail(started.task_id, 1, "E", "m", False, 2, guess),
            engine.heartbeat(started.task_id, 1, None, 2, guess),
        ):
            assert report.reason is WorkflowRejectReason.STALE_TASK and "another secret" in report.message
    assert engine.snapshot_state() == before
    rows = msgpack.unpackb(msgpack.packb(engine.snapshot_state(), use_bin_type=True), raw=False)
    assert rows[5][0][-1] == secret  # a started task keeps its secret through a snapshot
    restored = WorkflowEngine()
    restored.restore_state(rows)
    assert restored.heartbeat(started.task_id, 1, None, 3, secret) == TaskAccepted(started.task_id, 1)
    engine.fail(started.task_id, 1, "Flaky", "x", True, 3, secret)  # back off: the secret goes with the attempt
    rows = msgpack.unpackb(msgpack.packb(engine.snapshot_state(), use_bin_type=True), raw=False)
    assert len(rows[5][0]) == 15  # no secret column: the row of a build that predates secrets


def test_start_to_close_timeout_times_out_then_retries():
    engine = new_engine(retry=THRICE, start_to_close=0.005)
    engine.start("w1", "order", 1, "in", 0)
    run(engine, 1)
    charge = take(engine, 10)
    assert engine.tick(14).fired == 0
    assert engine.tick(15).fired == 1
    timed_out = engine.history("w1")[-1]
    assert (timed_out.type.value, timed_out.error_type, timed_out.attempt) == ("ActivityTaskTimedOut", "StartToCloseTimeout", 1)
    assert engine.complete(charge.task_id, 1, "late", 16).reason is WorkflowRejectReason.STALE_TASK
    engine.tick(215)
    assert take(engine, 216).attempt == 2


def test_cancel_runs_compensations_and_terminate_does_not():
    engine = new_engine()
    engine.start("a", "order", 1, "a", 1)
    run(engine, 1, result="A")  # a's charge is now scheduled
    assert engine.cancel("a", 2).status is Status.COMPENSATING  # drops it, schedules release
    engine.start("b", "order", 1, "b", 2)
    assert engine.terminate("b", "operator", 2).status is Status.TERMINATED
    release = run(engine, 3)
    assert (release.workflow_id, release.activity, release.input) == ("a", "release", "A")
    assert engine.describe("a").status is Status.CANCELED and engine.describe("a").reason == "canceled"
    assert engine.pending_tasks("q", 10) == []
    assert engine.history("b")[-1].type.value == "WorkflowExecutionTerminated"
    assert engine.cancel("b", 4).reason is WorkflowRejectReason.NOT_RUNNING
    assert engine.terminate("zz", "x", 4).reason is WorkflowRejectReason.NOT_FOUND


def test_duplicate_start_and_backlog_and_unknown_are_rejected():
    engine = new_engine(max_backlog=2)
    engine.start("w1", "order", 1, None, 0)
    before = engine.snapshot_state()
    assert engine.start("w1", "order", 1, None, 1).reason is WorkflowRejectReason.ALREADY_RUNNING
    engine.start("w2", "order", 1, None, 1)
    full = engine.start("w3", "order", 1, None, 1)
    assert full.reason is WorkflowRejectReason.RESOURCE_EXHAUSTED and "max_backlog=2" in full.message
    assert engine.start("w3", "nope", 1, None, 1).reason is WorkflowRejectReason.UNKNOWN_TYPE
    assert engine.describe("w3") is None and engine.snapshot_state() != before  # w2 started
    # A first step with no task queue is not held back by a full queue.
    engine.register(workflow("sleepy", version=1, steps=[timer("t", duration=1), activity("a", task_queue="q")]))
    assert engine.start("w3", "sleepy", 1, None, 1) == WorkflowStarted("w3", 3)


def test_history_limit_fails_the_workflow():
    engine = new_engine(max_history_events=6)
    engine.start("w1", "order", 1, None, 0)
    run(engine, 1)  # events 2-4; the 5th (charge scheduled) is the last before the closing slot
    take(engine, 2)  # would be the 6th event: the workflow fails instead
    described = engine.describe("w1")
    assert described.status is Status.FAILED and "max_history_events=6" in described.reason
    assert len(engine.history("w1")) == 6


def test_retention_removes_closed_workflows_and_a_closed_id_may_start_again():
    engine = new_engine(retention_ms=100)
    engine.start("w1", "order", 1, None, 0)
    engine.terminate("w1", "x", 10)
    assert engine.tick(109).removed == 0
    assert engine.tick(110).removed == 1 and engine.describe("w1") is None
    assert engine.start("w1", "order", 1, None, 111) == WorkflowStarted("w1", 2)


def test_restore_rejects_bad_rows_and_round_trips():
    engine = new_engine(retry=THRICE, start_to_close=0.005)
    engine.start("w1", "order", 1, "in", 0)
    run(engine, 1)
    take(engine, 2)
    rows = msgpack.unpackb(msgpack.packb(engine.snapshot_state(), use_bin_type=True), raw=False)
    restored = WorkflowEngine()
    restored.restore_state(rows)
    assert restored.snapshot_state() == engine.snapshot_state()
    assert restored.tick(7).fired == engine.tick(7).fired == 1  # the restored heap arms the same timeout
    bad = list(rows)
    bad[5] = []  # the workflow's task is missing
    with pytest.raises(SnapshotError, match=re.escape("workflow 'w1' holds tasks [2], which are not in the snapshot")):
        WorkflowEngine().restore_state(bad)
    for other in (ENGINE_FORMAT - 1, ENGINE_FORMAT + 1):  # an older build's rows are refused, not misread
        with pytest.raises(SnapshotError, match=f"workflows format is {other}; this build reads format {ENGINE_FORMAT}"):
            WorkflowEngine().restore_state([other, *rows[1:]])


# --- property: random interleavings keep the invariants --------------------------------

ACTIONS = st.lists(
    st.tuples(st.sampled_from(["complete", "fail", "fail_final", "take", "tick", "cancel", "terminate", "stale"]),
              st.integers(0, 2), st.integers(0, 400)),
    max_size=60,
)  # fmt: skip


def drive(engine, actions):
    """Applies the actions; returns the results, for comparing engines."""
    now, results = 0, []
    for workflow_id in ("a", "b", "c"):
        results.append(engine.start(workflow_id, "order", 1, workflow_id, now))
    for verb, which, step_ms in actions:
        now += step_ms
        pending = engine.pending_tasks("q", 3)
        started = [t for t in engine._tasks.values() if t.state.value == "started"]
        if verb == "take" and pending:
            results.append(engine.task_started(pending[which % len(pending)].task_id, pending[which % len(pending)].attempt, now))
        elif verb in ("complete", "fail", "fail_final", "stale") and started:
            task = started[which % len(started)]
            attempt = task.attempt - 1 if verb == "stale" else task.attempt
            if verb == "complete" or verb == "stale":
                results.append(engine.complete(task.task_id, attempt, f"r{now}", now))
            else:
                results.append(engine.fail(task.task_id, attempt, "E", f"m{now}", verb == "fail", now))
        elif verb == "cancel":
            results.append(engine.cancel("abc"[which], now))
        elif verb == "terminate" and which == 0:
            results.append(engine.terminate("abc"[which], "t", now))
        else:
            results.append(engine.tick(now))
    return results


def check_invariants(engine):
    for workflow_id in "abc":
        history = engine.history(workflow_id)
        terminal = [i for i, e in enumerate(history) if e.type.value.startswith("WorkflowExecution") and e.type.value not in (
            "WorkflowExecutionStarted", "WorkflowExecutionCancelRequested")]  # fmt: skip
        assert len(terminal) <= 1 and (not terminal or terminal[0] == len(history) - 1)
        assert (engine.describe(workflow_id).status.value in ("running", "compensating")) == (not terminal)
        completed = [e.step for e in history if e.type.value == "ActivityTaskCompleted" and not e.compensation]
        undone = [e.step for e in history if e.type.value == "ActivityTaskScheduled" and e.compensation and e.attempt == 1]
        with_undo = [step for step in completed if step in ("reserve", "charge")]
        assert undone == list(reversed(with_undo))[: len(undone)]
        assert all(e.attempt is None or e.attempt <= 3 for e in history)


@settings(max_examples=150, deadline=None)
@given(ACTIONS)
def test_random_interleavings_keep_invariants_and_are_deterministic(actions):
    first, second = new_engine(retry=THRICE, start_to_close=0.05), new_engine(retry=THRICE, start_to_close=0.05)
    assert drive(first, actions) == drive(second, actions)
    check_invariants(first)
    rows = first.snapshot_state()
    assert rows == second.snapshot_state()
    restored = WorkflowEngine()
    restored.restore_state(msgpack.unpackb(msgpack.packb(rows, use_bin_type=True), raw=False))
    assert restored.snapshot_state() == rows
    # The restored engine goes on exactly like the original.
    assert restored.tick(10**6) == first.tick(10**6)
    assert restored.snapshot_state() == first.snapshot_state()
