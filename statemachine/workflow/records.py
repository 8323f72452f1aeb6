"""The workflow engine's vocabulary: statuses and kinds, the results its calls return,
the answers of its queries, and its records.

Records (`Task`, `Workflow`) are immutable, so `WorkflowEngine.capture()` is a shallow
copy; the engine replaces a record to change it. `engine.py` re-exports all of this.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Status(str, enum.Enum):
    RUNNING = "running"
    COMPENSATING = "compensating"
    COMPLETED = "completed"
    COMPENSATED = "compensated"
    FAILED = "failed"
    TERMINATED = "terminated"
    CANCELED = "canceled"  # cancel requested, and the compensations it ran completed


CLOSED = frozenset({Status.COMPLETED, Status.COMPENSATED, Status.FAILED, Status.TERMINATED, Status.CANCELED})
# The reason a canceled workflow unwinds with; its final status is then CANCELED, not
# COMPENSATED. (Other reasons name a step or a compensation, so they never equal it.)
CANCEL_REASON = "canceled"


class TaskState(str, enum.Enum):
    SCHEDULED = "scheduled"  # in its queue's FIFO, waiting for a worker
    STARTED = "started"  # a worker holds the current attempt
    BACKOFF = "backoff"  # the last attempt failed; a retry timer is armed


class Deadline(enum.IntEnum):
    """Kinds of heap entries; at equal times they fire in this order, then by task id
    (WAIT: by workflow id)."""

    RETRY = 0
    START_TO_CLOSE = 1
    HEARTBEAT = 2
    SCHEDULE_TO_CLOSE = 3
    WAIT = 4  # a timer step's fire time, or a signal step's timeout


class WorkflowRejectReason(enum.Enum):
    INVALID = "invalid"  # a bad argument (type conflict, bad limits, bad input)
    UNKNOWN_TYPE = "unknown_type"
    UNSUPPORTED = "unsupported"  # a step kind this engine does not run (none today; kept for old clients)
    ALREADY_RUNNING = "already_running"
    RESOURCE_EXHAUSTED = "resource_exhausted"  # backlog, running-workflow or buffered-signal limit
    STALE_TASK = "stale_task"  # (task_id, attempt) is not a started task's current attempt
    NOT_FOUND = "not_found"
    NOT_RUNNING = "not_running"  # the workflow is closed (or already unwinding)


@dataclass(frozen=True, slots=True)
class WorkflowRejected:
    """The call was not applied and changed nothing; one exception: a task_started
    that filled the workflow's history failed the workflow (NOT_RUNNING)."""

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
    existing: bool = False  # True: return_running found this run open and started nothing


@dataclass(frozen=True, slots=True)
class TaskAccepted:
    task_id: int
    attempt: int


@dataclass(frozen=True, slots=True)
class WorkflowAccepted:
    """cancel/terminate/signal applied; `status` is the workflow's status afterwards."""

    workflow_id: str
    status: Status


@dataclass(frozen=True, slots=True)
class Ticked:
    fired: int  # timers and timeouts that were live when due
    removed: int  # closed workflows dropped by retention


@dataclass(frozen=True, slots=True)
class Rearmed:
    tasks: int  # started tasks that had a deadline moved to now + grace


@dataclass(frozen=True, slots=True)
class ActivityTask:
    """A task as the leader sees it (pending_tasks) and hands it to a worker
    (task_started's result): the token (task_id, attempt) and the resolved input.
    A worker's idempotency key is (workflow_id, run_id, step, compensation)."""

    task_id: int
    attempt: int
    workflow_id: str
    activity: str
    input: object
    compensation: bool
    run_id: int
    step: str  # the step it runs; for a compensation, the step it undoes
    task_queue: str


# --- query answers ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActivityError:
    """What a failed or timed-out attempt reported."""

    error_type: str  # the worker's error type, or e.g. StartToCloseTimeout
    message: str


@dataclass(frozen=True, slots=True)
class TaskDescription:
    """One pending task of a workflow, as `describe` shows it."""

    task_id: int
    attempt: int
    step: str  # for a compensation, the step it undoes
    activity: str
    compensation: bool
    state: TaskState
    task_queue: str
    last_error: ActivityError | None  # the last failed attempt's (kept across attempts)
    next_retry_ms: int | None  # set iff BACKOFF: when the next attempt is scheduled
    last_heartbeat_ms: int | None  # the current attempt's last heartbeat
    heartbeat_details: object  # and its details


@dataclass(frozen=True, slots=True)
class WorkflowDescription:
    """A workflow and, while it is open, what it waits for. The task fields describe the
    first of `tasks` (its only one outside a parallel group); None when it has none."""

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
    task_state: TaskState | None = None
    task_queue: str | None = None
    last_error: ActivityError | None = None
    next_retry_ms: int | None = None
    last_heartbeat_ms: int | None = None
    heartbeat_details: object = None
    timer_fire_ms: int | None = None  # a timer step's fire time
    awaited_signal: str | None = None  # the signal a signal step waits for
    signal_deadline_ms: int | None = None  # when that wait times out; None: no limit
    buffered_signals: tuple[str, ...] = ()  # names of received, unconsumed signals, oldest first
    tasks: tuple[TaskDescription, ...] = ()  # every pending task, by task id


@dataclass(frozen=True, slots=True)
class WorkflowSummary:
    """A row of `list_workflows`."""

    workflow_id: str
    run_id: int
    type_name: str
    version: int
    status: Status
    start_ms: int
    close_ms: int | None


# --- records (immutable: capture() is a shallow copy) ---------------------------------


TASK_SECRET_BYTES = 16  # the random part of a task token, chosen by the leader at each hand-out


@dataclass(frozen=True, slots=True)
class Task:
    task_id: int
    workflow_id: str
    step: str  # the activity step (or group member) it runs, or whose compensation it runs
    compensation: bool
    input: object  # resolved when attempt 1 was scheduled; the same for every attempt
    attempt: int  # >= 1
    state: TaskState
    scheduled_ms: int  # attempt 1's scheduling: schedule_to_close counts from here
    started_ms: int | None = None  # set iff STARTED
    close_deadline_ms: int | None = None  # STARTED only: the effective start_to_close; None if only schedule_to_close
    heartbeat_deadline_ms: int | None = None  # STARTED with a heartbeat timeout only
    backoff_until_ms: int | None = None  # set iff BACKOFF
    heartbeat_ms: int | None = None  # the current attempt's last heartbeat
    details: object = None  # and its details
    last_error: ActivityError | None = None  # the last failed attempt's, any attempt
    secret: bytes = b""  # STARTED: the hand-out's secret its reports must carry (b"": not checked)


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
    step_index: int  # the top-level step running now; == len(steps) once all have completed
    results: tuple[tuple[str, object], ...]  # completed steps' and group members' results, in completion order
    compensations: tuple[str, ...]  # completed activity steps naming a compensation, in completion order
    compensations_left: int  # while COMPENSATING: compensations[:left] are still to run, last first
    task_ids: tuple[int, ...]  # its pending tasks, ascending: one, or a parallel group's unfinished members
    reason: str | None
    signals: tuple[tuple[str, object], ...] = ()  # received, unconsumed (name, input), oldest first
    wait_until_ms: int | None = None  # RUNNING at a timer step: its fire time; at a signal step: its timeout
