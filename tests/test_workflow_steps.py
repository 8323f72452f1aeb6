"""Timer, signal and parallel steps: how each begins, completes, times out or fails,
how cancel and terminate treat what is pending, and their snapshot rows."""

import msgpack
import pytest

from raftflow.statemachine import Machine
from raftflow.statemachine.commands import Command, OpenSession, SnapshotError, encode_command
from raftflow.statemachine.workflow import RetryPolicy, activity, compensate, encode_definition, parallel, signal, timer, workflow
from raftflow.statemachine.workflow.engine import (
    Status,
    TaskAccepted,
    TaskState,
    Ticked,
    WorkflowAccepted,
    WorkflowEngine,
    WorkflowRejectReason,
    WorkflowStarted,
)
from raftflow.statemachine.workflow.events import EventType
from raftflow.statemachine.workflow.ops import (
    ActivityTaskStarted,
    CancelWorkflow,
    CompleteActivity,
    RearmTimeouts,
    RegisterWorkflowType,
    SignalWorkflow,
    StartWorkflow,
    Tick,
)

ONCE = RetryPolicy(maximum_attempts=1)


def undoable(name, queue="q", **options):
    return activity(name, task_queue=queue, retry=ONCE,
                    compensation=compensate(f"undo_{name}", input=f"$steps.{name}.result", retry=ONCE), **options)  # fmt: skip


TRIP = workflow("trip", version=1, steps=[
    undoable("hotel", input="$input"),
    timer("cool_down", duration=0.5),
    signal("approval", timeout=60),
    parallel("book", [undoable("flight", "air", input="$steps.approval.result"), undoable("car", "cars"),
                      activity("mail", task_queue="q", retry=ONCE)]),
    activity("receipt", task_queue="q", input="$steps.book.result", retry=ONCE),
])  # fmt: skip


def new_engine(*types, **limits):
    engine = WorkflowEngine(**limits)
    for workflow_type in types or (TRIP,):
        engine.register(workflow_type)
    return engine


def run_task(engine, queue, now_ms, result="ok", workflow_id=None):
    """Takes the oldest task of the queue (of the workflow, if given) and completes it."""
    task = next(t for t in engine.pending_tasks(queue, 100) if workflow_id in (None, t.workflow_id))
    engine.task_started(task.task_id, task.attempt, now_ms)
    assert engine.complete(task.task_id, task.attempt, result, now_ms) == TaskAccepted(task.task_id, task.attempt)
    return task


def types_of(engine, workflow_id="w1"):
    return [event.type for event in engine.history(workflow_id)]


def to_the_group(engine, now_ms=0):
    """Starts w1 and runs it to its parallel group (at now_ms + 600)."""
    engine.start("w1", "trip", 1, {"city": "Oslo"}, now_ms)
    run_task(engine, "q", now_ms + 10, result="H1")
    engine.tick(now_ms + 510)
    engine.signal("w1", "approval", {"ok": True}, now_ms + 600)


def test_timer_fires_on_the_first_tick_at_or_after_its_time_and_its_result_is_none():
    engine = new_engine()
    engine.start("w1", "trip", 1, None, 0)
    run_task(engine, "q", 100, result="H1")
    described = engine.describe("w1")
    assert (described.step, described.timer_fire_ms, described.tasks) == ("cool_down", 600, ())
    assert engine.next_deadline_ms() == 600
    assert engine.tick(599) == Ticked(0, 0)
    assert engine.tick(650) == Ticked(1, 0)  # late ticks fire it too
    history = engine.history("w1")
    started, fired = (e for e in history if e.type in (EventType.TIMER_STARTED, EventType.TIMER_FIRED))
    assert (started.step, started.deadline_ms, started.time_ms) == ("cool_down", 600, 100)
    assert (fired.step, fired.time_ms) == ("cool_down", 650)
    assert ("cool_down", None) in [(name, result) for name, result in engine._workflows["w1"].results]
    assert engine.describe("w1").awaited_signal == "approval"


def test_signal_sent_before_the_step_is_buffered_and_taken_when_the_step_begins():
    engine = new_engine()
    engine.start("w1", "trip", 1, None, 0)
    engine.signal("w1", "approval", "first", 1)
    engine.signal("w1", "approval", "second", 2)
    assert engine.describe("w1").buffered_signals == ("approval", "approval")
    run_task(engine, "q", 3)
    engine.tick(503)  # the timer fires; the signal step takes the oldest "approval" at once
    described = engine.describe("w1")
    assert described.buffered_signals == ("approval",) and described.step == "book"
    flight = next(t for t in engine.pending_tasks("air", 5))
    assert flight.input == "first"  # $steps.approval.result
    received = [e for e in engine.history("w1") if e.type is EventType.SIGNAL_RECEIVED]
    assert [(e.step, e.signal, e.payload, e.time_ms) for e in received] == [("approval", "approval", "first", 503)]


def test_a_waiting_signal_step_takes_the_signal_when_it_arrives():
    engine = new_engine()
    engine.start("w1", "trip", 1, None, 0)
    run_task(engine, "q", 1)
    engine.tick(501)
    described = engine.describe("w1")
    assert (described.awaited_signal, described.signal_deadline_ms) == ("approval", 60_501)
    assert engine.signal("w1", "other", 1, 502) == WorkflowAccepted("w1", Status.RUNNING)  # buffered, not taken
    assert engine.signal("w1", "approval", {"ok": 1}, 503) == WorkflowAccepted("w1", Status.RUNNING)
    described = engine.describe("w1")
    assert described.step == "book" and described.buffered_signals == ("other",) and described.awaited_signal is None
    assert engine.tick(60_501) == Ticked(0, 0)  # the wait's timeout is stale
    kinds = types_of(engine)[-6:]
    assert kinds[:3] == [EventType.WORKFLOW_EXECUTION_SIGNALED, EventType.WORKFLOW_EXECUTION_SIGNALED, EventType.SIGNAL_RECEIVED]


def test_a_waiting_signal_step_is_never_refused_for_a_full_buffer():
    engine = new_engine(max_buffered_signals=1)
    engine.start("w1", "trip", 1, None, 0)
    run_task(engine, "q", 1)
    engine.tick(501)
    assert engine.signal("w1", "other", None, 502).status is Status.RUNNING
    assert engine.signal("w1", "other", None, 503).reason is WorkflowRejectReason.RESOURCE_EXHAUSTED
    assert engine.signal("w1", "approval", None, 504).status is Status.RUNNING
    assert engine.describe("w1").step == "book"


def test_signal_timeout_fails_the_step_for_good_and_unwinds():
    engine = new_engine()
    engine.start("w1", "trip", 1, None, 0)
    run_task(engine, "q", 1, result="H1")
    engine.tick(501)
    assert engine.tick(60_500) == Ticked(0, 0)
    assert engine.tick(60_501) == Ticked(1, 0)
    described = engine.describe("w1")
    reason = "step 'approval' waited 60 s for signal 'approval', which did not come"
    assert described.status is Status.COMPENSATING and described.reason == reason
    timed_out = engine.history("w1")[-2]
    assert (timed_out.type, timed_out.signal, timed_out.error_type, timed_out.deadline_ms) == (
        EventType.SIGNAL_WAIT_TIMED_OUT, "approval", "SignalTimeout", 60_501)  # fmt: skip
    undo = run_task(engine, "q", 60_600)
    assert (undo.activity, undo.input, undo.step, undo.compensation) == ("undo_hotel", "H1", "hotel", True)
    assert engine.describe("w1").status is Status.COMPENSATED
    assert engine.signal("w1", "approval", None, 60_700).reason is WorkflowRejectReason.NOT_RUNNING


def test_parallel_group_schedules_every_member_and_completes_with_a_dict_of_results():
    engine = new_engine()
    to_the_group(engine)
    described = engine.describe("w1")
    assert described.step == "book" and [t.step for t in described.tasks] == ["flight", "car", "mail"]
    assert [t.task_queue for t in described.tasks] == ["air", "cars", "q"]
    assert engine.pending_tasks("air", 5)[0].input == {"ok": True}
    run_task(engine, "cars", 700, result="C1")
    run_task(engine, "q", 710, result="M1")
    assert [t.step for t in engine.describe("w1").tasks] == ["flight"]
    assert engine.pending_tasks("q", 5) == []  # receipt waits for the whole group
    run_task(engine, "air", 720, result="F1")
    receipt = engine.pending_tasks("q", 5)[0]
    assert receipt.input == {"flight": "F1", "car": "C1", "mail": "M1"}  # member order, not completion order
    run_task(engine, "q", 730, result="done")
    assert engine.describe("w1").status is Status.COMPLETED


def test_a_member_failing_for_good_drops_the_others_and_undoes_completed_members_in_reverse():
    engine = new_engine()
    to_the_group(engine)
    car = run_task(engine, "cars", 700, result="C1")
    mail = engine.pending_tasks("q", 5)[0]
    engine.task_started(mail.task_id, 1, 705)
    flight = engine.pending_tasks("air", 5)[0]
    engine.task_started(flight.task_id, 1, 710)
    assert engine.fail(flight.task_id, 1, "SoldOut", "no seats", False, 720) == TaskAccepted(flight.task_id, 1)
    described = engine.describe("w1")
    assert described.status is Status.COMPENSATING and described.reason == "step 'flight' failed after attempt 1: SoldOut: no seats"
    # mail's late report is stale; its task is gone (it was started, so no queue entry).
    assert engine.complete(mail.task_id, 1, "late", 730).reason is WorkflowRejectReason.STALE_TASK
    canceled = [(e.step, e.task_id) for e in engine.history("w1") if e.type is EventType.ACTIVITY_TASK_CANCELED]
    assert canceled == [("mail", mail.task_id)]
    undo_car = run_task(engine, "cars", 740)
    undo_hotel = run_task(engine, "q", 750)
    assert [(u.activity, u.input) for u in (undo_car, undo_hotel)] == [("undo_car", "C1"), ("undo_hotel", "H1")]
    assert engine.describe("w1").status is Status.COMPENSATED
    assert car.step == "car"


def test_a_scheduled_member_dropped_by_the_group_leaves_its_queue():
    engine = new_engine()
    to_the_group(engine)
    flight = engine.pending_tasks("air", 5)[0]
    engine.task_started(flight.task_id, 1, 700)
    engine.fail(flight.task_id, 1, "SoldOut", "x", False, 710)
    assert engine.pending_tasks("cars", 5) == []  # car was still scheduled: dropped from its queue
    assert [t.activity for t in engine.pending_tasks("q", 5)] == ["undo_hotel"]  # mail dropped, the undo queued


def test_cancel_during_a_timer_cancels_it_and_unwinds():
    engine = new_engine()
    engine.start("w1", "trip", 1, None, 0)
    run_task(engine, "q", 1, result="H1")
    assert engine.cancel("w1", 100) == WorkflowAccepted("w1", Status.COMPENSATING)
    assert types_of(engine)[-3:] == [EventType.WORKFLOW_EXECUTION_CANCEL_REQUESTED, EventType.TIMER_CANCELED,
                                     EventType.ACTIVITY_TASK_SCHEDULED]  # fmt: skip
    assert engine.tick(501) == Ticked(0, 0)  # the canceled timer does not fire
    assert engine.describe("w1").timer_fire_ms is None
    run_task(engine, "q", 600)
    assert engine.describe("w1").status is Status.CANCELED


def test_cancel_during_a_signal_wait_and_during_a_group():
    engine = new_engine()
    engine.start("w1", "trip", 1, None, 0)
    run_task(engine, "q", 1)
    engine.tick(501)
    engine.cancel("w1", 502)
    assert engine.tick(60_501) == Ticked(0, 0)  # the wait's timeout is gone with it
    run_task(engine, "q", 60_502)
    assert engine.describe("w1").status is Status.CANCELED
    engine.start("w2", "trip", 1, None, 70_000)
    run_task(engine, "q", 70_001, result="H2", workflow_id="w2")
    engine.tick(70_501)
    engine.signal("w2", "approval", None, 70_502)
    run_task(engine, "air", 70_503, result="F2")
    assert engine.cancel("w2", 70_504).status is Status.COMPENSATING
    canceled = [e.step for e in engine.history("w2") if e.type is EventType.ACTIVITY_TASK_CANCELED]
    assert canceled == ["car", "mail"]
    assert [t.activity for t in engine.pending_tasks("air", 5)] == ["undo_flight"]  # the last completed first
    assert engine.pending_tasks("cars", 5) == []


def test_terminate_closes_at_once_whatever_is_pending():
    engine = new_engine()
    to_the_group(engine)
    before = len(engine.history("w1"))
    assert engine.terminate("w1", "operator", 700) == WorkflowAccepted("w1", Status.TERMINATED)
    assert len(engine.history("w1")) == before + 1  # only the closing event
    for queue in ("air", "cars", "q"):
        assert engine.pending_tasks(queue, 5) == []
    engine.start("w2", "trip", 1, None, 800)
    run_task(engine, "q", 801, workflow_id="w2")
    engine.terminate("w2", "operator", 802)
    assert engine.tick(1301) == Ticked(0, 0)
    assert engine.describe("w2").timer_fire_ms is None and engine._tasks == {}


def test_a_group_first_step_is_admitted_against_each_members_queue():
    fan_out = workflow("fan", version=1, steps=[parallel("all", [activity("a", task_queue="qa"), activity("b", task_queue="qb")])])
    engine = new_engine(fan_out, max_backlog=1)
    assert engine.start("w1", "fan", 1, None, 0) == WorkflowStarted("w1", 1)
    full = engine.start("w2", "fan", 1, None, 0)
    assert full.reason is WorkflowRejectReason.RESOURCE_EXHAUSTED and "task queue 'qa'" in full.message


def test_a_member_input_that_does_not_resolve_unwinds_before_any_member_is_scheduled():
    bad = workflow("bad", version=1, steps=[
        undoable("first"),
        parallel("group", [activity("ok", task_queue="q"), activity("broken", task_queue="q", input="$steps.first.result.x")]),
    ])  # fmt: skip
    engine = new_engine(bad)
    engine.start("w1", "bad", 1, None, 0)
    run_task(engine, "q", 1, result="not a dict")
    described = engine.describe("w1")
    assert described.status is Status.COMPENSATING and described.reason.startswith("step 'broken' input:")
    assert [t.activity for t in engine.pending_tasks("q", 5)] == ["undo_first"]


def test_describe_lists_every_member_task_with_its_state():
    engine = new_engine()
    to_the_group(engine)
    flight = engine.pending_tasks("air", 5)[0]
    engine.task_started(flight.task_id, 1, 700)
    engine.heartbeat(flight.task_id, 1, "half", 710)
    tasks = engine.describe("w1").tasks
    assert [(t.step, t.state) for t in tasks] == [("flight", TaskState.STARTED), ("car", TaskState.SCHEDULED),
                                                  ("mail", TaskState.SCHEDULED)]  # fmt: skip
    assert (tasks[0].last_heartbeat_ms, tasks[0].heartbeat_details) == (710, "half")


@pytest.mark.parametrize("stage", ["timer", "signal", "group", "compensating", "closed"])
def test_snapshot_rows_round_trip_at_every_kind_of_wait(stage):
    engine = new_engine()
    engine.start("w1", "trip", 1, None, 0)
    engine.signal("w1", "early", [1], 1)
    run_task(engine, "q", 2, result="H1")
    if stage != "timer":
        engine.tick(502)
    if stage in ("group", "compensating", "closed"):
        engine.signal("w1", "approval", "yes", 503)
        run_task(engine, "cars", 504, result="C1")
    if stage in ("compensating", "closed"):
        engine.cancel("w1", 505)
    if stage == "closed":
        run_task(engine, "cars", 506)
        run_task(engine, "q", 507)
    rows = msgpack.unpackb(msgpack.packb(engine.snapshot_state(), use_bin_type=True), raw=False)
    restored = WorkflowEngine()
    restored.restore_state(rows)
    assert restored.snapshot_state() == rows
    assert restored.describe("w1") == engine.describe("w1")
    for later in (600, 60_503, 61_000):  # fire whatever is due, alike
        assert restored.tick(later) == engine.tick(later)
        assert restored.snapshot_state() == engine.snapshot_state()


def test_restore_refuses_a_timer_step_without_its_fire_time():
    engine = new_engine()
    engine.start("w1", "trip", 1, None, 0)
    run_task(engine, "q", 1)
    rows = engine.snapshot_state()
    rows[4][0][15] = None  # wait_until_ms
    with pytest.raises(SnapshotError, match="at step 1 with 0 tasks and wait_until_ms=None; expected no task and a fire time"):
        WorkflowEngine().restore_state(rows)


def test_a_log_with_timers_signals_and_groups_replays_to_byte_identical_machine_snapshots():
    machine, log = Machine(), []

    def propose(op, now_ms, session=(0, 0, 0)):
        data = encode_command(Command(now_ms, *session, op))
        log.append((machine.applied_index + 1, data))
        return machine.apply(machine.applied_index + 1, data)

    session_id = propose(OpenSession(), 0).session_id
    seq = iter(range(1, 100))

    def client(op, now_ms):
        return propose(op, now_ms, (session_id, next(seq), 0))

    def take_and_complete(queue, now_ms, result):
        task = machine.workflow.pending_tasks(queue, 1)[0]
        propose(ActivityTaskStarted(task.task_id, task.attempt), now_ms)
        return client(CompleteActivity(task.task_id, task.attempt, result), now_ms)

    client(RegisterWorkflowType(encode_definition(TRIP)), 0)
    client(StartWorkflow("w1", "trip", 0, {"city": "Oslo"}), 1)
    client(StartWorkflow("w2", "trip", 1, None), 1)
    take_and_complete("q", 2, "H1")
    take_and_complete("q", 3, "H2")
    propose(RearmTimeouts(100), 4)
    propose(Tick(), 503)
    client(SignalWorkflow("w1", "approval", "yes"), 504)
    take_and_complete("cars", 505, "C1")
    client(CancelWorkflow("w1"), 506)
    propose(Tick(), 60_503)  # w2's signal wait times out
    assert machine.workflow.describe("w2").status is Status.COMPENSATING
    replica = Machine()
    for index, data in log:
        replica.apply(index, data)
    assert replica.snapshot() == machine.snapshot()
    restored = Machine()
    restored.restore(machine.snapshot())
    assert restored.snapshot() == machine.snapshot()
