"""History events: what happened to one workflow execution, in order, with leader time.

An event is one flat frozen record; fields a type does not use stay None. Compensation
activities use the same ActivityTask* events as forward steps, with `compensation=True`
(`step` then names the step being undone). Heartbeats are not recorded, as in Temporal.

Timer and signal steps: TimerStarted (step, deadline_ms = fire time), TimerFired,
TimerCanceled (the workflow unwound first); WorkflowExecutionSignaled (signal, payload
= its input) when a signal arrives, SignalWaitStarted (step, signal, deadline_ms = the
timeout or None) when a signal step finds none buffered, SignalReceived (step, signal,
payload) when the step takes one, SignalWaitTimedOut (step, signal, deadline_ms,
error_type SignalTimeout, message) when its timeout passes first. ActivityTaskCanceled
(message: why) for each task dropped while the workflow unwinds: a cancel, or the
other members of a parallel group when one fails for good.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from raftflow.statemachine._checks import SnapshotError, check_int, check_row, check_type


class EventType(str, enum.Enum):
    WORKFLOW_EXECUTION_STARTED = "WorkflowExecutionStarted"
    ACTIVITY_TASK_SCHEDULED = "ActivityTaskScheduled"
    ACTIVITY_TASK_STARTED = "ActivityTaskStarted"
    ACTIVITY_TASK_COMPLETED = "ActivityTaskCompleted"
    ACTIVITY_TASK_FAILED = "ActivityTaskFailed"
    ACTIVITY_TASK_TIMED_OUT = "ActivityTaskTimedOut"
    ACTIVITY_TASK_CANCELED = "ActivityTaskCanceled"  # dropped: the workflow unwinds or a group member failed
    TIMER_STARTED = "TimerStarted"
    TIMER_FIRED = "TimerFired"
    TIMER_CANCELED = "TimerCanceled"
    WORKFLOW_EXECUTION_SIGNALED = "WorkflowExecutionSignaled"
    SIGNAL_WAIT_STARTED = "SignalWaitStarted"  # a signal step found no buffered signal of its name
    SIGNAL_RECEIVED = "SignalReceived"  # a signal step took the oldest buffered signal of its name
    SIGNAL_WAIT_TIMED_OUT = "SignalWaitTimedOut"
    WORKFLOW_EXECUTION_CANCEL_REQUESTED = "WorkflowExecutionCancelRequested"
    WORKFLOW_EXECUTION_COMPLETED = "WorkflowExecutionCompleted"
    WORKFLOW_EXECUTION_COMPENSATED = "WorkflowExecutionCompensated"
    WORKFLOW_EXECUTION_CANCELED = "WorkflowExecutionCanceled"
    WORKFLOW_EXECUTION_FAILED = "WorkflowExecutionFailed"
    WORKFLOW_EXECUTION_TERMINATED = "WorkflowExecutionTerminated"


@dataclass(frozen=True, slots=True)
class Event:
    event_id: int  # 1, 2, 3... within its workflow execution
    time_ms: int  # the leader time of the op that recorded it
    type: EventType
    step: str | None = None
    activity: str | None = None
    task_id: int | None = None
    attempt: int | None = None
    compensation: bool = False  # an ActivityTask* event of a compensation activity
    error_type: str | None = None  # failures; for a timeout, which one (e.g. StartToCloseTimeout)
    message: str | None = None  # a failure's message, or why the workflow ended
    payload: object = None  # the input (scheduled, started, signaled), a result (completed)
    signal: str | None = None  # a signal's name
    deadline_ms: int | None = None  # a timer's fire time, a signal wait's timeout


_TYPES = {t.value: t for t in EventType}


def event_row(event: Event) -> list:
    return [
        event.event_id,
        event.time_ms,
        event.type.value,
        event.step,
        event.activity,
        event.task_id,
        event.attempt,
        event.compensation,
        event.error_type,
        event.message,
        event.payload,
        event.signal,
        event.deadline_ms,
    ]


def event_from_row(row: object, what: str) -> Event:
    """An Event from event_row's output; SnapshotError naming `what` if malformed."""
    fields = check_row(row, 13, what, SnapshotError)
    event_id, time_ms, type_name, step, activity, task_id, attempt, compensation = fields[:8]
    error_type, message, payload, signal, deadline_ms = fields[8:]
    check_int(event_id, f"{what} event_id", SnapshotError, minimum=1)
    check_int(time_ms, f"{what} time_ms", SnapshotError)
    if type(type_name) is not str or type_name not in _TYPES:
        raise SnapshotError(f"{what} type is {type_name!r}; expected one of {sorted(_TYPES)}")
    texts = (("step", step), ("activity", activity), ("error_type", error_type), ("message", message), ("signal", signal))
    for name, value in texts:
        if value is not None:
            check_type(value, str, f"{what} {name}", SnapshotError)
    if deadline_ms is not None:
        check_int(deadline_ms, f"{what} deadline_ms", SnapshotError)
    for name, value in (("task_id", task_id), ("attempt", attempt)):
        if value is not None:
            check_int(value, f"{what} {name}", SnapshotError, minimum=1)
    check_type(compensation, bool, f"{what} compensation", SnapshotError)
    return Event(
        event_id, time_ms, _TYPES[type_name], step, activity, task_id, attempt, compensation, error_type, message, payload,
        signal, deadline_ms,
    )  # fmt: skip
