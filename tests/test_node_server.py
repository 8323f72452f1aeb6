"""The node process's life cycle in one process (NodeServer): what it opens, it
closes, on a refused start, a graceful stop and a failure alike; and a failed node
stops serving rather than answer from a closed log."""

from __future__ import annotations

import asyncio
import os
import socket

import pytest

from raftflow.cluster.client import AsyncClient, Unavailable
from raftflow.cluster.security.credentials import Credentials
from raftflow.cluster.local.launcher import free_ports
from raftflow.cluster.node.config import NodeConfig
from raftflow.cluster.node.server import NodeServer
from raftflow.raft.types import Role
from waiting import settle


def _open_files_under(path: str) -> list[str]:
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(path):
            found.append(target)
    return found


def _config(tmp_path, port: int) -> NodeConfig:
    return NodeConfig(id=1, peers={1: f"127.0.0.1:{port}"}, data_dir=str(tmp_path / "d"), seed=1, insecure=True)


async def test_a_port_in_use_is_refused_and_leaves_no_file_open(tmp_path):
    (port,) = free_ports(1)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", port))
        taken.listen()
        process = NodeServer(_config(tmp_path, port))
        with pytest.raises(OSError, match=f"cannot listen on 127.0.0.1:{port}"):
            await process.start()
    assert _open_files_under(str(tmp_path / "d")) == []
    await process.stop()  # after a refused start: nothing left to stop, no second close


async def test_a_damaged_data_dir_fails_before_a_port_opens(tmp_path):
    (port,) = free_ports(1)
    config = _config(tmp_path, port)
    first = NodeServer(config)
    await first.start()
    await first.stop()
    os.rename(tmp_path / "d", tmp_path / "elsewhere")
    os.makedirs(tmp_path / "d")
    (tmp_path / "d" / "raftflow.meta").write_bytes(b"not a meta file")
    process = NodeServer(config)
    with pytest.raises(Exception):  # noqa: B017 (the storage names what is damaged; any refusal will do here)
        await process.start()
    assert _open_files_under(str(tmp_path / "d")) == []
    with socket.socket() as probe:  # nothing listens: the port is free to bind
        probe.bind(("127.0.0.1", port))


async def test_a_failed_node_stops_serving_and_closes_its_log(tmp_path):
    (port,) = free_ports(1)
    process = NodeServer(_config(tmp_path, port))
    node = await process.start()
    await settle(lambda: node.node.role is Role.LEADER, "the single node to lead", timeout=10)
    async with AsyncClient([f"127.0.0.1:{port}"], credentials=Credentials.plaintext(), timeout=2, no_leader_timeout=1) as client:
        assert (await client.status(f"127.0.0.1:{port}")).role is Role.LEADER
        node.fail(RuntimeError("a bug, on purpose"))
        await settle(node.stopped.is_set, "the failed node to stop", timeout=10)
        with pytest.raises(Unavailable):
            await client.status(f"127.0.0.1:{port}", timeout=1)
    assert _open_files_under(str(tmp_path / "d")) == []
    await process.stop()


async def test_a_command_in_an_unknown_session_is_refused_before_the_log(tmp_path):
    from raftflow.cluster.node.errors import NodeError
    from raftflow.statemachine.commands import OpenSession, Put

    (port,) = free_ports(1)
    process = NodeServer(_config(tmp_path, port))
    node = await process.start()
    try:
        await settle(node.state_is_current, "the single node to lead with its state current", timeout=10)
        _, opened = await node.submit(OpenSession())
        await node.submit(Put("k", b"v"), session_id=opened.session_id, seq=1, ack_floor=1)
        last = node.node.log.last_index()
        with pytest.raises(NodeError, match="SESSION_UNKNOWN: session 999999 is unknown or expired") as refused:
            node.submit(Put("k", b"w"), session_id=999_999, seq=1, ack_floor=1)
        assert refused.value.code.name == "NOT_FOUND"
        assert node.node.log.last_index() == last  # nothing reached the log
    finally:
        await process.stop()


async def test_the_state_hash_is_computed_off_the_loop_and_equals_the_machines(tmp_path):
    (port,) = free_ports(1)
    process = NodeServer(_config(tmp_path, port))
    node = await process.start()
    try:
        await settle(lambda: node.node.role is Role.LEADER, "the single node to lead", timeout=10)
        async with AsyncClient([f"127.0.0.1:{port}"], credentials=Credentials.plaintext(), timeout=5) as client:
            await client.put("k", b"v")
            hashes = await asyncio.gather(*(client.state_hash(f"127.0.0.1:{port}") for _ in range(5)))
        assert {h.hash for h in hashes} == {node.machine.state_hash()}
    finally:
        await process.stop()


async def test_fault_injection_is_refused_unless_the_node_allows_it(tmp_path):
    # Found from outside: Admin.SetFaults was accepted from anyone, a full outage in
    # one call. `raftflow cluster up` allows it for local clusters; `node run` does not.
    from raftflow.cluster.client import RaftflowError
    from raftflow.cluster.protocol.faults import PeerFault

    (port,) = free_ports(1)
    process = NodeServer(_config(tmp_path, port))
    node = await process.start()
    try:
        async with AsyncClient([f"127.0.0.1:{port}"], credentials=Credentials.plaintext(), timeout=2) as client:
            with pytest.raises(RaftflowError, match="does not allow fault injection: start it with allow_faults = true"):
                await client.set_faults(f"127.0.0.1:{port}", [PeerFault(2, drop_out=True)], replace=True)
        assert node.transport.faults.faults() == []
    finally:
        await process.stop()


async def test_long_polls_beyond_the_limit_are_refused(tmp_path):
    import dataclasses

    import grpc

    from raftflow.proto import workflow_pb2, workflow_pb2_grpc

    (port,) = free_ports(1)
    process = NodeServer(dataclasses.replace(_config(tmp_path, port), max_long_polls=1))
    node = await process.start()
    try:
        await settle(node.state_is_current, "the single node to lead", timeout=10)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = workflow_pb2_grpc.WorkflowsStub(channel)
            request = workflow_pb2.PollRequest(task_queue="q", max_tasks=1, wait_ms=5000)
            first = asyncio.ensure_future(stub.PollActivityTasks(request, timeout=10))
            await settle(lambda: process_service_polls(process) == 1, "the first poll to wait")
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await stub.PollActivityTasks(request, timeout=5)
            assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "max_long_polls=1" in refused.value.details()
            first.cancel()
    finally:
        await process.stop()


def process_service_polls(process: NodeServer) -> int:
    return process.workflow_service.long_polls
