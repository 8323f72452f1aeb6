"""The leader's hand-out (cluster/node/workflow_driver.py) and the worker's attempt handling
(cluster/worker/worker.py) against stand-ins for the node and the client: the orderings a
real cluster produces only by chance, made to happen on purpose."""

from __future__ import annotations

import asyncio
import inspect
import time
from types import SimpleNamespace

import pytest

from waiting import settle
from raftflow.cluster.node.errors import NodeError
from raftflow.cluster.worker.worker import Worker, _Heartbeats
from raftflow.cluster.client.workflows import Task
from raftflow.cluster.node.workflow_driver import RETRY_S, WorkflowDriver
from raftflow.raft.types import Role
from raftflow import activity
from raftflow.statemachine.workflow.records import ActivityTask


class FakeNode:
    """What WorkflowDriver uses of a RaftNode: a leader whose proposals the test settles."""

    def __init__(self) -> None:
        self.id = 1
        self.node = SimpleNamespace(role=Role.LEADER, term=5)
        self.stopping = False
        self.proposed: list[tuple[object, asyncio.Future]] = []
        self.pending = [ActivityTask(7, 1, "w", "act", None, False, 1, "step", "q")]
        self.machine = SimpleNamespace(workflow=SimpleNamespace(pending_tasks=lambda queue, limit: self.pending[:limit]))

    def state_is_current(self) -> bool:
        return True

    def check_leader(self) -> None:
        if self.node.role is not Role.LEADER:
            raise NodeError(None, "not the leader")

    def submit(self, op, **session) -> asyncio.Future:
        future = asyncio.get_running_loop().create_future()
        self.proposed.append((op, future))
        return future


async def test_a_task_handed_out_early_is_not_handed_out_again_when_its_start_fails():
    node = FakeNode()
    driver = WorkflowDriver(node, rearm_grace_ms=1000)
    assert [g.task.task_id for g in await driver._hand_out("q", 10)] == [7]
    node.proposed[0][1].set_exception(NodeError(None, "proposal dropped"))
    await settle(lambda: len(node.proposed) == 2, "the start to be proposed again")
    assert await driver._hand_out("q", 10) == []  # still reserved for the first worker
    assert node.proposed[1][0] == node.proposed[0][0]  # the same token, not a new hand-out
    node.proposed[1][1].set_result((9, node.pending[0]))
    await settle(lambda: 7 not in driver._handing_out, "the started task to leave the reserved set")


async def test_a_start_lost_with_the_term_frees_the_task():
    node = FakeNode()
    driver = WorkflowDriver(node, rearm_grace_ms=1000)
    await driver._hand_out("q", 10)
    node.node.term = 6  # an election happened (this node won again)
    node.proposed[0][1].set_exception(NodeError(None, "lost in a leader change"))
    await settle(lambda: 7 not in driver._handing_out, "the lost start to free the task")
    assert [g.task.task_id for g in await driver._hand_out("q", 10)] == [7]  # the old worker's report will be stale


# --- the worker -----------------------------------------------------------------------


class FakeWorkflows:
    def __init__(self) -> None:
        self.calls: list[tuple] = []

    async def complete_activity(self, task_id, attempt, result, *, secret=b""):
        self.calls.append(("complete", task_id, attempt, result))

    async def fail_activity(self, task_id, attempt, error_type, message, retryable, *, secret=b""):
        self.calls.append(("fail", task_id, attempt, error_type, message, retryable))

    async def heartbeat_activity(self, task_id, attempt, details, *, secret=b""):
        self.calls.append(("heartbeat", task_id, attempt, details))


def task(name: str) -> Task:
    return Task(3, 1, "w", 1, "step", name, "q", None, False)


@activity.defn
def returns_a_tuple(_):
    return (1, 2)


@activity.defn
def fails_badly(_):
    raise ValueError("bad \ud800 surrogate")


@activity.defn
async def beats_then_returns(_):
    activity.heartbeat({"n": 1})
    activity.heartbeat({"n": 2})
    return "done"


def make_worker() -> tuple[Worker, FakeWorkflows]:
    workflows = FakeWorkflows()
    client = SimpleNamespace(workflows=workflows)
    worker = Worker(client, task_queue="q", activities=[returns_a_tuple, fails_badly, beats_then_returns],
                    heartbeat_interval=5.0)
    return worker, workflows


async def test_a_result_the_engine_would_refuse_fails_the_step_at_once():
    worker, workflows = make_worker()
    worker._launch(task("returns_a_tuple"))
    await asyncio.gather(*worker._running)
    (call,) = workflows.calls
    assert call[0] == "fail" and call[3] == "ResultInvalid" and call[5] is False


async def test_a_failure_message_is_made_valid_text():
    worker, workflows = make_worker()
    worker._launch(task("fails_badly"))
    await asyncio.gather(*worker._running)
    (call,) = workflows.calls
    assert call[:4] == ("fail", 3, 1, "ValueError") and call[4].encode()  # encodable: no lone surrogate


async def test_a_throttled_heartbeat_does_not_delay_the_final_report():
    worker, workflows = make_worker()
    started = time.monotonic()
    worker._launch(task("beats_then_returns"))
    await asyncio.gather(*worker._running)
    assert time.monotonic() - started < 2.0  # not the 5 s heartbeat interval
    assert workflows.calls[-1] == ("complete", 3, 1, "done")
    assert ("heartbeat", 3, 1, {"n": 2}) not in workflows.calls  # dropped: the report supersedes it


async def test_flush_after_a_heartbeat_in_the_throttle_window_ends_cleanly():
    worker, workflows = make_worker()
    beats = _Heartbeats(worker, task("x"))
    beats.report(1)
    await settle(lambda: workflows.calls, "the first heartbeat")
    beats.report(2)  # throttled: its sender sleeps
    await settle(lambda: inspect.getcoroutinestate(beats._sender.get_coro()) == inspect.CORO_SUSPENDED,
                 "the throttled sender to wait out the interval")
    await asyncio.wait_for(beats.flush(), 1.0)
    beats.report(3)  # after the attempt ended: dropped at once, no sender started
    assert beats._pending is None and beats._sender.done()
    assert workflows.calls == [("heartbeat", 3, 1, 1)]


def test_a_worker_refuses_a_poll_wait_the_cluster_would_refuse():
    with pytest.raises(ValueError, match="poll_wait"):
        Worker(SimpleNamespace(workflows=None), task_queue="q", activities=[returns_a_tuple], poll_wait=61)
    with pytest.raises(ValueError, match="heartbeat_interval"):
        Worker(SimpleNamespace(workflows=None), task_queue="q", activities=[returns_a_tuple], heartbeat_interval=-1)


def test_retry_pause_is_short():
    assert RETRY_S <= 0.1


async def test_closing_a_stream_before_its_reader_ran_fails_its_commands_at_once():
    """A stream opened for a command and closed at once (another call on the same
    node found it gone) must not leave the command waiting out its timeout."""
    from raftflow.cluster.client.client import _Stream

    class Call:
        def __aiter__(self):
            return self

        async def __anext__(self):
            await asyncio.Event().wait()  # never answers

        def cancel(self):
            pass

    stub = SimpleNamespace(ExecuteStream=lambda requests: Call())
    stream = _Stream(stub)
    waiting = asyncio.get_running_loop().create_future()
    stream.pending[1] = waiting  # what send() registers before it awaits
    stream.close()  # before the reader task got its first turn
    started = time.monotonic()
    with pytest.raises(ConnectionError):
        await asyncio.wait_for(waiting, 5)
    assert time.monotonic() - started < 1.0


# --- the transport's fault filter --------------------------------------------------------


async def test_a_delayed_snapshot_leaves_as_one_transfer_and_a_cut_drops_delayed_messages():
    from raftflow.cluster.protocol.faults import PeerFault
    from raftflow.cluster.node.transport import Transport
    from raftflow.raft.types import Heartbeat, InstallSnapshot, Snapshot

    transport = Transport("c", 1, {1: "127.0.0.1:1", 2: "127.0.0.1:2"})
    sent = {"chunks": [], "messages": 0}
    link = transport.links[2]
    link.send_snapshot = lambda chunks: sent["chunks"].append(len(chunks))
    link.send = lambda raw: sent.__setitem__("messages", sent["messages"] + 1)
    transport.faults.set([PeerFault(2, delay_out_ms=20)], replace=True)
    snapshot = Snapshot(index=5, term=1, data=b"abc")
    chunks = [InstallSnapshot(1, 2, 1, snapshot, offset=i, done=i == 2) for i in range(3)]
    transport.send(chunks)
    assert sent["chunks"] == [] and transport.delayed[2] == 3
    await settle(lambda: sent["chunks"], "the delayed snapshot to leave")
    assert sent["chunks"] == [3] and transport.delayed[2] == 0  # one transfer, not three that drop each other

    transport.send([Heartbeat(1, 2, 1, 0, 1)])
    transport.faults.set([PeerFault(2, drop_out=True)], replace=True)  # cut while it waits
    await settle(lambda: transport.delayed[2] == 0, "the delayed heartbeat's delay to end")
    assert sent["messages"] == 0 and link.dropped == 1


async def test_a_node_stops_promptly_while_it_applies_a_stream_of_commands(tmp_path, caplog):
    """stop() must not wait on the workflow leader loop: on Python 3.11 a cancel that
    lands as asyncio.wait_for's awaitable completes is swallowed, and that loop's wake
    is set by every applied batch (the saga and cluster benches hung in stop())."""
    from raftflow.cluster.node.config import NodeConfig
    from raftflow.cluster.local.launcher import free_ports
    from raftflow.cluster.node.server import NodeServer
    from raftflow.statemachine.commands import OpenSession, Put

    (port,) = free_ports(1)
    process = NodeServer(NodeConfig(id=1, peers={1: f"127.0.0.1:{port}"}, data_dir=str(tmp_path / "d"), seed=1, insecure=True))
    node = await process.start()
    try:
        await settle(lambda: node.node.role is Role.LEADER, "the single node to lead", timeout=10)
        _, opened = await node.submit(OpenSession())
        pending = [node.submit(Put(f"k{seq}", b"v"), session_id=opened.session_id, seq=seq, ack_floor=seq) for seq in range(1, 3001)]
        await settle(lambda: node.machine.applied_index > 100, "applies to begin", timeout=10)
    finally:
        started = time.monotonic()
        await asyncio.wait_for(process.stop(), 10)
    assert time.monotonic() - started < 5
    await asyncio.gather(*pending, return_exceptions=True)
    critical = [r.getMessage() for r in caplog.records if r.levelname == "CRITICAL"]
    assert not critical, critical  # a clean stop is not a failure of the leader loop
