"""Workflow data at the gRPC edge: workflow commands from protobuf to engine ops,
engine results and records back to protobuf (the Workflows service in services.py
serves them).

Payloads cross the edge as msgpack of plain data (empty bytes = None) and are
checked here and again in validate_op; a definition arrives in its file form as
JSON and is parsed by the same rules as `raftflow workflow register FILE`.
"""

from __future__ import annotations

import dataclasses
import enum
import json

import grpc
import msgpack

from raftflow.proto import client_pb2, workflow_pb2
from raftflow.statemachine.commands import CommandError, unpack
from raftflow.statemachine.workflow.definitions import TOO_DEEP, encode_definition, parse_definition
from raftflow.statemachine.workflow.events import Event, EventType
from raftflow.statemachine.workflow.records import (
    ActivityError,
    ActivityTask,
    Status,
    TaskDescription,
    TaskState,
    WorkflowSummary,
    TypeRegistered,
    WorkflowAccepted,
    WorkflowDescription,
    WorkflowRejected,
    WorkflowRejectReason,
    WorkflowStarted,
)
from raftflow.statemachine.workflow.ops import (
    MAX_DEFINITION_BYTES,
    MAX_PAYLOAD_BYTES,
    CancelWorkflow,
    CompleteActivity,
    FailActivity,
    HeartbeatActivity,
    RegisterWorkflowType,
    SignalWorkflow,
    StartWorkflow,
    WORKFLOW_RESULTS,
    TerminateWorkflow,
)
from raftflow.statemachine.workflow.retry import DefinitionError

MAX_DEFINITION_JSON_CHARS = 2 * MAX_DEFINITION_BYTES  # JSON text, whitespace included, before it is parsed
MAX_POLL_TASKS = 100  # tasks one poll may take
MAX_WAIT_MS = 60_000  # the longest long poll
DEFAULT_LIST_LIMIT = 100
MAX_LIST_LIMIT = 10_000

WORKFLOW_OPS = frozenset({
    "register_workflow_type", "start_workflow", "complete_activity", "fail_activity", "heartbeat_activity",
    "signal_workflow", "cancel_workflow", "terminate_workflow",
})  # fmt: skip

REJECT_CODES = {
    WorkflowRejectReason.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    WorkflowRejectReason.UNKNOWN_TYPE: grpc.StatusCode.NOT_FOUND,
    WorkflowRejectReason.UNSUPPORTED: grpc.StatusCode.FAILED_PRECONDITION,
    WorkflowRejectReason.ALREADY_RUNNING: grpc.StatusCode.ALREADY_EXISTS,
    WorkflowRejectReason.RESOURCE_EXHAUSTED: grpc.StatusCode.RESOURCE_EXHAUSTED,
    WorkflowRejectReason.STALE_TASK: grpc.StatusCode.FAILED_PRECONDITION,
    WorkflowRejectReason.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    WorkflowRejectReason.NOT_RUNNING: grpc.StatusCode.FAILED_PRECONDITION,
}


def unpack_payload(data: bytes, what: str) -> object:
    """The payload's value (empty bytes: None); CommandError naming `what` if the
    bytes are too many (checked before any decoding), not msgpack, or nest too deep."""
    if len(data) > MAX_PAYLOAD_BYTES:
        raise CommandError(f"{what} is {len(data)} bytes; at most {MAX_PAYLOAD_BYTES}")
    return unpack(data, CommandError, what) if data else None


def pack_payload(value: object) -> bytes:
    return b"" if value is None else msgpack.packb(value, use_bin_type=True)


def workflow_op_from_proto(which: str, cmd: client_pb2.Command):
    """The engine op of a workflow Command; CommandError names what is wrong."""
    if which == "register_workflow_type":
        text = cmd.register_workflow_type.definition_json
        if len(text) > MAX_DEFINITION_JSON_CHARS:  # before parsing it, which takes the loop
            raise CommandError(f"definition_json is {len(text)} characters; at most {MAX_DEFINITION_JSON_CHARS}")
        try:
            document = json.loads(text)
        except ValueError as exc:
            raise CommandError(f"definition_json is not JSON: {exc}") from None
        except RecursionError:  # the document's depth, not our bug: an input error like any other
            raise CommandError(f"definition_json {TOO_DEEP}") from None
        if not isinstance(document, dict):
            raise CommandError("definition_json must be a JSON object (the definition file's form)")
        try:
            return RegisterWorkflowType(encode_definition(parse_definition(document)))
        except DefinitionError as exc:
            raise CommandError(f"definition_json: {exc}") from None
    if which == "start_workflow":
        m = cmd.start_workflow
        return StartWorkflow(m.workflow_id, m.type_name, m.version, unpack_payload(m.input, "input"), m.return_running)
    if which == "complete_activity":
        m = cmd.complete_activity
        return CompleteActivity(m.task_id, m.attempt, unpack_payload(m.result, "result"), m.secret)
    if which == "fail_activity":
        m = cmd.fail_activity
        return FailActivity(m.task_id, m.attempt, m.error_type, m.message, m.retryable, m.secret)
    if which == "heartbeat_activity":
        m = cmd.heartbeat_activity
        return HeartbeatActivity(m.task_id, m.attempt, unpack_payload(m.details, "details"), m.secret)
    if which == "signal_workflow":
        m = cmd.signal_workflow
        return SignalWorkflow(m.workflow_id, m.name, unpack_payload(m.input, "input"))
    if which == "cancel_workflow":
        return CancelWorkflow(cmd.cancel_workflow.workflow_id)
    if which == "terminate_workflow":
        return TerminateWorkflow(cmd.terminate_workflow.workflow_id, cmd.terminate_workflow.reason)
    raise AssertionError(f"not a workflow op: {which}")


def fill_workflow_reply(reply: client_pb2.CommandReply, result) -> bool:
    """Sets the reply's fields for a workflow result; False if it is none."""
    out = reply.workflow
    if isinstance(result, WorkflowRejected):
        reply.code = REJECT_CODES[result.reason].value[0]
        reply.message = result.message
        out.SetInParent()  # marks an engine refusal (client.rejection) apart from a node's
    elif isinstance(result, WorkflowStarted):
        out.workflow_id, out.run_id, out.existing = result.workflow_id, result.run_id, result.existing
        reply.succeeded = True
    elif isinstance(result, WorkflowAccepted):
        out.workflow_id, out.status = result.workflow_id, result.status.value
        reply.succeeded = True
    elif isinstance(result, TypeRegistered):
        out.type_name, out.version = result.name, result.version
        reply.succeeded = True
    elif isinstance(result, WORKFLOW_RESULTS):
        reply.succeeded = True  # TaskAccepted and the like: nothing more to say
    else:
        return False
    return True


def plain(value: object) -> object:
    """Engine records -> msgpack-ready data: dataclasses as maps, enums as values."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    if isinstance(value, dict):
        return {str(key): plain(item) for key, item in value.items()}
    return value


def event_attributes(event: Event) -> dict:
    """An event's fields beyond (event_id, time_ms, type) that say something: None
    and a False `compensation` are left out (the History reply carries these)."""
    return {
        f.name: plain(getattr(event, f.name)) for f in dataclasses.fields(event)
        if f.name not in ("event_id", "time_ms", "type") and getattr(event, f.name) is not None
        and not (f.name == "compensation" and event.compensation is False)
    }


def summary_of(record, out: workflow_pb2.WorkflowSummary) -> None:
    out.workflow_id, out.run_id, out.type_name, out.version = (
        record.workflow_id, record.run_id, record.type_name, record.version,
    )
    out.status = record.status.value
    out.start_ms = record.start_ms
    out.close_ms = record.close_ms or 0


def describe_reply(described: WorkflowDescription) -> workflow_pb2.DescribeReply:
    reply = workflow_pb2.DescribeReply(details=msgpack.packb(plain(described), use_bin_type=True))
    summary_of(described, reply.summary)
    return reply


def task_to_proto(task: ActivityTask, secret: bytes) -> workflow_pb2.ActivityTask:
    return workflow_pb2.ActivityTask(
        task_id=task.task_id, attempt=task.attempt, workflow_id=task.workflow_id, run_id=task.run_id, step=task.step,
        activity=task.activity, task_queue=task.task_queue, input=pack_payload(task.input),
        compensation=task.compensation, secret=secret,
    )


# --- replies back into records (the client side of the conversions above) ------------


def _known(cls, data: dict) -> dict:
    """The fields of `cls` in `data`: a newer node may send fields this client lacks."""
    names = {f.name for f in dataclasses.fields(cls)}
    return {key: value for key, value in data.items() if key in names}


def _activity_error(data: dict | None) -> ActivityError | None:
    return None if data is None else ActivityError(**_known(ActivityError, data))


def _task_description(data: dict) -> TaskDescription:
    fields = _known(TaskDescription, data)
    fields["state"] = TaskState(fields["state"])
    fields["last_error"] = _activity_error(fields.get("last_error"))
    return TaskDescription(**fields)


def description_from_plain(data: dict) -> WorkflowDescription:
    """The inverse of `plain(description)`: the record a DescribeReply carries."""
    fields = _known(WorkflowDescription, data)
    fields["status"] = Status(fields["status"])
    if fields.get("task_state") is not None:
        fields["task_state"] = TaskState(fields["task_state"])
    fields["last_error"] = _activity_error(fields.get("last_error"))
    fields["buffered_signals"] = tuple(fields.get("buffered_signals") or ())
    fields["tasks"] = tuple(_task_description(task) for task in fields.get("tasks") or ())
    return WorkflowDescription(**fields)


def summary_from_proto(message: workflow_pb2.WorkflowSummary) -> WorkflowSummary:
    return WorkflowSummary(
        message.workflow_id, message.run_id, message.type_name, message.version, Status(message.status),
        message.start_ms, message.close_ms or None,
    )


def event_from_proto(message: workflow_pb2.Event, attributes: dict) -> Event:
    return Event(message.event_id, message.time_ms, EventType(message.event_type), **_known(Event, attributes))
