"""Commands the state machine applies, the results it returns, and their encodings.

A command is an op (what the client asks for) inside the envelope the leader proposes:
the client's session, sequence number and ack floor, and the leader's clock. In a log
entry it is the msgpack array

    [COMMAND_FORMAT, timestamp_ms, session_id, seq, ack_floor, [op_code, *op_fields]]

and a result is `[RESULT_FORMAT, result_code, *fields]`. One conversion each way, and
every field is checked on the way in: entry data that does not decode is a
CommandError, never a crash, because every replica must reach the same state from the
same log (STYLE §5).
"""

from __future__ import annotations

import dataclasses
import enum
import threading
from dataclasses import dataclass
from typing import TypeAlias

import msgpack

from raftflow.statemachine._checks import (
    MAX_INT,
    CommandError,
    Rejected,
    RejectReason,
    ResultError,
    SnapshotError,
    check_int,
    check_row,
    check_type,
    check_version,
    show,
    unpack,
)
from raftflow.statemachine import auth
from raftflow.statemachine.auth import (
    AUTH_OPS,
    AUTH_RESULTS,
    AuthOp,
    AuthResult,
    TokenIssued,
    TokenRevoked,
    check_token_id,
    validate_auth_op,
)
from raftflow.statemachine.workflow import ops as workflow_ops
from raftflow.statemachine.workflow import records as workflow_records
from raftflow.statemachine.workflow.ops import (
    LEADER_OPS,
    WORKFLOW_OPS,
    WORKFLOW_RESULTS,
    WorkflowOp,
    WorkflowResult,
    validate_workflow_op,
    workflow_result_fields,
    workflow_result_from_fields,
)

MAX_KEY_BYTES = 1024  # a key's UTF-8 encoding
MAX_VALUE_BYTES = 1 << 20  # a value, and a Cas's expected_value
COMMAND_FORMAT = 1  # bump when the command layout changes; decode refuses other versions
RESULT_FORMAT = 1


# --- ops ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class OpenSession:
    """Opens a client session; its id is the index of the entry (thesis §6.3).
    `owner`: the id of the token that opened it ("" with no tokens: --insecure, or an
    entry written before owners existed); set by the node, never by the caller."""

    owner: str = ""


@dataclass(frozen=True, slots=True)
class Put:
    key: str
    value: bytes


@dataclass(frozen=True, slots=True)
class Delete:
    key: str


@dataclass(frozen=True, slots=True)
class Cas:
    """Put `value` if the key's value is `expected_value`, or if its mod_revision is
    `expected_revision` (0: the key must not exist). Exactly one of the two is given."""

    key: str
    value: bytes
    expected_value: bytes | None = None
    expected_revision: int | None = None


# The workflow ops and results live in statemachine/workflow/ops.py, the access
# tokens' in statemachine/auth.py.
Op: TypeAlias = OpenSession | Put | Delete | Cas | WorkflowOp | AuthOp


class OpCode(enum.IntEnum):
    """Codes in the log: append new ones, never renumber (tests/test_opcodes.py pins
    them). OP_CLASSES below gives each its class."""

    OPEN_SESSION = 0
    PUT = 1
    DELETE = 2
    CAS = 3
    REGISTER_WORKFLOW_TYPE = 4
    START_WORKFLOW = 5
    ACTIVITY_TASK_STARTED = 6
    COMPLETE_ACTIVITY = 7
    FAIL_ACTIVITY = 8
    HEARTBEAT_ACTIVITY = 9
    CANCEL_WORKFLOW = 10
    TERMINATE_WORKFLOW = 11
    TICK = 12
    REARM_TIMEOUTS = 13
    SIGNAL_WORKFLOW = 14
    ISSUE_TOKEN = 15
    REVOKE_TOKEN = 16


# Each op's code, written out in full, in the one place: a code never follows from
# the order of a declaration, so reordering a Union cannot renumber a durable log.
OP_CLASSES: dict[int, type] = {
    OpCode.OPEN_SESSION: OpenSession,
    OpCode.PUT: Put,
    OpCode.DELETE: Delete,
    OpCode.CAS: Cas,
    OpCode.REGISTER_WORKFLOW_TYPE: workflow_ops.RegisterWorkflowType,
    OpCode.START_WORKFLOW: workflow_ops.StartWorkflow,
    OpCode.ACTIVITY_TASK_STARTED: workflow_ops.ActivityTaskStarted,
    OpCode.COMPLETE_ACTIVITY: workflow_ops.CompleteActivity,
    OpCode.FAIL_ACTIVITY: workflow_ops.FailActivity,
    OpCode.HEARTBEAT_ACTIVITY: workflow_ops.HeartbeatActivity,
    OpCode.CANCEL_WORKFLOW: workflow_ops.CancelWorkflow,
    OpCode.TERMINATE_WORKFLOW: workflow_ops.TerminateWorkflow,
    OpCode.TICK: workflow_ops.Tick,
    OpCode.REARM_TIMEOUTS: workflow_ops.RearmTimeouts,
    OpCode.SIGNAL_WORKFLOW: workflow_ops.SignalWorkflow,
    OpCode.ISSUE_TOKEN: auth.IssueToken,
    OpCode.REVOKE_TOKEN: auth.RevokeToken,
}


# Fields appended to an op after it was first written to logs, each with a default:
# an entry written before decodes with the defaults, and an op whose added fields
# hold their defaults encodes to the same bytes as before (so a session cache or a
# state hash is the same on a build that predates the field).
ADDED_FIELDS: dict[type, tuple[str, ...]] = {
    OpenSession: ("owner",),
    workflow_ops.ActivityTaskStarted: ("secret",),
    workflow_ops.CompleteActivity: ("secret",),
    workflow_ops.FailActivity: ("secret",),
    workflow_ops.HeartbeatActivity: ("secret",),
}


def _defaults(cls: type) -> tuple:
    by_name = {f.name: f.default for f in dataclasses.fields(cls)}
    return tuple(by_name[name] for name in ADDED_FIELDS[cls])


_ADDED_DEFAULTS: dict[type, tuple] = {cls: _defaults(cls) for cls in ADDED_FIELDS}


def op_fields(op: object) -> list:
    """An op's fields in their log order, without trailing added fields that hold
    their defaults."""
    cls = type(op)
    values = [getattr(op, name) for name in cls.__slots__]
    defaults = _ADDED_DEFAULTS.get(cls)
    if defaults:
        for default in reversed(defaults):
            if values[-1] != default or type(values[-1]) is not type(default):
                break
            values.pop()
    return values


def _codes_of(classes: dict[int, type], codes: type[enum.IntEnum], expected: set[type]) -> dict[type, int]:
    """A code table's inverse, once the table is checked: each code has a class, and
    each of the `expected` classes exactly one code."""
    inverse = {cls: code for code, cls in classes.items()}
    assert set(classes) == set(codes), f"codes without a class: {set(codes) - set(classes)}"
    assert len(inverse) == len(classes) and set(inverse) == expected, f"classes without one code: {expected ^ set(inverse)}"
    return inverse


_OP_CODES: dict[type, OpCode] = _codes_of(OP_CLASSES, OpCode, {OpenSession, Put, Delete, Cas, *WORKFLOW_OPS, *AUTH_OPS})


@dataclass(frozen=True, slots=True)
class Command:
    """An op as the leader proposed it. Only OpenSession and the leader's own ops
    (LEADER_OPS: ActivityTaskStarted, Tick, RearmTimeouts) have session_id, seq and
    ack_floor 0; every other op rides in an open session."""

    timestamp_ms: int  # the leader's clock when it proposed the entry, never a replica's
    session_id: int  # the index of the entry that opened the session
    seq: int  # the client's number for this command in its session, from 1
    ack_floor: int  # <= seq: every seq below it has been answered and may be forgotten
    op: Op


# --- results --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KeyValue:
    """A key as etcd shows it. Revisions count mutations that changed something, across
    all keys; 1 <= create_revision <= mod_revision <= the store's revision."""

    key: str
    value: bytes
    create_revision: int  # the revision that created the key (since its last delete)
    mod_revision: int  # the revision of its last change
    version: int  # changes since creation, 1 at creation


@dataclass(frozen=True, slots=True)
class PutResult:
    revision: int  # the revision this put made
    prev: KeyValue | None  # the key before the put, None if it did not exist


@dataclass(frozen=True, slots=True)
class DeleteResult:
    revision: int  # the revision the delete made; unchanged if there was nothing to delete
    deleted: KeyValue | None


@dataclass(frozen=True, slots=True)
class CasResult:
    succeeded: bool
    revision: int  # the store's revision after the operation
    current: KeyValue | None  # the key after the put if it succeeded, else what made it fail


@dataclass(frozen=True, slots=True)
class SessionOpened:
    session_id: int


Result: TypeAlias = PutResult | DeleteResult | CasResult | SessionOpened | Rejected | WorkflowResult | AuthResult


class ResultCode(enum.IntEnum):
    """Codes in session caches and snapshots: append new ones, never renumber
    (tests/test_opcodes.py pins them). RESULT_CLASSES below gives each its class."""

    SESSION_OPENED = 0
    PUT = 1
    DELETE = 2
    CAS = 3
    REJECTED = 4
    TYPE_REGISTERED = 5
    WORKFLOW_STARTED = 6
    TASK_ACCEPTED = 7
    WORKFLOW_ACCEPTED = 8
    TICKED = 9
    ACTIVITY_TASK = 10
    WORKFLOW_REJECTED = 11
    REARMED = 12
    TOKEN_ISSUED = 13
    TOKEN_REVOKED = 14


# Each result's code, written out in full, like OP_CLASSES.
RESULT_CLASSES: dict[int, type] = {
    ResultCode.SESSION_OPENED: SessionOpened,
    ResultCode.PUT: PutResult,
    ResultCode.DELETE: DeleteResult,
    ResultCode.CAS: CasResult,
    ResultCode.REJECTED: Rejected,
    ResultCode.TYPE_REGISTERED: workflow_records.TypeRegistered,
    ResultCode.WORKFLOW_STARTED: workflow_records.WorkflowStarted,
    ResultCode.TASK_ACCEPTED: workflow_records.TaskAccepted,
    ResultCode.WORKFLOW_ACCEPTED: workflow_records.WorkflowAccepted,
    ResultCode.TICKED: workflow_records.Ticked,
    ResultCode.ACTIVITY_TASK: workflow_records.ActivityTask,
    ResultCode.WORKFLOW_REJECTED: workflow_records.WorkflowRejected,
    ResultCode.REARMED: workflow_records.Rearmed,
    ResultCode.TOKEN_ISSUED: TokenIssued,
    ResultCode.TOKEN_REVOKED: TokenRevoked,
}
_RESULT_CODES: dict[type, ResultCode] = _codes_of(
    RESULT_CLASSES, ResultCode, {SessionOpened, PutResult, DeleteResult, CasResult, Rejected, *WORKFLOW_RESULTS, *AUTH_RESULTS}
)


# --- commands -------------------------------------------------------------------------


def encode_command(cmd: Command) -> bytes:
    op = cmd.op
    if type(op) is Put:  # the usual op: its fields by name, not by walking __slots__
        op_row = [OpCode.PUT, op.key, op.value]
    else:
        op_row = [_OP_CODES[type(op)], *op_fields(op)]
    row = [COMMAND_FORMAT, cmd.timestamp_ms, cmd.session_id, cmd.seq, cmd.ack_floor, op_row]
    return _packer().pack(row)


_packers = threading.local()


def _packer() -> msgpack.Packer:
    """This thread's Packer: packb builds a new one per call, half the cost of packing
    a small command. One per thread, since a Packer holds its buffer between calls."""
    try:
        return _packers.packer
    except AttributeError:
        _packers.packer = msgpack.Packer(use_bin_type=True)
        return _packers.packer


def decode_command(data: bytes) -> Command:
    """Entry data -> a Command, or CommandError naming the field that is wrong. Checks
    every field's type and range, the envelope rules and validate_op's rules."""
    row = unpack(data, CommandError, "command")
    return _common_put(row) or _command_from_row(row)


def _common_put(row: object) -> Command | None:
    """The usual entry, a Put with an ASCII key in an open session, checked in one
    expression (a follower decodes every entry: up to half its CPU under load), or
    None: then _command_from_row checks every rule and names the one broken. It must
    accept only what _command_from_row accepts, and give the same Command
    (tests/test_statemachine.py compares the two on generated rows)."""
    if type(row) is not list or len(row) != 6:
        return None
    version, timestamp_ms, session_id, seq, ack_floor, op_row = row
    if not (
        type(version) is int and version == COMMAND_FORMAT
        and type(timestamp_ms) is int and 0 <= timestamp_ms <= MAX_INT
        and type(seq) is int and 0 < seq <= MAX_INT
        and type(session_id) is int and 0 < session_id <= MAX_INT
        and type(ack_floor) is int and 0 <= ack_floor <= seq
        and type(op_row) is list and len(op_row) == 3 and type(op_row[0]) is int and op_row[0] == OpCode.PUT
    ):
        return None
    _, key, value = op_row
    # An ASCII key's UTF-8 encoding is as long as the key: no encode() to measure it.
    if not (
        type(key) is str and 0 < len(key) <= MAX_KEY_BYTES and key.isascii() and "\0" not in key
        and type(value) is bytes and len(value) <= MAX_VALUE_BYTES
    ):
        return None
    return Command(timestamp_ms, session_id, seq, ack_floor, Put(key, value))


def _command_from_row(row: object) -> Command:
    """Every check, each failure a CommandError naming the field and the rule."""
    row = check_row(row, 6, "command", CommandError)
    version, timestamp_ms, session_id, seq, ack_floor, op_row = row
    check_version(version, COMMAND_FORMAT, "command", CommandError)
    for value, what in ((timestamp_ms, "timestamp_ms"), (session_id, "session_id"), (seq, "seq"), (ack_floor, "ack_floor")):
        check_int(value, what, CommandError)
    op = _decode_op(op_row)
    _check_envelope(session_id, seq, ack_floor, op)
    validate_op(op)
    return Command(timestamp_ms, session_id, seq, ack_floor, op)


def _decode_op(op_row: object) -> Op:
    if type(op_row) is not list or not op_row:
        raise CommandError(f"op is {show(op_row)}; expected an array [op_code, *fields]")
    code, *fields = op_row
    if type(code) is not int or code not in OP_CLASSES:
        raise CommandError(f"op code is {show(code)}; expected one of {[int(c) for c in OpCode]}")
    cls = OP_CLASSES[code]
    most = len(cls.__slots__)
    least = most - len(ADDED_FIELDS.get(cls, ()))
    if not least <= len(fields) <= most:
        expected = f"{most}" if least == most else f"{least} to {most}"
        raise CommandError(f"{cls.__name__} op has {len(fields)} fields; expected {expected} {list(cls.__slots__)}")
    return cls(*fields)  # field types are validate_op's to check


def _check_envelope(session_id: int, seq: int, ack_floor: int, op: Op) -> None:
    if type(op) is OpenSession or type(op) in LEADER_OPS:
        name = type(op).__name__
        article = "an" if name[0] in "AEIOU" else "a"
        why = "it has no session yet" if type(op) is OpenSession else "the leader proposes it, outside any session"
        for value, what in ((session_id, "session_id"), (seq, "seq"), (ack_floor, "ack_floor")):
            if value != 0:
                raise CommandError(f"{what} is {value}; {article} {name} carries 0 ({why})")
        return
    if session_id == 0:
        raise CommandError(f"session_id is 0; a {type(op).__name__} needs an open session")
    if seq == 0:
        raise CommandError("seq is 0; sequence numbers in a session start at 1")
    if ack_floor > seq:
        raise CommandError(f"ack_floor is {ack_floor}, above seq {seq}; the command itself still awaits its reply")


def validate_op(op: Op) -> None:
    """The rules an op must meet, checked at the server edge before proposing and again
    by decode_command; raises CommandError saying which rule failed."""
    match op:
        case OpenSession(owner):
            if owner != "":
                check_token_id(owner, "owner", CommandError)
        case Put(key, value):
            _check_key(key)
            _check_value(value, "value")
        case Delete(key):
            _check_key(key)
        case Cas(key, value, expected_value, expected_revision):
            _check_key(key)
            _check_value(value, "value")
            if (expected_value is None) == (expected_revision is None):
                given = "neither" if expected_value is None else "both"
                raise CommandError(f"Cas takes exactly one of expected_value and expected_revision; got {given}")
            if expected_value is not None:
                _check_value(expected_value, "expected_value")
            else:
                check_int(expected_revision, "expected_revision", CommandError)
        case _ if type(op) in WORKFLOW_OPS:
            validate_workflow_op(op)
        case _ if type(op) in AUTH_OPS:
            validate_auth_op(op)
        case _:
            workflow_ops = ", ".join(cls.__name__ for cls in WORKFLOW_OPS)
            raise CommandError(
                f"op is {show(op)}; expected OpenSession, Put, Delete or Cas, a workflow op ({workflow_ops}), "
                "IssueToken or RevokeToken"
            )


def _check_key(key: object) -> None:
    check_type(key, str, "key", CommandError)
    if not key:
        raise CommandError("key is empty")
    if "\0" in key:
        raise CommandError(f"key {show(key)} contains a NUL character")
    try:
        size = len(key.encode())
    except UnicodeEncodeError as exc:
        raise CommandError(f"key {show(key)} is not valid UTF-8: {exc.reason}") from exc
    if size > MAX_KEY_BYTES:
        raise CommandError(f"key is {size} bytes of UTF-8; at most {MAX_KEY_BYTES}")


def _check_value(value: object, what: str) -> None:
    check_type(value, bytes, what, CommandError)
    if len(value) > MAX_VALUE_BYTES:
        raise CommandError(f"{what} is {len(value)} bytes; at most {MAX_VALUE_BYTES}")


# --- results --------------------------------------------------------------------------


def key_value_row(kv: KeyValue | None) -> list | None:
    if kv is None:
        return None
    return [kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version]


def key_value_from_row(row: object, what: str, error: type[ValueError]) -> KeyValue:
    key, value, create_revision, mod_revision, version = check_row(row, 5, what, error)
    check_type(key, str, f"{what} key", error)
    check_type(value, bytes, f"{what} value", error)
    check_int(create_revision, f"{what} create_revision", error, minimum=1)
    check_int(mod_revision, f"{what} mod_revision", error, minimum=create_revision)
    check_int(version, f"{what} version", error, minimum=1)
    return KeyValue(key, value, create_revision, mod_revision, version)


def _optional_key_value(row: object, what: str) -> KeyValue | None:
    return None if row is None else key_value_from_row(row, what, ResultError)


def encode_result(result: Result) -> bytes:
    code = _RESULT_CODES.get(type(result))
    if code is None:
        raise TypeError(f"not a result: {result!r}")
    return msgpack.packb([RESULT_FORMAT, code, *_result_fields(result)], use_bin_type=True)


def _result_fields(result: Result) -> list:
    """The fields of a result in its row: keys as rows, enums as their values."""
    match result:
        case SessionOpened(session_id):
            return [session_id]
        case PutResult(revision, prev):
            return [revision, key_value_row(prev)]
        case DeleteResult(revision, deleted):
            return [revision, key_value_row(deleted)]
        case CasResult(succeeded, revision, current):
            return [succeeded, revision, key_value_row(current)]
        case Rejected(reason, message):
            return [reason, message]
        case TokenIssued(token_id, issued_ms):
            return [token_id, issued_ms]
        case TokenRevoked(token_id, revoked):
            return [token_id, revoked]
    return workflow_result_fields(result)


_REJECT_REASONS = {int(r): r for r in RejectReason}


def decode_result(data: bytes) -> Result:
    """Bytes from encode_result -> the result, or ResultError naming the field."""
    row = unpack(data, ResultError, "result")
    if type(row) is not list or len(row) < 2:
        raise ResultError(f"result is {show(row)}; expected an array [format, code, *fields]")
    version, code, *fields = row
    check_version(version, RESULT_FORMAT, "result", ResultError)
    if type(code) is not int or code not in RESULT_CLASSES:
        raise ResultError(f"result code is {show(code)}; expected one of {[int(c) for c in ResultCode]}")
    cls = RESULT_CLASSES[code]
    if len(fields) != len(cls.__slots__):  # every result's row holds its fields, in order
        raise ResultError(f"{ResultCode(code).name} result has {len(fields)} fields; expected {len(cls.__slots__)}")
    if cls is SessionOpened:
        return SessionOpened(check_int(fields[0], "session_id", ResultError, minimum=1))
    if cls is Rejected:
        reason, message = fields
        if type(reason) is not int or reason not in _REJECT_REASONS:
            raise ResultError(f"reason is {show(reason)}; expected one of {[int(r) for r in RejectReason]}")
        check_type(message, str, "message", ResultError)
        return Rejected(_REJECT_REASONS[reason], message)
    if cls is CasResult:
        succeeded, revision, current = fields
        check_type(succeeded, bool, "succeeded", ResultError)
        return CasResult(succeeded, check_int(revision, "revision", ResultError), _optional_key_value(current, "current"))
    if cls is PutResult or cls is DeleteResult:
        revision, kv = fields
        check_int(revision, "revision", ResultError)
        return cls(revision, _optional_key_value(kv, "prev" if cls is PutResult else "deleted"))
    if cls is TokenIssued:
        token_id, issued_ms = fields
        check_type(token_id, str, "token_id", ResultError)
        return TokenIssued(token_id, check_int(issued_ms, "issued_ms", ResultError))
    if cls is TokenRevoked:
        token_id, revoked = fields
        check_type(token_id, str, "token_id", ResultError)
        check_type(revoked, bool, "revoked", ResultError)
        return TokenRevoked(token_id, revoked)
    return workflow_result_from_fields(cls, fields)
