"""Forged peer messages against a real 3-node cluster, as they were first sent from
outside with a few lines of Python (issue 14's table). Each is refused by the rule
that names it and counted in the node's status; afterwards every node is up, a
write commits, the state hashes agree, and the attacked node restarts cleanly.

Until peers authenticate (mTLS), anyone can claim to be a member: these tests take
that for granted and check what the core refuses whatever the sender claims.
"""

from __future__ import annotations

import grpc
import pytest

from procnet import ProcCluster, wait_until
from raftflow.cluster.local import launcher
from raftflow.proto import peer_pb2, peer_pb2_grpc
from raftflow.raft.codec import encode_message
from raftflow.raft.types import AppendEntries, Entry, Heartbeat, InstallSnapshot, Message, Snapshot, TimeoutNow

U64 = (1 << 64) - 1


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    c = ProcCluster(str(tmp_path_factory.mktemp("hostile") / "c"), 3)
    c.start()
    c.wait_leader()
    yield c
    c.close()


def _send(c: ProcCluster, target: int, claimed_from: int, message: Message, *, snapshot: bool = False) -> None:
    """Deliver one forged message to node `target`, as if from `claimed_from`."""
    raw = encode_message(message)
    with grpc.insecure_channel(c.address(target)) as channel:
        stub = peer_pb2_grpc.PeerStub(channel)
        common = {"cluster_id": c.cluster.cluster_id, "from_id": claimed_from, "to_id": target}
        if snapshot:
            stub.InstallSnapshot(iter([peer_pb2.SnapshotChunk(message=raw, **common)]), timeout=5)
        else:
            stub.Send(iter([peer_pb2.RaftBatch(messages=[raw], **common)]), timeout=5)


def _refused(c: ProcCluster, node: int, rule: str) -> int:
    return c.client.status(c.address(node)).refused.get(rule, 0)


def test_forged_messages_are_refused_and_nothing_is_lost(cluster):
    c = cluster
    c.client.put("before", b"acknowledged")
    leader = c.wait_leader()
    target = next(i for i in (1, 2, 3) if i != leader)
    other = next(i for i in (1, 2, 3) if i not in (leader, target))
    status = c.client.status(c.address(target))
    term, last = status.term, status.last_index
    attacks = [
        # (rule, message, sent as a snapshot chunk)
        ("term-limit", Heartbeat(leader, target, U64, 0, 1), False),
        ("entries-follow-on", AppendEntries(leader, target, term, last, status.term,
                                            [Entry(last + 1000, term, b"x")], 0), False),
        ("commit-past-log", Heartbeat(leader, target, term, last + 1000, 1), False),
        ("snapshot-parse", InstallSnapshot(leader, target, term, Snapshot(last + 100, term, b"\x00\x01\x02\x03")),
         True),
        ("timeout-now", TimeoutNow(other, target, term), False),
    ]
    for rule, message, as_chunk in attacks:
        before = _refused(c, target, rule)
        _send(c, target, message.src, message, snapshot=as_chunk)
        wait_until(lambda: _refused(c, target, rule) > before, 10, f"node {target} to refuse by rule {rule}")
    for m in c.cluster.members:
        assert launcher.process_alive(m.pid), f"node {m.id} stopped"
    assert c.client.status(c.address(target)).term < U64
    c.client.put("after", b"committed")
    hashes = c.wait_converged()
    assert len(set(hashes.values())) == 1, hashes
    assert c.client.get("before").value == b"acknowledged"
    # The attacked node's disk holds nothing it refused: it restarts and catches up.
    c.stop(target)
    c.start(target)
    wait_until(lambda: c.client.status(c.address(target)).applied_index >= c.client.status(
        c.address(c.wait_leader())).commit_index, 20, f"node {target} to catch up after its restart")
    assert len(set(c.wait_converged().values())) == 1
