"""The workflow engine as a namespace of `statemachine.Machine`: its ops, their
validation, the rows of its results, and the adapter that applies ops to the engine.

The ops ride in the client session envelope like the key-value ops (exactly-once by
(session, seq)), except LEADER_OPS: the Raft leader proposes those itself, with
session_id = seq = ack_floor = 0, and the machine applies them without the session
table; each is safe to apply twice (a second ActivityTaskStarted for the same token is
STALE_TASK, a second Tick or RearmTimeouts at the same time changes nothing).
`commands.py` gives each op and result its code (OP_CLASSES, RESULT_CLASSES: one
table, written out) and calls `validate_workflow_op` and the row helpers here. Every payload a client
supplies (`input`, `result`, `details`) must be msgpack-plain data, so that it
round-trips through the log and snapshots unchanged and every replica sees equal values.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, Protocol, TypeAlias, get_args

import msgpack

from raftflow.statemachine._checks import MAX_INT, CommandError, ResultError, check_int, check_type
from raftflow.statemachine.workflow.definitions import MAX_VERSION, decode_definition, encode_definition
from raftflow.statemachine.workflow.engine import (
    DEFAULT_MAX_BACKLOG,
    DEFAULT_MAX_BUFFERED_SIGNALS,
    DEFAULT_MAX_HISTORY_BYTES,
    DEFAULT_MAX_TYPE_BYTES,
    DEFAULT_MAX_TYPES,
    DEFAULT_MAX_HISTORY_EVENTS,
    DEFAULT_MAX_RUNNING_WORKFLOWS,
    DEFAULT_RETENTION_MS,
    MAX_GRACE_MS,
    ActivityTask,
    Rearmed,
    Status,
    TaskAccepted,
    Ticked,
    TypeRegistered,
    WorkflowAccepted,
    WorkflowDescription,
    WorkflowEngine,
    WorkflowRejected,
    WorkflowRejectReason,
    WorkflowStarted,
    WorkflowSummary,
)
from raftflow.statemachine.workflow.events import Event
from raftflow.statemachine.workflow.records import TASK_SECRET_BYTES
from raftflow.statemachine.workflow.retry import MAX_NAME_CHARS, DefinitionError

MAX_WORKFLOW_ID_CHARS = 1000  # a workflow id, like a key, names a record for its whole life
MAX_REASON_CHARS = 4096  # a terminate reason, a failure message
MAX_PAYLOAD_BYTES = 256 * 1024  # input, result, details: their msgpack encoding
MAX_DEFINITION_BYTES = 1 << 20  # a RegisterWorkflowType's encoded definition
MAX_PAYLOAD_DEPTH = 32  # nesting of lists and dicts in a payload
_MIN_INT = -(1 << 63)  # msgpack's signed range; MAX_INT is its unsigned top

# --- ops ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RegisterWorkflowType:
    definition: bytes  # encode_definition's canonical bytes


@dataclass(frozen=True, slots=True)
class StartWorkflow:
    workflow_id: str
    type_name: str
    version: int  # 0: the latest version registered when the op is applied
    input: object  # plain data
    return_running: bool = False  # an open run with the id (same type name) is the answer, existing=True


@dataclass(frozen=True, slots=True)
class ActivityTaskStarted:
    """Proposed by the leader when it hands the task (task_id, attempt) to a worker;
    the leader hands out only an ActivityTask answer (a rejection means: nothing to
    hand out, the task is stale or its workflow has just failed)."""

    task_id: int
    attempt: int
    # The hand-out's secret (TASK_SECRET_BYTES random bytes the leader chose): the
    # task token is (task_id, attempt, secret), and a report without the secret is
    # refused. b"": an entry written before secrets existed (no check).
    secret: bytes = b""


@dataclass(frozen=True, slots=True)
class CompleteActivity:
    task_id: int
    attempt: int
    result: object  # plain data
    secret: bytes = b""  # the task token's secret, as handed out


@dataclass(frozen=True, slots=True)
class FailActivity:
    task_id: int
    attempt: int
    error_type: str
    message: str
    retryable: bool
    secret: bytes = b""


@dataclass(frozen=True, slots=True)
class HeartbeatActivity:
    task_id: int
    attempt: int
    details: object  # plain data
    secret: bytes = b""


@dataclass(frozen=True, slots=True)
class CancelWorkflow:
    workflow_id: str


@dataclass(frozen=True, slots=True)
class TerminateWorkflow:
    workflow_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Tick:
    """Carries only the leader's time (the envelope's timestamp_ms): fires due timers."""


@dataclass(frozen=True, slots=True)
class RearmTimeouts:
    """Proposed once by a new leader: started tasks' start_to_close and heartbeat
    deadlines before now + grace_ms move to now + grace_ms."""

    grace_ms: int  # 0..MAX_GRACE_MS


@dataclass(frozen=True, slots=True)
class SignalWorkflow:
    workflow_id: str
    name: str  # the signal's name, as a SignalStep names it
    input: object  # plain data; the consuming signal step's result


WorkflowOp: TypeAlias = (
    RegisterWorkflowType
    | StartWorkflow
    | ActivityTaskStarted
    | CompleteActivity
    | FailActivity
    | HeartbeatActivity
    | CancelWorkflow
    | TerminateWorkflow
    | Tick
    | RearmTimeouts
    | SignalWorkflow
)
WORKFLOW_OPS: tuple[type, ...] = get_args(WorkflowOp)  # which ops are the engine's; their codes: commands.OP_CLASSES
LEADER_OPS: tuple[type, ...] = (ActivityTaskStarted, Tick, RearmTimeouts)  # carried without a session


def validate_workflow_op(op: WorkflowOp) -> None:
    """The rules a workflow op must meet; CommandError naming the field if one fails.
    Whether the op makes sense for the engine's state is the engine's to answer."""
    match op:
        case RegisterWorkflowType(definition):
            _check_definition(definition)
        case StartWorkflow(workflow_id, type_name, version, payload, return_running):
            _check_text(workflow_id, "workflow_id", MAX_WORKFLOW_ID_CHARS)
            _check_text(type_name, "type_name", MAX_NAME_CHARS)
            if type(version) is not int or not 0 <= version <= MAX_VERSION:
                raise CommandError(f"version is {version!r}; expected an integer from 0 (the latest) to {MAX_VERSION}")
            check_plain_data(payload, "input", CommandError)
            check_type(return_running, bool, "return_running", CommandError)
        case ActivityTaskStarted(task_id, attempt, secret):
            _check_token(task_id, attempt, secret)
        case CompleteActivity(task_id, attempt, payload, secret):
            _check_token(task_id, attempt, secret)
            check_plain_data(payload, "result", CommandError)
        case FailActivity(task_id, attempt, error_type, message, retryable, secret):
            _check_token(task_id, attempt, secret)
            _check_text(error_type, "error_type", MAX_NAME_CHARS)
            _check_text(message, "message", MAX_REASON_CHARS, empty=True)
            check_type(retryable, bool, "retryable", CommandError)
        case HeartbeatActivity(task_id, attempt, payload, secret):
            _check_token(task_id, attempt, secret)
            check_plain_data(payload, "details", CommandError)
        case CancelWorkflow(workflow_id):
            _check_text(workflow_id, "workflow_id", MAX_WORKFLOW_ID_CHARS)
        case TerminateWorkflow(workflow_id, reason):
            _check_text(workflow_id, "workflow_id", MAX_WORKFLOW_ID_CHARS)
            _check_text(reason, "reason", MAX_REASON_CHARS, empty=True)
        case Tick():
            pass
        case RearmTimeouts(grace_ms):
            if type(grace_ms) is not int or not 0 <= grace_ms <= MAX_GRACE_MS:
                raise CommandError(f"grace_ms is {grace_ms!r}; expected an integer from 0 to {MAX_GRACE_MS} (an hour)")
        case SignalWorkflow(workflow_id, name, payload):
            _check_text(workflow_id, "workflow_id", MAX_WORKFLOW_ID_CHARS)
            _check_text(name, "name", MAX_NAME_CHARS)
            if not name.strip():
                raise CommandError(f"name is {name!r}; a signal name is not only white space")
            check_plain_data(payload, "input", CommandError)
        case _:
            raise AssertionError(f"validate_workflow_op was handed {op!r}, which is not a workflow op")


def _check_definition(definition: object) -> None:
    check_type(definition, bytes, "definition", CommandError)
    if len(definition) > MAX_DEFINITION_BYTES:
        raise CommandError(f"definition is {len(definition)} bytes; at most {MAX_DEFINITION_BYTES}")
    try:
        workflow_type = decode_definition(definition)
    except DefinitionError as exc:
        raise CommandError(f"definition: {exc}") from None
    # Canonical bytes only: the snapshot re-encodes the type, and replicas must agree.
    if encode_definition(workflow_type) != definition:
        raise CommandError("definition is not in encode_definition's canonical form")


def _check_text(value: object, what: str, max_chars: int, *, empty: bool = False) -> None:
    check_type(value, str, what, CommandError)
    if not value and not empty:
        raise CommandError(f"{what} is empty")
    if len(value) > max_chars:
        raise CommandError(f"{what} is {len(value)} characters; at most {max_chars}")
    if not _utf8(value):
        raise CommandError(f"{what} is not valid UTF-8 (a lone surrogate)")


def _check_token(task_id: object, attempt: object, secret: object) -> None:
    check_int(task_id, "task_id", CommandError, minimum=1)
    check_int(attempt, "attempt", CommandError, minimum=1)
    check_type(secret, bytes, "secret", CommandError)
    if len(secret) not in (0, TASK_SECRET_BYTES):
        raise CommandError(f"secret is {len(secret)} bytes; a task token's secret is {TASK_SECRET_BYTES}")


def check_plain_data(value: object, what: str, error: type[ValueError]) -> None:
    """`value` is None, bool, int in msgpack's range, float, str, bytes, or
    lists and str-keyed dicts of those, at most MAX_PAYLOAD_DEPTH deep and
    MAX_PAYLOAD_BYTES encoded; else `error` naming `what` and the path inside it."""
    _check_plain(value, what, error, 0)
    try:
        size = len(msgpack.packb(value, use_bin_type=True))
    except (ValueError, TypeError, OverflowError, UnicodeEncodeError) as exc:
        raise error(f"{what} does not encode as msgpack: {exc}") from None
    if size > MAX_PAYLOAD_BYTES:
        raise error(f"{what} is {size} bytes of msgpack; at most {MAX_PAYLOAD_BYTES}")


def _check_plain(value: object, where: str, error: type[ValueError], depth: int) -> None:
    kind = type(value)
    if value is None or kind in (bool, float, bytes):
        return
    if kind is int:
        if not _MIN_INT <= value <= MAX_INT:
            raise error(f"{where} is {value}; integers must be from {_MIN_INT} to {MAX_INT}")
        return
    if kind is str:
        if not _utf8(value):
            raise error(f"{where} is a str that is not valid UTF-8 (a lone surrogate)")
        return
    if kind not in (list, dict):
        raise error(f"{where} is a {kind.__name__}; expected None, bool, int, float, str, bytes, list or dict")
    if depth >= MAX_PAYLOAD_DEPTH:
        raise error(f"{where} nests deeper than {MAX_PAYLOAD_DEPTH} lists and dicts")
    if kind is list:
        for i, item in enumerate(value):
            _check_plain(item, f"{where}[{i}]", error, depth + 1)
        return
    for key, item in value.items():
        if type(key) is not str:
            raise error(f"{where} has key {key!r}; dict keys must be str")
        _check_plain(item, f"{where}.{key}", error, depth + 1)


def _utf8(value: str) -> bool:
    try:
        value.encode()
    except UnicodeEncodeError:
        return False
    return True


# --- results --------------------------------------------------------------------------

WorkflowResult: TypeAlias = (
    TypeRegistered | WorkflowStarted | TaskAccepted | WorkflowAccepted | Ticked | ActivityTask | WorkflowRejected | Rearmed
)
WORKFLOW_RESULTS: tuple[type, ...] = get_args(WorkflowResult)  # their codes: commands.RESULT_CLASSES
_STATUSES = {status.value: status for status in Status}
_REJECT_REASONS = {reason.value: reason for reason in WorkflowRejectReason}


def workflow_result_fields(result: WorkflowResult) -> list:
    """The fields of a workflow result in a result row, enums as their values."""
    match result:
        case WorkflowAccepted(workflow_id, status):
            return [workflow_id, status.value]
        case WorkflowRejected(reason, message):
            return [reason.value, message]
    return [getattr(result, name) for name in type(result).__slots__]


def workflow_result_from_fields(cls: type, fields: list) -> WorkflowResult:
    """workflow_result_fields' inverse, checking each field; ResultError names it.
    `fields` has as many items as `cls` has slots (decode_result checked)."""
    if cls is WorkflowAccepted:
        workflow_id, status = fields
        check_type(workflow_id, str, "workflow_id", ResultError)
        return WorkflowAccepted(workflow_id, _lookup(_STATUSES, status, "status"))
    if cls is WorkflowRejected:
        reason, message = fields
        check_type(message, str, "message", ResultError)
        return WorkflowRejected(_lookup(_REJECT_REASONS, reason, "reason"), message)
    if cls is ActivityTask:
        task_id, attempt, workflow_id, activity, task_input, compensation, run_id, step, task_queue = fields
        check_int(task_id, "task_id", ResultError, minimum=1)
        check_int(attempt, "attempt", ResultError, minimum=1)
        for value, what in ((workflow_id, "workflow_id"), (activity, "activity"), (step, "step"), (task_queue, "task_queue")):
            check_type(value, str, what, ResultError)
        check_type(compensation, bool, "compensation", ResultError)
        check_int(run_id, "run_id", ResultError, minimum=1)
        return ActivityTask(task_id, attempt, workflow_id, activity, task_input, compensation, run_id, step, task_queue)
    if cls is WorkflowStarted:
        workflow_id, run_id, existing = fields
        check_type(workflow_id, str, "workflow_id", ResultError)
        check_type(existing, bool, "existing", ResultError)
        return WorkflowStarted(workflow_id, check_int(run_id, "run_id", ResultError, minimum=1), existing)
    if cls is TypeRegistered:
        name, version = fields
        check_type(name, str, "name", ResultError)
        return TypeRegistered(name, check_int(version, "version", ResultError, minimum=1))
    for value, what in zip(fields, cls.__slots__):  # TaskAccepted, Ticked, Rearmed: ints only
        check_int(value, what, ResultError)
    return cls(*fields)


def _lookup(values: dict, value: object, what: str) -> object:
    if type(value) is not str or value not in values:
        raise ResultError(f"{what} is {value!r}; expected one of {sorted(values)}")
    return values[value]


# --- the namespace ----------------------------------------------------------------------


class WorkflowQueries(Protocol):
    """The engine's read-only surface, what a node reads between applies."""

    def describe(self, workflow_id: str) -> WorkflowDescription | None: ...

    def history(self, workflow_id: str) -> tuple[Event, ...]: ...

    def run_status(self, workflow_id: str) -> tuple[int, Status] | None: ...

    def pending_tasks(self, task_queue: str, limit: int) -> list[ActivityTask]: ...

    def task_queue_of(self, task_id: int) -> str | None: ...

    def next_deadline_ms(self) -> int | None: ...

    def list_workflows(self, status: Status | None, limit: int) -> list[WorkflowSummary]: ...


@dataclass(frozen=True, slots=True)
class WorkflowLimits:
    """The engine's bounds. Like SessionLimits, every replica must use the same ones:
    they decide which starts are refused and when closed workflows go."""

    max_history_events: int = DEFAULT_MAX_HISTORY_EVENTS
    max_backlog: int = DEFAULT_MAX_BACKLOG
    max_running_workflows: int = DEFAULT_MAX_RUNNING_WORKFLOWS
    retention_ms: int = DEFAULT_RETENTION_MS
    max_buffered_signals: int = DEFAULT_MAX_BUFFERED_SIGNALS
    max_history_bytes: int = DEFAULT_MAX_HISTORY_BYTES  # payload bytes per run; past it the run fails
    max_types: int = DEFAULT_MAX_TYPES  # registered workflow types (name, version)
    max_type_bytes: int = DEFAULT_MAX_TYPE_BYTES  # their encoded definitions, in all

    def __post_init__(self) -> None:
        WorkflowEngine(**self._kwargs())  # the engine checks its bounds: fail at start-up

    def _kwargs(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in self.__slots__}


class WorkflowNamespace:
    """Applies workflow ops to a WorkflowEngine at the machine's clamped now_ms."""

    OPS: ClassVar[tuple[type, ...]] = WORKFLOW_OPS

    def __init__(self, limits: WorkflowLimits) -> None:
        self.limits = limits
        self.engine = WorkflowEngine(**limits._kwargs())

    def apply(self, op: WorkflowOp, now_ms: int) -> WorkflowResult:
        engine = self.engine
        match op:
            case RegisterWorkflowType(definition):
                return engine.register(decode_definition(definition))  # validate_op decoded it once already
            case StartWorkflow(workflow_id, type_name, version, payload, return_running):
                return engine.start(workflow_id, type_name, version, payload, now_ms, return_running=return_running)
            case ActivityTaskStarted(task_id, attempt, secret):
                return engine.task_started(task_id, attempt, now_ms, secret)
            case CompleteActivity(task_id, attempt, payload, secret):
                return engine.complete(task_id, attempt, payload, now_ms, secret)
            case FailActivity(task_id, attempt, error_type, message, retryable, secret):
                return engine.fail(task_id, attempt, error_type, message, retryable, now_ms, secret)
            case HeartbeatActivity(task_id, attempt, payload, secret):
                return engine.heartbeat(task_id, attempt, payload, now_ms, secret)
            case CancelWorkflow(workflow_id):
                return engine.cancel(workflow_id, now_ms)
            case TerminateWorkflow(workflow_id, reason):
                return engine.terminate(workflow_id, reason, now_ms)
            case Tick():
                return engine.tick(now_ms)
            case RearmTimeouts(grace_ms):
                return engine.rearm_timeouts(grace_ms, now_ms)
            case SignalWorkflow(workflow_id, name, payload):
                return engine.signal(workflow_id, name, payload, now_ms)
        raise AssertionError(f"WorkflowNamespace was handed {op!r}, which is not in OPS")

    def capture(self) -> tuple:
        return self.engine.capture()

    @staticmethod
    def state_rows(captured: tuple) -> list:
        return WorkflowEngine.state_rows(captured)

    def snapshot_state(self) -> list:
        return self.engine.snapshot_state()

    def restore_state(self, state: object) -> None:
        self.engine.restore_state(state)


__all__ = [
    "LEADER_OPS",
    "MAX_DEFINITION_BYTES",
    "MAX_PAYLOAD_BYTES",
    "MAX_PAYLOAD_DEPTH",
    "MAX_REASON_CHARS",
    "MAX_WORKFLOW_ID_CHARS",
    "WORKFLOW_OPS",
    "WORKFLOW_RESULTS",
    "ActivityTaskStarted",
    "CancelWorkflow",
    "CompleteActivity",
    "FailActivity",
    "HeartbeatActivity",
    "RearmTimeouts",
    "RegisterWorkflowType",
    "SignalWorkflow",
    "StartWorkflow",
    "TerminateWorkflow",
    "Tick",
    "WorkflowLimits",
    "WorkflowNamespace",
    "WorkflowOp",
    "WorkflowQueries",
    "WorkflowResult",
    "check_plain_data",
    "validate_workflow_op",
    "workflow_result_fields",
    "workflow_result_from_fields",
]
