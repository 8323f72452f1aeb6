"""Hypothesis throws arbitrary commands at a real node's client service, in batches
on ExecuteStream: every command gets a reply of its own, none of them INTERNAL or
UNKNOWN (a bug), and the node stays up and keeps serving. The workflow service's
reads get the same treatment."""

from __future__ import annotations

import json

import grpc
import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from procnet import ProcCluster, sync_channel
from raftflow.cluster.local import launcher
from raftflow.proto import client_pb2, client_pb2_grpc, workflow_pb2, workflow_pb2_grpc

U64 = (1 << 64) - 1
U32 = (1 << 32) - 1
BUGS = (grpc.StatusCode.INTERNAL.value[0], grpc.StatusCode.UNKNOWN.value[0])

_text = st.text(max_size=40)
_json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(1 << 63), U64) | st.floats(allow_nan=False) | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=20,
)
_payloads = st.one_of(
    st.binary(max_size=64),
    _json_values.map(lambda v: msgpack.packb(v, use_bin_type=True)),
)
_definitions = st.one_of(
    _text,
    _json_values.map(json.dumps),
    st.fixed_dictionaries({
        "name": _text, "version": st.integers(-2, 3),
        "steps": st.lists(st.dictionaries(_text, _json_values, max_size=5), max_size=3),
    }).map(json.dumps),
)


@st.composite
def _commands(draw, session_id: int) -> client_pb2.Command:
    cmd = client_pb2.Command(
        request_id=draw(st.integers(1, U64)),
        session_id=draw(st.sampled_from([0, session_id, session_id + 1, U64])),
        seq=draw(st.integers(0, U64)),
        ack_floor=draw(st.integers(0, U64)),
    )
    which = draw(st.sampled_from([
        "put", "delete", "cas", "register_workflow_type", "start_workflow", "complete_activity",
        "fail_activity", "heartbeat_activity", "signal_workflow", "cancel_workflow", "terminate_workflow", "read",
        None,
    ]))
    if which == "put":
        cmd.put.key, cmd.put.value = draw(_text), draw(st.binary(max_size=64))
    elif which == "delete":
        cmd.delete.key = draw(_text)
    elif which == "cas":
        cmd.cas.key, cmd.cas.value = draw(_text), draw(st.binary(max_size=16))
        if draw(st.booleans()):
            cmd.cas.expected_value = draw(st.binary(max_size=16))
        elif draw(st.booleans()):
            cmd.cas.expected_revision = draw(st.integers(0, U64))
    elif which == "register_workflow_type":
        cmd.register_workflow_type.definition_json = draw(_definitions)
    elif which == "start_workflow":
        m = cmd.start_workflow
        m.workflow_id, m.type_name, m.version = draw(_text), draw(_text), draw(st.integers(0, U32))
        m.input, m.return_running = draw(_payloads), draw(st.booleans())
    elif which in ("complete_activity", "heartbeat_activity"):
        m = getattr(cmd, which)
        m.task_id, m.attempt = draw(st.integers(0, U64)), draw(st.integers(0, U32))
        if which == "complete_activity":
            m.result = draw(_payloads)
        else:
            m.details = draw(_payloads)
    elif which == "fail_activity":
        m = cmd.fail_activity
        m.task_id, m.attempt, m.error_type = draw(st.integers(0, U64)), draw(st.integers(0, U32)), draw(_text)
        m.message, m.retryable = draw(_text), draw(st.booleans())
    elif which == "signal_workflow":
        m = cmd.signal_workflow
        m.workflow_id, m.name, m.input = draw(_text), draw(_text), draw(_payloads)
    elif which == "cancel_workflow":
        cmd.cancel_workflow.workflow_id = draw(_text)
    elif which == "terminate_workflow":
        cmd.terminate_workflow.workflow_id, cmd.terminate_workflow.reason = draw(_text), draw(_text)
    elif which == "read":
        cmd.read.key, cmd.read.consistency = draw(_text), draw(st.integers(0, 5))
    return cmd


@pytest.fixture(scope="module")
def node(tmp_path_factory):
    c = ProcCluster(str(tmp_path_factory.mktemp("fuzz") / "c"), 1)
    c.start()
    c.wait_leader()
    channel = sync_channel(c.address(1))
    session = client_pb2_grpc.ClientStub(channel).OpenSession(client_pb2.OpenSessionRequest(), timeout=10).session_id
    yield c, channel, session
    channel.close()
    c.close()


def _stream(channel, commands):
    batch = client_pb2.CommandBatch(commands=commands)
    return [r for replies in client_pb2_grpc.ClientStub(channel).ExecuteStream(iter([batch]), timeout=30)
            for r in replies.replies]


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow])
@given(data=st.data())
def test_arbitrary_commands_each_get_a_reply_and_no_bug(node, data):
    c, channel, session = node
    commands = data.draw(st.lists(_commands(session), min_size=1, max_size=8))
    replies = _stream(channel, commands)
    assert sorted(r.request_id for r in replies) == sorted(cmd.request_id for cmd in commands)
    bugs = [(r.code, r.message) for r in replies if r.code in BUGS]
    assert not bugs, bugs
    (member,) = c.cluster.members
    assert launcher.process_alive(member.pid)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(workflow_id=_text, status=_text, limit=st.integers(0, U32), run_id=st.integers(0, U64),
       queue=_text, max_tasks=st.integers(0, U32), wait_ms=st.integers(0, 200))
def test_arbitrary_workflow_reads_are_answered_without_a_bug(node, workflow_id, status, limit, run_id, queue,
                                                             max_tasks, wait_ms):
    _, channel, _ = node
    stub = workflow_pb2_grpc.WorkflowsStub(channel)
    calls = [
        lambda: stub.Describe(workflow_pb2.DescribeRequest(workflow_id=workflow_id), timeout=10),
        lambda: stub.History(workflow_pb2.HistoryRequest(workflow_id=workflow_id), timeout=10),
        lambda: stub.List(workflow_pb2.ListRequest(status=status, limit=limit), timeout=10),
        lambda: stub.WaitWorkflow(workflow_pb2.WaitRequest(workflow_id=workflow_id, run_id=run_id, wait_ms=wait_ms),
                                  timeout=10),
        lambda: stub.PollActivityTasks(workflow_pb2.PollRequest(task_queue=queue, max_tasks=max_tasks,
                                                                wait_ms=wait_ms), timeout=10),
    ]
    for call in calls:
        try:
            call()
        except grpc.RpcError as exc:
            assert exc.code() not in (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN), (exc.code(), exc.details())


def test_the_node_still_serves_after_the_fuzzing(node):
    c, _, _ = node
    assert c.client.put("after-fuzz", b"ok").succeeded
    assert c.client.get("after-fuzz").value == b"ok"
