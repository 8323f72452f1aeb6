"""The gRPC services as any client sees them: status codes, messages, leader hints,
backpressure. Real node processes on 127.0.0.1."""

from __future__ import annotations

import asyncio

import grpc
import pytest

from raftflow.cluster.client import run_sync
from raftflow.cluster.node.access import Access
from procnet import ProcCluster, aio_channel, sync_channel
from waiting import settle
from raftflow.proto import admin_pb2, admin_pb2_grpc, client_pb2, client_pb2_grpc


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = ProcCluster(str(tmp_path_factory.mktemp("grpc") / "c"), 3)
    c.start()
    c.wait_leader()
    yield c
    c.close()


async def _call(address: str, fn):
    async with aio_channel(address) as channel:
        return await fn(client_pb2_grpc.ClientStub(channel))


def call(address: str, fn):
    return run_sync(_call(address, fn))


def rpc_error(address: str, fn) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as err:
        call(address, fn)
    return err.value


def session(address: str) -> int:
    return call(address, lambda stub: stub.OpenSession(client_pb2.OpenSessionRequest(), timeout=5)).session_id


def put(session_id: int, seq: int, key: str, value: bytes = b"v", ack_floor: int | None = None) -> client_pb2.Command:
    floor = seq if ack_floor is None else ack_floor
    return client_pb2.Command(session_id=session_id, seq=seq, ack_floor=floor, put=client_pb2.Put(key=key, value=value))


def test_execute_applies_once_and_a_retry_gets_the_same_reply(cluster):
    leader = cluster.address(cluster.wait_leader())
    sid = session(leader)
    first = call(leader, lambda stub: stub.Execute(put(sid, 1, "once"), timeout=5))
    again = call(leader, lambda stub: stub.Execute(put(sid, 1, "once"), timeout=5))
    assert again.revision == first.revision  # the cached reply: nothing applied twice
    assert cluster.client.get("once").kv.version == 1


@pytest.mark.parametrize(
    ("command", "message"),
    [
        (client_pb2.Command(session_id=1, seq=1, put=client_pb2.Put(key="", value=b"v")), "key is empty"),
        (client_pb2.Command(session_id=1, seq=1), "command has no operation"),
        (client_pb2.Command(session_id=0, seq=1, put=client_pb2.Put(key="k")), "open a session first"),
        (client_pb2.Command(session_id=1, seq=1, cas=client_pb2.Cas(key="k", value=b"v")), "expected_value or expected_revision"),
        (client_pb2.Command(session_id=1, seq=1, put=client_pb2.Put(key="k", value=b"x" * (1 << 20 + 1))), "value is"),
    ],
)
def test_bad_input_is_invalid_argument_naming_the_problem_and_changes_nothing(cluster, command, message):
    leader = cluster.address(cluster.wait_leader())
    before = cluster.statuses()[cluster.wait_leader()].last_index
    err = rpc_error(leader, lambda stub: stub.Execute(command, timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert message in err.details()
    assert cluster.statuses()[cluster.wait_leader()].last_index == before


def test_a_follower_answers_failed_precondition_with_the_leader_in_the_metadata(cluster):
    leader_id = cluster.wait_leader()
    follower = next(m for m in cluster.cluster.members if m.id != leader_id)
    err = rpc_error(follower.address, lambda stub: stub.Execute(put(1, 1, "k"), timeout=5))
    assert err.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert f"the leader is node {leader_id}" in err.details()
    metadata = dict(err.trailing_metadata())
    assert metadata["raftflow-leader"] == f"{leader_id} {cluster.address(leader_id)}"
    assert metadata["raftflow-node"] == str(follower.id)


def stream_replies(address: str, *commands: client_pb2.Command) -> dict[int, client_pb2.CommandReply]:
    """Send `commands` in one batch on ExecuteStream; their replies by request id."""

    async def batch(stub):
        async def requests():
            yield client_pb2.CommandBatch(commands=list(commands))

        replies = {}
        async for reply_batch in stub.ExecuteStream(requests(), timeout=5):
            replies.update((r.request_id, r) for r in reply_batch.replies)
        return replies

    return call(address, batch)


def test_reads_ride_the_stream_without_a_session_and_a_follower_names_the_leader(cluster):
    leader_id = cluster.wait_leader()
    leader = cluster.address(leader_id)
    sid = session(leader)
    call(leader, lambda stub: stub.Execute(put(sid, 1, "streamed", b"v1"), timeout=5))
    levels = (client_pb2.LINEARIZABLE, client_pb2.LEASE, client_pb2.STALE)
    reads = [
        client_pb2.Command(request_id=n, read=client_pb2.ReadRequest(key="streamed", consistency=level))
        for n, level in enumerate(levels, start=1)
    ]
    missing = client_pb2.Command(request_id=9, read=client_pb2.ReadRequest(key="nothing here"))
    replies = stream_replies(leader, *reads, missing)
    for n, level in enumerate(levels, start=1):
        assert replies[n].code == 0, replies[n].message
        assert replies[n].read.found and replies[n].read.kv.value == b"v1"
        assert replies[n].read.stale == (level == client_pb2.STALE)
    assert replies[9].code == 0 and not replies[9].read.found
    unary = call(leader, lambda stub: stub.Read(client_pb2.ReadRequest(key="streamed"), timeout=5))
    assert unary.kv.value == b"v1", "the unary Read answers as before"
    follower = next(m for m in cluster.cluster.members if m.id != leader_id)
    (refused,) = stream_replies(follower.address, reads[0]).values()
    assert refused.code == grpc.StatusCode.FAILED_PRECONDITION.value[0]
    assert (refused.leader_id, refused.leader_address) == (leader_id, leader)


# A document nested deeper than json.loads can recurse: RecursionError, not ValueError.
DEEP_DEFINITION_JSON = '{"name": "deep", "version": 1, "steps": ' + "[" * 5000 + "]" * 5000 + "}"
DEEP_MSGPACK = b"\x91" * 5000 + b"\xc0"  # [[[...[nil]...]]], deeper than the unpacker's stack


def register_deep(session_id: int, seq: int) -> client_pb2.Command:
    definition = client_pb2.RegisterWorkflowType(definition_json=DEEP_DEFINITION_JSON)
    return client_pb2.Command(session_id=session_id, seq=seq, ack_floor=1, register_workflow_type=definition)


def start_deep(session_id: int, seq: int) -> client_pb2.Command:
    start = client_pb2.StartWorkflow(workflow_id="deep-1", type_name="deep", input=DEEP_MSGPACK)
    return client_pb2.Command(session_id=session_id, seq=seq, ack_floor=1, start_workflow=start)


@pytest.mark.parametrize(
    ("bad", "field"), [(register_deep, "definition_json"), (start_deep, "input")], ids=["deep-json", "deep-msgpack"]
)
def test_a_malformed_command_gets_its_own_reply_and_the_rest_of_the_batch_applies(cluster, bad, field):
    # Issue 13 §5: one bad command used to end the stream, its batch unanswered.
    leader = cluster.address(cluster.wait_leader())
    sid = session(leader)
    before, after = f"{field}-before", f"{field}-after"
    commands = [put(sid, 1, before, b"1"), bad(sid, 2), put(sid, 3, after, b"3", ack_floor=1)]
    for request_id, command in enumerate(commands, start=1):
        command.request_id = request_id
    replies = stream_replies(leader, *commands)
    assert sorted(replies) == [1, 2, 3]
    assert replies[1].code == 0 and replies[1].succeeded, replies[1].message
    assert replies[3].code == 0 and replies[3].succeeded, replies[3].message
    assert replies[2].code == grpc.StatusCode.INVALID_ARGUMENT.value[0], replies[2].message
    assert field in replies[2].message and "deep" in replies[2].message
    assert cluster.client.get(before).kv.value == b"1"
    assert cluster.client.get(after).kv.value == b"3"


def test_a_definition_nested_too_deep_is_invalid_argument_on_execute(cluster):
    leader = cluster.address(cluster.wait_leader())
    command = register_deep(session(leader), 1)
    err = rpc_error(leader, lambda stub: stub.Execute(command, timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT, err.details()
    assert "definition_json" in err.details()


def test_a_read_on_execute_is_invalid_argument(cluster):
    # Execute answers with a command's reply; a read has its own call (Read).
    leader = cluster.address(cluster.wait_leader())
    err = rpc_error(leader, lambda stub: stub.Execute(client_pb2.Command(read=client_pb2.ReadRequest(key="k")), timeout=5))
    assert err.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "a read goes on ExecuteStream or the Read call" in err.details()


def test_an_unknown_session_is_not_found(cluster):
    leader = cluster.address(cluster.wait_leader())
    err = rpc_error(leader, lambda stub: stub.Execute(put(999_999, 1, "k"), timeout=5))
    assert err.code() == grpc.StatusCode.NOT_FOUND
    assert "session 999999 is unknown or expired" in err.details()


def test_admin_transfer_to_a_non_member_is_invalid_argument(cluster):
    leader = cluster.address(cluster.wait_leader())

    async def transfer():
        async with aio_channel(leader) as channel:
            await admin_pb2_grpc.AdminStub(channel).TransferLeader(admin_pb2.TransferRequest(target_id=9), timeout=5)

    with pytest.raises(grpc.aio.AioRpcError) as err:
        run_sync(transfer())
    assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "node 9 is not a member" in err.value.details()


def test_a_full_proposal_queue_answers_resource_exhausted(tmp_path):
    """Backpressure: 4 commands may wait; with every log write slowed down, the
    rest of a burst is refused at once with a message, not queued."""
    c = ProcCluster(str(tmp_path / "c"), 1, max_pending_proposals=4, slow_disk_ms=200)
    try:
        c.start()
        address = c.address(c.wait_leader())
        sid = session(address)

        async def burst():
            async with aio_channel(address) as channel:
                stub = client_pb2_grpc.ClientStub(channel)
                calls = [stub.Execute(put(sid, seq, f"b{seq}", ack_floor=1), timeout=10) for seq in range(1, 31)]
                return await asyncio.gather(*calls, return_exceptions=True)

        outcomes = run_sync(burst())
        refused = [o for o in outcomes if isinstance(o, grpc.aio.AioRpcError)]
        applied = [o for o in outcomes if not isinstance(o, BaseException)]
        assert applied, "nothing was accepted"
        assert refused, "the queue never filled"
        assert {e.code() for e in refused} == {grpc.StatusCode.RESOURCE_EXHAUSTED}
        assert all("max_pending_proposals=4" in e.details() for e in refused)
    finally:
        c.close()


def test_a_read_still_waiting_when_its_stream_closes_is_cancelled():
    # A client that goes away (or whose stream breaks) gets no answer: the read it
    # left must not hold a ReadIndex slot on the leader until the round resolves.
    from raftflow.cluster.node.services import ClientService

    async def scenario():
        loop = asyncio.get_running_loop()
        waiting: list[asyncio.Future] = []

        class Node:
            id = 1

            async def read_index(self, consistency):
                future = loop.create_future()
                waiting.append(future)
                return await future

        async def requests():
            yield client_pb2.CommandBatch(commands=[client_pb2.Command(request_id=1, read=client_pb2.ReadRequest(key="k"))])
            await asyncio.Event().wait()  # the client keeps the stream open, then disconnects

        class Context:
            async def write(self, batch):
                pass

        handler = asyncio.ensure_future(ClientService(Node(), Access.insecure()).ExecuteStream(requests(), Context()))
        await settle(lambda: waiting, "the read to wait for its index")
        assert len(waiting) == 1 and not waiting[0].done()
        handler.cancel()  # what gRPC does when the client cancels the call
        with pytest.raises(asyncio.CancelledError):
            await handler
        await settle(waiting[0].cancelled, "the read's wait to be cancelled with its stream")
        return True

    assert run_sync(scenario()), "the read's task outlived its stream"


def test_an_unexpected_failure_is_that_commands_internal_reply_and_the_stream_goes_on(caplog):
    # A bug met by one command (the node raising what it never should, at submit or
    # in its future) answers that command INTERNAL, logged with the traceback; the
    # other commands of the batch are answered as usual.
    from raftflow.cluster.node.services import ClientService
    from raftflow.statemachine.commands import PutResult

    async def scenario():
        loop = asyncio.get_running_loop()

        class Node:
            id = 1

            def submit(self, op, *, session_id, seq, ack_floor):
                if op.key == "raises":
                    raise RuntimeError("a bug in submit")
                future = loop.create_future()
                if op.key == "fails":
                    future.set_exception(RuntimeError("a bug in apply"))
                else:
                    future.set_result((seq, PutResult(revision=seq, prev=None)))
                return future

        commands = [put(7, seq, key, ack_floor=1) for seq, key in enumerate(["a", "raises", "b", "fails", "c"], 1)]
        for command in commands:
            command.request_id = command.seq

        async def requests():
            yield client_pb2.CommandBatch(commands=commands)

        written = []

        class Context:
            async def write(self, batch):
                written.extend(batch.replies)

        service = ClientService(Node(), Access.insecure())
        await service.ExecuteStream(requests(), Context())
        return service, {reply.request_id: reply for reply in written}

    service, replies = run_sync(scenario())
    assert sorted(replies) == [1, 2, 3, 4, 5]
    assert [replies[n].succeeded for n in (1, 3, 5)] == [True, True, True]
    for n, bug in ((2, "a bug in submit"), (4, "a bug in apply")):
        assert replies[n].code == grpc.StatusCode.INTERNAL.value[0]
        assert bug in replies[n].message
    assert service.internal_errors == 2
    logged = [r for r in caplog.records if "failed unexpectedly" in r.getMessage()]
    assert len(logged) == 2 and all(r.exc_info for r in logged)


def test_oversized_payloads_are_refused_before_they_are_decoded():
    from raftflow.cluster.protocol.workflow_proto import MAX_DEFINITION_JSON_CHARS, workflow_op_from_proto
    from raftflow.statemachine.commands import CommandError
    from raftflow.statemachine.workflow.ops import MAX_PAYLOAD_BYTES

    cmd = client_pb2.Command(request_id=1, session_id=1, seq=1)
    cmd.start_workflow.workflow_id, cmd.start_workflow.type_name = "w", "t"
    cmd.start_workflow.input = b"\x91" * (MAX_PAYLOAD_BYTES + 1)  # nests too: never looked at
    with pytest.raises(CommandError, match=rf"input is {MAX_PAYLOAD_BYTES + 1} bytes; at most {MAX_PAYLOAD_BYTES}"):
        workflow_op_from_proto("start_workflow", cmd)
    cmd = client_pb2.Command(request_id=2, session_id=1, seq=2)
    cmd.register_workflow_type.definition_json = " " * (MAX_DEFINITION_JSON_CHARS + 1)
    with pytest.raises(CommandError, match="definition_json is .* characters; at most"):
        workflow_op_from_proto("register_workflow_type", cmd)


def test_a_request_over_the_size_limit_is_refused_before_it_is_decoded(cluster):
    # Found from outside: a 60 MB put was taken in whole before any size check.
    from raftflow.cluster.protocol.wire import MAX_REQUEST_BYTES

    leader = cluster.address(cluster.wait_leader())
    huge = client_pb2.Command(request_id=1, session_id=1, seq=1)
    huge.put.key, huge.put.value = "k", b"x" * (MAX_REQUEST_BYTES + 1)
    with sync_channel(leader, options=[("grpc.max_send_message_length", 64 << 20)]) as channel:
        with pytest.raises(grpc.RpcError) as refused:
            client_pb2_grpc.ClientStub(channel).Execute(huge, timeout=10)
    assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert cluster.client.put("after", b"fine").succeeded  # the node is up and serving


def test_queued_commands_leave_in_batches_under_the_limit():
    # A node refuses a request over MAX_REQUEST_BYTES whole: the client splits what
    # it has queued into CommandBatches under COMMAND_BATCH_BYTES_MAX.
    from types import SimpleNamespace

    from raftflow.cluster.client.client import _Stream
    from raftflow.cluster.protocol.wire import COMMAND_BATCH_BYTES_MAX

    class Call:
        def __aiter__(self):
            return self

        async def __anext__(self):
            await asyncio.Event().wait()

        def cancel(self):
            pass

    async def scenario():
        stream = _Stream(SimpleNamespace(ExecuteStream=lambda requests: Call()))
        commands = []
        for i in range(24):
            cmd = client_pb2.Command(request_id=i + 1, session_id=1, seq=i + 1)
            cmd.put.key, cmd.put.value = f"big-{i}", bytes([i]) * 900_000
            commands.append(cmd)
            stream._outbox.put_nowait(cmd)
        stream._outbox.put_nowait(None)
        batches = [batch async for batch in stream._requests()]
        stream.reader.cancel()
        return commands, batches

    commands, batches = run_sync(scenario())
    assert len(batches) > 1 and all(b.ByteSize() <= COMMAND_BATCH_BYTES_MAX for b in batches)
    assert [c.request_id for b in batches for c in b.commands] == [c.request_id for c in commands]
