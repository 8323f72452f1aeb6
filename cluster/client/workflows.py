"""The workflow half of the client: `client.workflows` on AsyncClient and Client.

    client = Client(endpoints)
    client.workflows.register(definition)                  # a WorkflowType or the file form (dict)
    run = client.workflows.start("order", input={"order_id": 7}, workflow_id="order-7")
    outcome = client.workflows.wait("order-7")             # the description once closed
    client.workflows.history("order-7")                    # events, oldest first

Commands go through the session (exactly once: a start retried after a leader
change is answered from the session record, never with "already running"); reads
and long polls go to the leader, which answers as of every acknowledged command.
A `wait` that loses its node or sees a leader change re-attaches until its timeout.
"""

from __future__ import annotations

import json
import time
import uuid
from dataclasses import dataclass, field
from collections.abc import Awaitable, Callable

from raftflow.cluster.client.durations import Duration, optional_seconds, seconds
from raftflow.cluster.client.errors import InvalidArgument, OutcomeUnknown, RaftflowError, Unavailable
from raftflow.cluster.client.sync import run_sync
from raftflow.cluster.protocol.workflow_proto import (
    MAX_POLL_TASKS,
    MAX_WAIT_MS,
    description_from_plain,
    event_from_proto,
    pack_payload,
    summary_from_proto,
    unpack_payload,
)
from raftflow.proto import client_pb2, workflow_pb2, workflow_pb2_grpc
from raftflow.statemachine.workflow.definitions import WorkflowType, to_dict
from raftflow.statemachine.workflow.events import Event as HistoryEvent
from raftflow.statemachine.workflow.records import Status as WorkflowStatus
from raftflow.statemachine.workflow.records import TypeRegistered, WorkflowDescription, WorkflowSummary

LONG_POLL_S = 20.0  # one WaitWorkflow / PollActivityTasks call; a longer wait is several


@dataclass(frozen=True, slots=True)
class WorkflowRun:
    workflow_id: str
    run_id: int
    existing: bool  # start(return_running=True) found this run already running


@dataclass(frozen=True, slots=True)
class Task:
    """An activity task handed to this worker. Its token is (task_id, attempt,
    secret): every report on it (complete, fail, heartbeat) passes the secret."""

    task_id: int
    attempt: int
    workflow_id: str
    run_id: int
    step: str
    activity: str
    task_queue: str
    input: object
    compensation: bool
    secret: bytes = field(default=b"", repr=False)  # chosen by the leader for this hand-out


def _pack(value: object) -> bytes:
    try:
        return pack_payload(value)
    except (TypeError, ValueError, OverflowError) as exc:
        raise InvalidArgument(f"payload does not encode as msgpack: {exc}") from None


def _unpack(data: bytes) -> object:
    return unpack_payload(data, "the node's reply")


def _description(reply: workflow_pb2.DescribeReply) -> WorkflowDescription:
    data = _unpack(reply.details)
    if not isinstance(data, dict):
        raise RaftflowError(f"the node's description is a {type(data).__name__}, not a map")
    return _read_back("description", description_from_plain, data)


def _read_back(what: str, convert, *args):
    """A reply turned back into its record; one RaftflowError line if it cannot be
    (a status or event type this client does not know: a node of a newer build)."""
    try:
        return convert(*args)
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise RaftflowError(f"the node's {what} cannot be read by this client ({type(exc).__name__}: {exc}); "
                            "is the node of another raftflow version?") from None


def _status(value: WorkflowStatus | str) -> WorkflowStatus:
    try:
        return WorkflowStatus(value)
    except ValueError:
        raise InvalidArgument(
            f"status {value!r} is not one of {', '.join(s.value for s in WorkflowStatus)}"
        ) from None


Execute = Callable[[Callable[[client_pb2.Command], client_pb2.Command]], Awaitable[client_pb2.CommandReply]]
CallLeader = Callable[[type, str, object, float], Awaitable[object]]


class AsyncWorkflows:
    """`client.workflows`. It is given the client's two paths to the cluster (the
    exactly-once command path and a read on the leader) and its call timeout."""

    def __init__(self, *, execute: Execute, call_leader: CallLeader, timeout: Callable[[], float]) -> None:
        self._execute = execute
        self._call_leader = call_leader
        self._timeout = timeout

    # --- commands (exactly once) -------------------------------------------------------

    async def register(self, definition: WorkflowType | dict) -> TypeRegistered:
        """Register a workflow type (re-registering the same one is a no-op; other
        steps under a registered (name, version) are refused)."""
        document = to_dict(definition) if isinstance(definition, WorkflowType) else definition
        if not isinstance(document, dict):
            raise InvalidArgument(f"a definition is a WorkflowType or its file form (a dict); got {type(document).__name__}")
        text = json.dumps(document)

        def build(cmd):
            cmd.register_workflow_type.definition_json = text
            return cmd

        reply = await self._execute(build)
        return TypeRegistered(reply.workflow.type_name, reply.workflow.version)

    async def start(
        self, type_name: str, *, workflow_id: str | None = None, input: object = None, version: int = 0,
        return_running: bool = False,
    ) -> WorkflowRun:
        """Start a run of the type (version 0: the latest). A running workflow with
        the same id is AlreadyExists, or the answer when `return_running`."""
        workflow_id = workflow_id or f"{type_name}-{uuid.uuid4()}"
        payload = _pack(input)

        def build(cmd):
            m = cmd.start_workflow
            m.workflow_id, m.type_name, m.version, m.input, m.return_running = (
                workflow_id, type_name, version, payload, return_running,
            )
            return cmd

        reply = await self._execute(build)
        return WorkflowRun(reply.workflow.workflow_id, reply.workflow.run_id, reply.workflow.existing)

    async def signal(self, workflow_id: str, name: str, input: object = None) -> None:
        payload = _pack(input)

        def build(cmd):
            cmd.signal_workflow.workflow_id, cmd.signal_workflow.name, cmd.signal_workflow.input = workflow_id, name, payload
            return cmd

        await self._execute(build)

    async def cancel(self, workflow_id: str) -> WorkflowStatus:
        """Cancel: the completed steps' compensations run. The status afterwards."""
        def build(cmd):
            cmd.cancel_workflow.workflow_id = workflow_id
            return cmd

        return WorkflowStatus((await self._execute(build)).workflow.status)

    async def terminate(self, workflow_id: str, reason: str = "") -> WorkflowStatus:
        """Stop at once, no compensations. The status afterwards."""
        def build(cmd):
            cmd.terminate_workflow.workflow_id, cmd.terminate_workflow.reason = workflow_id, reason
            return cmd

        return WorkflowStatus((await self._execute(build)).workflow.status)

    async def complete_activity(self, task_id: int, attempt: int, result: object, *, secret: bytes = b"") -> None:
        """Report the attempt's result; `secret` is the Task's (a wrong one, or none
        for a task handed out with one, is FailedPrecondition: stale)."""
        payload = _pack(result)

        def build(cmd):
            m = cmd.complete_activity
            m.task_id, m.attempt, m.result, m.secret = task_id, attempt, payload, secret
            return cmd

        await self._execute(build)

    async def fail_activity(
        self, task_id: int, attempt: int, error_type: str, message: str, retryable: bool, *, secret: bytes = b"",
    ) -> None:
        def build(cmd):
            m = cmd.fail_activity
            m.task_id, m.attempt, m.error_type, m.message, m.retryable = task_id, attempt, error_type, message, retryable
            m.secret = secret
            return cmd

        await self._execute(build)

    async def heartbeat_activity(
        self, task_id: int, attempt: int, details: object = None, *, secret: bytes = b""
    ) -> None:
        payload = _pack(details)

        def build(cmd):
            m = cmd.heartbeat_activity
            m.task_id, m.attempt, m.details, m.secret = task_id, attempt, payload, secret
            return cmd

        await self._execute(build)

    # --- reads (leader, linearizable) ---------------------------------------------------

    async def _read(self, method: str, request, deadline: float | None = None):
        deadline = deadline or time.monotonic() + self._timeout()
        return await self._call_leader(workflow_pb2_grpc.WorkflowsStub, method, request, deadline)

    async def describe(self, workflow_id: str) -> WorkflowDescription:
        """The run's status and, while it is open, what it waits for."""
        reply = await self._read("Describe", workflow_pb2.DescribeRequest(workflow_id=workflow_id))
        return _description(reply)

    async def history(self, workflow_id: str) -> list[HistoryEvent]:
        """Every event of the run, oldest first (each attempt, failure, compensation)."""
        reply = await self._read("History", workflow_pb2.HistoryRequest(workflow_id=workflow_id))
        return [_read_back("history event", event_from_proto, e, _unpack(e.attributes)) for e in reply.events]

    async def list(self, *, status: WorkflowStatus | str | None = None, limit: int = 100) -> list[WorkflowSummary]:
        """Runs, newest first; only those with `status` when given."""
        if status is not None:
            status = _status(status)
        request = workflow_pb2.ListRequest(status=status.value if status else "", limit=limit)
        reply = await self._read("List", request)
        return [_read_back("workflow summary", summary_from_proto, w) for w in reply.workflows]

    async def wait(
        self, workflow_id: str, *, run_id: int = 0, timeout: Duration | None = None,
    ) -> WorkflowDescription:
        """The run's description once it has closed. Follows leader changes and lost
        nodes until `timeout` (a timedelta or seconds; None: forever), then raises
        TimeoutError."""
        limit = optional_seconds(timeout, "timeout")
        end = None if limit is None else time.monotonic() + limit
        while True:
            left = LONG_POLL_S if end is None else min(LONG_POLL_S, end - time.monotonic())
            if left <= 0:
                raise TimeoutError(f"workflow {workflow_id!r} still open after {limit:.1f}s")
            request = workflow_pb2.WaitRequest(workflow_id=workflow_id, run_id=run_id, wait_ms=int(left * 1000))
            try:
                reply = await self._read("WaitWorkflow", request, time.monotonic() + left + self._timeout())
            except (Unavailable, OutcomeUnknown):
                continue  # no leader for a while: keep trying until our own timeout
            if reply.closed:
                return _description(reply.workflow)

    async def poll(
        self, task_queue: str, *, max_tasks: int = 1, wait: Duration = LONG_POLL_S, identity: str = "",
    ) -> list[Task]:
        """Tasks of the queue handed to this caller (each started; report each with
        complete_activity / fail_activity), or [] when `wait` passed."""
        wait = seconds(wait, "wait", zero=True)
        request = workflow_pb2.PollRequest(
            task_queue=task_queue, identity=identity, max_tasks=max_tasks, wait_ms=int(wait * 1000)
        )
        reply = await self._read("PollActivityTasks", request, time.monotonic() + wait + self._timeout())
        return [
            Task(t.task_id, t.attempt, t.workflow_id, t.run_id, t.step, t.activity, t.task_queue, _unpack(t.input),
                 t.compensation, t.secret)
            for t in reply.tasks
        ]


class Workflows:
    """The blocking twin of AsyncWorkflows (Client.workflows)."""

    def __init__(self, workflows: AsyncWorkflows) -> None:
        self._async = workflows

    def __getattr__(self, name: str):
        method = getattr(self._async, name)
        if name.startswith("_") or not callable(method):
            raise AttributeError(name)
        return lambda *args, **kwargs: run_sync(method(*args, **kwargs))


__all__ = ["MAX_POLL_TASKS", "MAX_WAIT_MS", "AsyncWorkflows", "Task", "WorkflowRun", "Workflows"]
