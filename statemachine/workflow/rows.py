"""The workflow engine's part of a snapshot: canonical rows out, checked records back.

`state_rows` turns what `WorkflowEngine.capture()` copied into msgpack-plain rows,
everything sorted by key and no derived index (heap, retention queue, counters), so the
same state gives the same rows whatever the call history. `restore_into` reads them
into a fresh engine, checking every field and every cross-record invariant, then
rebuilds the indexes and checks that the rows were canonical (SnapshotError naming the
field otherwise; the caller discards the fresh engine).
"""

from __future__ import annotations

import enum
import heapq
from collections import deque
from typing import TYPE_CHECKING

from raftflow.statemachine._checks import SnapshotError, check_int, check_row, check_type, check_version
from raftflow.statemachine.workflow._steps import step_members
from raftflow.statemachine.workflow.definitions import SignalStep, TimerStep, decode_definition, encode_definition
from raftflow.statemachine.workflow.events import Event, event_from_row, event_row
from raftflow.statemachine.workflow.records import (
    CLOSED,
    TASK_SECRET_BYTES,
    ActivityError,
    Deadline,
    Status,
    Task,
    TaskState,
    Workflow,
)
from raftflow.statemachine.workflow.retry import DefinitionError

if TYPE_CHECKING:
    from raftflow.statemachine.workflow.engine import WorkflowEngine

ENGINE_FORMAT = 3  # 2: deadlines, heartbeats, errors, signals; 3: timers, signal waits, groups
_WORKFLOW_FIELDS = 16
_TASK_FIELDS = 15


def state_rows(captured: tuple) -> list:
    (next_task_id, next_run_id), types, workflows, histories, tasks, queues = captured
    return [
        ENGINE_FORMAT,
        next_task_id,
        next_run_id,
        [encode_definition(types[key]) for key in sorted(types)],
        [_workflow_row(workflows[key], *histories[key]) for key in sorted(workflows)],
        [_task_row(tasks[key]) for key in sorted(tasks)],
        [[name, list(queues[name])] for name in sorted(queues)],
    ]


def _workflow_row(workflow: Workflow, history: list[Event], length: int) -> list:
    return [
        workflow.workflow_id, workflow.run_id, workflow.type_name, workflow.version, workflow.input,
        workflow.status.value, workflow.start_ms, workflow.close_ms, workflow.step_index,
        [[name, result] for name, result in workflow.results], list(workflow.compensations),
        workflow.compensations_left, list(workflow.task_ids), workflow.reason,
        [[name, signal_input] for name, signal_input in workflow.signals], workflow.wait_until_ms,
        [event_row(event) for event in history[:length]],
    ]  # fmt: skip


def _task_row(task: Task) -> list:
    """A task's fields; the secret (added later) only when it has one, so that a
    state without secrets has the row, and the hash, of a build that predates them."""
    error = None if task.last_error is None else [task.last_error.error_type, task.last_error.message]
    row = [
        task.task_id, task.workflow_id, task.step, task.compensation, task.input, task.attempt,
        task.state.value, task.scheduled_ms, task.started_ms, task.close_deadline_ms, task.heartbeat_deadline_ms,
        task.backoff_until_ms, task.heartbeat_ms, task.details, error,
    ]  # fmt: skip
    if task.secret:
        row.append(task.secret)
    return row


def _optional_int(value: object, what: str) -> int | None:
    return None if value is None else check_int(value, what, SnapshotError)


def _enum(cls: type[enum.Enum], value: object, what: str) -> enum.Enum:
    try:
        return cls(value)
    except ValueError:
        raise SnapshotError(f"{what} is {value!r}; expected one of {[m.value for m in cls]}") from None


def restore_into(engine: WorkflowEngine, state: object) -> None:
    row = check_row(state, 7, "workflows", SnapshotError)
    version, next_task_id, next_run_id, type_rows, workflow_rows, task_rows, queue_rows = row
    check_version(version, ENGINE_FORMAT, "workflows", SnapshotError)
    engine._next_task_id = check_int(next_task_id, "workflows next_task_id", SnapshotError, minimum=1)
    engine._next_run_id = check_int(next_run_id, "workflows next_run_id", SnapshotError, minimum=1)
    for what, rows in (("types", type_rows), ("workflows", workflow_rows), ("tasks", task_rows), ("queues", queue_rows)):
        check_type(rows, list, f"workflows {what}", SnapshotError)
    for i, data in enumerate(type_rows):
        try:
            workflow_type = decode_definition(data)
        except DefinitionError as exc:
            raise SnapshotError(f"workflows types[{i}]: {exc}") from None
        engine._add_type(workflow_type)
    for row in workflow_rows:
        _restore_workflow(engine, row)
    for row in task_rows:
        _restore_task(engine, row)
    for row in queue_rows:
        _restore_queue(engine, row)
    _check_restored(engine, state)


def _restore_workflow(engine: WorkflowEngine, row: object) -> None:
    fields = check_row(row, _WORKFLOW_FIELDS + 1, "workflow", SnapshotError)
    workflow_id, run_id, type_name, version, workflow_input, status, start_ms, close_ms = fields[:8]
    step_index, results, compensations, compensations_left, task_ids, reason, signals, wait_until_ms, events = fields[8:]
    check_type(workflow_id, str, "workflow id", SnapshotError)
    what = f"workflow {workflow_id!r}"
    if workflow_id in engine._workflows:
        raise SnapshotError(f"{what} appears twice")
    if type(type_name) is not str or type(version) is not int or (type_name, version) not in engine._types:
        raise SnapshotError(f"{what} has type {type_name!r} version {version!r}, which is not registered")
    check_int(run_id, f"{what} run_id", SnapshotError, minimum=1)
    if run_id >= engine._next_run_id:
        raise SnapshotError(f"{what} run_id={run_id} is not below next_run_id={engine._next_run_id}")
    status = _enum(Status, status, f"{what} status")
    check_int(start_ms, f"{what} start_ms", SnapshotError)
    if (close_ms is not None) != (status in CLOSED):
        raise SnapshotError(f"{what} is {status.value} with close_ms={close_ms!r}")
    _optional_int(close_ms, f"{what} close_ms")
    check_int(step_index, f"{what} step_index", SnapshotError)
    done = _restore_results(engine, (type_name, version), step_index, results, what)
    _check_compensations(engine, (type_name, version), done, compensations, compensations_left, what)
    check_type(task_ids, list, f"{what} task_ids", SnapshotError)
    for task_id in task_ids:
        check_int(task_id, f"{what} task_ids", SnapshotError, minimum=1)
    if task_ids != sorted(set(task_ids)) or (task_ids and status in CLOSED):
        raise SnapshotError(f"{what} is {status.value} with task_ids={task_ids!r} (ascending, none once closed)")
    if reason is not None:
        check_type(reason, str, f"{what} reason", SnapshotError)
    buffered = _restore_signals(engine, signals, what)
    if buffered and status in CLOSED:
        raise SnapshotError(f"{what} is {status.value} with buffered signals")
    _optional_int(wait_until_ms, f"{what} wait_until_ms")
    check_type(events, list, f"{what} history", SnapshotError)
    history = [event_from_row(event, f"{what} history[{i}]") for i, event in enumerate(events)]
    if [event.event_id for event in history] != list(range(1, len(history) + 1)):
        raise SnapshotError(f"{what} history event ids are not 1..{len(history)}")
    engine._workflows[workflow_id] = Workflow(
        workflow_id, run_id, type_name, version, workflow_input, status, start_ms, close_ms, step_index,
        tuple((name, result) for name, result in results), tuple(compensations), compensations_left, tuple(task_ids),
        reason, buffered, wait_until_ms,
    )  # fmt: skip
    engine._histories[workflow_id] = history


def _restore_results(engine: WorkflowEngine, key: tuple[str, int], step_index: int, results: object, what: str) -> set:
    """The names of the completed steps: each result is for a step of the type, once,
    and every top-level step before step_index has one."""
    steps, named = engine._types[key].steps, engine._named[key]
    if step_index > len(steps):
        raise SnapshotError(f"{what} step_index={step_index} is past its {len(steps)} steps")
    check_type(results, list, f"{what} results", SnapshotError)
    done = set()
    for i, pair in enumerate(results):
        name, _ = check_row(pair, 2, f"{what} results[{i}]", SnapshotError)
        if type(name) is not str or name not in named or name in done:
            raise SnapshotError(f"{what} results[{i}] is for {name!r}, which is not a step of its type (or repeats)")
        done.add(name)
    missing = [step.name for step in steps[:step_index] if step.name not in done]
    if missing:
        raise SnapshotError(f"{what} step_index={step_index} but steps {missing} have no result")
    return done


def _check_compensations(
    engine: WorkflowEngine, key: tuple[str, int], done: set, compensations: object, left: object, what: str
) -> None:
    check_type(compensations, list, f"{what} compensations", SnapshotError)
    named = engine._named[key]
    for i, name in enumerate(compensations):
        step = named.get(name) if type(name) is str else None
        if step is None or name not in done or getattr(step, "compensation", None) is None or compensations.index(name) != i:
            raise SnapshotError(f"{what} compensations[{i}]={name!r} is not a completed step with a compensation (once)")
    check_int(left, f"{what} compensations_left", SnapshotError)
    if left > len(compensations):
        raise SnapshotError(f"{what} compensations_left={left} exceeds {len(compensations)}")


def _restore_signals(engine: WorkflowEngine, signals: object, what: str) -> tuple[tuple[str, object], ...]:
    check_type(signals, list, f"{what} signals", SnapshotError)
    if len(signals) > engine.max_buffered_signals:
        limit = engine.max_buffered_signals
        raise SnapshotError(f"{what} buffers {len(signals)} signals; at most max_buffered_signals={limit}")
    buffered = []
    for i, pair in enumerate(signals):
        name, signal_input = check_row(pair, 2, f"{what} signals[{i}]", SnapshotError)
        check_type(name, str, f"{what} signals[{i}] name", SnapshotError)
        buffered.append((name, signal_input))
    return tuple(buffered)


def _restore_task(engine: WorkflowEngine, row: object) -> None:
    secret = b""
    if type(row) is list and len(row) == _TASK_FIELDS + 1:
        *row, secret = row
        check_type(secret, bytes, "task secret", SnapshotError)
        if len(secret) != TASK_SECRET_BYTES:
            raise SnapshotError(f"a task secret is {len(secret)} bytes; expected {TASK_SECRET_BYTES}")
    fields = check_row(row, _TASK_FIELDS, "task", SnapshotError)
    task_id, workflow_id, step, compensation, task_input, attempt, state, scheduled_ms = fields[:8]
    started_ms, close_deadline_ms, heartbeat_deadline_ms, backoff_until_ms, heartbeat_ms, details, error = fields[8:]
    check_int(task_id, "task id", SnapshotError, minimum=1)
    what = f"task {task_id}"
    if task_id in engine._tasks or task_id >= engine._next_task_id:
        raise SnapshotError(f"{what} appears twice or is not below next_task_id={engine._next_task_id}")
    workflow = engine._workflows.get(workflow_id) if type(workflow_id) is str else None
    if workflow is None or task_id not in workflow.task_ids:
        raise SnapshotError(f"{what} belongs to {workflow_id!r}, which is not an open workflow holding it")
    check_type(step, str, f"{what} step", SnapshotError)
    check_type(compensation, bool, f"{what} compensation", SnapshotError)
    if compensation != (workflow.status is Status.COMPENSATING):
        raise SnapshotError(f"{what} compensation={compensation} in a {workflow.status.value} workflow")
    if step not in _runnable(engine, workflow, compensation):
        raise SnapshotError(f"{what} runs step {step!r}, which is not one its workflow runs now")
    check_int(attempt, f"{what} attempt", SnapshotError, minimum=1)
    state = _enum(TaskState, state, f"{what} state")
    check_int(scheduled_ms, f"{what} scheduled_ms", SnapshotError)
    optional = (
        ("started_ms", started_ms), ("close_deadline_ms", close_deadline_ms),
        ("heartbeat_deadline_ms", heartbeat_deadline_ms), ("backoff_until_ms", backoff_until_ms),
        ("heartbeat_ms", heartbeat_ms),
    )  # fmt: skip
    for name, value in optional:
        _optional_int(value, f"{what} {name}")
    started = state is TaskState.STARTED
    if (started_ms is not None) != started or (backoff_until_ms is not None) != (state is TaskState.BACKOFF):
        raise SnapshotError(f"{what} is {state.value} with started_ms={started_ms!r} backoff_until_ms={backoff_until_ms!r}")
    if not started and (close_deadline_ms, heartbeat_deadline_ms, heartbeat_ms, secret) != (None, None, None, b""):
        raise SnapshotError(f"{what} is {state.value} with a start_to_close, heartbeat deadline, heartbeat or secret")
    task = Task(
        task_id, workflow_id, step, compensation, task_input, attempt, state, scheduled_ms, started_ms,
        close_deadline_ms, heartbeat_deadline_ms, backoff_until_ms, heartbeat_ms, details, _restore_error(error, what),
        secret,
    )  # fmt: skip
    engine._tasks[task_id] = task
    engine._arm(task, engine._spec(task))


def _runnable(engine: WorkflowEngine, workflow: Workflow, compensation: bool) -> tuple[str, ...]:
    """The steps a task of the workflow may run now: the compensation to run next, or
    the current activity step, or the current group's members without a result."""
    if compensation:
        left = workflow.compensations_left
        return (workflow.compensations[left - 1],) if left else ()
    current = engine._current(workflow)
    done = {name for name, _ in workflow.results}
    return tuple(member.name for member in step_members(current) if member.name not in done) if current else ()


def _restore_error(row: object, what: str) -> ActivityError | None:
    if row is None:
        return None
    error_type, message = check_row(row, 2, f"{what} last_error", SnapshotError)
    check_type(error_type, str, f"{what} last_error type", SnapshotError)
    check_type(message, str, f"{what} last_error message", SnapshotError)
    return ActivityError(error_type, message)


def _restore_queue(engine: WorkflowEngine, row: object) -> None:
    name, task_ids = check_row(row, 2, "queue", SnapshotError)
    check_type(name, str, "queue name", SnapshotError)
    check_type(task_ids, list, f"queue {name!r}", SnapshotError)
    if not task_ids or name in engine._queues:
        raise SnapshotError(f"queue {name!r} is empty or appears twice")
    fifo: dict[int, None] = {}
    for task_id in task_ids:
        task = engine._tasks.get(task_id) if type(task_id) is int else None
        if task is None or task.state is not TaskState.SCHEDULED or engine._spec(task).task_queue != name or task_id in fifo:
            raise SnapshotError(f"queue {name!r} holds {task_id!r}, which is not a scheduled task of it (once)")
        fifo[task_id] = None
    engine._queues[name] = fifo


def _check_restored(engine: WorkflowEngine, state: list) -> None:
    """Cross-record invariants (see _steps.py), rebuilding the indexes on the way, then
    the canonical-order check: rows must be exactly what state_rows gives for the state
    they describe."""
    queued = sum(len(fifo) for fifo in engine._queues.values())
    scheduled = sum(task.state is TaskState.SCHEDULED for task in engine._tasks.values())
    if queued != scheduled:
        raise SnapshotError(f"workflows: {scheduled} scheduled tasks but {queued} queue entries")
    for workflow in engine._workflows.values():
        _check_waiting(engine, workflow)
    engine._running = sum(workflow.status not in CLOSED for workflow in engine._workflows.values())
    closed = sorted((w.close_ms, w.run_id, w.workflow_id) for w in engine._workflows.values() if w.status in CLOSED)
    engine._retention = deque((close_ms + engine.retention_ms, run_id, wid) for close_ms, run_id, wid in closed)
    if engine.snapshot_state() != state:
        raise SnapshotError("workflows state is not in canonical order (rows must be sorted by key)")


def _check_waiting(engine: WorkflowEngine, workflow: Workflow) -> None:
    """An open workflow waits for exactly what its step says, and its timer is armed."""
    what = f"workflow {workflow.workflow_id!r}"
    missing = [task_id for task_id in workflow.task_ids if task_id not in engine._tasks]
    if missing:
        raise SnapshotError(f"{what} holds tasks {missing}, which are not in the snapshot")
    current = engine._current(workflow)
    waits = type(current) in (TimerStep, SignalStep)
    if workflow.wait_until_ms is not None and not waits:
        raise SnapshotError(f"{what} has wait_until_ms={workflow.wait_until_ms} but is not at a timer or signal step")
    if workflow.status is Status.COMPENSATING:
        expected = "one task"
        ok = len(workflow.task_ids) == 1
    elif current is None:
        expected, ok = "no task", workflow.status in CLOSED or not workflow.task_ids
    elif waits:
        expected = "no task and a fire time" if type(current) is TimerStep else "no task"
        ok = not workflow.task_ids and (type(current) is SignalStep or workflow.wait_until_ms is not None)
    else:
        expected, ok = "a task per unfinished member", bool(workflow.task_ids)
    if not ok:
        raise SnapshotError(
            f"{what} is {workflow.status.value} at step {workflow.step_index} with {len(workflow.task_ids)} tasks and "
            f"wait_until_ms={workflow.wait_until_ms!r}; expected {expected}"
        )
    if waits and workflow.wait_until_ms is not None:
        heapq.heappush(engine._deadlines, (workflow.wait_until_ms, Deadline.WAIT, workflow.workflow_id, workflow.run_id))
