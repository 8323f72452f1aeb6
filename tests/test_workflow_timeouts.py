"""No task waits forever: compensations have timeouts applied like a step's, an
activity whose definition sets no limit gets DEFAULT_START_TO_CLOSE_MS, RearmTimeouts
covers compensation tasks, and a hand-out that fills the history hands out nothing.

The story behind it: the leader commits ActivityTaskStarted, then replies to the
worker's poll; when that reply is lost (the leader is SIGKILLed) the task is STARTED
with nobody running it, and only a timeout gets it back."""

import msgpack

from raftflow.statemachine import Machine
from raftflow.statemachine.commands import Command, OpenSession, encode_command
from raftflow.statemachine.workflow import (
    DEFAULT_START_TO_CLOSE_MS,
    RetryPolicy,
    Timeouts,
    activity,
    compensate,
    encode_definition,
    workflow,
)
from raftflow.statemachine.workflow.engine import (
    ActivityError,
    Rearmed,
    Status,
    TaskAccepted,
    TaskState,
    Ticked,
    WorkflowEngine,
    WorkflowRejected,
    WorkflowRejectReason,
)
from raftflow.statemachine.workflow.events import EventType
from raftflow.statemachine.workflow.ops import ActivityTaskStarted, CompleteActivity, RegisterWorkflowType, StartWorkflow, WorkflowLimits

ONCE = RetryPolicy(maximum_attempts=1)
UNDO_RETRY = RetryPolicy(initial_interval=0.5, backoff_coefficient=1.0, maximum_attempts=3)


def saga(**undo_options):
    """reserve (undone by release, with `undo_options`), then ship, which the tests fail."""
    undo = compensate("release", input="$steps.reserve.result", retry=UNDO_RETRY, **undo_options)
    return workflow("saga", version=1, steps=[
        activity("reserve", task_queue="q", input="$input", retry=ONCE, start_to_close=1, compensation=undo),
        activity("ship", task_queue="q", retry=ONCE),
    ])  # fmt: skip


def unwinding(workflow_type, **limits):
    """An engine whose w1 completed reserve (at 10) and failed ship for good (at 30):
    release, attempt 1, is scheduled at 30."""
    engine = WorkflowEngine(**limits)
    engine.register(workflow_type)
    engine.start("w1", "saga", 1, "order", 0)
    reserve = engine.pending_tasks("q", 1)[0]
    engine.task_started(reserve.task_id, 1, 10)
    engine.complete(reserve.task_id, 1, "R1", 10)
    ship = engine.pending_tasks("q", 1)[0]
    engine.task_started(ship.task_id, 1, 20)
    engine.fail(ship.task_id, 1, "AddressInvalid", "nowhere", False, 30)
    assert engine.describe("w1").status is Status.COMPENSATING
    return engine


def hand_out(engine, now_ms):
    """The leader commits ActivityTaskStarted for the oldest task; the reply is lost."""
    (task,) = engine.pending_tasks("q", 1)
    started = engine.task_started(task.task_id, task.attempt, now_ms)
    assert started.compensation and started.activity == "release"
    return started


def timed_out(engine):
    return [(e.attempt, e.error_type, e.compensation, e.time_ms)
            for e in engine.history("w1") if e.type is EventType.ACTIVITY_TASK_TIMED_OUT]  # fmt: skip


def test_a_hung_compensation_times_out_is_retried_and_the_saga_still_ends_compensated():
    engine = unwinding(saga(start_to_close=2))
    lost = hand_out(engine, 40)
    assert engine.tick(2039) == Ticked(0, 0)
    assert engine.tick(2040) == Ticked(1, 0)  # 40 + start_to_close 2 s
    assert timed_out(engine) == [(1, "StartToCloseTimeout", True, 2040)]
    described = engine.describe("w1")
    assert (described.status, described.task_state, described.next_retry_ms) == (Status.COMPENSATING, TaskState.BACKOFF, 2540)
    assert described.last_error == ActivityError("StartToCloseTimeout", "StartToCloseTimeout of attempt 1")
    assert engine.tick(2540) == Ticked(1, 0)
    assert engine.complete(lost.task_id, 1, "late", 2541).reason is WorkflowRejectReason.STALE_TASK
    retried = hand_out(engine, 2600)
    assert (retried.task_id, retried.attempt, retried.input) == (lost.task_id, 2, "R1")
    assert engine.complete(retried.task_id, 2, "released", 2700) == TaskAccepted(retried.task_id, 2)
    described = engine.describe("w1")
    assert described.status is Status.COMPENSATED
    assert described.reason == "step 'ship' failed after attempt 1: AddressInvalid: nowhere"


def test_a_compensation_whose_attempts_all_time_out_fails_the_workflow_naming_why():
    engine = unwinding(saga(start_to_close=2))
    now_ms = 40
    for _ in range(UNDO_RETRY.maximum_attempts):
        hand_out(engine, now_ms)
        engine.tick(now_ms + 2000)  # times out; then the retry timer, 0.5 s later
        now_ms += 2500
        engine.tick(now_ms)
    described = engine.describe("w1")
    assert described.status is Status.FAILED and described.tasks == ()
    assert described.reason == (
        "compensation 'release' of step 'reserve' failed after attempt 3: StartToCloseTimeout: StartToCloseTimeout of attempt 3"
    )
    assert [attempt for attempt, *_ in timed_out(engine)] == [1, 2, 3]
    assert engine.history("w1")[-1].type is EventType.WORKFLOW_EXECUTION_FAILED
    assert engine.pending_tasks("q", 5) == [] and engine.next_deadline_ms() is not None  # only retention is left


def test_a_compensations_schedule_to_close_fails_it_for_good_across_attempts():
    unlimited = RetryPolicy(initial_interval=0.5, backoff_coefficient=1.0)
    engine = WorkflowEngine()
    engine.register(workflow("saga", version=1, steps=[
        activity("reserve", task_queue="q", compensation=compensate("release", retry=unlimited, start_to_close=1,
                                                                     schedule_to_close=3)),
        activity("ship", task_queue="q", retry=ONCE),
    ]))  # fmt: skip
    engine.start("w1", "saga", 1, None, 0)
    for result in ("R1", None):
        task = engine.pending_tasks("q", 1)[0]
        engine.task_started(task.task_id, 1, 10)
        if result:
            engine.complete(task.task_id, 1, result, 10)
        else:
            engine.fail(task.task_id, 1, "Down", "x", False, 10)  # release scheduled at 10: gone by 3_010
    hand_out(engine, 10)
    engine.tick(1010)  # attempt 1 times out; attempt 2 is scheduled at 1510
    engine.tick(1510)
    hand_out(engine, 2500)  # its start_to_close (3_500) comes after schedule_to_close (3_010)
    assert engine.tick(3009) == Ticked(0, 0) and engine.tick(3010) == Ticked(1, 0)
    described = engine.describe("w1")
    assert described.status is Status.FAILED
    assert described.reason.endswith("failed after attempt 2: ScheduleToCloseTimeout: ScheduleToCloseTimeout of attempt 2")


def test_an_activity_without_timeouts_times_out_after_the_default_start_to_close():
    engine = WorkflowEngine()
    bare = workflow("bare", version=1, steps=[
        activity("work", task_queue="q", retry=RetryPolicy(initial_interval=1, maximum_attempts=2))])  # fmt: skip
    engine.register(bare)
    engine.start("w1", "bare", 1, None, 0)
    assert engine.next_deadline_ms() is None  # a scheduled task waits for a worker, however long
    engine.task_started(1, 1, 100)
    assert engine.next_deadline_ms() == 100 + DEFAULT_START_TO_CLOSE_MS
    assert engine.tick(99 + DEFAULT_START_TO_CLOSE_MS) == Ticked(0, 0)
    assert engine.tick(100 + DEFAULT_START_TO_CLOSE_MS) == Ticked(1, 0)
    assert engine.describe("w1").last_error.error_type == "StartToCloseTimeout"
    assert engine._types[("bare", 1)].steps[0].timeouts == Timeouts()  # the definition stays as written
    assert DEFAULT_START_TO_CLOSE_MS == 10 * 60_000


def test_a_compensation_without_timeouts_gets_the_default_too():
    engine = unwinding(saga())
    hand_out(engine, 40)
    assert engine.tick(39 + DEFAULT_START_TO_CLOSE_MS) == Ticked(0, 0)
    assert engine.tick(40 + DEFAULT_START_TO_CLOSE_MS) == Ticked(1, 0)
    assert timed_out(engine) == [(1, "StartToCloseTimeout", True, 40 + DEFAULT_START_TO_CLOSE_MS)]


def test_the_default_yields_to_schedule_to_close_and_to_a_longer_heartbeat():
    engine = WorkflowEngine()
    hour_ms = 3_600_000
    engine.register(workflow("limits", version=1, steps=[
        activity("bounded", task_queue="a", schedule_to_close=3600),  # bounded as a whole: no default per attempt
        activity("beating", task_queue="b", heartbeat=3600),  # an attempt may heartbeat for an hour
    ]))  # fmt: skip
    engine.start("w1", "limits", 1, None, 0)
    engine.task_started(1, 1, 0)
    assert engine.next_deadline_ms() == hour_ms  # schedule_to_close only
    engine.heartbeat(1, 1, None, 10)
    engine.complete(1, 1, "ok", 20)
    engine.task_started(2, 1, 30)
    assert engine._tasks[2].close_deadline_ms == 30 + hour_ms == engine._tasks[2].heartbeat_deadline_ms


def test_rearm_timeouts_covers_compensation_tasks():
    engine = unwinding(saga(start_to_close=2))
    hand_out(engine, 40)  # start_to_close due 2_040
    assert engine.rearm_timeouts(3000, 1000) == Rearmed(1)  # a new leader at 1_000: due 4_000
    assert engine.tick(2040) == Ticked(0, 0)
    assert engine.tick(4000) == Ticked(1, 0)
    assert timed_out(engine) == [(1, "StartToCloseTimeout", True, 4000)]


def test_a_started_compensations_timeout_survives_snapshot_and_restore():
    engine = unwinding(saga(start_to_close=2, heartbeat=1))
    hand_out(engine, 40)
    rows = msgpack.unpackb(msgpack.packb(engine.snapshot_state(), use_bin_type=True), raw=False)
    restored = WorkflowEngine()
    restored.restore_state(rows)
    assert restored.snapshot_state() == rows and restored.describe("w1") == engine.describe("w1")
    for now_ms in (1039, 1040, 1540, 5000):  # heartbeat due 1_040, then the retry, then nothing
        assert restored.tick(now_ms) == engine.tick(now_ms)
    assert restored.snapshot_state() == engine.snapshot_state()
    assert timed_out(restored) == [(1, "HeartbeatTimeout", True, 1040)]


def test_a_hand_out_that_fills_the_history_is_refused_and_hands_out_nothing():
    engine = WorkflowEngine(max_history_events=6)
    engine.register(saga())
    engine.start("w1", "saga", 1, None, 0)
    engine.task_started(1, 1, 1)
    engine.complete(1, 1, "R1", 1)  # 5 events: the 6th slot is the closing event's
    refused = engine.task_started(2, 1, 2)
    assert type(refused) is WorkflowRejected and refused.reason is WorkflowRejectReason.NOT_RUNNING
    assert refused.message == (
        "task 2 attempt 1 was dropped: workflow 'w1' is failed (history reached max_history_events=6)"
    )
    assert engine.describe("w1").status is Status.FAILED and engine._tasks == {}
    assert engine.complete(2, 1, "late", 3).reason is WorkflowRejectReason.STALE_TASK


def test_through_the_machine_a_hand_out_that_fills_the_history_is_a_rejection():
    machine = Machine(workflow_limits=WorkflowLimits(max_history_events=6))

    def apply(now_ms, session_id, seq, op):
        return machine.apply(machine.applied_index + 1, encode_command(Command(now_ms, session_id, seq, 0, op)))

    session = apply(0, 0, 0, OpenSession()).session_id
    apply(0, session, 1, RegisterWorkflowType(encode_definition(saga())))
    apply(0, session, 2, StartWorkflow("w1", "saga", 1, None))
    apply(1, 0, 0, ActivityTaskStarted(1, 1))
    apply(1, session, 3, CompleteActivity(1, 1, "R1"))
    refused = apply(2, 0, 0, ActivityTaskStarted(2, 1))
    assert type(refused) is WorkflowRejected and refused.reason is WorkflowRejectReason.NOT_RUNNING
    assert machine.workflow.describe("w1").status is Status.FAILED
