"""The raftflow client: leader discovery, retries within a deadline, and
exactly-once commands through a session (Raft thesis §6.3).

    client = Client(["127.0.0.1:7001", "127.0.0.1:7002", "127.0.0.1:7003"])
    client.put("greeting", b"hello")
    client.get("greeting").value            # b"hello"

`AsyncClient` is the same API for asyncio code. Commands travel on one stream per
node (many in flight, matched by request id); each carries (session id, sequence
number) so that a retry after a timeout or a leader change is answered from the
state machine's record instead of being applied twice. Reads go on the same
stream, without a session (a read changes nothing: retrying one is always safe).

Failures are exceptions whose message names the cause in one line:
`Unavailable` (no node reachable, no quorum, no leader), `InvalidArgument`,
`Busy` (the leader's queue is full and stayed full until the deadline),
`OutcomeUnknown` (the deadline passed while a command may have been applied).
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
from collections.abc import Sequence

import grpc

from raftflow.cluster.protocol.wire import (
    CHANNEL_OPTIONS,
    COMMAND_BATCH_BYTES_MAX,
    LEADER_METADATA,
    NODE_METADATA,
    parse_address,
    status_code,
)
from raftflow.cluster.client.errors import (
    ACCESS_ERRORS,
    Busy,
    InvalidArgument,
    OutcomeUnknown,
    RaftflowError,
    REJECTION_ERRORS,
    Unavailable,
    rejection,
)
from raftflow.cluster.client.durations import Duration, seconds
from raftflow.cluster.client.results import (
    IssuedToken,
    TokenInfo,
    Consistency,
    KeyValue,
    LeaderTransfer,
    NodeStatus,
    PeerState,
    ReadResult,
    StateHash,
    WriteResult,
)
from raftflow.cluster.client.sync import run_sync
from raftflow.cluster.security.credentials import Credentials
from raftflow.cluster.security.tokens import new_token
from raftflow.statemachine.auth import AccessRole
from raftflow.cluster.protocol.faults import PeerFault, fault_from_proto, fault_to_proto
from raftflow.raft.types import Role
from raftflow.cluster.client.workflows import AsyncWorkflows, Workflows
from raftflow.raft.config import ConfigError
from raftflow.proto import admin_pb2, admin_pb2_grpc, client_pb2, client_pb2_grpc

CONSISTENCY_LEVELS = {
    Consistency.LINEARIZABLE: client_pb2.LINEARIZABLE, Consistency.LEASE: client_pb2.LEASE,
    Consistency.STALE: client_pb2.STALE,
}


def _kv(message, present: bool) -> KeyValue | None:
    if not present:
        return None
    return KeyValue(message.key, message.value, message.create_revision, message.mod_revision, message.version)


def parse_endpoints(text: str) -> list[str]:
    endpoints = [e.strip() for e in text.split(",") if e.strip()]
    if not endpoints:
        raise InvalidArgument("no endpoints given; pass host:port[,host:port...]")
    for e in endpoints:
        try:
            parse_address(e, what="endpoint")
        except ConfigError as exc:
            raise InvalidArgument(str(exc)) from None
    return endpoints


class _Stream:
    """One ExecuteStream call to one node: many commands in flight. gRPC allows
    one write at a time per call, so commands go through an outbox that gRPC
    drains itself (the request iterator)."""

    def __init__(self, stub: client_pb2_grpc.ClientStub) -> None:
        self.loop = asyncio.get_running_loop()
        self._outbox: asyncio.Queue[client_pb2.Command | None] = asyncio.Queue()
        self.call = stub.ExecuteStream(self._requests())
        self.pending: dict[int, asyncio.Future] = {}
        self.failed: BaseException | None = None
        self.reader = asyncio.create_task(self._read())

    async def _requests(self):
        outbox = self._outbox
        while True:
            batch = [await outbox.get()]
            while not outbox.empty():  # everything queued meanwhile rides along
                batch.append(outbox.get_nowait())
            closing = None in batch
            commands = [cmd for cmd in batch if cmd is not None]
            # Each CommandBatch stays under COMMAND_BATCH_BYTES_MAX (a node refuses a
            # message over MAX_REQUEST_BYTES whole); one command always fits alone.
            start, size = 0, 0
            for n, cmd in enumerate(commands):
                cmd_size = cmd.ByteSize()
                if n > start and size + cmd_size > COMMAND_BATCH_BYTES_MAX:
                    yield client_pb2.CommandBatch(commands=commands[start:n])
                    start, size = n, 0
                size += cmd_size
            if start < len(commands):
                yield client_pb2.CommandBatch(commands=commands[start:])
            if closing:
                return

    async def _read(self) -> None:
        try:
            async for batch in self.call:
                for reply in batch.replies:
                    future = self.pending.pop(reply.request_id, None)
                    if future is not None and not future.done():
                        future.set_result(reply)
            error: BaseException = ConnectionError("the node closed the stream")
        except grpc.aio.AioRpcError as exc:
            error = exc
        except asyncio.CancelledError:
            error = ConnectionError("stream closed")
        self.failed = error
        for future in self.pending.values():
            if not future.done():
                future.set_exception(error)
        self.pending.clear()

    async def send(self, cmd: client_pb2.Command, timeout: float) -> client_pb2.CommandReply:
        """The reply to `cmd`; asyncio.TimeoutError after `timeout` seconds (a
        timer on the future: cheaper than wait_for's task per command)."""
        if self.failed is not None:
            raise self.failed
        loop = self.loop
        future = loop.create_future()
        self.pending[cmd.request_id] = future
        self._outbox.put_nowait(cmd)
        timer = loop.call_later(timeout, _expire, future)
        try:
            return await future
        finally:
            timer.cancel()
            self.pending.pop(cmd.request_id, None)

    def close(self) -> None:
        """End the call and fail what waits on it now: the reader may never run (a
        stream closed right after it opened, when another call on the same node
        found it gone), and a command must not wait out its whole timeout for it."""
        self._outbox.put_nowait(None)
        self.call.cancel()
        self.reader.cancel()
        if self.failed is None:
            self.failed = ConnectionError("stream closed")
        for future in self.pending.values():
            if not future.done():
                future.set_exception(self.failed)
        self.pending.clear()


def _expire(future: asyncio.Future) -> None:
    if not future.done():
        future.set_exception(asyncio.TimeoutError())


def _describe_rpc_error(exc: BaseException, plaintext: bool = False) -> str:
    if isinstance(exc, grpc.aio.AioRpcError):
        details = exc.details() or exc.code().name
        if plaintext and "Socket closed" in details:
            return (
                "not reachable: it closed the connection (a node that speaks TLS, the default, closes plaintext "
                "connections; use the cluster's CA instead of --insecure / Credentials.plaintext())"
            )
        if "Connection refused" in details:
            return "not reachable (connection refused)"
        if "CERTIFICATE_VERIFY_FAILED" in details:
            return "not trusted: its certificate is not signed by the CA this client was given (TLS handshake failed)"
        if "handshake" in details.lower() or "WRONG_VERSION_NUMBER" in details:
            return (
                "not reachable: the TLS handshake failed (a plaintext node, started with --insecure, "
                "needs Credentials.plaintext(); a TLS node needs its cluster's CA)"
            )
        if "DNS resolution failed" in details or "Name or service not known" in details:
            return "not reachable (unknown host)"
        if exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            return "not answering (timed out)"
        return f"not reachable ({details.splitlines()[0][:120]})"
    return f"not reachable ({exc})"


_MAYBE_APPLIED = "; an earlier attempt of this command may have been applied"


def _raise_if_refused(exc: BaseException, sent: bool = False) -> None:
    """A stream the node refused whole (no token, or one it does not accept): a
    retry on another node gets the same answer, so it is the answer."""
    if isinstance(exc, grpc.aio.AioRpcError) and exc.code() in ACCESS_ERRORS:
        raise ACCESS_ERRORS[exc.code()](exc.details() + (_MAYBE_APPLIED if sent else "")) from None


def _from_node(exc: grpc.aio.AioRpcError) -> bool:
    return any(key == NODE_METADATA for key, _ in (exc.trailing_metadata() or ()))


_NETWORK_CODES = (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED)


def _network_failure(exc: grpc.aio.AioRpcError) -> bool:
    """The call never reached a node's handler, or the connection broke."""
    if _from_node(exc):
        return False
    if exc.code() not in _NETWORK_CODES:
        raise RaftflowError(f"the node failed the call: {exc.code().name}: {exc.details()}") from None
    return True


def _leader_hint(exc: grpc.aio.AioRpcError) -> str | None:
    for key, value in exc.trailing_metadata() or ():
        if key == LEADER_METADATA:
            _, _, address = value.partition(" ")
            return address or None
    return None


class AsyncClient:
    """A client for asyncio code. Not shared between event loops."""

    def __init__(
        self,
        endpoints: list[str],
        *,
        credentials: Credentials | None = None,
        timeout: Duration = 5.0,
        no_leader_timeout: Duration = 1.0,
        max_backoff: Duration = 0.2,
        rng: random.Random | None = None,
    ) -> None:
        """Durations are a `datetime.timedelta` or seconds.
        `credentials`: the CA the nodes' certificates are checked against and the
        bearer token sent on every call. None: `Credentials.default()` (the
        RAFTFLOW_CA_FILE / RAFTFLOW_TOKEN variables, else the local cluster in
        ./.raftflow, else plaintext with no token).
        `timeout`: how long one call may take in all, retries included.
        `no_leader_timeout`: how long to wait for a leader (or for any node to
        answer) before giving up with `Unavailable` naming the cause.
        `max_backoff`: the longest pause between two retries (they start at 5 ms
        and double, with jitter)."""
        if not endpoints:
            raise InvalidArgument("no endpoints given")
        self.timeout = seconds(timeout, "timeout")
        self.no_leader_timeout = seconds(no_leader_timeout, "no_leader_timeout")
        self.max_backoff = seconds(max_backoff, "max_backoff", zero=True)
        self.endpoints = list(endpoints)
        self.credentials = credentials if credentials is not None else Credentials.default()
        self._rng = rng or random.Random()
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._streams: dict[str, _Stream] = {}
        self._leader: str | None = None
        self._session_id = 0
        self._session_lock = asyncio.Lock()
        self._seqs = itertools.count(1)
        self._outstanding: set[int] = set()
        self._request_ids = itertools.count(1)
        self._next_endpoint = 0
        self._workflows = None

    async def __aenter__(self) -> AsyncClient:
        return self

    @property
    def workflows(self) -> AsyncWorkflows:
        """Workflow commands, reads and long polls (cluster/client/workflows.py)."""
        if self._workflows is None:
            self._workflows = AsyncWorkflows(
                execute=self._execute, call_leader=self._call_leader, timeout=lambda: self.timeout,
            )
        return self._workflows

    async def __aexit__(self, *exc) -> None:
        await self.close()

    async def close(self) -> None:
        streams = list(self._streams.values())
        self._streams.clear()
        for stream in streams:
            stream.close()
        # Let gRPC's request-iterator tasks see the end of their outbox and finish.
        await asyncio.gather(*(s.reader for s in streams), return_exceptions=True)
        await asyncio.sleep(0)
        await asyncio.gather(*(ch.close() for ch in self._channels.values()), return_exceptions=True)
        self._channels.clear()

    # --- plumbing ---------------------------------------------------------------------

    def _channel(self, endpoint: str) -> grpc.aio.Channel:
        channel = self._channels.get(endpoint)
        if channel is None:
            channel = self._channels[endpoint] = self.credentials.channel(endpoint, CHANNEL_OPTIONS)
        return channel

    def _stream(self, endpoint: str) -> _Stream:
        stream = self._streams.get(endpoint)
        if stream is None or stream.failed is not None:
            if stream is not None:
                stream.close()  # ends its request iterator, or gRPC's task for it stays pending
            stream = self._streams[endpoint] = _Stream(client_pb2_grpc.ClientStub(self._channel(endpoint)))
        return stream

    def _candidate(self) -> str:
        if self._leader is not None:
            return self._leader
        endpoint = self.endpoints[self._next_endpoint % len(self.endpoints)]
        self._next_endpoint += 1
        return endpoint

    def _follow(self, leader_address: str) -> None:
        if leader_address and leader_address not in self.endpoints:
            self.endpoints.append(leader_address)
        self._leader = leader_address or None

    def _lost(self, endpoint: str) -> None:
        if self._leader == endpoint:
            self._leader = None
        stream = self._streams.pop(endpoint, None)
        if stream is not None:
            stream.close()

    async def _backoff(self, attempt: int, deadline: float) -> None:
        delay = min(self.max_backoff, 0.005 * 2 ** min(attempt, 6)) * (0.5 + self._rng.random())
        await asyncio.sleep(max(0.0, min(delay, deadline - time.monotonic())))

    # --- commands -------------------------------------------------------------------

    async def _ensure_session(self, deadline: float) -> int:
        async with self._session_lock:
            if self._session_id == 0:
                reply = await self._unary(
                    lambda stub: stub.OpenSession(client_pb2.OpenSessionRequest(), timeout=self._remaining(deadline)),
                    deadline,
                )
                self._session_id = reply.session_id
            return self._session_id

    def _remaining(self, deadline: float) -> float:
        return max(0.001, deadline - time.monotonic())

    async def _call_leader(self, stub, method: str, request, deadline: float):
        """One unary RPC `stub(channel).method(request)` on the leader, following
        hints and retrying until the deadline or the no-leader grace ends."""
        return await self._unary(
            lambda s: getattr(s, method)(request, timeout=self._remaining(deadline)), deadline, stub=stub
        )

    async def _unary(self, call, deadline: float, *, stub=client_pb2_grpc.ClientStub):
        """Run `call(stub)` against the leader, following hints and retrying until
        the deadline or the no-leader grace ends."""
        tracker = _Tracker(self, deadline)
        while True:
            endpoint = self._candidate()
            try:
                return await call(stub(self._channel(endpoint)))
            except grpc.aio.AioRpcError as exc:
                if _network_failure(exc):
                    self._lost(endpoint)
                    tracker.unreachable(endpoint, _describe_rpc_error(exc, self.credentials.insecure))
                elif self._refused(tracker, endpoint, exc.code(), exc.details(), _leader_hint(exc)):
                    continue
            await tracker.wait()

    def _refused(self, tracker: _Tracker, endpoint: str, code: grpc.StatusCode, message: str, leader: str | None) -> bool:
        """A node refused a request that any node may be asked again (a unary call, a
        read): True to send it to the leader it named at once; False to wait and
        retry (no leader, busy). Raises the node's answer when a retry cannot
        change it (INVALID_ARGUMENT, NOT_FOUND, ...) or the code is unknown."""
        if code == grpc.StatusCode.FAILED_PRECONDITION and leader:
            self._follow(leader)
            tracker.redirected()
            return True
        if code == grpc.StatusCode.UNAVAILABLE:
            self._lost(endpoint)
            tracker.no_leader(message)
        elif code == grpc.StatusCode.RESOURCE_EXHAUSTED:
            tracker.busy(message)
        elif code in REJECTION_ERRORS:
            raise rejection(code, message) from None
        else:
            raise RaftflowError(f"{code.name}: {message}") from None
        return False

    async def _command(self, build) -> WriteResult:
        reply = await self._execute(build)
        return WriteResult(
            reply.index, reply.revision, reply.succeeded,
            _kv(reply.prev, reply.HasField("prev")), _kv(reply.current, reply.HasField("current")),
        )

    async def _execute(self, build) -> client_pb2.CommandReply:
        """Run one command exactly once: the same (session, seq) on every retry.
        `build(cmd)` sets the operation on a Command and returns it; the reply's
        code is OK (any refusal is raised)."""
        deadline = time.monotonic() + self.timeout
        session_id = await self._ensure_session(deadline)
        seq = next(self._seqs)
        self._outstanding.add(seq)
        tracker = _Tracker(self, deadline)
        sent = False  # once sent, the command may have been applied
        try:
            while True:
                endpoint = self._candidate()
                cmd = build(client_pb2.Command(
                    request_id=next(self._request_ids), session_id=session_id, seq=seq,
                    ack_floor=min(self._outstanding),
                ))
                try:
                    reply = await self._stream(endpoint).send(cmd, self._remaining(deadline))
                except (grpc.aio.AioRpcError, ConnectionError) as exc:
                    _raise_if_refused(exc, sent)
                    sent = True
                    self._lost(endpoint)
                    tracker.unreachable(endpoint, _describe_rpc_error(exc, self.credentials.insecure), outcome_unknown=sent)
                    await tracker.wait()
                    continue
                except asyncio.TimeoutError:
                    raise OutcomeUnknown(
                        f"no reply within {self.timeout:.1f}s; the command may or may not have been applied"
                    ) from None
                code = status_code(reply.code)
                sent = sent or reply.maybe_applied  # in the log: only this (session, seq) may retry it
                if code == grpc.StatusCode.OK:
                    return reply
                if reply.HasField("workflow"):  # the engine refused it; a retry gets the same answer
                    raise rejection(code, reply.message)
                if code == grpc.StatusCode.FAILED_PRECONDITION and reply.leader_address:
                    self._follow(reply.leader_address)
                    tracker.redirected()
                    continue
                if code == grpc.StatusCode.INVALID_ARGUMENT:
                    raise InvalidArgument(reply.message)
                if code in ACCESS_ERRORS:
                    raise ACCESS_ERRORS[code](reply.message + (_MAYBE_APPLIED if sent else ""))
                if code == grpc.StatusCode.NOT_FOUND:  # the session expired
                    if sent:
                        raise OutcomeUnknown(f"{reply.message}; an earlier attempt may have been applied")
                    self._session_id = 0
                    self._outstanding.discard(seq)
                    session_id = await self._ensure_session(deadline)
                    seq = next(self._seqs)
                    self._outstanding.add(seq)
                    continue
                if code == grpc.StatusCode.UNAVAILABLE:
                    self._lost(endpoint)
                    tracker.no_leader(reply.message, outcome_unknown=sent)
                elif code == grpc.StatusCode.RESOURCE_EXHAUSTED:
                    tracker.busy(reply.message)
                else:
                    raise RaftflowError(f"{code.name}: {reply.message}")
                await tracker.wait()
        finally:
            self._outstanding.discard(seq)

    async def put(self, key: str, value: bytes) -> WriteResult:
        def build(cmd):
            cmd.put.key, cmd.put.value = key, value
            return cmd
        return await self._command(build)

    async def delete(self, key: str) -> WriteResult:
        def build(cmd):
            cmd.delete.key = key
            return cmd
        return await self._command(build)

    async def cas(
        self, key: str, value: bytes, *, expected_value: bytes | None = None, expected_revision: int | None = None
    ) -> WriteResult:
        if (expected_value is None) == (expected_revision is None):
            raise InvalidArgument("cas needs exactly one of expected_value and expected_revision")

        def build(cmd):
            cmd.cas.key, cmd.cas.value = key, value
            if expected_value is not None:
                cmd.cas.expected_value = expected_value
            else:
                cmd.cas.expected_revision = expected_revision
            return cmd
        return await self._command(build)

    async def get(
        self, key: str, *, consistency: Consistency | str = Consistency.LINEARIZABLE, endpoint: str | None = None,
    ) -> ReadResult:
        """The key's value at `consistency` (a Consistency or its name); `endpoint`
        asks that node, whatever its role (stale reads of a minority, say)."""
        level = CONSISTENCY_LEVELS.get(consistency) if isinstance(consistency, str) else None
        if level is None:
            raise InvalidArgument(
                f"consistency {consistency!r} is not one of {', '.join(c.value for c in Consistency)}"
            )
        deadline = time.monotonic() + self.timeout
        request = client_pb2.ReadRequest(key=key, consistency=level)
        if endpoint is not None:  # ask this node, whatever it is
            try:
                reply = await client_pb2_grpc.ClientStub(self._channel(endpoint)).Read(
                    request, timeout=self._remaining(deadline)
                )
            except grpc.aio.AioRpcError as exc:
                raise _one_node_error(endpoint, exc, self.credentials.insecure) from None
        else:
            reply = await self._read(request, deadline)
        return ReadResult(
            _kv(reply.kv, reply.found), reply.applied_index, reply.node_id, reply.stale, reply.leader_id,
            reply.since_leader_s, reply.revision,
        )

    async def _read(self, request: client_pb2.ReadRequest, deadline: float) -> client_pb2.ReadReply:
        """Read at the leader on its stream, where reads share gRPC messages with
        each other and with commands (a unary call per read costs several times
        more), following hints and retrying until the deadline or the no-leader
        grace ends. A read changes nothing: any attempt may be retried."""
        tracker = _Tracker(self, deadline)
        while True:
            endpoint = self._candidate()
            cmd = client_pb2.Command(request_id=next(self._request_ids), read=request)
            try:
                reply = await self._stream(endpoint).send(cmd, self._remaining(deadline))
            except (grpc.aio.AioRpcError, ConnectionError) as exc:
                _raise_if_refused(exc)
                self._lost(endpoint)
                tracker.unreachable(endpoint, _describe_rpc_error(exc, self.credentials.insecure))
                await tracker.wait()
                continue
            except asyncio.TimeoutError:
                raise Unavailable(f"node at {endpoint} is not answering (timed out)") from None
            code = status_code(reply.code)
            if code == grpc.StatusCode.OK:
                return reply.read
            if self._refused(tracker, endpoint, code, reply.message, reply.leader_address):
                continue
            await tracker.wait()

    # --- admin ------------------------------------------------------------------------

    async def issue_token(
        self, role: AccessRole | str, *, queues: Sequence[str] = (), name: str = "", expires_ms: int = 0,
    ) -> IssuedToken:
        """A new token for `role` (admin only). The secret is made here and only its
        SHA-256 goes to the cluster: the returned text is the one copy there is.
        `queues`: the task queues a worker token may use. `expires_ms`: the
        cluster's clock (ms since the epoch) at which it stops working; 0 never."""
        token = new_token()
        try:
            role = AccessRole(role)
        except ValueError:
            raise InvalidArgument(f"role {role!r} is not one of {', '.join(r.value for r in AccessRole)}") from None

        def build(cmd):
            t = cmd.issue_token
            t.token_id, t.role, t.secret_sha256, t.name, t.expires_ms = (
                token.token_id, role.value, token.secret_sha256, name, expires_ms
            )
            t.queues.extend(queues)
            return cmd
        reply = await self._execute(build)
        await self._applied_everywhere(reply.index)
        info = TokenInfo(token.token_id, role, tuple(queues), name, reply.token.issued_ms, expires_ms)
        return IssuedToken(token.text, info)

    async def _applied_everywhere(self, index: int) -> None:
        """Wait (within the timeout) until every node that answers has applied
        `index`: each node checks tokens against its own applied state, so a token
        used right after it was issued must not meet a node that lags behind."""
        deadline = time.monotonic() + self.timeout

        async def one(endpoint: str) -> None:
            while time.monotonic() < deadline:
                try:
                    if (await self.status(endpoint, timeout=min(1.0, self._remaining(deadline)))).applied_index >= index:
                        return
                except RaftflowError:
                    return  # down or cut off: it catches up when it is back
                await asyncio.sleep(0.005)  # another process's progress: no event to wait on

        await asyncio.gather(*(one(endpoint) for endpoint in self.endpoints))

    async def revoke_token(self, token_id: str) -> bool:
        """Revoke a token (admin only); False if there was no such token. Calls with
        it are refused from the return on, by every node that answers."""
        def build(cmd):
            cmd.revoke_token.token_id = token_id
            return cmd
        reply = await self._execute(build)
        await self._applied_everywhere(reply.index)
        return reply.token.revoked

    async def list_tokens(self) -> list[TokenInfo]:
        """The tokens issued and not revoked, by id (admin only)."""
        deadline = time.monotonic() + self.timeout
        reply = await self._call_leader(admin_pb2_grpc.AdminStub, "ListTokens", admin_pb2.ListTokensRequest(), deadline)
        return [
            TokenInfo(t.token_id, AccessRole(t.role), tuple(t.queues), t.name, t.issued_ms, t.expires_ms)
            for t in reply.tokens
        ]

    async def status(self, endpoint: str, *, timeout: Duration = 1.0) -> NodeStatus:
        """Node `endpoint`'s own view: role, term, leader, log indexes, faults."""
        limit = seconds(timeout, "timeout")
        try:
            reply = await admin_pb2_grpc.AdminStub(self._channel(endpoint)).Status(
                admin_pb2.StatusRequest(), timeout=limit, wait_for_ready=True
            )
        except grpc.aio.AioRpcError as exc:
            raise _one_node_error(endpoint, exc, self.credentials.insecure) from None
        try:
            return _node_status(reply)
        except ValueError as exc:  # a role (or fault) this client does not know: another version
            raise RaftflowError(f"node at {endpoint} sent a status this client cannot read: {exc}") from None

    async def cluster_status(self, *, timeout: Duration = 1.0) -> list[tuple[str, NodeStatus | str]]:
        """Every endpoint's status, or one line saying why it has none."""
        async def one(endpoint: str):
            try:
                return endpoint, await self.status(endpoint, timeout=timeout)
            except RaftflowError as exc:
                return endpoint, str(exc)
        return list(await asyncio.gather(*(one(e) for e in self.endpoints)))

    async def state_hash(self, endpoint: str) -> StateHash:
        """A hash of node `endpoint`'s whole state machine, and the index it is at."""
        try:
            reply = await admin_pb2_grpc.AdminStub(self._channel(endpoint)).StateHash(
                admin_pb2.StateHashRequest(), timeout=self.timeout
            )
        except grpc.aio.AioRpcError as exc:
            raise _one_node_error(endpoint, exc, self.credentials.insecure) from None
        return StateHash(reply.applied_index, reply.hash)

    async def set_faults(self, endpoint: str, faults: list[PeerFault], *, replace: bool) -> list[PeerFault]:
        """Set the network faults node `endpoint` injects toward its peers
        (replace=True with no faults heals it); the faults in force after."""
        request = admin_pb2.SetFaultsRequest(faults=[fault_to_proto(f) for f in faults], replace=replace)
        try:
            reply = await admin_pb2_grpc.AdminStub(self._channel(endpoint)).SetFaults(request, timeout=self.timeout)
        except grpc.aio.AioRpcError as exc:
            raise _one_node_error(endpoint, exc, self.credentials.insecure) from None
        return [fault_from_proto(f) for f in reply.faults]

    async def transfer_leader(self, target: int) -> LeaderTransfer:
        """Hand leadership to node `target`; the leader and term after."""
        deadline = time.monotonic() + self.timeout
        request = admin_pb2.TransferRequest(target_id=target)
        reply = await self._unary(
            lambda stub: stub.TransferLeader(request, timeout=self._remaining(deadline)), deadline,
            stub=admin_pb2_grpc.AdminStub,
        )
        return LeaderTransfer(reply.leader_id, reply.term)


def _node_status(reply: admin_pb2.StatusReply) -> NodeStatus:
    return NodeStatus(
        id=reply.id, address=reply.address, cluster_id=reply.cluster_id, role=Role(reply.role), term=reply.term,
        leader_id=reply.leader_id, leader_address=reply.leader_address, last_index=reply.last_index,
        commit_index=reply.commit_index, applied_index=reply.applied_index, snapshot_index=reply.snapshot_index,
        leader_unknown_s=reply.leader_unknown_s, pid=reply.pid, pending_proposals=reply.pending_proposals,
        version=reply.version,
        peers=tuple(
            PeerState(p.id, p.address, p.connected, p.last_heard_s, p.progress, p.peer_address) for p in reply.peers
        ),
        faults=tuple(fault_from_proto(f) for f in reply.faults), refused=dict(reply.refused),
        peer_address=reply.peer_address, insecure=reply.insecure, calls_refused=dict(reply.calls_refused),
    )


def _one_node_error(endpoint: str, exc: grpc.aio.AioRpcError, plaintext: bool) -> RaftflowError:
    if _network_failure(exc):
        hint = ""
        if plaintext and exc.code() == grpc.StatusCode.DEADLINE_EXCEEDED:
            hint = " (a plaintext client never connects to a node that speaks TLS, the default: use the cluster's CA)"
        return Unavailable(f"node at {endpoint} is {_describe_rpc_error(exc, plaintext)}{hint}")
    if exc.code() == grpc.StatusCode.INVALID_ARGUMENT:
        return InvalidArgument(exc.details())
    if exc.code() in ACCESS_ERRORS:
        return ACCESS_ERRORS[exc.code()](exc.details())
    if exc.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.FAILED_PRECONDITION):
        return Unavailable(exc.details())
    return RaftflowError(f"{exc.code().name}: {exc.details()}")


class _Tracker:
    """Why a call has not succeeded yet, and when to give up saying so."""

    def __init__(self, client: AsyncClient, deadline: float) -> None:
        self.client = client
        self.deadline = deadline
        self.started = time.monotonic()
        self.attempts = 0
        self.redirects = 0
        self.unreachable_endpoints: dict[str, str] = {}
        self.trouble_since: float | None = None  # no leader / nothing reachable since
        self.last_problem = ""
        self.node_said = ""  # the last reason a node gave (no quorum, no leader)
        self.outcome_unknown = False

    def _trouble(self, problem: str, outcome_unknown: bool) -> None:
        self.last_problem = problem
        self.outcome_unknown = self.outcome_unknown or outcome_unknown
        if self.trouble_since is None:
            self.trouble_since = time.monotonic()

    def unreachable(self, endpoint: str, why: str, *, outcome_unknown: bool = False) -> None:
        self.unreachable_endpoints[endpoint] = why
        reached = [e for e in self.client.endpoints if e not in self.unreachable_endpoints]
        if reached:
            problem = f"node at {endpoint} is {why}"
        else:
            problem = "no node reachable: " + "; ".join(f"{e} {w}" for e, w in self.unreachable_endpoints.items())
        self._trouble(problem, outcome_unknown)

    def no_leader(self, message: str, *, outcome_unknown: bool = False) -> None:
        self.node_said = message
        self._trouble(message, outcome_unknown)

    def busy(self, message: str) -> None:
        self.last_problem = message
        self.attempts += 1
        if time.monotonic() >= self.deadline:
            if self.outcome_unknown:  # an earlier attempt reached a log
                raise OutcomeUnknown(f"{message}; an earlier attempt may have been applied")
            raise Busy(message)

    def redirected(self) -> None:
        self.redirects += 1
        if self.redirects > 3 * len(self.client.endpoints) + 3:
            # Hints keep pointing around: an election is going on; back off a little.
            self.redirects = 0
            self._trouble("the leader keeps changing", False)

    async def wait(self) -> None:
        now = time.monotonic()
        if self.trouble_since is not None and (
            now - self.trouble_since >= self.client.no_leader_timeout or now >= self.deadline
        ):
            suffix = "; the command may or may not have been applied" if self.outcome_unknown else ""
            # What a node said (no quorum) explains more than a node that is down.
            problem = self.node_said or self.last_problem
            raise (OutcomeUnknown if self.outcome_unknown else Unavailable)(problem + suffix)
        if now >= self.deadline:
            raise OutcomeUnknown(f"gave up after {now - self.started:.1f}s: {self.last_problem}")
        self.attempts += 1
        await self.client._backoff(self.attempts, self.deadline)


class Client:
    """The blocking twin of `AsyncClient`, for scripts and the CLI. Use it from
    one thread at a time."""

    def __init__(self, endpoints: list[str], **options) -> None:
        self._closed = False
        self._client = self._run(self._make(endpoints, options))

    @staticmethod
    async def _make(endpoints, options) -> AsyncClient:
        return AsyncClient(endpoints, **options)

    def _run(self, coro):
        return run_sync(coro)

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._run(self._client.close())

    @property
    def workflows(self) -> Workflows:
        return Workflows(self._client.workflows)

    def put(self, key: str, value: bytes) -> WriteResult:
        return self._run(self._client.put(key, value))

    def delete(self, key: str) -> WriteResult:
        return self._run(self._client.delete(key))

    def cas(self, key: str, value: bytes, **expected) -> WriteResult:
        return self._run(self._client.cas(key, value, **expected))

    def get(self, key: str, **options) -> ReadResult:
        return self._run(self._client.get(key, **options))

    def status(self, endpoint: str, **options) -> NodeStatus:
        return self._run(self._client.status(endpoint, **options))

    def cluster_status(self, **options) -> list[tuple[str, NodeStatus | str]]:
        return self._run(self._client.cluster_status(**options))

    def state_hash(self, endpoint: str) -> StateHash:
        return self._run(self._client.state_hash(endpoint))

    def transfer_leader(self, target: int) -> LeaderTransfer:
        return self._run(self._client.transfer_leader(target))

    def issue_token(self, role: AccessRole | str, **options) -> IssuedToken:
        return self._run(self._client.issue_token(role, **options))

    def revoke_token(self, token_id: str) -> bool:
        return self._run(self._client.revoke_token(token_id))

    def list_tokens(self) -> list[TokenInfo]:
        return self._run(self._client.list_tokens())

    def set_faults(self, endpoint: str, faults: list[PeerFault], *, replace: bool) -> list[PeerFault]:
        return self._run(self._client.set_faults(endpoint, faults, replace=replace))

    @property
    def endpoints(self) -> list[str]:
        return self._client.endpoints

    @property
    def timeout(self) -> float:
        return self._client.timeout
