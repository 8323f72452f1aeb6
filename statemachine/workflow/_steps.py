"""How a workflow moves: beginning each kind of step, finishing it, firing deadlines,
unwinding and closing. This is the internal half of `WorkflowEngine` (engine.py holds
its calls, queries and snapshots); every method runs inside one engine call, at that
call's now_ms, and leaves the records and indexes consistent when it returns.

Invariants these methods keep (rows.py checks them on restore):
- a RUNNING workflow at an activity step holds one task, at a parallel group one task
  per unfinished member; at a timer step none and `wait_until_ms` is the fire time; at
  a signal step none, waiting for its signal (`wait_until_ms` is the timeout, or None);
- a COMPENSATING workflow holds exactly one task, for compensations[left - 1];
- a closed workflow holds no task, no wait and no buffered signal;
- every SCHEDULED task is in its queue's FIFO exactly once, and no queue is empty.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass, replace

import msgpack

from raftflow.statemachine.workflow.definitions import (
    ActivityStep,
    InputError,
    ParallelStep,
    SignalStep,
    Step,
    TimerStep,
    Timeouts,
    WorkflowType,
    effective_timeouts,
    resolve_input,
)
from raftflow.statemachine.workflow.events import Event, EventType
from raftflow.statemachine.workflow.records import CANCEL_REASON, CLOSED, ActivityError, Deadline, Status, Task, TaskState, Workflow
from raftflow.statemachine.workflow.retry import RetryPolicy, interval_ms, should_retry

_NOT_STARTED = {
    "started_ms": None, "close_deadline_ms": None, "heartbeat_deadline_ms": None, "heartbeat_ms": None, "secret": b"",
}
_CLOSING_EVENTS = {
    Status.COMPLETED: EventType.WORKFLOW_EXECUTION_COMPLETED,
    Status.COMPENSATED: EventType.WORKFLOW_EXECUTION_COMPENSATED,
    Status.FAILED: EventType.WORKFLOW_EXECUTION_FAILED,
    Status.TERMINATED: EventType.WORKFLOW_EXECUTION_TERMINATED,
    Status.CANCELED: EventType.WORKFLOW_EXECUTION_CANCELED,
}
_TIMEOUT_ERRORS = {
    Deadline.START_TO_CLOSE: "StartToCloseTimeout",
    Deadline.HEARTBEAT: "HeartbeatTimeout",
    Deadline.SCHEDULE_TO_CLOSE: "ScheduleToCloseTimeout",
}


@dataclass(frozen=True, slots=True)
class ActivitySpec:
    """What a task runs: its step's activity, or that step's compensation."""

    step: str  # the step it runs, or undoes
    activity: str
    task_queue: str
    retry: RetryPolicy
    timeouts: Timeouts  # effective: with the default start_to_close where the definition sets no limit


def payload_bytes(payload: object) -> int:
    """A payload's size as histories count it: its msgpack encoding (0 for none)."""
    return 0 if payload is None else len(msgpack.packb(payload, use_bin_type=True))


def step_members(step: Step) -> tuple[ActivityStep, ...]:
    """The activity steps a step schedules when it begins: a group's members, an
    activity step itself, none for a timer or signal step."""
    if type(step) is ParallelStep:
        return step.steps
    return (step,) if type(step) is ActivityStep else ()


class StepRunner:
    """WorkflowEngine's state transitions; its state is set up by WorkflowEngine._reset."""

    max_history_events: int
    max_history_bytes: int
    retention_ms: int
    _types: dict[tuple[str, int], WorkflowType]
    _named: dict[tuple[str, int], dict[str, Step]]  # each type's steps and group members by name
    _workflows: dict[str, Workflow]
    _histories: dict[str, list[Event]]
    _history_bytes: dict[str, int]  # a run's payload bytes, once counted (_held_bytes)
    _tasks: dict[int, Task]
    _queues: dict[str, dict[int, None]]
    _next_task_id: int
    _running: int
    _deadlines: list[tuple[int, int, int | str, int]]
    _retention: deque[tuple[int, int, str]]
    _overflowed: dict[str, str]

    # --- lookups and records -------------------------------------------------------------

    def _type(self, workflow: Workflow) -> WorkflowType:
        return self._types[(workflow.type_name, workflow.version)]

    def _current(self, workflow: Workflow) -> Step | None:
        """The top-level step a RUNNING workflow is at; None otherwise."""
        steps = self._type(workflow).steps
        return steps[workflow.step_index] if workflow.status is Status.RUNNING and workflow.step_index < len(steps) else None

    def _activity_step(self, workflow: Workflow, name: str) -> ActivityStep:
        step = self._named[(workflow.type_name, workflow.version)][name]
        assert type(step) is ActivityStep, (workflow.workflow_id, name)
        return step

    def _spec(self, task: Task) -> ActivitySpec:
        step = self._activity_step(self._workflows[task.workflow_id], task.step)
        if task.compensation:
            undo = step.compensation
            return ActivitySpec(step.name, undo.activity, undo.task_queue, undo.retry, effective_timeouts(undo.timeouts))
        return ActivitySpec(step.name, step.activity, step.task_queue, step.retry, effective_timeouts(step.timeouts))

    def _store(self, workflow: Workflow, **changes: object) -> Workflow:
        workflow = replace(workflow, **changes)
        self._workflows[workflow.workflow_id] = workflow
        return workflow

    def _record(self, workflow_id: str, now_ms: int, event_type: EventType, **fields: object) -> None:
        """Appends an event; an open workflow keeps one slot for its closing event, and
        when its history is full (max_history_events, or max_history_bytes of
        payloads) the event is dropped and the workflow fails at the end of the call."""
        history = self._histories[workflow_id]
        size = payload_bytes(fields.get("payload"))
        held = self._held_bytes(workflow_id)
        if self._workflows[workflow_id].status not in CLOSED:
            if len(history) >= self.max_history_events - 1:
                self._overflowed[workflow_id] = f"max_history_events={self.max_history_events}"
                return
            if held + size > self.max_history_bytes:
                self._overflowed[workflow_id] = f"max_history_bytes={self.max_history_bytes}"
                return
        history.append(Event(len(history) + 1, now_ms, event_type, **fields))
        self._history_bytes[workflow_id] = held + size

    def _held_bytes(self, workflow_id: str) -> int:
        """The payload bytes of the run's history. Derived from its events, and counted
        on first use after a restore (not at restore: most runs are never touched)."""
        held = self._history_bytes.get(workflow_id)
        if held is None:
            held = self._history_bytes[workflow_id] = sum(
                payload_bytes(event.payload) for event in self._histories[workflow_id]
            )
        return held

    def _record_task(self, task: Task, spec: ActivitySpec, now_ms: int, event_type: EventType, **fields: object) -> None:
        self._record(
            task.workflow_id, now_ms, event_type, step=spec.step, activity=spec.activity, task_id=task.task_id,
            attempt=task.attempt, compensation=task.compensation, **fields,
        )  # fmt: skip

    def _close_overflowed(self, now_ms: int) -> None:
        overflowed, self._overflowed = self._overflowed, {}
        for workflow_id, limit in overflowed.items():
            workflow = self._workflows[workflow_id]
            if workflow.status not in CLOSED:
                self._close(workflow, Status.FAILED, f"history reached {limit}", now_ms)

    # --- going forward ---------------------------------------------------------------------

    def _next_step(self, workflow: Workflow, now_ms: int) -> None:
        """Begins the step at step_index, or completes the workflow after its last. A
        signal step that finds its signal buffered finishes at once, and the loop goes on."""
        steps = self._type(workflow).steps
        while workflow.step_index < len(steps):
            step = steps[workflow.step_index]
            if type(step) is TimerStep:
                self._start_timer(workflow, step, now_ms)
                return
            if type(step) is not SignalStep:
                self._schedule_step(workflow, step, now_ms)
                return
            index = next((i for i, (name, _) in enumerate(workflow.signals) if name == step.signal), None)
            if index is None:
                self._wait_for_signal(workflow, step, now_ms)
                return
            payload = workflow.signals[index][1]
            workflow = self._store(workflow, signals=workflow.signals[:index] + workflow.signals[index + 1 :])
            self._record(
                workflow.workflow_id, now_ms, EventType.SIGNAL_RECEIVED, step=step.name, signal=step.signal, payload=payload
            )
            workflow = self._finish_step(workflow, step.name, payload)
        self._close(workflow, Status.COMPLETED, None, now_ms, payload=workflow.results[-1][1])

    def _finish_step(self, workflow: Workflow, name: str, result: object) -> Workflow:
        """The top-level step `name` is done with `result` (its `$steps.<name>.result`)."""
        return self._store(
            workflow, results=workflow.results + ((name, result),), step_index=workflow.step_index + 1, wait_until_ms=None
        )

    def _start_timer(self, workflow: Workflow, step: TimerStep, now_ms: int) -> None:
        fire_ms = now_ms + step.duration_ms
        self._store(workflow, wait_until_ms=fire_ms)
        heapq.heappush(self._deadlines, (fire_ms, Deadline.WAIT, workflow.workflow_id, workflow.run_id))
        self._record(workflow.workflow_id, now_ms, EventType.TIMER_STARTED, step=step.name, deadline_ms=fire_ms)

    def _wait_for_signal(self, workflow: Workflow, step: SignalStep, now_ms: int) -> None:
        timeout_ms = None if step.timeout_ms is None else now_ms + step.timeout_ms
        self._store(workflow, wait_until_ms=timeout_ms)
        if timeout_ms is not None:
            heapq.heappush(self._deadlines, (timeout_ms, Deadline.WAIT, workflow.workflow_id, workflow.run_id))
        self._record(
            workflow.workflow_id, now_ms, EventType.SIGNAL_WAIT_STARTED, step=step.name, signal=step.signal,
            deadline_ms=timeout_ms,
        )  # fmt: skip

    def _schedule_step(self, workflow: Workflow, step: ActivityStep | ParallelStep, now_ms: int) -> None:
        """Schedules an activity step, or every member of a group at once (in member
        order); an input that does not resolve fails the step for good."""
        members = step_members(step)
        results = dict(workflow.results)
        inputs = []
        for member in members:
            try:
                inputs.append(resolve_input(member.input, workflow.input, results))
            except InputError as exc:
                self._unwind(workflow, f"step {member.name!r} input: {exc}", now_ms)
                return
        for member, member_input in zip(members, inputs):
            self._schedule(workflow.workflow_id, member.name, False, member_input, now_ms)

    def _schedule(self, workflow_id: str, step: str, compensation: bool, task_input: object, now_ms: int) -> None:
        task = Task(self._next_task_id, workflow_id, step, compensation, task_input, 1, TaskState.SCHEDULED, now_ms)
        self._next_task_id += 1
        self._tasks[task.task_id] = task
        workflow = self._workflows[workflow_id]
        self._store(workflow, task_ids=workflow.task_ids + (task.task_id,))
        spec = self._spec(task)
        self._queues.setdefault(spec.task_queue, {})[task.task_id] = None
        self._arm(task, spec)
        self._record_task(task, spec, now_ms, EventType.ACTIVITY_TASK_SCHEDULED, payload=task_input)

    def _task_completed(self, task: Task, result: object, now_ms: int) -> None:
        """A forward task completed: its result is recorded, and its step finishes (a
        group's, once its last member has, with the dict of member results)."""
        workflow = self._workflows[task.workflow_id]
        step = self._activity_step(workflow, task.step)
        workflow = self._store(
            workflow,
            task_ids=tuple(task_id for task_id in workflow.task_ids if task_id != task.task_id),
            results=workflow.results + ((step.name, result),),
            compensations=workflow.compensations + ((step.name,) if step.compensation is not None else ()),
        )
        current = self._current(workflow)
        if type(current) is ParallelStep:
            if workflow.task_ids:
                return  # other members still run
            done = dict(workflow.results)
            workflow = self._finish_step(workflow, current.name, {member.name: done[member.name] for member in current.steps})
        else:
            workflow = self._store(workflow, step_index=workflow.step_index + 1)
        self._next_step(workflow, now_ms)

    # --- deadlines -------------------------------------------------------------------------

    def _arm(self, task: Task, spec: ActivitySpec) -> None:
        """Pushes the heap entries of the task's live deadlines (idempotent: duplicates are harmless)."""
        for kind, deadline_ms in _live_deadlines(task, spec.timeouts):
            heapq.heappush(self._deadlines, (deadline_ms, kind, task.task_id, task.attempt))

    def _fire_due(self, deadline_ms: int, kind: Deadline, key: int | str, number: int, now_ms: int) -> bool:
        """Fires a popped heap entry if it is still live; whether it was."""
        if kind is Deadline.WAIT:
            workflow = self._workflows.get(key)
            if workflow is None or workflow.run_id != number or self._current(workflow) is None:
                return False
            if workflow.wait_until_ms != deadline_ms:
                return False
            self._fire_wait(workflow, now_ms)
            return True
        task = self._tasks.get(key)
        if task is None or (kind is not Deadline.SCHEDULE_TO_CLOSE and number != task.attempt):
            return False
        if (kind, deadline_ms) not in _live_deadlines(task, self._spec(task).timeouts):
            return False
        self._fire(task, kind, now_ms)
        return True

    def _fire_wait(self, workflow: Workflow, now_ms: int) -> None:
        step = self._current(workflow)
        if type(step) is TimerStep:
            self._record(workflow.workflow_id, now_ms, EventType.TIMER_FIRED, step=step.name, deadline_ms=workflow.wait_until_ms)
            self._next_step(self._finish_step(workflow, step.name, None), now_ms)
            return
        assert type(step) is SignalStep, (workflow.workflow_id, step)
        reason = f"step {step.name!r} waited {step.timeout_ms / 1000:g} s for signal {step.signal!r}, which did not come"
        self._record(
            workflow.workflow_id, now_ms, EventType.SIGNAL_WAIT_TIMED_OUT, step=step.name, signal=step.signal,
            deadline_ms=workflow.wait_until_ms, error_type="SignalTimeout", message=reason,
        )  # fmt: skip
        self._unwind(self._store(workflow, wait_until_ms=None), reason, now_ms)

    def _fire(self, task: Task, kind: Deadline, now_ms: int) -> None:
        spec = self._spec(task)
        if kind is Deadline.RETRY:
            task = replace(task, attempt=task.attempt + 1, state=TaskState.SCHEDULED, backoff_until_ms=None)
            self._tasks[task.task_id] = task
            self._queues.setdefault(spec.task_queue, {})[task.task_id] = None
            self._arm(task, spec)
            self._record_task(task, spec, now_ms, EventType.ACTIVITY_TASK_SCHEDULED, payload=task.input)
            return
        error_type = _TIMEOUT_ERRORS[kind]
        message = f"{error_type} of attempt {task.attempt}"
        self._record_task(task, spec, now_ms, EventType.ACTIVITY_TASK_TIMED_OUT, error_type=error_type, message=message)
        if kind is Deadline.SCHEDULE_TO_CLOSE:
            self._failed_for_good(task, spec, f"{error_type}: {message}", now_ms)
        else:
            self._attempt_failed(task, spec, error_type, message, True, now_ms)

    def _attempt_failed(
        self, task: Task, spec: ActivitySpec, error_type: str, message: str, retryable: bool, now_ms: int
    ) -> None:
        retry_at_ms = now_ms + interval_ms(spec.retry, task.attempt)
        limit_ms = spec.timeouts.schedule_to_close_ms
        in_time = limit_ms is None or retry_at_ms < task.scheduled_ms + limit_ms
        task = replace(task, last_error=ActivityError(error_type, message))
        self._tasks[task.task_id] = task
        if in_time and should_retry(spec.retry, task.attempt, error_type, retryable):
            task = replace(task, state=TaskState.BACKOFF, backoff_until_ms=retry_at_ms, details=None, **_NOT_STARTED)
            self._tasks[task.task_id] = task
            self._arm(task, spec)
        else:
            self._failed_for_good(task, spec, f"{error_type}: {message}", now_ms)

    def _failed_for_good(self, task: Task, spec: ActivitySpec, cause: str, now_ms: int) -> None:
        workflow = self._workflows[task.workflow_id]
        if task.compensation:
            reason = f"compensation {spec.activity!r} of step {spec.step!r} failed after attempt {task.attempt}: {cause}"
            self._close(workflow, Status.FAILED, reason, now_ms)
        else:
            reason = f"step {spec.step!r} failed after attempt {task.attempt}: {cause}"
            self._unwind(workflow, reason, now_ms, failed_task_id=task.task_id)

    # --- unwinding and closing -------------------------------------------------------------

    def _drop_pending(self, workflow: Workflow, now_ms: int, why: str | None, failed_task_id: int | None = None) -> Workflow:
        """Removes the workflow's tasks (their tokens go stale, their queue entries go)
        and its wait. With `why`, records ActivityTaskCanceled for each task but the
        failed one, and TimerCanceled for a running timer."""
        for task_id in workflow.task_ids:
            task = self._tasks[task_id]
            spec = self._spec(task)
            if task.state is TaskState.SCHEDULED:
                self._dequeue(spec.task_queue, task_id)
            if why is not None and task_id != failed_task_id:
                self._record_task(task, spec, now_ms, EventType.ACTIVITY_TASK_CANCELED, message=why)
            del self._tasks[task_id]
        step = self._current(workflow)
        if why is not None and type(step) is TimerStep and workflow.wait_until_ms is not None:
            self._record(workflow.workflow_id, now_ms, EventType.TIMER_CANCELED, step=step.name, message=why)
        return self._store(workflow, task_ids=(), wait_until_ms=None)

    def _dequeue(self, task_queue: str, task_id: int) -> None:
        fifo = self._queues[task_queue]
        del fifo[task_id]
        if not fifo:
            del self._queues[task_queue]  # no empty queues: the rows stay canonical

    def _unwind(self, workflow: Workflow, reason: str, now_ms: int, failed_task_id: int | None = None) -> None:
        """Drops what is pending, then runs the compensations of the completed steps
        (group members included) in reverse completion order."""
        workflow = self._drop_pending(workflow, now_ms, reason, failed_task_id)
        workflow = self._store(
            workflow, status=Status.COMPENSATING, reason=reason, compensations_left=len(workflow.compensations)
        )
        self._next_compensation(workflow, now_ms)

    def _next_compensation(self, workflow: Workflow, now_ms: int) -> None:
        if workflow.compensations_left == 0:
            status = Status.CANCELED if workflow.reason == CANCEL_REASON else Status.COMPENSATED
            self._close(workflow, status, workflow.reason, now_ms)
            return
        step = self._activity_step(workflow, workflow.compensations[workflow.compensations_left - 1])
        try:
            undo_input = resolve_input(step.compensation.input, workflow.input, dict(workflow.results))
        except InputError as exc:
            self._close(workflow, Status.FAILED, f"compensation of step {step.name!r} input: {exc}", now_ms)
            return
        self._schedule(workflow.workflow_id, step.name, True, undo_input, now_ms)

    def _close(self, workflow: Workflow, status: Status, reason: str | None, now_ms: int, payload: object = None) -> None:
        assert workflow.status not in CLOSED and status in CLOSED, (workflow.status, status)
        workflow = self._drop_pending(workflow, now_ms, None)
        self._store(workflow, status=status, close_ms=now_ms, reason=reason, signals=())
        self._running -= 1
        self.closes += 1
        self._retention.append((now_ms + self.retention_ms, workflow.run_id, workflow.workflow_id))
        self._record(workflow.workflow_id, now_ms, _CLOSING_EVENTS[status], message=reason, payload=payload)


def _live_deadlines(task: Task, timeouts: Timeouts) -> list[tuple[Deadline, int]]:
    """The (kind, deadline) pairs a task's record arms right now."""
    live = []
    if timeouts.schedule_to_close_ms is not None:
        live.append((Deadline.SCHEDULE_TO_CLOSE, task.scheduled_ms + timeouts.schedule_to_close_ms))
    if task.close_deadline_ms is not None:
        live.append((Deadline.START_TO_CLOSE, task.close_deadline_ms))
    if task.heartbeat_deadline_ms is not None:
        live.append((Deadline.HEARTBEAT, task.heartbeat_deadline_ms))
    if task.state is TaskState.BACKOFF:
        live.append((Deadline.RETRY, task.backoff_until_ms))
    return live
