"""Properties over random command sequences that mix activity, timer, signal and
parallel steps with failures, timeouts, stale reports, cancel, terminate and leader
re-arms. Hypothesis runs derandomized under the "ci" profile (tests/conftest.py), with
bounded example counts; a failure prints the shrunk action list that replays it.

- every workflow reaches exactly one terminal state, and it is its last event;
- compensations run in reverse completion order, only for completed steps;
- no attempt exceeds the policy's maximum, and every retry waits exactly the policy's
  interval (to the ms) and is never scheduled early;
- identical call sequences give identical results and snapshots;
- snapshot -> restore -> continue gives what running on without the snapshot gives;
- every started attempt, compensations included, has a deadline, so workers that take
  tasks and never report (a lost hand-out) cannot keep a workflow open forever.
"""

import msgpack
from hypothesis import given, settings
from hypothesis import strategies as st

from raftflow.statemachine.commands import SnapshotError
from raftflow.statemachine.workflow import (
    DEFAULT_START_TO_CLOSE_MS,
    RetryPolicy,
    activity,
    compensate,
    interval_ms,
    parallel,
    signal,
    timer,
    workflow,
)
from raftflow.statemachine.workflow.engine import TaskState, WorkflowEngine
from raftflow.statemachine.workflow.events import EventType

POLICY = RetryPolicy(initial_interval=0.01, backoff_coefficient=1.5, maximum_interval=0.02, maximum_attempts=3)
IDS = ("a", "b", "c")
TERMINAL = {
    EventType.WORKFLOW_EXECUTION_COMPLETED,
    EventType.WORKFLOW_EXECUTION_COMPENSATED,
    EventType.WORKFLOW_EXECUTION_FAILED,
    EventType.WORKFLOW_EXECUTION_TERMINATED,
    EventType.WORKFLOW_EXECUTION_CANCELED,
}


def undoable(name, queue, undo=None, **options):
    """An activity step with a compensation; `undo` holds the compensation's timeouts."""
    undo = compensate(f"undo_{name}", input=f"$steps.{name}.result", retry=POLICY, **(undo or {}))
    return activity(name, task_queue=queue, retry=POLICY, compensation=undo, **options)


# Compensation timeouts of every kind, and none (book's and finish's undo: the default start_to_close).
SAGA = workflow("saga", version=1, steps=[
    undoable("book", "q", input="$input", start_to_close=0.05),
    timer("pause", duration=0.1),
    signal("approve", timeout=1),
    parallel("fan", [undoable("left", "q", {"heartbeat": 0.03}, heartbeat=0.03),
                     undoable("right", "q2", {"start_to_close": 0.05, "schedule_to_close": 0.2}),
                     activity("note", task_queue="q2", retry=POLICY, start_to_close=0.04)]),
    undoable("finish", "q", input="$steps.fan.result"),
])  # fmt: skip
WITH_UNDO = {"book", "left", "right", "finish"}

# Weighted by repetition so that workflows often get far: to the group, and unwinding from it.
VERBS = ["take"] * 3 + ["complete"] * 3 + ["tick"] * 2 + [
    "signal", "fail", "fail_final", "stale", "heartbeat", "signal", "signal_other", "cancel", "terminate", "rearm"]  # fmt: skip
ACTIONS = st.lists(st.tuples(st.sampled_from(VERBS), st.integers(0, 5), st.integers(0, 120)), max_size=80)


def new_engine():
    engine = WorkflowEngine(max_buffered_signals=4)
    engine.register(SAGA)
    return engine


def started_tasks(engine):
    return [task for _, task in sorted(engine._tasks.items()) if task.state is TaskState.STARTED]


def scheduled_tasks(engine):
    return engine.pending_tasks("q", 100) + engine.pending_tasks("q2", 100)


def act(engine, verb, which, now_ms):
    """One action at now_ms; returns the engine's answer (or None when nothing fits)."""
    scheduled, started = scheduled_tasks(engine), started_tasks(engine)
    workflow_id = IDS[which % len(IDS)]
    if verb == "take" and scheduled:
        task = scheduled[which % len(scheduled)]
        return engine.task_started(task.task_id, task.attempt, now_ms)
    if verb in ("complete", "fail", "fail_final", "stale", "heartbeat") and started:
        task = started[which % len(started)]
        if verb == "complete":
            return engine.complete(task.task_id, task.attempt, f"r{now_ms}", now_ms)
        if verb == "stale":
            return engine.complete(task.task_id, task.attempt + 1, "late", now_ms)
        if verb == "heartbeat":
            return engine.heartbeat(task.task_id, task.attempt, now_ms, now_ms)
        return engine.fail(task.task_id, task.attempt, "E", f"m{now_ms}", verb == "fail", now_ms)
    if verb in ("signal", "signal_other"):
        return engine.signal(workflow_id, "approve" if verb == "signal" else "other", now_ms, now_ms)
    if verb == "cancel" and which == 5:  # c only: a and b mostly run on
        return engine.cancel(workflow_id, now_ms)
    if verb == "terminate" and which == 0:  # a only
        return engine.terminate(workflow_id, "t", now_ms)
    if verb == "rearm":
        return engine.rearm_timeouts(which * 10, now_ms)
    return engine.tick(now_ms)


def drive(engine, actions, now_ms=0, start=True):
    """Applies the actions (after starting a, b and c); returns (results, now_ms)."""
    results = [engine.start(workflow_id, "saga", 1, workflow_id, now_ms) for workflow_id in IDS] if start else []
    for verb, which, step_ms in actions:
        now_ms += step_ms
        results.append(act(engine, verb, which, now_ms))
        check_retries(engine)
        check_deadlines(engine)
    return results, now_ms


def drain(engine, now_ms):
    """Runs every open workflow to its end: every task completes, signals are sent and
    time jumps past every timer; but b's last step fails for good, so b undoes every
    step it completed. Bounded: the workflow type has finitely many steps."""
    for _ in range(100):
        if all(engine.describe(workflow_id).status.value not in ("running", "compensating") for workflow_id in IDS):
            return
        now_ms += 1000
        engine.tick(now_ms)
        for workflow_id in IDS:
            if engine.describe(workflow_id).awaited_signal:
                engine.signal(workflow_id, "approve", "late", now_ms)
        for task in scheduled_tasks(engine):
            engine.task_started(task.task_id, task.attempt, now_ms)
        for task in started_tasks(engine):
            if (task.workflow_id, task.step, task.compensation) == ("b", "finish", False):
                engine.fail(task.task_id, task.attempt, "Final", "b unwinds", False, now_ms)
            else:
                engine.complete(task.task_id, task.attempt, "drained", now_ms)
    raise AssertionError("workflows still open after draining")


def check_retries(engine):
    """A task in backoff retries exactly interval_ms after its failed attempt's event."""
    for task in engine._tasks.values():
        if task.state is TaskState.BACKOFF:
            failed = [e for e in engine.history(task.workflow_id) if e.task_id == task.task_id and e.attempt == task.attempt
                      and e.type in (EventType.ACTIVITY_TASK_FAILED, EventType.ACTIVITY_TASK_TIMED_OUT)]  # fmt: skip
            assert task.backoff_until_ms == failed[-1].time_ms + interval_ms(POLICY, task.attempt)


def check_deadlines(engine):
    """Every started attempt will time out if nobody reports it: a start_to_close
    deadline (the definition's or the default) or a schedule_to_close one."""
    for task in engine._tasks.values():
        if task.state is TaskState.STARTED:
            assert task.close_deadline_ms is not None or engine._spec(task).timeouts.schedule_to_close_ms is not None, task


def abandon(engine, now_ms):
    """Workers take every task and never report (their hand-outs were lost): each open
    workflow still closes, by timeouts alone, failed or compensated. Bounded: a task
    has at most POLICY.maximum_attempts attempts, each over within two rounds."""
    for _ in range(100):
        if all(engine.describe(workflow_id).status.value not in ("running", "compensating") for workflow_id in IDS):
            return
        now_ms += DEFAULT_START_TO_CLOSE_MS
        engine.tick(now_ms)
        for task in scheduled_tasks(engine):
            engine.task_started(task.task_id, task.attempt, now_ms)
        check_deadlines(engine)
    raise AssertionError("workflows still open although every attempt hung")


def check_history(engine, workflow_id, closed):
    history = engine.history(workflow_id)
    terminal = [i for i, event in enumerate(history) if event.type in TERMINAL]
    assert len(terminal) <= 1 and (not terminal or terminal[0] == len(history) - 1), terminal
    assert (engine.describe(workflow_id).status.value not in ("running", "compensating")) == bool(terminal)
    assert bool(terminal) or not closed
    assert all(event.attempt is None or 1 <= event.attempt <= POLICY.maximum_attempts for event in history)
    completed = [e.step for e in history if e.type is EventType.ACTIVITY_TASK_COMPLETED and not e.compensation]
    undone = [e.step for e in history if e.type is EventType.ACTIVITY_TASK_SCHEDULED and e.compensation and e.attempt == 1]
    expected = [step for step in reversed(completed) if step in WITH_UNDO]
    assert undone == expected[: len(undone)], (completed, undone)
    if history[-1].type is EventType.WORKFLOW_EXECUTION_COMPENSATED:
        assert undone == expected  # every completed step with an undo was undone
    failures = {(e.task_id, e.attempt): e.time_ms for e in history
                if e.type in (EventType.ACTIVITY_TASK_FAILED, EventType.ACTIVITY_TASK_TIMED_OUT)}  # fmt: skip
    for event in history:
        if event.type is EventType.ACTIVITY_TASK_SCHEDULED and event.attempt > 1:
            failed_ms = failures[(event.task_id, event.attempt - 1)]
            assert event.time_ms >= failed_ms + interval_ms(POLICY, event.attempt - 1)  # never early


def restored(engine):
    copy = WorkflowEngine(max_buffered_signals=4)
    copy.restore_state(msgpack.unpackb(msgpack.packb(engine.snapshot_state(), use_bin_type=True), raw=False))
    return copy


@settings(max_examples=120, deadline=None)
@given(ACTIONS)
def test_every_workflow_ends_once_with_compensations_reversed_and_retries_exact(actions):
    engine = new_engine()
    _, now_ms = drive(engine, actions)
    for workflow_id in IDS:
        check_history(engine, workflow_id, closed=False)
    drain(engine, now_ms)
    for workflow_id in IDS:
        check_history(engine, workflow_id, closed=True)
    assert engine._tasks == {} and engine._queues == {}


@settings(max_examples=60, deadline=None)
@given(ACTIONS)
def test_workflows_whose_every_attempt_hangs_still_close(actions):
    engine = new_engine()
    _, now_ms = drive(engine, actions)
    abandon(engine, now_ms)
    for workflow_id in IDS:
        check_history(engine, workflow_id, closed=True)
    assert engine._tasks == {} and engine._queues == {}


@settings(max_examples=60, deadline=None)
@given(ACTIONS)
def test_identical_calls_give_identical_results_and_snapshots(actions):
    first, second = new_engine(), new_engine()
    assert drive(first, actions) == drive(second, actions)
    assert first.snapshot_state() == second.snapshot_state()


@settings(max_examples=60, deadline=None)
@given(ACTIONS, st.integers(0, 80))
def test_snapshot_restore_then_continue_equals_running_on(actions, split):
    straight = new_engine()
    expected, _ = drive(straight, actions)
    head, tail = actions[:split], actions[split:]
    before = new_engine()
    got, now_ms = drive(before, head)
    resumed = restored(before)
    assert resumed.snapshot_state() == before.snapshot_state()
    more, _ = drive(resumed, tail, now_ms, start=False)
    assert got + more == expected
    assert resumed.snapshot_state() == straight.snapshot_state()


def corrupt(rows, path, value):
    """A deep copy of `rows` with the item at `path` (indices into nested lists) replaced."""
    copy = msgpack.unpackb(msgpack.packb(rows, use_bin_type=True), raw=False)
    target = copy
    for index in path[:-1]:
        target = target[index]
    target[path[-1]] = value
    return copy


def leaf_paths(value, path=()):
    if type(value) is list and value:
        for i, item in enumerate(value):
            yield from leaf_paths(item, (*path, i))
    elif path:
        yield path


@settings(max_examples=60, deadline=None)
@given(ACTIONS, st.data())
def test_a_corrupted_snapshot_is_refused_with_a_snapshot_error_or_restores_canonically(actions, data):
    engine = new_engine()
    drive(engine, actions)
    rows = engine.snapshot_state()
    paths = list(leaf_paths(rows))
    path = data.draw(st.sampled_from(paths))
    value = data.draw(st.sampled_from([None, -1, 0, 1, 10**6, "", "a", "q", True, [], [1], {"k": 1}, b"x", 0.5]))
    bad = corrupt(rows, path, value)
    copy = WorkflowEngine(max_buffered_signals=4)
    try:
        copy.restore_state(bad)
    except SnapshotError:
        assert copy.snapshot_state() == WorkflowEngine().snapshot_state()  # a refused restore changed nothing
        return
    assert copy.snapshot_state() == bad  # accepted only when the rows are a canonical state


def test_unhashable_values_where_names_belong_are_snapshot_errors():
    engine = new_engine()
    drive(engine, [("take", 0, 1), ("complete", 0, 1)])
    rows = engine.snapshot_state()
    for path in ((4, 0, 2), (4, 0, 9, 0, 0), (4, 0, 10, 0), (4, 0, 16, 0, 2)):  # type name, result name, undo, event type
        for value in ([], {"k": 1}):
            try:
                WorkflowEngine().restore_state(corrupt(rows, path, value))
            except SnapshotError:
                continue
            raise AssertionError(f"{path}={value!r} was accepted")
