"""The workflow engine's core: pure and deterministic, driven by the caller's clock.

Every mutating method takes `now_ms`, the leader-stamped time of the entry being
applied (the caller clamps it never to go back); nothing reads a clock, randomness or
I/O, so replicas that make the same calls reach the same state (docs/workflows.md).

Scope of this version: workflows of sequential ActivitySteps, with retries, timeouts,
fencing and saga compensations. A type holding a TimerStep, SignalStep or
ParallelStep registers but `start` refuses it (UNSUPPORTED).

Lifecycle. A workflow runs its steps in order, each as one activity *task* whose id
stays the same across attempts; its token is (task_id, attempt). A task is SCHEDULED
(in its queue's FIFO), STARTED (a worker holds it; `task_started` is proposed by the
leader when it hands the task out) or in BACKOFF (a failed attempt waits for its retry
timer). Only a STARTED task's current attempt may complete, fail or heartbeat; any
other token is Rejected(STALE_TASK) and changes nothing.

A step that fails for good (retries exhausted, non-retryable, schedule_to_close, or
an input that does not resolve), or `cancel`, drops the running task and unwinds: the
compensations of the completed steps that name one run in reverse completion order,
each as its own task with its own retry policy (compensations have no timeouts). When
all have completed the workflow is COMPENSATED (even when there was nothing to undo;
`reason` says why it unwound); if one fails for good it is FAILED and the rest are not
run. `terminate` closes at once with no compensations. A history that reaches
max_history_events fails the workflow (the closing event may be the one past it).

Bounds: max_running_workflows open workflows, so at most that many tasks exist (one
per workflow); max_backlog is admission control on `start` (a queue at its backlog
refuses new workflows, but a running workflow's next step or retry is never refused);
max_history_events per workflow; closed workflows are removed on the first `tick` at or
after close_ms + retention_ms. A closed workflow's id may be started again; the new
run replaces the old record and history.
"""

from __future__ import annotations

import enum
import heapq
from collections import deque
from dataclasses import dataclass, replace

from statemachine.commands import SnapshotError, check_int, check_row, check_type, check_version
from statemachine.workflow.definitions import (
    ActivityStep,
    InputError,
    Timeouts,
    WorkflowType,
    decode_definition,
    encode_definition,
    resolve_input,
)
from statemachine.workflow.events import Event, EventType, event_from_row, event_row
from statemachine.workflow.retry import DefinitionError, RetryPolicy, interval_ms, should_retry

ENGINE_FORMAT = 1  # bump when state_rows' layout changes; restore refuses other versions
DEFAULT_MAX_HISTORY_EVENTS = 10_000
DEFAULT_MAX_BACKLOG = 10_000
DEFAULT_MAX_RUNNING_WORKFLOWS = 100_000
DEFAULT_RETENTION_MS = 7 * 86_400_000
_NO_TIMEOUTS = Timeouts()


class Status(str, enum.Enum):
    RUNNING = "running"
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    COMPENSATED = "compensated"
    FAILED = "failed"
    TERMINATED = "terminated"


CLOSED = frozenset({Status.COMPLETED, Status.COMPENSATED, Status.FAILED, Status.TERMINATED})


class TaskState(str, enum.Enum):
    SCHEDULED = "scheduled"  # in its queue's FIFO, waiting for a worker
    STARTED = "started"  # a worker holds the current attempt
    BACKOFF = "backoff"  # the last attempt failed; a retry timer is armed


class Deadline(enum.IntEnum):
    """Kinds of heap entries; at equal times they fire in this order, then by task id."""

    RETRY = 0
    START_TO_CLOSE = 1
    HEARTBEAT = 2
    SCHEDULE_TO_CLOSE = 3


class WorkflowRejectReason(enum.Enum):
    INVALID = "invalid"  # a bad argument (type conflict, bad limits, bad input)
    UNKNOWN_TYPE = "unknown_type"
    UNSUPPORTED = "unsupported"  # a step kind this engine does not run yet
    ALREADY_RUNNING = "already_running"
    RESOURCE_EXHAUSTED = "resource_exhausted"  # backlog or running-workflow limit
    STALE_TASK = "stale_task"  # (task_id, attempt) is not a started task's current attempt
    NOT_FOUND = "not_found"
    NOT_RUNNING = "not_running"  # the workflow is closed (or already unwinding)


@dataclass(frozen=True, slots=True)
class WorkflowRejected:
    """The call was not applied and changed nothing."""

    reason: WorkflowRejectReason
    message: str


# --- results --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TypeRegistered:
    name: str
    version: int


@dataclass(frozen=True, slots=True)
class WorkflowStarted:
    workflow_id: str
    run_id: int  # distinguishes runs that reuse a closed workflow's id


@dataclass(frozen=True, slots=True)
class TaskAccepted:
    task_id: int
    attempt: int


@dataclass(frozen=True, slots=True)
class WorkflowAccepted:
    """cancel/terminate applied; `status` is the workflow's status afterwards."""

    workflow_id: str
    status: Status


@dataclass(frozen=True, slots=True)
class Ticked:
    fired: int  # timers and timeouts that were live when due
    removed: int  # closed workflows dropped by retention


@dataclass(frozen=True, slots=True)
class ActivityTask:
    """A task as the leader sees it (pending_tasks) and hands it to a worker
    (task_started's result): the token (task_id, attempt) and the resolved input."""

    task_id: int
    attempt: int
    workflow_id: str
    activity: str
    input: object
    compensation: bool


@dataclass(frozen=True, slots=True)
class WorkflowDescription:
    workflow_id: str
    run_id: int
    type_name: str
    version: int
    status: Status
    start_ms: int
    close_ms: int | None
    step: str | None  # the current step (or the one being compensated); None once closed
    task_id: int | None
    attempt: int | None
    reason: str | None  # why it unwound, failed or was terminated
    result: object  # the last step's result once completed


# --- records (immutable: capture() is a shallow copy) ---------------------------------


@dataclass(frozen=True, slots=True)
class Task:
    task_id: int
    workflow_id: str
    step_index: int  # the step it runs, or whose compensation it runs
    compensation: bool
    input: object  # resolved when attempt 1 was scheduled; the same for every attempt
    attempt: int  # >= 1
    state: TaskState
    scheduled_ms: int  # attempt 1's scheduling: schedule_to_close counts from here
    started_ms: int | None = None  # set iff STARTED
    heartbeat_deadline_ms: int | None = None  # STARTED with a heartbeat timeout only
    backoff_until_ms: int | None = None  # set iff BACKOFF
    details: object = None  # the last heartbeat's, for this attempt


@dataclass(frozen=True, slots=True)
class Workflow:
    workflow_id: str
    run_id: int
    type_name: str
    version: int
    input: object
    status: Status
    start_ms: int
    close_ms: int | None  # set iff status is closed
    step_index: int  # the next step to complete; == len(steps) once all have
    results: tuple[tuple[str, object], ...]  # completed steps' results, in completion order
    compensations: tuple[int, ...]  # completed steps naming a compensation, in completion order
    compensations_left: int  # while COMPENSATING: compensations[:left] are still to run, last first
    task_id: int | None  # its one task, None when it has none
    reason: str | None


@dataclass(frozen=True, slots=True)
class _ActivitySpec:
    step: str
    activity: str
    task_queue: str
    retry: RetryPolicy
    timeouts: Timeouts


class WorkflowEngine:
    def __init__(
        self,
        *,
        max_history_events: int = DEFAULT_MAX_HISTORY_EVENTS,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
        max_running_workflows: int = DEFAULT_MAX_RUNNING_WORKFLOWS,
        retention_ms: int = DEFAULT_RETENTION_MS,
    ) -> None:
        limits = (
            ("max_history_events", max_history_events, 4),  # started, scheduled, started, closed
            ("max_backlog", max_backlog, 1),
            ("max_running_workflows", max_running_workflows, 1),
            ("retention_ms", retention_ms, 0),
        )
        for name, value, minimum in limits:
            if type(value) is not int or value < minimum:
                raise ValueError(f"{name}={value!r} must be an integer >= {minimum}")
        self.max_history_events = max_history_events
        self.max_backlog = max_backlog
        self.max_running_workflows = max_running_workflows
        self.retention_ms = retention_ms
        self._reset()

    def _reset(self) -> None:
        self._types: dict[tuple[str, int], WorkflowType] = {}
        self._workflows: dict[str, Workflow] = {}
        self._histories: dict[str, list[Event]] = {}  # append-only while the run lives
        self._tasks: dict[int, Task] = {}
        self._queues: dict[str, dict[int, None]] = {}  # FIFO of SCHEDULED task ids; no empty queues
        self._next_task_id = 1
        self._next_run_id = 1
        self._running = 0  # workflows not closed
        self._deadlines: list[tuple[int, int, int, int]] = []  # (deadline_ms, kind, task_id, attempt); stale allowed
        self._retention: deque[tuple[int, int, str]] = deque()  # (remove_at_ms, run_id, id), in close order
        self._overflowed: dict[str, None] = {}  # workflows whose history filled during this call
        self._now_ms = 0  # the latest now_ms seen; not part of the state

    # --- ops ----------------------------------------------------------------------------

    def register(self, workflow_type: WorkflowType) -> TypeRegistered | WorkflowRejected:
        """Adds a type; registering an equal one again is a no-op, a different one under
        the same (name, version) is refused (versions are immutable)."""
        if type(workflow_type) is not WorkflowType:
            return WorkflowRejected(WorkflowRejectReason.INVALID, f"{workflow_type!r} is not a WorkflowType")
        key = (workflow_type.name, workflow_type.version)
        known = self._types.get(key)
        if known is not None and known != workflow_type:
            return WorkflowRejected(
                WorkflowRejectReason.INVALID,
                f"workflow type {key[0]!r} version {key[1]} is already registered with other steps; bump the version",
            )
        self._types[key] = workflow_type
        return TypeRegistered(*key)

    def start(
        self, workflow_id: str, type_name: str, version: int, input: object, now_ms: int
    ) -> WorkflowStarted | WorkflowRejected:
        self._advance_clock(now_ms)
        refused = self._check_start(workflow_id, type_name, version)
        if refused is not None:
            return refused
        workflow_type = self._types[(type_name, version)]
        first = workflow_type.steps[0]
        try:
            first_input = resolve_input(first.input, input, {})
        except InputError as exc:
            return WorkflowRejected(WorkflowRejectReason.INVALID, f"steps[0] {first.name!r}: {exc}")
        if len(self._queues.get(first.task_queue, ())) >= self.max_backlog:
            return WorkflowRejected(
                WorkflowRejectReason.RESOURCE_EXHAUSTED,
                f"task queue {first.task_queue!r} holds max_backlog={self.max_backlog} scheduled tasks",
            )
        workflow = Workflow(
            workflow_id, self._next_run_id, type_name, version, input, Status.RUNNING, now_ms, None, 0, (), (), 0, None, None
        )
        self._next_run_id += 1
        self._running += 1
        self._workflows[workflow_id] = workflow
        self._histories[workflow_id] = []
        self._record(workflow_id, now_ms, EventType.WORKFLOW_EXECUTION_STARTED, payload=input)
        self._schedule(workflow, 0, False, first_input, now_ms)
        self._close_overflowed(now_ms)
        return WorkflowStarted(workflow_id, workflow.run_id)

    def task_started(self, task_id: int, attempt: int, now_ms: int) -> ActivityTask | WorkflowRejected:
        """A worker took the task: arms its start_to_close and heartbeat deadlines."""
        self._advance_clock(now_ms)
        task = self._tasks.get(task_id)
        if task is None or task.attempt != attempt or task.state is not TaskState.SCHEDULED:
            return _stale(task_id, attempt, "is not a scheduled task's current attempt")
        spec = self._spec(task)
        self._dequeue(spec.task_queue, task_id)
        heartbeat_ms = spec.timeouts.heartbeat_ms
        task = replace(
            task,
            state=TaskState.STARTED,
            started_ms=now_ms,
            heartbeat_deadline_ms=None if heartbeat_ms is None else now_ms + heartbeat_ms,
        )
        self._tasks[task_id] = task
        self._arm(task, spec)
        self._record_task(task, spec, now_ms, EventType.ACTIVITY_TASK_STARTED)
        self._close_overflowed(now_ms)
        return ActivityTask(task_id, attempt, task.workflow_id, spec.activity, task.input, task.compensation)

    def complete(self, task_id: int, attempt: int, result: object, now_ms: int) -> TaskAccepted | WorkflowRejected:
        """The attempt succeeded: records the result, then schedules the next step (or
        compensation) or closes the workflow."""
        self._advance_clock(now_ms)
        task = self._started(task_id, attempt)
        if type(task) is WorkflowRejected:
            return task
        spec = self._spec(task)
        self._record_task(task, spec, now_ms, EventType.ACTIVITY_TASK_COMPLETED, payload=result)
        del self._tasks[task_id]
        workflow = self._workflows[task.workflow_id]
        if task.compensation:
            workflow = self._store(workflow, task_id=None, compensations_left=workflow.compensations_left - 1)
            self._next_compensation(workflow, now_ms)
        else:
            step = self._type(workflow).steps[task.step_index]
            compensations = workflow.compensations + ((task.step_index,) if step.compensation is not None else ())
            workflow = self._store(
                workflow,
                task_id=None,
                step_index=task.step_index + 1,
                results=workflow.results + ((step.name, result),),
                compensations=compensations,
            )
            self._next_step(workflow, now_ms)
        self._close_overflowed(now_ms)
        return TaskAccepted(task_id, attempt)

    def fail(
        self, task_id: int, attempt: int, error_type: str, message: str, retryable: bool, now_ms: int
    ) -> TaskAccepted | WorkflowRejected:
        """The attempt failed: a retry timer if the policy allows another attempt, else
        the step (or compensation) failed for good."""
        self._advance_clock(now_ms)
        task = self._started(task_id, attempt)
        if type(task) is WorkflowRejected:
            return task
        spec = self._spec(task)
        self._record_task(task, spec, now_ms, EventType.ACTIVITY_TASK_FAILED, error_type=error_type, message=message)
        self._attempt_failed(task, spec, error_type, message, retryable, now_ms)
        self._close_overflowed(now_ms)
        return TaskAccepted(task_id, attempt)

    def heartbeat(self, task_id: int, attempt: int, details: object, now_ms: int) -> TaskAccepted | WorkflowRejected:
        """Keeps the details and pushes the heartbeat deadline back; not in the history."""
        self._advance_clock(now_ms)
        task = self._started(task_id, attempt)
        if type(task) is WorkflowRejected:
            return task
        spec = self._spec(task)
        heartbeat_ms = spec.timeouts.heartbeat_ms
        task = replace(task, details=details, heartbeat_deadline_ms=None if heartbeat_ms is None else now_ms + heartbeat_ms)
        self._tasks[task_id] = task
        if heartbeat_ms is not None:
            heapq.heappush(self._deadlines, (task.heartbeat_deadline_ms, Deadline.HEARTBEAT, task_id, attempt))
        return TaskAccepted(task_id, attempt)

    def cancel(self, workflow_id: str, now_ms: int) -> WorkflowAccepted | WorkflowRejected:
        """Drops the running step's task and runs the completed steps' compensations."""
        self._advance_clock(now_ms)
        workflow = self._workflows.get(workflow_id)
        if workflow is None or workflow.status is not Status.RUNNING:
            return _not_running(workflow_id, workflow, "canceled")
        self._record(workflow_id, now_ms, EventType.WORKFLOW_EXECUTION_CANCEL_REQUESTED)
        self._unwind(workflow, "canceled", now_ms)
        self._close_overflowed(now_ms)
        return WorkflowAccepted(workflow_id, self._workflows[workflow_id].status)

    def terminate(self, workflow_id: str, reason: str, now_ms: int) -> WorkflowAccepted | WorkflowRejected:
        """Closes the workflow at once: no compensations; its task's tokens go stale."""
        self._advance_clock(now_ms)
        workflow = self._workflows.get(workflow_id)
        if workflow is None or workflow.status in CLOSED:
            return _not_running(workflow_id, workflow, "terminated")
        self._close(workflow, Status.TERMINATED, reason, now_ms)
        return WorkflowAccepted(workflow_id, Status.TERMINATED)

    def tick(self, now_ms: int) -> Ticked:
        """Fires every timer and timeout due at now_ms, in (deadline, kind, task id)
        order, then removes closed workflows past retention."""
        self._advance_clock(now_ms)
        fired = 0
        while self._deadlines and self._deadlines[0][0] <= now_ms:
            deadline_ms, kind, task_id, attempt = heapq.heappop(self._deadlines)
            task = self._tasks.get(task_id)
            if task is not None and self._live(task, Deadline(kind), deadline_ms, attempt):
                self._fire(task, Deadline(kind), now_ms)
                fired += 1
        self._close_overflowed(now_ms)
        removed = 0
        while self._retention and self._retention[0][0] <= now_ms:
            _, run_id, workflow_id = self._retention.popleft()
            workflow = self._workflows.get(workflow_id)
            if workflow is not None and workflow.run_id == run_id:  # else a newer run reuses the id
                del self._workflows[workflow_id]
                del self._histories[workflow_id]
                removed += 1
        return Ticked(fired, removed)

    # --- queries (read-only) -------------------------------------------------------------

    def pending_tasks(self, task_queue: str, limit: int) -> list[ActivityTask]:
        """Up to `limit` scheduled tasks of the queue, oldest first: what the leader may
        hand out next (proposing task_started for each)."""
        pending = []
        for task_id in self._queues.get(task_queue, ()):
            if len(pending) >= limit:
                break
            task = self._tasks[task_id]
            spec = self._spec(task)
            pending.append(ActivityTask(task_id, task.attempt, task.workflow_id, spec.activity, task.input, task.compensation))
        return pending

    def next_deadline_ms(self) -> int | None:
        """The earliest armed deadline (possibly a stale one): when the leader should tick."""
        return self._deadlines[0][0] if self._deadlines else None

    def describe(self, workflow_id: str) -> WorkflowDescription | None:
        workflow = self._workflows.get(workflow_id)
        if workflow is None:
            return None
        task = self._tasks.get(workflow.task_id) if workflow.task_id is not None else None
        steps = self._type(workflow).steps
        step = None if task is None else steps[task.step_index].name
        result = workflow.results[-1][1] if workflow.status is Status.COMPLETED else None
        return WorkflowDescription(
            workflow_id, workflow.run_id, workflow.type_name, workflow.version, workflow.status, workflow.start_ms,
            workflow.close_ms, step, workflow.task_id, None if task is None else task.attempt, workflow.reason, result,
        )  # fmt: skip

    def history(self, workflow_id: str) -> tuple[Event, ...]:
        return tuple(self._histories.get(workflow_id, ()))

    # --- snapshots -------------------------------------------------------------------------

    def capture(self) -> tuple:
        """Records and events are immutable and histories only grow while captured, so
        shallow copies (and each history's length) are a consistent snapshot."""
        histories = {workflow_id: (events, len(events)) for workflow_id, events in self._histories.items()}
        queues = {name: tuple(fifo) for name, fifo in self._queues.items()}
        counters = (self._next_task_id, self._next_run_id)
        return counters, dict(self._types), dict(self._workflows), histories, dict(self._tasks), queues

    @staticmethod
    def state_rows(captured: tuple) -> list:
        """Canonical rows: everything sorted by key, no heap or index (restore rebuilds
        them), so the same state gives the same rows whatever the call history."""
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

    def snapshot_state(self) -> list:
        return self.state_rows(self.capture())

    def restore_state(self, state: object) -> None:
        """Replaces the state with `state` from state_rows; SnapshotError naming the
        field (and no change) if it is malformed or breaks an invariant."""
        fresh = WorkflowEngine(
            max_history_events=self.max_history_events,
            max_backlog=self.max_backlog,
            max_running_workflows=self.max_running_workflows,
            retention_ms=self.retention_ms,
        )
        _restore_into(fresh, state)
        for name, value in vars(fresh).items():
            setattr(self, name, value)

    # --- internals -----------------------------------------------------------------------

    def _advance_clock(self, now_ms: int) -> None:
        assert type(now_ms) is int and now_ms >= self._now_ms, (now_ms, self._now_ms)
        self._now_ms = now_ms

    def _check_start(self, workflow_id: str, type_name: str, version: int) -> WorkflowRejected | None:
        if type(workflow_id) is not str or not workflow_id:
            return WorkflowRejected(WorkflowRejectReason.INVALID, f"workflow_id={workflow_id!r} must be a non-empty string")
        workflow_type = self._types.get((type_name, version))
        if workflow_type is None:
            return WorkflowRejected(
                WorkflowRejectReason.UNKNOWN_TYPE, f"workflow type {type_name!r} version {version!r} is not registered"
            )
        for i, step in enumerate(workflow_type.steps):
            if type(step) is not ActivityStep:
                return WorkflowRejected(
                    WorkflowRejectReason.UNSUPPORTED,
                    f"steps[{i}] {step.name!r} is a {type(step).__name__}; this engine runs activity steps only (not supported yet)",
                )
        existing = self._workflows.get(workflow_id)
        if existing is not None and existing.status not in CLOSED:
            return WorkflowRejected(
                WorkflowRejectReason.ALREADY_RUNNING,
                f"workflow {workflow_id!r} is already {existing.status.value} (run {existing.run_id})",
            )
        if self._running >= self.max_running_workflows:
            return WorkflowRejected(
                WorkflowRejectReason.RESOURCE_EXHAUSTED, f"max_running_workflows={self.max_running_workflows} are open"
            )
        return None

    def _type(self, workflow: Workflow) -> WorkflowType:
        return self._types[(workflow.type_name, workflow.version)]

    def _spec(self, task: Task) -> _ActivitySpec:
        step = self._type(self._workflows[task.workflow_id]).steps[task.step_index]
        if task.compensation:
            undo = step.compensation
            return _ActivitySpec(step.name, undo.activity, undo.task_queue, undo.retry, _NO_TIMEOUTS)
        return _ActivitySpec(step.name, step.activity, step.task_queue, step.retry, step.timeouts)

    def _store(self, workflow: Workflow, **changes: object) -> Workflow:
        workflow = replace(workflow, **changes)
        self._workflows[workflow.workflow_id] = workflow
        return workflow

    def _started(self, task_id: int, attempt: int) -> Task | WorkflowRejected:
        task = self._tasks.get(task_id)
        if task is None or task.attempt != attempt or task.state is not TaskState.STARTED:
            return _stale(task_id, attempt, "is not a started task's current attempt")
        return task

    def _record(self, workflow_id: str, now_ms: int, event_type: EventType, **fields: object) -> None:
        """Appends an event; an open workflow keeps one slot for its closing event, and
        when it is full the event is dropped and the workflow fails at the end of the call."""
        history = self._histories[workflow_id]
        closing = self._workflows[workflow_id].status in CLOSED
        if not closing and len(history) >= self.max_history_events - 1:
            self._overflowed[workflow_id] = None
            return
        history.append(Event(len(history) + 1, now_ms, event_type, **fields))

    def _record_task(self, task: Task, spec: _ActivitySpec, now_ms: int, event_type: EventType, **fields: object) -> None:
        self._record(
            task.workflow_id, now_ms, event_type, step=spec.step, activity=spec.activity, task_id=task.task_id,
            attempt=task.attempt, compensation=task.compensation, **fields,
        )  # fmt: skip

    def _close_overflowed(self, now_ms: int) -> None:
        overflowed, self._overflowed = self._overflowed, {}
        for workflow_id in overflowed:
            workflow = self._workflows[workflow_id]
            if workflow.status not in CLOSED:
                reason = f"history reached max_history_events={self.max_history_events}"
                self._close(workflow, Status.FAILED, reason, now_ms)

    def _schedule(self, workflow: Workflow, step_index: int, compensation: bool, task_input: object, now_ms: int) -> None:
        task = Task(self._next_task_id, workflow.workflow_id, step_index, compensation, task_input, 1, TaskState.SCHEDULED, now_ms)
        self._next_task_id += 1
        self._tasks[task.task_id] = task
        self._store(workflow, task_id=task.task_id)
        spec = self._spec(task)
        self._queues.setdefault(spec.task_queue, {})[task.task_id] = None
        self._arm(task, spec)
        self._record_task(task, spec, now_ms, EventType.ACTIVITY_TASK_SCHEDULED, payload=task_input)

    def _arm(self, task: Task, spec: _ActivitySpec) -> None:
        """Pushes the heap entries of the task's live deadlines (idempotent: duplicates are harmless)."""
        for kind, deadline_ms in _live_deadlines(task, spec.timeouts):
            heapq.heappush(self._deadlines, (deadline_ms, kind, task.task_id, task.attempt))

    def _live(self, task: Task, kind: Deadline, deadline_ms: int, attempt: int) -> bool:
        if kind is not Deadline.SCHEDULE_TO_CLOSE and attempt != task.attempt:
            return False
        return (kind, deadline_ms) in _live_deadlines(task, self._spec(task).timeouts)

    def _fire(self, task: Task, kind: Deadline, now_ms: int) -> None:
        spec = self._spec(task)
        if kind is Deadline.RETRY:
            task = replace(task, attempt=task.attempt + 1, state=TaskState.SCHEDULED, backoff_until_ms=None, details=None)
            self._tasks[task.task_id] = task
            self._queues.setdefault(spec.task_queue, {})[task.task_id] = None
            self._arm(task, spec)
            self._record_task(task, spec, now_ms, EventType.ACTIVITY_TASK_SCHEDULED, payload=task.input)
            return
        error_type = {
            Deadline.START_TO_CLOSE: "StartToCloseTimeout",
            Deadline.HEARTBEAT: "HeartbeatTimeout",
            Deadline.SCHEDULE_TO_CLOSE: "ScheduleToCloseTimeout",
        }[kind]
        message = f"{error_type} of attempt {task.attempt}"
        self._record_task(task, spec, now_ms, EventType.ACTIVITY_TASK_TIMED_OUT, error_type=error_type, message=message)
        if kind is Deadline.SCHEDULE_TO_CLOSE:
            self._failed_for_good(task, spec, f"{error_type}: {message}", now_ms)
        else:
            self._attempt_failed(task, spec, error_type, message, True, now_ms)

    def _attempt_failed(
        self, task: Task, spec: _ActivitySpec, error_type: str, message: str, retryable: bool, now_ms: int
    ) -> None:
        retry_at_ms = now_ms + interval_ms(spec.retry, task.attempt)
        limit_ms = spec.timeouts.schedule_to_close_ms
        in_time = limit_ms is None or retry_at_ms < task.scheduled_ms + limit_ms
        if in_time and should_retry(spec.retry, task.attempt, error_type, retryable):
            task = replace(task, state=TaskState.BACKOFF, started_ms=None, heartbeat_deadline_ms=None, backoff_until_ms=retry_at_ms)
            self._tasks[task.task_id] = task
            self._arm(task, spec)
        else:
            self._failed_for_good(task, spec, f"{error_type}: {message}", now_ms)

    def _failed_for_good(self, task: Task, spec: _ActivitySpec, cause: str, now_ms: int) -> None:
        workflow = self._workflows[task.workflow_id]
        if task.compensation:
            reason = f"compensation {spec.activity!r} of step {spec.step!r} failed after attempt {task.attempt}: {cause}"
            self._close(workflow, Status.FAILED, reason, now_ms)
        else:
            self._unwind(workflow, f"step {spec.step!r} failed after attempt {task.attempt}: {cause}", now_ms)

    def _drop_task(self, workflow: Workflow) -> Workflow:
        """Removes the workflow's task (its tokens go stale) and any queue entry of it."""
        task = self._tasks.pop(workflow.task_id, None) if workflow.task_id is not None else None
        if task is not None and task.state is TaskState.SCHEDULED:
            self._dequeue(self._spec(task).task_queue, task.task_id)
        return self._store(workflow, task_id=None)

    def _dequeue(self, task_queue: str, task_id: int) -> None:
        fifo = self._queues[task_queue]
        del fifo[task_id]
        if not fifo:
            del self._queues[task_queue]  # no empty queues: the rows stay canonical

    def _unwind(self, workflow: Workflow, reason: str, now_ms: int) -> None:
        workflow = self._drop_task(workflow)
        workflow = self._store(
            workflow, status=Status.COMPENSATING, reason=reason, compensations_left=len(workflow.compensations)
        )
        self._next_compensation(workflow, now_ms)

    def _next_step(self, workflow: Workflow, now_ms: int) -> None:
        steps = self._type(workflow).steps
        if workflow.step_index == len(steps):
            self._close(workflow, Status.COMPLETED, None, now_ms, payload=workflow.results[-1][1])
            return
        step = steps[workflow.step_index]
        try:
            step_input = resolve_input(step.input, workflow.input, dict(workflow.results))
        except InputError as exc:
            self._unwind(workflow, f"step {step.name!r} input: {exc}", now_ms)
            return
        self._schedule(workflow, workflow.step_index, False, step_input, now_ms)

    def _next_compensation(self, workflow: Workflow, now_ms: int) -> None:
        if workflow.compensations_left == 0:
            self._close(workflow, Status.COMPENSATED, workflow.reason, now_ms)
            return
        step_index = workflow.compensations[workflow.compensations_left - 1]
        step = self._type(workflow).steps[step_index]
        try:
            undo_input = resolve_input(step.compensation.input, workflow.input, dict(workflow.results))
        except InputError as exc:
            self._close(workflow, Status.FAILED, f"compensation of step {step.name!r} input: {exc}", now_ms)
            return
        self._schedule(workflow, step_index, True, undo_input, now_ms)

    def _close(self, workflow: Workflow, status: Status, reason: str | None, now_ms: int, payload: object = None) -> None:
        assert workflow.status not in CLOSED and status in CLOSED, (workflow.status, status)
        workflow = self._drop_task(workflow)
        self._store(workflow, status=status, close_ms=now_ms, reason=reason)
        self._running -= 1
        self._retention.append((now_ms + self.retention_ms, workflow.run_id, workflow.workflow_id))
        event_type = {
            Status.COMPLETED: EventType.WORKFLOW_EXECUTION_COMPLETED,
            Status.COMPENSATED: EventType.WORKFLOW_EXECUTION_COMPENSATED,
            Status.FAILED: EventType.WORKFLOW_EXECUTION_FAILED,
            Status.TERMINATED: EventType.WORKFLOW_EXECUTION_TERMINATED,
        }[status]
        self._record(workflow.workflow_id, now_ms, event_type, message=reason, payload=payload)


def _live_deadlines(task: Task, timeouts: Timeouts) -> list[tuple[Deadline, int]]:
    """The (kind, deadline) pairs a task's record arms right now."""
    live = []
    if timeouts.schedule_to_close_ms is not None:
        live.append((Deadline.SCHEDULE_TO_CLOSE, task.scheduled_ms + timeouts.schedule_to_close_ms))
    if task.state is TaskState.STARTED:
        if timeouts.start_to_close_ms is not None:
            live.append((Deadline.START_TO_CLOSE, task.started_ms + timeouts.start_to_close_ms))
        if task.heartbeat_deadline_ms is not None:
            live.append((Deadline.HEARTBEAT, task.heartbeat_deadline_ms))
    if task.state is TaskState.BACKOFF:
        live.append((Deadline.RETRY, task.backoff_until_ms))
    return live


def _stale(task_id: int, attempt: int, rule: str) -> WorkflowRejected:
    return WorkflowRejected(WorkflowRejectReason.STALE_TASK, f"task {task_id!r} attempt {attempt!r} {rule}")


def _not_running(workflow_id: str, workflow: Workflow | None, verb: str) -> WorkflowRejected:
    if workflow is None:
        return WorkflowRejected(WorkflowRejectReason.NOT_FOUND, f"workflow {workflow_id!r} does not exist")
    return WorkflowRejected(
        WorkflowRejectReason.NOT_RUNNING, f"workflow {workflow_id!r} is {workflow.status.value}; it cannot be {verb}"
    )


# --- rows --------------------------------------------------------------------------------

_WORKFLOW_FIELDS = 14
_TASK_FIELDS = 12


def _workflow_row(workflow: Workflow, history: list[Event], length: int) -> list:
    return [
        workflow.workflow_id, workflow.run_id, workflow.type_name, workflow.version, workflow.input,
        workflow.status.value, workflow.start_ms, workflow.close_ms, workflow.step_index,
        [[name, result] for name, result in workflow.results], list(workflow.compensations),
        workflow.compensations_left, workflow.task_id, workflow.reason,
        [event_row(event) for event in history[:length]],
    ]  # fmt: skip


def _task_row(task: Task) -> list:
    return [
        task.task_id, task.workflow_id, task.step_index, task.compensation, task.input, task.attempt,
        task.state.value, task.scheduled_ms, task.started_ms, task.heartbeat_deadline_ms, task.backoff_until_ms,
        task.details,
    ]  # fmt: skip


def _optional_int(value: object, what: str) -> int | None:
    return None if value is None else check_int(value, what, SnapshotError)


def _enum(cls: type[enum.Enum], value: object, what: str) -> enum.Enum:
    try:
        return cls(value)
    except ValueError:
        raise SnapshotError(f"{what} is {value!r}; expected one of {[m.value for m in cls]}") from None


def _restore_into(engine: WorkflowEngine, state: object) -> None:
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
        engine._types[(workflow_type.name, workflow_type.version)] = workflow_type
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
    step_index, results, compensations, compensations_left, task_id, reason, events = fields[8:]
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
    check_type(events, list, f"{what} history", SnapshotError)
    history = [event_from_row(event, f"{what} history[{i}]") for i, event in enumerate(events)]
    if [event.event_id for event in history] != list(range(1, len(history) + 1)):
        raise SnapshotError(f"{what} history event ids are not 1..{len(history)}")
    engine._workflows[workflow_id] = Workflow(
        workflow_id, run_id, type_name, version, workflow_input, status, start_ms, close_ms, step_index,
        tuple((name, result) for name, result in results), tuple(compensations), compensations_left, task_id, reason,
    )  # fmt: skip
    engine._histories[workflow_id] = history


def _restore_task(engine: WorkflowEngine, row: object) -> None:
    fields = check_row(row, _TASK_FIELDS, "task", SnapshotError)
    task_id, workflow_id, step_index, compensation, task_input, attempt, state = fields[:7]
    scheduled_ms, started_ms, heartbeat_deadline_ms, backoff_until_ms, details = fields[7:]
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
    for name, value in (("started_ms", started_ms), ("heartbeat_deadline_ms", heartbeat_deadline_ms), ("backoff_until_ms", backoff_until_ms)):
        _optional_int(value, f"{what} {name}")
    if (started_ms is not None) != (state is TaskState.STARTED) or (backoff_until_ms is not None) != (state is TaskState.BACKOFF):
        raise SnapshotError(f"{what} is {state.value} with started_ms={started_ms!r} backoff_until_ms={backoff_until_ms!r}")
    task = Task(
        task_id, workflow_id, step_index, compensation, task_input, attempt, state, scheduled_ms, started_ms,
        heartbeat_deadline_ms, backoff_until_ms, details,
    )  # fmt: skip
    engine._tasks[task_id] = task
    engine._arm(task, engine._spec(task))


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
