"""Test sagas in milliseconds: a workflow against in-process activities, no cluster.

    from raftflow.testing import WorkflowEnvironment
    import my_activities

    def test_a_failed_shipment_is_refunded():
        env = WorkflowEnvironment(activities=[my_activities])
        env.register("workflows/order_saga.yaml")
        env.fail("ship_order", error_type="AddressInvalid", non_retryable=True)
        outcome = env.run("order_saga", input={"order_id": 7})
        assert outcome.status == "compensated"
        assert outcome.activities() == ["reserve_inventory", "charge_card", "refund_card", "release_inventory"]

The environment drives the same state machine the cluster replicates (every command
is encoded, validated and applied as a committed entry would be), so what passes here
behaves the same way there. Time is skipped: when no task is runnable, the clock
jumps to the next deadline (a retry backoff, a durable timer, a timeout) and a tick
fires it, so a saga with a one-hour timer runs in microseconds. Activities run at
once (`activity_ms` of workflow time each) and see the same `activity.info()` and
`activity.heartbeat()` as under a worker. Injected failures replace chosen attempts:
an exception, or a hang (the attempt never reports; its timeout fires).
"""

from __future__ import annotations

import asyncio
import datetime
import itertools
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

from raftflow.cluster.client.durations import seconds
from raftflow.cluster.client.errors import InvalidArgument
from raftflow.cluster.worker.activity import ActivityContext, ActivityInfo, ApplicationError, Registry, failure_of
from raftflow.statemachine import Machine
from raftflow.statemachine.commands import Command, OpenSession, Rejected, RejectReason, encode_command
from raftflow.statemachine.workflow.definitions import ActivityStep, ParallelStep, WorkflowType, encode_definition, load_definition
from raftflow.statemachine.workflow.records import CLOSED, ActivityTask, Status, WorkflowRejected, WorkflowRejectReason
from raftflow.statemachine.workflow.events import Event, EventType
from raftflow.statemachine.workflow.ops import (
    ActivityTaskStarted,
    CancelWorkflow,
    CompleteActivity,
    FailActivity,
    HeartbeatActivity,
    RegisterWorkflowType,
    SignalWorkflow,
    StartWorkflow,
    TerminateWorkflow,
    Tick,
    WorkflowLimits,
)

START_MS = 1_700_000_000_000  # a fixed "now": runs are reproducible
MAX_STEPS = 1_000_000  # commands one run may apply before it is called stuck


class WorkflowTestError(AssertionError):
    """The workflow cannot go on (e.g. it waits for a signal nobody sends), or a
    command was refused; the message says which and why."""


@dataclass(frozen=True, slots=True)
class Outcome:
    workflow_id: str
    run_id: int
    status: Status  # a WorkflowStatus (a str enum: == "completed" holds too)
    result: object  # the last step's result when completed
    reason: str | None
    history: tuple[Event, ...]

    def event_types(self) -> list[str]:
        return [event.type.value for event in self.history]

    def activities(self) -> list[str]:
        """Activities in the order their attempts completed (compensations included)."""
        return [e.activity for e in self.history if e.type is EventType.ACTIVITY_TASK_COMPLETED]

    def attempts(self, activity: str) -> list[Event]:
        """The ActivityTaskStarted events of one activity: one per attempt."""
        return [e for e in self.history if e.type is EventType.ACTIVITY_TASK_STARTED and e.activity == activity]

    def failures(self) -> list[tuple[str, int, str | None, str | None]]:
        """(activity, attempt, error type, message) of every failed or timed-out attempt."""
        kinds = (EventType.ACTIVITY_TASK_FAILED, EventType.ACTIVITY_TASK_TIMED_OUT)
        return [(e.activity, e.attempt, e.error_type, e.message) for e in self.history if e.type in kinds]


@dataclass(slots=True)
class _Injection:
    activity: str
    attempts: frozenset[int] | None  # None: every attempt
    error: BaseException | None  # None: hang
    used: int = 0
    times: int | None = None

    def matches(self, activity: str, attempt: int) -> bool:
        if activity != self.activity or (self.times is not None and self.used >= self.times):
            return False
        return self.attempts is None or attempt in self.attempts


@dataclass(slots=True)
class _Session:
    session_id: int
    seqs: Iterator[int] = field(default_factory=lambda: itertools.count(1))


class WorkflowEnvironment:
    def __init__(
        self,
        activities: Iterable[Callable | ModuleType] = (),
        *,
        start_ms: int = START_MS,
        activity_ms: int = 1,
        limits: WorkflowLimits = WorkflowLimits(),
    ) -> None:
        self.registry = Registry(activities)
        self.machine = Machine(workflow_limits=limits)
        self.limits = limits
        self.now_ms = start_ms
        self.activity_ms = activity_ms
        self._index = itertools.count(1)
        self._queues: set[str] = set()
        self._injections: list[_Injection] = []
        self._hung: set[tuple[int, int]] = set()  # (task_id, attempt) that never report
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session = self._open_session()

    # --- set-up -----------------------------------------------------------------------

    def register(self, definition: WorkflowType | str | Path) -> WorkflowType:
        """Register a type (a WorkflowType, or a .yaml/.yml/.json file's path)."""
        workflow_type = definition if isinstance(definition, WorkflowType) else load_definition(definition)
        self._command(RegisterWorkflowType(encode_definition(workflow_type)))
        for step in workflow_type.steps:
            members = step.steps if isinstance(step, ParallelStep) else (step,)
            for member in members:
                if isinstance(member, ActivityStep):
                    self._queues.add(member.task_queue)
                    if member.compensation is not None:
                        self._queues.add(member.compensation.task_queue)
        return workflow_type

    def fail(
        self, activity: str, *, attempts: Iterable[int] | None = None, times: int | None = None,
        error_type: str = "InjectedFailure", message: str = "injected failure", non_retryable: bool = False,
        error: BaseException | None = None,
    ) -> None:
        """Make attempts of `activity` fail instead of running it: the given attempt
        numbers (default all), at most `times` of them; with `error`, that exception."""
        raised = error or ApplicationError(message, type=error_type, non_retryable=non_retryable)
        self._injections.append(_Injection(activity, None if attempts is None else frozenset(attempts), raised, times=times))

    def hang(self, activity: str, *, attempts: Iterable[int] | None = None, times: int | None = None) -> None:
        """Make attempts of `activity` never report, as a worker that died: the step's
        start-to-close (or heartbeat) timeout fires and the retry policy decides."""
        self._injections.append(_Injection(activity, None if attempts is None else frozenset(attempts), None, times=times))

    # --- commands ---------------------------------------------------------------------

    def start(self, type_name: str, *, input: object = None, workflow_id: str | None = None, version: int = 0) -> str:
        workflow_id = workflow_id or f"{type_name}-{next(self._index)}"
        self._command(StartWorkflow(workflow_id, type_name, version, input, False))
        return workflow_id

    def signal(self, workflow_id: str, name: str, input: object = None) -> None:
        self._command(SignalWorkflow(workflow_id, name, input))

    def cancel(self, workflow_id: str) -> None:
        self._command(CancelWorkflow(workflow_id))

    def terminate(self, workflow_id: str, reason: str = "") -> None:
        self._command(TerminateWorkflow(workflow_id, reason))

    def sleep(self, duration: datetime.timedelta | float) -> None:
        """Let `duration` (a timedelta, or seconds) of workflow time pass as it would on
        a cluster whose workers are up: ready tasks run, and each timer and timeout due
        fires at its own time, in order (a timer that fires mid-sleep arms what follows
        it from then)."""
        try:
            until_ms = self.now_ms + round(seconds(duration, "duration", zero=True) * 1000)
        except InvalidArgument as exc:
            raise WorkflowTestError(str(exc)) from None
        for _ in range(MAX_STEPS):
            if self.now_ms < until_ms and self.run_ready_tasks():
                continue
            due = self.machine.workflow.next_deadline_ms()
            if due is None or due >= until_ms:
                self._advance_to(until_ms)
                return
            self._advance_to(max(due, self.now_ms))
        raise WorkflowTestError(f"sleep({duration}) did not end within {MAX_STEPS} commands")

    # --- running ----------------------------------------------------------------------

    def run(self, type_name: str, *, input: object = None, workflow_id: str | None = None, version: int = 0) -> Outcome:
        """Start a workflow and run it to its end."""
        return self.run_until_closed(self.start(type_name, input=input, workflow_id=workflow_id, version=version))

    def run_until_closed(self, workflow_id: str) -> Outcome:
        """Run tasks and skip time until the workflow closes. WorkflowTestError when
        nothing more can happen (a signal wait without a timeout, say)."""
        for _ in range(MAX_STEPS):
            described = self.machine.workflow.describe(workflow_id)
            if described is None:
                raise self._missing(workflow_id)
            if described.status in CLOSED:
                return self.outcome(workflow_id)
            if self.run_ready_tasks():
                continue
            due = self.machine.workflow.next_deadline_ms()
            if due is None:
                raise WorkflowTestError(
                    f"workflow {workflow_id} is {described.status.value} and nothing is due: "
                    f"{_waiting_for(described)}; send it a signal, cancel it, or check the definition"
                )
            self._advance_to(max(due, self.now_ms))
        raise WorkflowTestError(f"workflow {workflow_id} did not close within {MAX_STEPS} commands")

    def run_ready_tasks(self) -> int:
        """Hand out and run every scheduled task once; how many ran."""
        ran = 0
        for queue in sorted(self._queues):
            for task in self.machine.workflow.pending_tasks(queue, 1000):
                started = self._command(ActivityTaskStarted(task.task_id, task.attempt), leader=True)
                if type(started) is ActivityTask:
                    self._execute(started)
                    ran += 1
        return ran

    def outcome(self, workflow_id: str) -> Outcome:
        d = self.machine.workflow.describe(workflow_id)
        if d is None:
            raise self._missing(workflow_id)
        history = self.machine.workflow.history(workflow_id)
        return Outcome(d.workflow_id, d.run_id, d.status, d.result, d.reason, history)

    def close(self) -> None:
        if self._loop is not None:
            self._loop.close()
            self._loop = None

    def __enter__(self) -> WorkflowEnvironment:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # --- internals ----------------------------------------------------------------------

    def _execute(self, task: ActivityTask) -> None:
        token = (task.task_id, task.attempt)
        injection = next((i for i in self._injections if i.matches(task.activity, task.attempt)), None)
        self.now_ms += self.activity_ms
        if injection is not None:
            injection.used += 1
            if injection.error is None:
                self._hung.add(token)
                return
            self._report_failure(task, injection.error)
            return
        if task.activity not in self.registry:
            raise WorkflowTestError(
                f"activity {task.activity!r} (workflow {task.workflow_id}, step {task.step}) is not among the "
                f"environment's activities: {', '.join(self.registry.names()) or 'none'}"
            )
        info = ActivityInfo.of(task)
        context = ActivityContext(info, lambda details: self._command(HeartbeatActivity(task.task_id, task.attempt, details)))
        try:
            result = self._event_loop().run_until_complete(self.registry.run(context, task.input, executor=None))
        except Exception as exc:  # noqa: BLE001 (an activity's failure is data for the engine)
            self._report_failure(task, exc)
            return
        self._command(CompleteActivity(task.task_id, task.attempt, result), allow_stale=True)

    def _report_failure(self, task: ActivityTask, exc: BaseException) -> None:
        error_type, message, retryable = failure_of(exc)
        self._command(FailActivity(task.task_id, task.attempt, error_type, message[:4096], retryable), allow_stale=True)

    def _event_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.new_event_loop()
        return self._loop

    def _advance_to(self, now_ms: int) -> None:
        self.now_ms = max(self.now_ms, now_ms)
        self._command(Tick(), leader=True)

    def _command(self, op, *, leader: bool = False, allow_stale: bool = False):
        result = self._apply(0, 0, op) if leader else self._in_session(op)
        if isinstance(result, WorkflowRejected) and not (leader or allow_stale and _stale(result)):
            raise WorkflowTestError(f"{type(op).__name__} refused: {result.reason.value}: {result.message}")
        if isinstance(result, Rejected):
            raise WorkflowTestError(f"{type(op).__name__} refused: {result.reason.name}: {result.message}")
        return result

    def _missing(self, workflow_id: str) -> WorkflowTestError:
        # Retention runs here as in a cluster: a long skip removes closed workflows.
        return WorkflowTestError(
            f"no workflow {workflow_id!r}: never started, or closed more than "
            f"retention_ms={self.limits.retention_ms} of workflow time ago and removed "
            "(keep the Outcome that run() returned, or raise WorkflowLimits.retention_ms)"
        )

    def _open_session(self) -> _Session:
        opened = self._apply(0, 0, OpenSession())
        return _Session(opened.session_id)

    def _in_session(self, op):
        """Applies `op` in the environment's session, opening a new one first if it
        expired, as cluster/client/client.py does for a command not yet sent.

        Skipped time is leader time, so a backoff or timer longer than session_ttl_ms
        expires the session between two commands, as it would a real client's. The
        fix is the real client's, not a longer TTL or a keep-alive: the machine keeps
        the cluster's session rules (so expiry, dedup and session bounds behave as
        there), and a SESSION_UNKNOWN refusal here is certain not to have applied the
        command (in process, every reply arrives), which is when the client reopens.
        The cluster case it cannot show, OutcomeUnknown after a lost reply, needs a
        lost reply."""
        result = self._apply(self._session.session_id, next(self._session.seqs), op)
        if isinstance(result, Rejected) and result.reason is RejectReason.SESSION_UNKNOWN:
            self._session = self._open_session()
            result = self._apply(self._session.session_id, next(self._session.seqs), op)
        return result

    def _apply(self, session_id: int, seq: int, op):
        data = encode_command(Command(self.now_ms, session_id, seq, max(seq, 0), op))
        return self.machine.apply(self.machine.applied_index + 1, data)


def _stale(result: WorkflowRejected) -> bool:
    return result.reason in (WorkflowRejectReason.STALE_TASK, WorkflowRejectReason.NOT_RUNNING)


def _waiting_for(described) -> str:
    signal = getattr(described, "awaited_signal", None)
    if signal:
        return f"it waits for signal {signal}"
    if described.status is Status.RUNNING:
        return f"step {described.step!r} has no runnable task and no deadline"
    return "no task is runnable and no timer is armed"


__all__ = ["Outcome", "WorkflowEnvironment", "WorkflowTestError"]
