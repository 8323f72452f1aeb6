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
from collections import deque
from typing import TYPE_CHECKING

from statemachine.commands import SnapshotError, check_int, check_row, check_type, check_version
from statemachine.workflow.definitions import decode_definition, encode_definition
from statemachine.workflow.events import Event, event_from_row, event_row
from statemachine.workflow.records import CLOSED, ActivityError, Status, Task, TaskState, Workflow
from statemachine.workflow.retry import DefinitionError

if TYPE_CHECKING:
    from statemachine.workflow.engine import WorkflowEngine

ENGINE_FORMAT = 2  # 2: task deadlines, heartbeats, errors, signals; restore refuses other versions
_WORKFLOW_FIELDS = 15
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
        workflow.compensations_left, workflow.task_id, workflow.reason,
        [[name, signal_input] for name, signal_input in workflow.signals],
        [event_row(event) for event in history[:length]],
    ]  # fmt: skip


def _task_row(task: Task) -> list:
    error = None if task.last_error is None else [task.last_error.error_type, task.last_error.message]
    return [
        task.task_id, task.workflow_id, task.step_index, task.compensation, task.input, task.attempt,
        task.state.value, task.scheduled_ms, task.started_ms, task.close_deadline_ms, task.heartbeat_deadline_ms,
        task.backoff_until_ms, task.heartbeat_ms, task.details, error,
    ]  # fmt: skip


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
    step_index, results, compensations, compensations_left, task_id, reason, signals, events = fields[8:]
    check_type(workflow_id, str, "workflow id", SnapshotError)
    what = f"workflow {workflow_id!r}"
    if workflow_id in engine._workflows:
        raise SnapshotError(f"{what} appears twice")
    if (type_name, version) not in engine._types:
        raise SnapshotError(f"{what} has type {type_name!r} version {version!r}, which is not registered")
    check_int(run_id, f"{what} run_id", SnapshotError, minimum=1)
    if run_id >= engine._next_run_id:
        raise SnapshotError(f"{what} run_id={run_id} is not below next_run_id={engine._next_run_id}")
    status = _enum(Status, status, f"{what} status")
    check_int(start_ms, f"{what} start_ms", SnapshotError)
    if (close_ms is not None) != (status in CLOSED):
        raise SnapshotError(f"{what} is {status.value} with close_ms={close_ms!r}")
    _optional_int(close_ms, f"{what} close_ms")
    steps = engine._types[(type_name, version)].steps
    check_int(step_index, f"{what} step_index", SnapshotError)
    check_type(results, list, f"{what} results", SnapshotError)
    check_type(compensations, list, f"{what} compensations", SnapshotError)
    if step_index > len(steps) or len(results) != step_index:
        raise SnapshotError(f"{what} step_index={step_index} with {len(results)} results and {len(steps)} steps")
    for i, pair in enumerate(results):
        name, _ = check_row(pair, 2, f"{what} results[{i}]", SnapshotError)
        if name != steps[i].name:
            raise SnapshotError(f"{what} results[{i}] is for step {name!r}; expected {steps[i].name!r}")
    for i, index in enumerate(compensations):
        if type(index) is not int or not 0 <= index < step_index or steps[index].compensation is None:
            raise SnapshotError(f"{what} compensations[{i}]={index!r} is not a completed step with a compensation")
    check_int(compensations_left, f"{what} compensations_left", SnapshotError)
    if compensations_left > len(compensations):
        raise SnapshotError(f"{what} compensations_left={compensations_left} exceeds {len(compensations)}")
    _optional_int(task_id, f"{what} task_id")
    if reason is not None:
        check_type(reason, str, f"{what} reason", SnapshotError)
    buffered = _restore_signals(engine, signals, what)
    check_type(events, list, f"{what} history", SnapshotError)
    history = [event_from_row(event, f"{what} history[{i}]") for i, event in enumerate(events)]
    if [event.event_id for event in history] != list(range(1, len(history) + 1)):
        raise SnapshotError(f"{what} history event ids are not 1..{len(history)}")
    engine._workflows[workflow_id] = Workflow(
        workflow_id, run_id, type_name, version, workflow_input, status, start_ms, close_ms, step_index,
        tuple((name, result) for name, result in results), tuple(compensations), compensations_left, task_id, reason,
        buffered,
    )  # fmt: skip
    engine._histories[workflow_id] = history


def _restore_signals(engine: WorkflowEngine, signals: object, what: str) -> tuple[tuple[str, object], ...]:
    check_type(signals, list, f"{what} signals", SnapshotError)
    if len(signals) > engine.max_buffered_signals:
        raise SnapshotError(f"{what} buffers {len(signals)} signals; at most max_buffered_signals={engine.max_buffered_signals}")
    buffered = []
    for i, pair in enumerate(signals):
        name, signal_input = check_row(pair, 2, f"{what} signals[{i}]", SnapshotError)
        check_type(name, str, f"{what} signals[{i}] name", SnapshotError)
        buffered.append((name, signal_input))
    return tuple(buffered)


def _restore_task(engine: WorkflowEngine, row: object) -> None:
    fields = check_row(row, _TASK_FIELDS, "task", SnapshotError)
    task_id, workflow_id, step_index, compensation, task_input, attempt, state, scheduled_ms = fields[:8]
    started_ms, close_deadline_ms, heartbeat_deadline_ms, backoff_until_ms, heartbeat_ms, details, error = fields[8:]
    check_int(task_id, "task id", SnapshotError, minimum=1)
    what = f"task {task_id}"
    if task_id in engine._tasks or task_id >= engine._next_task_id:
        raise SnapshotError(f"{what} appears twice or is not below next_task_id={engine._next_task_id}")
    workflow = engine._workflows.get(workflow_id)
    if workflow is None or workflow.task_id != task_id or workflow.status in CLOSED:
        raise SnapshotError(f"{what} belongs to {workflow_id!r}, which is not an open workflow holding it")
    check_int(step_index, f"{what} step_index", SnapshotError)
    check_type(compensation, bool, f"{what} compensation", SnapshotError)
    expected = workflow.compensations[workflow.compensations_left - 1] if compensation and workflow.compensations_left else None
    if (compensation and step_index != expected) or (not compensation and step_index != workflow.step_index):
        raise SnapshotError(f"{what} runs step {step_index}, which is not its workflow's current one")
    if compensation != (workflow.status is Status.COMPENSATING):
        raise SnapshotError(f"{what} compensation={compensation} in a {workflow.status.value} workflow")
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
    if not started and (close_deadline_ms, heartbeat_deadline_ms, heartbeat_ms) != (None, None, None):
        raise SnapshotError(f"{what} is {state.value} with a start_to_close, heartbeat deadline or heartbeat")
    task = Task(
        task_id, workflow_id, step_index, compensation, task_input, attempt, state, scheduled_ms, started_ms,
        close_deadline_ms, heartbeat_deadline_ms, backoff_until_ms, heartbeat_ms, details, _restore_error(error, what),
    )  # fmt: skip
    engine._tasks[task_id] = task
    engine._arm(task, engine._spec(task))


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
    """Cross-record invariants, then the canonical-order check: rows must be exactly what
    state_rows gives for the state they describe."""
    queued = sum(len(fifo) for fifo in engine._queues.values())
    scheduled = sum(task.state is TaskState.SCHEDULED for task in engine._tasks.values())
    if queued != scheduled:
        raise SnapshotError(f"workflows: {scheduled} scheduled tasks but {queued} queue entries")
    for workflow in engine._workflows.values():
        if workflow.status not in CLOSED and workflow.task_id not in engine._tasks:
            raise SnapshotError(f"workflow {workflow.workflow_id!r} is {workflow.status.value} without its task")
    engine._running = sum(workflow.status not in CLOSED for workflow in engine._workflows.values())
    closed = sorted((w.close_ms, w.run_id, w.workflow_id) for w in engine._workflows.values() if w.status in CLOSED)
    engine._retention = deque((close_ms + engine.retention_ms, run_id, wid) for close_ms, run_id, wid in closed)
    if engine.snapshot_state() != state:
        raise SnapshotError("workflows state is not in canonical order (rows must be sorted by key)")
