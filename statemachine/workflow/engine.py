"""The workflow engine's core: pure and deterministic, driven by the caller's clock.

Every mutating method takes `now_ms`, the leader-stamped time of the entry being
applied (the caller clamps it never to go back); nothing reads a clock, randomness or
I/O, so replicas that make the same calls reach the same state (docs/workflows.md).
This module holds the calls, queries and snapshots; `_steps.py` how a workflow moves,
`records.py` the vocabulary, `rows.py` the snapshot rows.

Steps run in order. An activity step runs as one activity *task* whose id stays the
same across attempts; its token is (task_id, attempt). A task is SCHEDULED (in its
queue's FIFO), STARTED (a worker holds it; `task_started` is proposed by the leader
when it hands the task out) or in BACKOFF (a failed attempt waits for its retry
timer). Only a STARTED task's current attempt may complete, fail or heartbeat; any
other token is Rejected(STALE_TASK) and changes nothing. A parallel group schedules a
task per member at once and completes when all have (its result: member -> result);
a timer step completes on the first `tick` at or after its fire time (result None); a
signal step takes the oldest buffered signal of its name, or waits for one (result:
the signal's input), and fails for good when its timeout passes first.

Every attempt of a task, compensations included, has a start_to_close deadline once
STARTED: its definition's, or DEFAULT_START_TO_CLOSE_MS when the definition sets
neither start_to_close nor schedule_to_close (`effective_timeouts`). A hand-out whose
reply never reached a worker leaves the task STARTED with nobody running it; this
deadline is what gets it back.

A step that fails for good (retries exhausted, non-retryable, schedule_to_close, a
signal timeout, or an input that does not resolve; for a group, any member), or
`cancel`, drops what is pending (tasks, timer, signal wait) and unwinds: the
compensations of the completed activity steps and group members that name one run in
reverse completion order, each as its own task with its own retry policy and timeouts
(applied as a step's). When all have completed the workflow is COMPENSATED
(even when there was nothing to undo; `reason` says why it unwound); if one fails for
good it is FAILED and the rest are not run. `terminate` closes at once with no
compensations. A history that reaches max_history_events fails the workflow (the
closing event may be the one past it).

Bounds: max_running_workflows open workflows, each holding at most MAX_PARALLEL_STEPS
tasks (a group's members; else one), so at most max_running_workflows x
MAX_PARALLEL_STEPS tasks exist; max_backlog is admission control on `start` (a queue
of the first step at its backlog refuses new workflows, but a running workflow's next
step or retry is never refused); max_buffered_signals per workflow;
max_history_events per workflow; closed workflows are removed on the first `tick` at
or after close_ms + retention_ms. A closed workflow's id may be started again; the new
run replaces the old record and history.
"""

from __future__ import annotations

import heapq
import hmac
from collections import deque
from dataclasses import replace

from raftflow.statemachine.workflow._steps import ActivitySpec, StepRunner, payload_bytes, step_members
from raftflow.statemachine.workflow.definitions import InputError, ParallelStep, SignalStep, Step, TimerStep, WorkflowType, resolve_input, encode_definition
from raftflow.statemachine.workflow.events import Event, EventType
from raftflow.statemachine.workflow.records import (
    CANCEL_REASON,
    CLOSED,
    ActivityError,
    ActivityTask,
    Deadline,
    Rearmed,
    Status,
    Task,
    TaskAccepted,
    TaskDescription,
    TaskState,
    Ticked,
    TypeRegistered,
    Workflow,
    WorkflowAccepted,
    WorkflowDescription,
    WorkflowRejected,
    WorkflowRejectReason,
    WorkflowStarted,
    WorkflowSummary,
)
from raftflow.statemachine.workflow.rows import ENGINE_FORMAT, restore_into, state_rows

DEFAULT_MAX_HISTORY_EVENTS = 10_000
DEFAULT_MAX_BACKLOG = 10_000
DEFAULT_MAX_RUNNING_WORKFLOWS = 100_000
DEFAULT_RETENTION_MS = 7 * 86_400_000
DEFAULT_MAX_BUFFERED_SIGNALS = 1000
DEFAULT_MAX_HISTORY_BYTES = 32 << 20  # payload bytes (msgpack) in one run's history
DEFAULT_MAX_TYPES = 10_000  # registered (name, version) pairs
DEFAULT_MAX_TYPE_BYTES = 64 << 20  # their encoded definitions, in all
MAX_GRACE_MS = 3_600_000  # RearmTimeouts' grace period: at most an hour


class WorkflowEngine(StepRunner):
    def __init__(
        self,
        *,
        max_history_events: int = DEFAULT_MAX_HISTORY_EVENTS,
        max_backlog: int = DEFAULT_MAX_BACKLOG,
        max_running_workflows: int = DEFAULT_MAX_RUNNING_WORKFLOWS,
        retention_ms: int = DEFAULT_RETENTION_MS,
        max_buffered_signals: int = DEFAULT_MAX_BUFFERED_SIGNALS,
        max_history_bytes: int = DEFAULT_MAX_HISTORY_BYTES,
        max_types: int = DEFAULT_MAX_TYPES,
        max_type_bytes: int = DEFAULT_MAX_TYPE_BYTES,
    ) -> None:
        limits = (
            ("max_history_events", max_history_events, 4),  # started, scheduled, started, closed
            ("max_backlog", max_backlog, 1),
            ("max_running_workflows", max_running_workflows, 1),
            ("retention_ms", retention_ms, 0),
            ("max_buffered_signals", max_buffered_signals, 1),
            ("max_history_bytes", max_history_bytes, 1 << 20),  # a few payloads of the largest size
            ("max_types", max_types, 1),
            ("max_type_bytes", max_type_bytes, 1 << 20),  # one definition of the largest size
        )
        for name, value, minimum in limits:
            if type(value) is not int or value < minimum:
                raise ValueError(f"{name}={value!r} must be an integer >= {minimum}")
        self.max_history_events = max_history_events
        self.max_backlog = max_backlog
        self.max_running_workflows = max_running_workflows
        self.retention_ms = retention_ms
        self.max_buffered_signals = max_buffered_signals
        self.max_history_bytes = max_history_bytes
        self.max_types = max_types
        self.max_type_bytes = max_type_bytes
        self._reset()

    def _reset(self) -> None:
        self._types: dict[tuple[str, int], WorkflowType] = {}
        self._named: dict[tuple[str, int], dict[str, Step]] = {}  # derived from _types: steps by name
        self._latest: dict[str, int] = {}  # derived from _types: type name -> its highest version
        self._type_bytes: int | None = 0  # derived from _types: their encoded bytes; None: count on first use
        self._workflows: dict[str, Workflow] = {}
        self._histories: dict[str, list[Event]] = {}  # append-only while the run lives
        # Derived from _histories, counted on first use (_held_bytes): payload bytes per run.
        self._history_bytes: dict[str, int] = {}
        self._tasks: dict[int, Task] = {}
        self._queues: dict[str, dict[int, None]] = {}  # FIFO of SCHEDULED task ids; no empty queues
        self._next_task_id = 1
        self._next_run_id = 1
        self._running = 0  # workflows not closed
        # (deadline_ms, kind, task_id, attempt), or for WAIT (deadline_ms, kind, workflow_id, run_id); stale allowed
        self._deadlines: list[tuple[int, int, int | str, int]] = []
        self._retention: deque[tuple[int, int, str]] = deque()  # (remove_at_ms, run_id, id), in close order
        # Workflows closed by this engine object (or since the last restore); not state,
        # not in snapshots: a node's waiters look for closes only when it moved.
        self.closes = 0
        self._overflowed: dict[str, str] = {}  # workflow id -> the limit its history reached during this call
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
        if known is None:
            size = len(encode_definition(workflow_type))
            held = self._registered_bytes()
            if len(self._types) >= self.max_types or held + size > self.max_type_bytes:
                return WorkflowRejected(
                    WorkflowRejectReason.RESOURCE_EXHAUSTED,
                    f"{len(self._types)} workflow types of {held} bytes are registered; one more of {size} bytes "
                    f"would pass max_types={self.max_types} or max_type_bytes={self.max_type_bytes}",
                )
            self._type_bytes = held + size
            self._add_type(workflow_type)
        return TypeRegistered(*key)

    def _registered_bytes(self) -> int:
        """The registered types' encoded bytes (counted on first use after a restore)."""
        if self._type_bytes is None:
            self._type_bytes = sum(len(encode_definition(t)) for t in self._types.values())
        return self._type_bytes

    def _add_type(self, workflow_type: WorkflowType) -> None:
        key = (workflow_type.name, workflow_type.version)
        self._types[key] = workflow_type
        named = self._named[key] = {}
        for step in workflow_type.steps:
            named[step.name] = step
            for member in step.steps if type(step) is ParallelStep else ():
                named[member.name] = member
        self._latest[workflow_type.name] = max(workflow_type.version, self._latest.get(workflow_type.name, 0))

    def start(
        self, workflow_id: str, type_name: str, version: int, input: object, now_ms: int, *, return_running: bool = False
    ) -> WorkflowStarted | WorkflowRejected:
        """Starts a run of the type at `version`, or at its latest registered version
        when `version` is 0. An open workflow with the id refuses it (ALREADY_RUNNING),
        unless `return_running` and it runs a type of that name: then the answer is the
        open run, WorkflowStarted(existing=True), and nothing changes."""
        self._advance_clock(now_ms)
        workflow_type = self._check_start(workflow_id, type_name, version)
        if type(workflow_type) is WorkflowRejected:
            return workflow_type
        existing = self._workflows.get(workflow_id)
        if existing is not None and existing.status not in CLOSED:
            if return_running and existing.type_name == type_name:
                return WorkflowStarted(workflow_id, existing.run_id, existing=True)
            return WorkflowRejected(
                WorkflowRejectReason.ALREADY_RUNNING,
                f"workflow {workflow_id!r} is already {existing.status.value} (run {existing.run_id}, "
                f"type {existing.type_name!r} version {existing.version})",
            )
        if self._running >= self.max_running_workflows:
            return WorkflowRejected(
                WorkflowRejectReason.RESOURCE_EXHAUSTED, f"max_running_workflows={self.max_running_workflows} are open"
            )
        refused = self._check_first_step(workflow_type, input)
        if refused is not None:
            return refused
        workflow = Workflow(
            workflow_id, self._next_run_id, type_name, workflow_type.version, input, Status.RUNNING, now_ms, None, 0, (),
            (), 0, (), None,
        )  # fmt: skip
        self._next_run_id += 1
        self._running += 1
        self._workflows[workflow_id] = workflow
        self._histories[workflow_id] = []
        self._history_bytes[workflow_id] = 0
        self._record(workflow_id, now_ms, EventType.WORKFLOW_EXECUTION_STARTED, payload=input)
        self._next_step(workflow, now_ms)
        self._close_overflowed(now_ms)
        return WorkflowStarted(workflow_id, workflow.run_id)

    def task_started(self, task_id: int, attempt: int, now_ms: int, secret: bytes = b"") -> ActivityTask | WorkflowRejected:
        """A worker took the task: arms its start_to_close (the default one when the
        definition sets no limit) and heartbeat deadlines. When recording it fills the
        history, the workflow fails and the task is dropped: the answer is then
        NOT_RUNNING (the one rejection that changed something), so the leader hands out
        no dead task."""
        self._advance_clock(now_ms)
        task = self._tasks.get(task_id)
        if task is None or task.attempt != attempt or task.state is not TaskState.SCHEDULED:
            return _stale(task_id, attempt, "is not a scheduled task's current attempt")
        spec = self._spec(task)
        self._dequeue(spec.task_queue, task_id)
        timeouts = spec.timeouts
        task = replace(
            task,
            state=TaskState.STARTED,
            started_ms=now_ms,
            secret=secret,
            close_deadline_ms=None if timeouts.start_to_close_ms is None else now_ms + timeouts.start_to_close_ms,
            heartbeat_deadline_ms=None if timeouts.heartbeat_ms is None else now_ms + timeouts.heartbeat_ms,
        )
        self._tasks[task_id] = task
        self._arm(task, spec)
        self._record_task(task, spec, now_ms, EventType.ACTIVITY_TASK_STARTED)
        self._close_overflowed(now_ms)
        if task_id not in self._tasks:
            workflow = self._workflows[task.workflow_id]
            return WorkflowRejected(
                WorkflowRejectReason.NOT_RUNNING,
                f"task {task_id} attempt {attempt} was dropped: workflow {task.workflow_id!r} is "
                f"{workflow.status.value} ({workflow.reason})",
            )
        return self._activity_task(task, spec)

    def complete(
        self, task_id: int, attempt: int, result: object, now_ms: int, secret: bytes = b""
    ) -> TaskAccepted | WorkflowRejected:
        """The attempt succeeded: records the result, then begins the next step (a group
        waits for all its members), runs the next compensation, or closes the workflow."""
        self._advance_clock(now_ms)
        task = self._started(task_id, attempt, secret)
        if type(task) is WorkflowRejected:
            return task
        self._record_task(task, self._spec(task), now_ms, EventType.ACTIVITY_TASK_COMPLETED, payload=result)
        del self._tasks[task_id]
        if task.compensation:
            workflow = self._workflows[task.workflow_id]
            workflow = self._store(workflow, task_ids=(), compensations_left=workflow.compensations_left - 1)
            self._next_compensation(workflow, now_ms)
        else:
            self._task_completed(task, result, now_ms)
        self._close_overflowed(now_ms)
        return TaskAccepted(task_id, attempt)

    def fail(
        self, task_id: int, attempt: int, error_type: str, message: str, retryable: bool, now_ms: int,
        secret: bytes = b"",
    ) -> TaskAccepted | WorkflowRejected:
        """The attempt failed: a retry timer if the policy allows another attempt, else
        the step (or compensation) failed for good."""
        self._advance_clock(now_ms)
        task = self._started(task_id, attempt, secret)
        if type(task) is WorkflowRejected:
            return task
        spec = self._spec(task)
        self._record_task(task, spec, now_ms, EventType.ACTIVITY_TASK_FAILED, error_type=error_type, message=message)
        self._attempt_failed(task, spec, error_type, message, retryable, now_ms)
        self._close_overflowed(now_ms)
        return TaskAccepted(task_id, attempt)

    def heartbeat(
        self, task_id: int, attempt: int, details: object, now_ms: int, secret: bytes = b""
    ) -> TaskAccepted | WorkflowRejected:
        """Keeps the details and pushes the heartbeat deadline back; not in the history."""
        self._advance_clock(now_ms)
        task = self._started(task_id, attempt, secret)
        if type(task) is WorkflowRejected:
            return task
        spec = self._spec(task)
        heartbeat_ms = spec.timeouts.heartbeat_ms
        deadline_ms = None if heartbeat_ms is None else now_ms + heartbeat_ms
        task = replace(task, details=details, heartbeat_ms=now_ms, heartbeat_deadline_ms=deadline_ms)
        self._tasks[task_id] = task
        if heartbeat_ms is not None:
            heapq.heappush(self._deadlines, (task.heartbeat_deadline_ms, Deadline.HEARTBEAT, task_id, attempt))
        return TaskAccepted(task_id, attempt)

    def cancel(self, workflow_id: str, now_ms: int) -> WorkflowAccepted | WorkflowRejected:
        """Drops what the running step waits for (its tasks, timer or signal wait) and
        runs the compensations of the completed steps, group members included."""
        self._advance_clock(now_ms)
        workflow = self._workflows.get(workflow_id)
        if workflow is None or workflow.status is not Status.RUNNING:
            return _not_running(workflow_id, workflow, "canceled")
        self._record(workflow_id, now_ms, EventType.WORKFLOW_EXECUTION_CANCEL_REQUESTED)
        self._unwind(workflow, CANCEL_REASON, now_ms)
        self._close_overflowed(now_ms)
        return WorkflowAccepted(workflow_id, self._workflows[workflow_id].status)

    def signal(self, workflow_id: str, name: str, input: object, now_ms: int) -> WorkflowAccepted | WorkflowRejected:
        """Records the signal; a signal step waiting for `name` takes it at once (its
        input is the step's result), else it is buffered (FIFO per name) for a later
        signal step. A RUNNING workflow buffers at most max_buffered_signals."""
        self._advance_clock(now_ms)
        workflow = self._workflows.get(workflow_id)
        if workflow is None or workflow.status is not Status.RUNNING:
            return _not_running(workflow_id, workflow, "signaled")
        step = self._current(workflow)
        waiting = type(step) is SignalStep and step.signal == name
        if not waiting and len(workflow.signals) >= self.max_buffered_signals:
            return WorkflowRejected(
                WorkflowRejectReason.RESOURCE_EXHAUSTED,
                f"workflow {workflow_id!r} holds max_buffered_signals={self.max_buffered_signals} unconsumed signals",
            )
        # A signal's input is recorded twice (signaled, then received by its step):
        # refused while that would pass the history's bound, rather than failing the run.
        held, size = self._held_bytes(workflow_id), payload_bytes(input)
        if held + 2 * size > self.max_history_bytes:
            return WorkflowRejected(
                WorkflowRejectReason.RESOURCE_EXHAUSTED,
                f"workflow {workflow_id!r} history holds {held} payload bytes; a signal of "
                f"{size} would pass max_history_bytes={self.max_history_bytes}",
            )
        self._record(workflow_id, now_ms, EventType.WORKFLOW_EXECUTION_SIGNALED, signal=name, payload=input)
        if waiting:
            self._record(workflow_id, now_ms, EventType.SIGNAL_RECEIVED, step=step.name, signal=name, payload=input)
            self._next_step(self._finish_step(workflow, step.name, input), now_ms)
        else:
            self._store(workflow, signals=workflow.signals + ((name, input),))
        self._close_overflowed(now_ms)
        return WorkflowAccepted(workflow_id, self._workflows[workflow_id].status)

    def rearm_timeouts(self, grace_ms: int, now_ms: int) -> Rearmed | WorkflowRejected:
        """Proposed once by a new leader: no report could reach the cluster while it had
        no leader, so every STARTED task's start_to_close and heartbeat deadlines before
        now_ms + grace_ms move there. Applying it twice moves nothing more."""
        self._advance_clock(now_ms)
        if type(grace_ms) is not int or not 0 <= grace_ms <= MAX_GRACE_MS:
            rule = f"must be an integer from 0 to {MAX_GRACE_MS}"
            return WorkflowRejected(WorkflowRejectReason.INVALID, f"grace_ms={grace_ms!r} {rule}")
        floor_ms = now_ms + grace_ms
        moved = 0
        for task_id in sorted(self._tasks):
            task = self._tasks[task_id]
            changes = {
                name: floor_ms
                for name in ("close_deadline_ms", "heartbeat_deadline_ms")
                if getattr(task, name) is not None and getattr(task, name) < floor_ms
            }
            if changes:
                task = replace(task, **changes)
                self._tasks[task_id] = task
                self._arm(task, self._spec(task))
                moved += 1
        return Rearmed(moved)

    def terminate(self, workflow_id: str, reason: str, now_ms: int) -> WorkflowAccepted | WorkflowRejected:
        """Closes the workflow at once: no compensations; its task's tokens go stale."""
        self._advance_clock(now_ms)
        workflow = self._workflows.get(workflow_id)
        if workflow is None or workflow.status in CLOSED:
            return _not_running(workflow_id, workflow, "terminated")
        self._close(workflow, Status.TERMINATED, reason, now_ms)
        return WorkflowAccepted(workflow_id, Status.TERMINATED)

    def tick(self, now_ms: int) -> Ticked:
        """Fires every timer and timeout due at now_ms, in (deadline, kind, task id or
        workflow id) order, then removes closed workflows past retention."""
        self._advance_clock(now_ms)
        fired = 0
        while self._deadlines and self._deadlines[0][0] <= now_ms:
            deadline_ms, kind, key, number = heapq.heappop(self._deadlines)
            fired += self._fire_due(deadline_ms, Deadline(kind), key, number, now_ms)
        self._close_overflowed(now_ms)
        removed = 0
        while self._retention and self._retention[0][0] <= now_ms:
            _, run_id, workflow_id = self._retention.popleft()
            workflow = self._workflows.get(workflow_id)
            if workflow is not None and workflow.run_id == run_id:  # else a newer run reuses the id
                del self._workflows[workflow_id]
                del self._histories[workflow_id]
                self._history_bytes.pop(workflow_id, None)
                removed += 1
        return Ticked(fired, removed)

    # --- queries (read-only) -------------------------------------------------------------

    def task_queue_of(self, task_id: int) -> str | None:
        """The queue of a task that is scheduled or started, None for any other id:
        what a worker's token must name to report on it."""
        task = self._tasks.get(task_id)
        return None if task is None else self._spec(task).task_queue

    def pending_tasks(self, task_queue: str, limit: int) -> list[ActivityTask]:
        """Up to `limit` scheduled tasks of the queue, oldest first: what the leader may
        hand out next (proposing task_started for each)."""
        pending = []
        for task_id in self._queues.get(task_queue, ()):
            if len(pending) >= limit:
                break
            task = self._tasks[task_id]
            pending.append(self._activity_task(task, self._spec(task)))
        return pending

    def next_deadline_ms(self) -> int | None:
        """The earliest armed deadline (possibly a stale one) or retention removal: when
        the leader should tick next."""
        due = [queue[0][0] for queue in (self._deadlines, self._retention) if queue]
        return min(due) if due else None

    def list_workflows(self, status: Status | None, limit: int) -> list[WorkflowSummary]:
        """Up to `limit` workflows (of `status`, if given), newest start first, ties by id."""
        if type(limit) is not int or limit < 0:
            raise ValueError(f"limit={limit!r} must be an integer >= 0")
        chosen = (w for w in self._workflows.values() if status is None or w.status is status)
        newest = heapq.nsmallest(limit, chosen, key=lambda w: (-w.start_ms, w.workflow_id))
        return [
            WorkflowSummary(w.workflow_id, w.run_id, w.type_name, w.version, w.status, w.start_ms, w.close_ms)
            for w in newest
        ]

    def describe(self, workflow_id: str) -> WorkflowDescription | None:
        """The workflow, and while it is open what it waits for (see WorkflowDescription)."""
        workflow = self._workflows.get(workflow_id)
        if workflow is None:
            return None
        tasks = tuple(self._describe_task(self._tasks[task_id]) for task_id in workflow.task_ids)
        step = self._current(workflow)  # None unless RUNNING
        first = tasks[0] if tasks else None
        task_fields = {} if first is None else {
            "task_state": first.state, "task_queue": first.task_queue, "last_error": first.last_error,
            "next_retry_ms": first.next_retry_ms, "last_heartbeat_ms": first.last_heartbeat_ms,
            "heartbeat_details": first.heartbeat_details,
        }  # fmt: skip
        step_name = step.name if step is not None else None if first is None else first.step  # a group's own name
        result = workflow.results[-1][1] if workflow.status is Status.COMPLETED else None
        return WorkflowDescription(
            workflow_id, workflow.run_id, workflow.type_name, workflow.version, workflow.status, workflow.start_ms,
            workflow.close_ms, step_name, None if first is None else first.task_id,
            None if first is None else first.attempt, workflow.reason, result,
            timer_fire_ms=workflow.wait_until_ms if type(step) is TimerStep else None,
            awaited_signal=step.signal if type(step) is SignalStep else None,
            signal_deadline_ms=workflow.wait_until_ms if type(step) is SignalStep else None,
            buffered_signals=tuple(name for name, _ in workflow.signals),
            tasks=tasks,
            **task_fields,
        )  # fmt: skip

    def _describe_task(self, task: Task) -> TaskDescription:
        spec = self._spec(task)
        return TaskDescription(
            task.task_id, task.attempt, spec.step, spec.activity, task.compensation, task.state, spec.task_queue,
            task.last_error, task.backoff_until_ms, task.heartbeat_ms, task.details,
        )  # fmt: skip

    def history(self, workflow_id: str) -> tuple[Event, ...]:
        return tuple(self._histories.get(workflow_id, ()))

    def run_status(self, workflow_id: str) -> tuple[int, Status] | None:
        """(run id, status) of the run holding the id; cheap, for waiters to poll."""
        workflow = self._workflows.get(workflow_id)
        return None if workflow is None else (workflow.run_id, workflow.status)

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
        return state_rows(captured)

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
            max_buffered_signals=self.max_buffered_signals,
            max_history_bytes=self.max_history_bytes,
            max_types=self.max_types,
            max_type_bytes=self.max_type_bytes,
        )
        restore_into(fresh, state)
        fresh._type_bytes = None  # derived from the restored types, on first use
        for name, value in vars(fresh).items():
            setattr(self, name, value)

    # --- internals -----------------------------------------------------------------------

    def _advance_clock(self, now_ms: int) -> None:
        assert type(now_ms) is int and now_ms >= self._now_ms, (now_ms, self._now_ms)
        self._now_ms = now_ms

    def _check_start(self, workflow_id: str, type_name: str, version: int) -> WorkflowType | WorkflowRejected:
        """The type to start (version 0: the latest), or why not."""
        if type(workflow_id) is not str or not workflow_id:
            return WorkflowRejected(WorkflowRejectReason.INVALID, f"workflow_id={workflow_id!r} must be a non-empty string")
        if version == 0 and type_name in self._latest:
            version = self._latest[type_name]
        workflow_type = self._types.get((type_name, version))
        if workflow_type is None:
            shown = "any version" if version == 0 else f"version {version!r}"
            return WorkflowRejected(WorkflowRejectReason.UNKNOWN_TYPE, f"workflow type {type_name!r} {shown} is not registered")
        return workflow_type

    def _check_first_step(self, workflow_type: WorkflowType, workflow_input: object) -> WorkflowRejected | None:
        """Admission of a new run: the first step's inputs resolve, and none of its task
        queues holds max_backlog scheduled tasks."""
        members = step_members(workflow_type.steps[0])
        for member in members:
            try:
                resolve_input(member.input, workflow_input, {})
            except InputError as exc:
                return WorkflowRejected(WorkflowRejectReason.INVALID, f"steps[0] {member.name!r}: {exc}")
        for task_queue in sorted({member.task_queue for member in members}):
            if len(self._queues.get(task_queue, ())) >= self.max_backlog:
                return WorkflowRejected(
                    WorkflowRejectReason.RESOURCE_EXHAUSTED,
                    f"task queue {task_queue!r} holds max_backlog={self.max_backlog} scheduled tasks",
                )
        return None

    def _started(self, task_id: int, attempt: int, secret: bytes) -> Task | WorkflowRejected:
        task = self._tasks.get(task_id)
        if task is None or task.attempt != attempt or task.state is not TaskState.STARTED:
            return _stale(task_id, attempt, "is not a started task's current attempt")
        if task.secret and not hmac.compare_digest(task.secret, secret):
            return _stale(task_id, attempt, "was handed out with another secret: the task token is not the one given")
        return task

    def _activity_task(self, task: Task, spec: ActivitySpec) -> ActivityTask:
        run_id = self._workflows[task.workflow_id].run_id
        return ActivityTask(
            task.task_id, task.attempt, task.workflow_id, spec.activity, task.input, task.compensation, run_id, spec.step,
            spec.task_queue,
        )  # fmt: skip


def _stale(task_id: int, attempt: int, rule: str) -> WorkflowRejected:
    return WorkflowRejected(WorkflowRejectReason.STALE_TASK, f"task {task_id!r} attempt {attempt!r} {rule}")


def _not_running(workflow_id: str, workflow: Workflow | None, verb: str) -> WorkflowRejected:
    if workflow is None:
        return WorkflowRejected(WorkflowRejectReason.NOT_FOUND, f"workflow {workflow_id!r} does not exist")
    return WorkflowRejected(
        WorkflowRejectReason.NOT_RUNNING, f"workflow {workflow_id!r} is {workflow.status.value}; it cannot be {verb}"
    )


__all__ = [  # records.py's vocabulary is re-exported: callers import it from here
    "CLOSED",
    "DEFAULT_MAX_BACKLOG",
    "DEFAULT_MAX_BUFFERED_SIGNALS",
    "DEFAULT_MAX_HISTORY_EVENTS",
    "DEFAULT_MAX_RUNNING_WORKFLOWS",
    "DEFAULT_RETENTION_MS",
    "ENGINE_FORMAT",
    "MAX_GRACE_MS",
    "ActivityError",
    "ActivityTask",
    "Deadline",
    "Rearmed",
    "Status",
    "TaskAccepted",
    "TaskDescription",
    "TaskState",
    "Ticked",
    "TypeRegistered",
    "WorkflowAccepted",
    "WorkflowDescription",
    "WorkflowEngine",
    "WorkflowRejectReason",
    "WorkflowRejected",
    "WorkflowStarted",
    "WorkflowSummary",
]
