"""The client and admin gRPC services of a node: protobuf in, typed commands to the
node, typed results back to protobuf. The conversion happens here, once."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import time

import grpc
import msgpack

from raftflow.cluster.protocol.wire import LEADER_METADATA, MAYBE_APPLIED_METADATA, NODE_METADATA, status_code
from raftflow.cluster.protocol.faults import describe_faults, fault_from_proto, fault_to_proto
from raftflow.cluster.node.access import INSECURE, Access, AccessDenied, Permission, Principal
from raftflow.cluster.node.errors import NodeError
from raftflow.cluster.node.raftnode import VERSION, RaftNode
from raftflow.cluster.node.workflow_driver import WorkflowDriver
from raftflow.cluster.protocol.workflow_proto import (
    event_attributes,
    DEFAULT_LIST_LIMIT,
    MAX_LIST_LIMIT,
    MAX_POLL_TASKS,
    MAX_WAIT_MS,
    WORKFLOW_OPS,
    describe_reply,
    fill_workflow_reply,
    summary_of,
    task_to_proto,
    workflow_op_from_proto,
)
from raftflow.proto import admin_pb2, admin_pb2_grpc, client_pb2, client_pb2_grpc, workflow_pb2, workflow_pb2_grpc
from raftflow.raft.types import NONE, RaftError, Role
from raftflow.cluster.security.tokens import ADMIN_TOKEN_ID
from raftflow.statemachine.auth import IssueToken, RevokeToken, TokenIssued, TokenRevoked
from raftflow.statemachine.workflow.ops import CompleteActivity, FailActivity, HeartbeatActivity
from raftflow.statemachine.workflow.records import CLOSED, Status, WorkflowDescription
from raftflow.statemachine.commands import (
    Cas,
    CasResult,
    CommandError,
    Delete,
    DeleteResult,
    KeyValue,
    OpenSession,
    Put,
    PutResult,
    Rejected,
    RejectReason,
    SessionOpened,
    validate_op,
)

log = logging.getLogger("raftflow.services")
MAX_STATE_HASH_WAITING = 8  # StateHash calls queued behind the one being computed
_CONSISTENCY = {
    client_pb2.LINEARIZABLE: "linearizable",
    client_pb2.LEASE: "lease",
    client_pb2.STALE: "stale",
}
_REJECT_CODES = {
    RejectReason.SESSION_UNKNOWN: grpc.StatusCode.NOT_FOUND,
    RejectReason.STALE_SEQUENCE: grpc.StatusCode.FAILED_PRECONDITION,
    RejectReason.TOO_MANY_PENDING: grpc.StatusCode.RESOURCE_EXHAUSTED,
    RejectReason.MALFORMED: grpc.StatusCode.INVALID_ARGUMENT,
    RejectReason.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    RejectReason.QUOTA_EXCEEDED: grpc.StatusCode.RESOURCE_EXHAUSTED,
}
_TASK_OPS = (CompleteActivity, FailActivity, HeartbeatActivity)  # a worker's reports: WORK on the task's queue
_ADMIN_OPS = (IssueToken, RevokeToken)


def op_from_proto(cmd: client_pb2.Command):
    """The typed operation of a Command; CommandError names what is wrong."""
    which = cmd.WhichOneof("op")
    if which is None:
        raise CommandError("command has no operation: set put, delete, cas or a workflow command")
    if which == "read":
        raise CommandError("a read goes on ExecuteStream or the Read call, not Execute")
    if cmd.session_id == 0:
        raise CommandError("session_id is 0: open a session first (OpenSession)")
    if cmd.seq == 0:
        raise CommandError("seq is 0: sequence numbers start at 1")
    if cmd.ack_floor > cmd.seq:
        raise CommandError(f"ack_floor {cmd.ack_floor} is above seq {cmd.seq}")
    if which in WORKFLOW_OPS:
        op = workflow_op_from_proto(which, cmd)
    elif which == "put":
        op = Put(cmd.put.key, cmd.put.value)
    elif which == "delete":
        op = Delete(cmd.delete.key)
    elif which == "issue_token":
        t = cmd.issue_token
        if t.token_id == ADMIN_TOKEN_ID:
            raise CommandError(f"token id {ADMIN_TOKEN_ID!r} is the bootstrap admin token's; choose another")
        op = IssueToken(t.token_id, t.role, tuple(t.queues), t.secret_sha256, t.name, t.expires_ms)
    elif which == "revoke_token":
        op = RevokeToken(cmd.revoke_token.token_id)
    else:
        expected = cmd.cas.WhichOneof("expected")
        if expected is None:
            raise CommandError("cas needs expected_value or expected_revision")
        if expected == "expected_value":
            op = Cas(cmd.cas.key, cmd.cas.value, expected_value=cmd.cas.expected_value)
        else:
            op = Cas(cmd.cas.key, cmd.cas.value, expected_revision=cmd.cas.expected_revision)
    validate_op(op)
    return op


def kv_to_proto(kv: KeyValue | None, out: client_pb2.KeyValue) -> None:
    if kv is not None:
        out.key = kv.key
        out.value = kv.value
        out.create_revision = kv.create_revision
        out.mod_revision = kv.mod_revision
        out.version = kv.version


def reply_for(request_id: int, index: int, result) -> client_pb2.CommandReply:
    reply = client_pb2.CommandReply(request_id=request_id, index=index)
    if isinstance(result, PutResult):
        reply.revision, reply.succeeded = result.revision, True
        kv_to_proto(result.prev, reply.prev)
    elif isinstance(result, DeleteResult):
        reply.revision, reply.succeeded = result.revision, result.deleted is not None
        kv_to_proto(result.deleted, reply.prev)
    elif isinstance(result, CasResult):
        reply.revision, reply.succeeded = result.revision, result.succeeded
        kv_to_proto(result.current, reply.current)
    elif isinstance(result, Rejected):
        reply.code = _REJECT_CODES[result.reason].value[0]
        reply.message = f"{result.reason.name}: {result.message}"
    elif isinstance(result, TokenIssued):
        reply.token.token_id, reply.token.issued_ms = result.token_id, result.issued_ms
    elif isinstance(result, TokenRevoked):
        reply.token.token_id, reply.token.revoked = result.token_id, result.revoked
    elif not fill_workflow_reply(reply, result):
        raise AssertionError(f"unexpected result {result!r}")
    return reply


def error_reply(request_id: int, error: NodeError) -> client_pb2.CommandReply:
    return client_pb2.CommandReply(
        request_id=request_id, code=error.code.value[0], message=error.message,
        leader_id=error.leader, leader_address=error.leader_address, maybe_applied=error.maybe_applied,
    )


async def _abort(context, error: NodeError, node_id: int):
    """End the call with the error's status. The metadata says a node answered
    (not the network), and where the leader is when that is known."""
    metadata = [(NODE_METADATA, str(node_id))]
    if error.maybe_applied:
        metadata.append((MAYBE_APPLIED_METADATA, "1"))
    if error.leader != NONE:
        metadata.append((LEADER_METADATA, f"{error.leader} {error.leader_address}"))
    await context.abort(error.code, error.message, trailing_metadata=tuple(metadata))


def guarded(permission: Permission):
    """The RPC needs `permission`: the caller's token is checked before anything
    else runs. Every RPC of a service carries one (tests/test_access.py checks)."""

    def wrap(method):
        @functools.wraps(method)
        async def call(self, request, context):
            await self._authorize(context, permission)
            return await method(self, request, context)

        call.permission = permission
        return call

    return wrap


class _NodeService:
    """What the services share: the node they serve, who may call them, and ending
    a call with an error the node reports itself."""

    def __init__(self, node: RaftNode, access: Access) -> None:
        self.node = node
        self.access = access

    async def _fail(self, context, code: grpc.StatusCode, message: str):
        await _abort(context, NodeError(code, message), self.node.id)

    async def _principal(self, context) -> Principal:
        if not self.access.enabled:
            return INSECURE
        try:
            return self.access.authenticate(context.invocation_metadata())
        except AccessDenied as denied:
            await self._fail(context, denied.code, denied.message)

    async def _authorize(self, context, permission: Permission, queue: str | None = None) -> Principal:
        principal = await self._principal(context)
        try:
            self.access.check(principal, permission, queue)
        except AccessDenied as denied:
            await self._fail(context, denied.code, denied.message)
        return principal


class ClientService(_NodeService, client_pb2_grpc.ClientServicer):
    """Each command gets its own reply: bad input is INVALID_ARGUMENT naming the field,
    and an exception nobody expected is that command's INTERNAL, logged with its
    traceback and counted; it never ends a call that carries other commands."""

    def __init__(self, node: RaftNode, access: Access) -> None:
        super().__init__(node, access)
        self.internal_errors = 0  # commands answered INTERNAL since start: each one is a bug

    def _internal(self, request_id: int, error: BaseException) -> NodeError:
        """The answer to a command that met a bug: counted, logged with the traceback."""
        self.internal_errors += 1
        log.error(
            "node %d: command %d failed unexpectedly (%d such since start)", self.node.id, request_id,
            self.internal_errors, exc_info=error,
        )
        return NodeError(grpc.StatusCode.INTERNAL, f"node {self.node.id} failed on this command: {error!r}")

    def _permit(self, principal: Principal, op, session_id: int) -> None:
        """NodeError unless the caller may propose `op`: writes need WRITE, token
        ops ADMIN, a worker's reports WORK on the queue of the task they name, and
        the session must be the caller's own."""
        if not self.access.enabled:
            return
        self._still_valid(principal)
        node = self.node
        owner = node.machine.session_owner(session_id)
        if owner is None and node.node is not None and node.node.role is Role.LEADER and not node.state_is_current():
            # Just elected, with committed entries not applied yet: the session may be
            # one of them, and whose it is cannot be told yet. Fail closed; the
            # client retries in a moment.
            raise NodeError(grpc.StatusCode.UNAVAILABLE,
                            f"node {node.id} was just elected and is applying its log; retry")
        if owner is not None and owner != principal.token_id and not principal.may(Permission.ADMIN):
            raise NodeError(grpc.StatusCode.PERMISSION_DENIED,
                            f"session {session_id} belongs to another token; open a session of your own")
        kind = type(op)
        if kind in _TASK_OPS:
            # A task that is gone (finished, timed out, its workflow closed) goes on to
            # the engine, which answers STALE_TASK, or the session's cache, which
            # answers a retry of a report that applied. A report on a task it does not
            # know cannot be forged: it needs the hand-out's secret.
            queue = node.machine.workflow.task_queue_of(op.task_id)
            if queue is None:
                queue = next(iter(principal.queues), None)
            permission = Permission.WORK
        else:
            queue, permission = None, Permission.ADMIN if kind in _ADMIN_OPS else Permission.WRITE
        try:
            self._check(principal, permission, queue)
        except NodeError as denied:
            if kind in _TASK_OPS and principal.may(Permission.WORK, next(iter(principal.queues), None)):
                # Not the queue's name: a worker must not learn other queues by probing task ids.
                raise NodeError(denied.code, f"token {principal.token_id} (worker) may not report on task "
                                f"{op.task_id}: it is not on one of its task queues") from None
            raise

    def _still_valid(self, principal: Principal) -> None:
        """NodeError unless the token a stream opened with was not revoked or expired since."""
        if not self.access.still_valid(principal):
            raise NodeError(grpc.StatusCode.UNAUTHENTICATED, f"token {principal.token_id} was revoked or expired")

    def _check(self, principal: Principal, permission: Permission, queue: str | None = None) -> None:
        try:
            self.access.check(principal, permission, queue)
        except AccessDenied as denied:
            raise NodeError(denied.code, denied.message) from None

    def _submit(self, cmd: client_pb2.Command, principal: Principal) -> asyncio.Future:
        """The command's future from the node; raises NodeError only."""
        try:
            op = op_from_proto(cmd)
            self._permit(principal, op, cmd.session_id)
            return self.node.submit(op, session_id=cmd.session_id, seq=cmd.seq, ack_floor=cmd.ack_floor)
        except CommandError as exc:
            raise NodeError(grpc.StatusCode.INVALID_ARGUMENT, str(exc)) from None
        except NodeError:
            raise
        except Exception as exc:
            raise self._internal(cmd.request_id, exc) from exc

    def _reply(self, request_id: int, future: asyncio.Future) -> client_pb2.CommandReply:
        """The reply for a finished command or read on ExecuteStream."""
        try:
            if future.cancelled():
                return error_reply(request_id, NodeError(grpc.StatusCode.CANCELLED, "cancelled"))
            error = future.exception()
            if error is not None:
                if not isinstance(error, NodeError):
                    error = self._internal(request_id, error)
                return error_reply(request_id, error)
            result = future.result()
            if isinstance(result, client_pb2.ReadReply):
                return client_pb2.CommandReply(request_id=request_id, read=result)
            return reply_for(request_id, *result)
        except Exception as exc:
            return error_reply(request_id, self._internal(request_id, exc))

    @guarded(Permission.STATUS)
    async def OpenSession(self, request, context):
        """The session belongs to the caller's token: others may not use it, and
        sessions it opens past its quota push out only its own."""
        principal = await self._principal(context)
        owner = principal.token_id if self.access.enabled else ""
        try:
            index, result = await self.node.submit(OpenSession(owner))
        except NodeError as error:
            await _abort(context, error, self.node.id)
        assert isinstance(result, SessionOpened), result
        return client_pb2.OpenSessionReply(session_id=result.session_id, leader_id=self.node.id)

    @guarded(Permission.STATUS)  # each command is checked by what it does (_permit)
    async def Execute(self, request, context):
        principal = await self._principal(context)
        try:
            index, result = await self._submit(request, principal)
            reply = reply_for(request.request_id, index, result)
        except NodeError as error:
            await _abort(context, error, self.node.id)
        except Exception as exc:  # a bug met by this command; the aborts above raise outside this try
            await _abort(context, self._internal(request.request_id, exc), self.node.id)
        if reply.code:
            await self._fail(context, status_code(reply.code), reply.message)
        return reply

    @guarded(Permission.STATUS)  # each command is checked by what it does (_permit)
    async def ExecuteStream(self, request_iterator, context):
        """Batches of commands in, batches of replies out in completion order (each
        write carries every reply ready by then); the stream ends once the
        client has finished sending and every command has its reply."""
        principal = await self._principal(context)
        replies: asyncio.Queue[client_pb2.CommandReply | None] = asyncio.Queue()
        inflight = 0
        reading = True
        reads: set[asyncio.Task] = set()  # cancelled if the stream ends first: nobody would get the answer

        def done(request_id: int, future: asyncio.Future) -> None:
            nonlocal inflight
            inflight -= 1
            replies.put_nowait(self._reply(request_id, future))

        async def read() -> None:
            nonlocal inflight, reading
            try:
                async for batch in request_iterator:
                    for cmd in batch.commands:
                        try:
                            if cmd.WhichOneof("op") == "read":
                                self._still_valid(principal)
                                self._check(principal, Permission.READ)
                                future = asyncio.ensure_future(self._read(cmd.read))
                                reads.add(future)
                                future.add_done_callback(reads.discard)
                            else:
                                future = self._submit(cmd, principal)
                        except NodeError as error:
                            replies.put_nowait(error_reply(cmd.request_id, error))
                            continue
                        inflight += 1
                        future.add_done_callback(lambda f, rid=cmd.request_id: done(rid, f))
            finally:
                reading = False
                replies.put_nowait(None)

        reader = asyncio.create_task(read())
        try:
            while reading or inflight or not replies.empty():
                batch = [await replies.get()]
                while not replies.empty():
                    batch.append(replies.get_nowait())
                batch = [r for r in batch if r is not None]
                if batch:
                    await context.write(client_pb2.ReplyBatch(replies=batch))
        finally:
            reader.cancel()
            for task in list(reads):
                task.cancel()

    @guarded(Permission.READ)
    async def Read(self, request, context):
        try:
            return await self._read(request)
        except NodeError as error:
            await _abort(context, error, self.node.id)

    async def _read(self, request: client_pb2.ReadRequest) -> client_pb2.ReadReply:
        """The answer at the request's consistency level (the unary Read and reads
        on ExecuteStream); NodeError when this node cannot give it."""
        node = self.node
        if not request.key:
            raise NodeError(grpc.StatusCode.INVALID_ARGUMENT, "key is empty")
        consistency = _CONSISTENCY.get(request.consistency)
        if consistency is None:
            raise NodeError(grpc.StatusCode.INVALID_ARGUMENT, f"unknown consistency {request.consistency}")
        if consistency != "stale":
            index = await node.read_index(consistency)
            await node.wait_applied(index)
        kv = node.machine.get(request.key)
        reply = client_pb2.ReadReply(
            found=kv is not None, applied_index=node.machine.applied_index, node_id=node.id,
            stale=consistency == "stale", leader_id=node.node.leader, since_leader_s=node.since_leader_s(),
            revision=node.machine.revision,
        )
        kv_to_proto(kv, reply.kv)
        return reply


class AdminService(_NodeService, admin_pb2_grpc.AdminServicer):
    def __init__(self, node: RaftNode, access: Access) -> None:
        super().__init__(node, access)
        self._state_hash_lock = asyncio.Lock()
        self._state_hash_waiting = 0

    @guarded(Permission.STATUS)
    async def Status(self, request, context):
        rn = self.node
        node = rn.node
        st = node.status()
        now = time.monotonic()
        cfg = rn.config
        reply = admin_pb2.StatusReply(
            id=rn.id, address=cfg.client_address, peer_address=cfg.address, insecure=cfg.insecure,
            calls_refused=dict(self.access.refused), cluster_id=cfg.cluster_id, role=st.role.value,
            term=st.term, leader_id=st.leader, leader_address=cfg.client_address_of(st.leader),
            last_index=st.last_index, commit_index=st.commit, applied_index=rn.machine.applied_index,
            snapshot_index=st.snapshot_index, leader_unknown_s=rn.leader_unknown_s(), pid=os.getpid(),
            pending_proposals=rn.pending_proposals(), version=VERSION, refused=dict(rn.refused),
            faults=[fault_to_proto(f) for f in rn.transport.faults.faults()],
        )
        for peer_id, address in sorted(rn.config.peers.items()):
            if peer_id == rn.id:
                continue
            link = rn.transport.links[peer_id]
            heard = rn.transport.last_heard.get(peer_id)
            reply.peers.append(admin_pb2.PeerState(
                id=peer_id, address=cfg.client_address_of(peer_id), peer_address=address, connected=link.connected and not rn.transport.faults.cut(peer_id),
                last_heard_s=-1.0 if heard is None else now - heard, progress=st.progress.get(peer_id, ""),
            ))
        return reply

    @guarded(Permission.ADMIN)
    async def TransferLeader(self, request, context):
        rn = self.node
        node = rn.node
        target = request.target_id
        if target not in rn.config.peers:
            await self._fail(
                context, grpc.StatusCode.INVALID_ARGUMENT, f"node {target} is not a member; members are {sorted(rn.config.peers)}"
            )
        if node.role is not Role.LEADER:
            await _abort(context, rn.leader_error(), rn.id)
        try:
            node.transfer_leadership(target)
        except RaftError as exc:
            await self._fail(context, grpc.StatusCode.FAILED_PRECONDITION, str(exc))
        rn._poke()
        # The transfer is given up after one election timeout; wait a little longer.
        deadline = time.monotonic() + 3 * rn.config.election_ticks * rn.tick_s
        while time.monotonic() < deadline:
            if node.leader == target or (node.role is not Role.LEADER and node.leader not in (NONE, rn.id)):
                return admin_pb2.TransferReply(leader_id=node.leader, term=node.term)
            await asyncio.sleep(rn.tick_s)  # polls the node's own state once per tick
        await self._fail(
            context, grpc.StatusCode.DEADLINE_EXCEEDED,
            f"node {target} did not take over within {3 * rn.config.election_ticks * rn.config.tick_ms} ms; "
            f"node {node.leader or 'unknown'} leads",
        )

    @guarded(Permission.ADMIN)
    async def SetFaults(self, request, context):
        if not self.node.config.allow_faults:
            await self._fail(
                context, grpc.StatusCode.FAILED_PRECONDITION,
                f"node {self.node.id} does not allow fault injection: start it with allow_faults = true "
                "(`raftflow cluster up` does, for local clusters)",
            )
        transport = self.node.transport
        try:
            faults = [
                fault_from_proto(f) for f in request.faults
            ]
            transport.faults.set(faults, replace=request.replace)
        except ValueError as exc:
            await self._fail(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))
        now = transport.faults.faults()
        log.info("node %d network faults: %s", self.node.id, describe_faults(now) or "none")
        return admin_pb2.FaultsReply(faults=[fault_to_proto(f) for f in now])

    @guarded(Permission.ADMIN)
    async def StateHash(self, request, context):
        """Captured on the loop (pointer copies), encoded and hashed in a thread: a
        large state must not hold the loop (and with it the leadership). One at a
        time; beyond MAX_STATE_HASH_WAITING callers waiting, RESOURCE_EXHAUSTED."""
        if self._state_hash_waiting >= MAX_STATE_HASH_WAITING:
            await self._fail(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                             f"{self._state_hash_waiting} StateHash calls are waiting; at most {MAX_STATE_HASH_WAITING}")
        self._state_hash_waiting += 1
        try:
            async with self._state_hash_lock:
                view = self.node.machine.capture()
                digest = await asyncio.get_running_loop().run_in_executor(None, view.hash)
        finally:
            self._state_hash_waiting -= 1
        return admin_pb2.StateHashReply(applied_index=view.applied_index, hash=digest)

    @guarded(Permission.ADMIN)
    async def ListTokens(self, request, context):
        """This node's applied view: a token issued a moment ago shows once applied here."""
        reply = admin_pb2.ListTokensReply()
        for record in self.node.machine.auth.tokens():
            reply.tokens.append(admin_pb2.TokenInfo(
                token_id=record.token_id, role=record.role.value, queues=list(record.queues), name=record.name,
                issued_ms=record.issued_ms, expires_ms=record.expires_ms,
            ))
        return reply


class WorkflowService(_NodeService, workflow_pb2_grpc.WorkflowsServicer):
    """Reads of the engine and the long polls; all served by the leader after a
    ReadIndex round (proto/workflow.proto). The long polls wait on `driver`."""

    def __init__(self, node: RaftNode, driver: WorkflowDriver, access: Access) -> None:
        super().__init__(node, access)
        self.driver = driver
        self.long_polls = 0  # PollActivityTasks and WaitWorkflow calls waiting now

    async def _long_poll(self, context, wait):
        """Run one long poll (`wait()`), counted: beyond max_long_polls, RESOURCE_EXHAUSTED."""
        limit = self.node.config.max_long_polls
        if self.long_polls >= limit:
            await self._fail(context, grpc.StatusCode.RESOURCE_EXHAUSTED,
                             f"{self.long_polls} long polls are waiting on node {self.node.id}; "
                             f"max_long_polls={limit}: retry with backoff")
        self.long_polls += 1
        try:
            return await wait()
        finally:
            self.long_polls -= 1

    async def _abort(self, context, error: NodeError):
        await _abort(context, error, self.node.id)

    async def _invalid(self, context, message: str):
        await self._fail(context, grpc.StatusCode.INVALID_ARGUMENT, message)

    async def _read_barrier(self, context) -> None:
        """Leader only, and the state as of every command acknowledged before now."""
        node = self.node
        try:
            index = await node.read_index("linearizable")
            await node.wait_applied(index)
        except NodeError as error:
            await self._abort(context, error)

    async def _described(self, context, workflow_id: str) -> WorkflowDescription:
        if not workflow_id:
            await self._invalid(context, "workflow_id is empty")
        await self._read_barrier(context)
        described = self.node.machine.workflow.describe(workflow_id)
        if described is None:
            await self._abort(context, NodeError(grpc.StatusCode.NOT_FOUND, f"no workflow {workflow_id!r}"))
        return described

    @guarded(Permission.READ)
    async def Describe(self, request, context):
        return describe_reply(await self._described(context, request.workflow_id))

    @guarded(Permission.READ)
    async def History(self, request, context):
        described = await self._described(context, request.workflow_id)
        reply = workflow_pb2.HistoryReply()
        summary_of(described, reply.summary)
        for event in self.node.machine.workflow.history(request.workflow_id):
            reply.events.append(workflow_pb2.Event(
                event_id=event.event_id, time_ms=event.time_ms, event_type=event.type.value,
                attributes=msgpack.packb(event_attributes(event), use_bin_type=True),
            ))
        return reply

    @guarded(Permission.READ)
    async def List(self, request, context):
        status = None
        if request.status:
            try:
                status = Status(request.status)
            except ValueError:
                await self._invalid(
                    context, f"status {request.status!r} is not one of {', '.join(s.value for s in Status)}"
                )
        limit = request.limit or DEFAULT_LIST_LIMIT
        if limit > MAX_LIST_LIMIT:
            await self._invalid(context, f"limit={limit} is above {MAX_LIST_LIMIT}")
        await self._read_barrier(context)
        reply = workflow_pb2.ListReply()
        for record in self.node.machine.workflow.list_workflows(status, limit):
            summary_of(record, reply.workflows.add())
        return reply

    @guarded(Permission.STATUS)  # and WORK on the queue it names
    async def PollActivityTasks(self, request, context):
        if not request.task_queue:
            await self._invalid(context, "task_queue is empty")
        await self._authorize(context, Permission.WORK, request.task_queue)
        if not 1 <= request.max_tasks <= MAX_POLL_TASKS:
            await self._invalid(context, f"max_tasks={request.max_tasks} must be from 1 to {MAX_POLL_TASKS}")
        if request.wait_ms > MAX_WAIT_MS:
            await self._invalid(context, f"wait_ms={request.wait_ms} is above {MAX_WAIT_MS}")
        try:
            tasks = await self._long_poll(context, lambda: self.driver.poll(
                request.task_queue, request.max_tasks, request.wait_ms / 1000, request.identity
            ))
        except NodeError as error:
            await self._abort(context, error)
        return workflow_pb2.PollReply(tasks=[task_to_proto(grant.task, grant.secret) for grant in tasks])

    @guarded(Permission.READ)
    async def WaitWorkflow(self, request, context):
        if request.wait_ms > MAX_WAIT_MS:
            await self._invalid(context, f"wait_ms={request.wait_ms} is above {MAX_WAIT_MS}")
        await self._described(context, request.workflow_id)
        try:
            described = await self._long_poll(
                context, lambda: self.driver.wait_closed(request.workflow_id, request.run_id, request.wait_ms / 1000)
            )
        except NodeError as error:
            await self._abort(context, error)
        if described is None:
            await self._abort(context, NodeError(
                grpc.StatusCode.NOT_FOUND, f"no run {request.run_id} of workflow {request.workflow_id!r}"
                if request.run_id else f"no workflow {request.workflow_id!r}",
            ))
        return workflow_pb2.WaitReply(closed=described.status in CLOSED, workflow=describe_reply(described))
