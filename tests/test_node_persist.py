"""Where a node writes and syncs a Ready: a small one on the loop (a follower's ack
and a leader's commit wait for the sync either way), everything else on the disk
thread, where a loaded leader's loop goes on meanwhile."""

from __future__ import annotations

import time
from types import SimpleNamespace

import pytest

from raftflow.cluster.node.config import NodeConfig
from raftflow.cluster.node.raftnode import INLINE_BACKOFF_S, INLINE_LEADER_ENTRIES, INLINE_PERSIST_ENTRIES, INLINE_SYNC_MAX_S, RaftNode
from raftflow.cluster.node.transport import Transport
from raftflow.statemachine.machine import Machine
from raftflow.raft.types import Entry, Ready, Role, Snapshot


def _node(tmp_path, role: Role, **settings) -> RaftNode:
    config = NodeConfig(id=1, peers={1: "127.0.0.1:1"}, data_dir=str(tmp_path / "d"), seed=1, insecure=True, **settings)
    # Only the persist policy is under test: the storage is never touched.
    node = RaftNode(config, machine=Machine(), transport=Transport(config.cluster_id, 1, config.peers), storage=None)
    node.node = SimpleNamespace(role=role)
    return node


def _append(n: int) -> Ready:
    return Ready(entries=[Entry(index=i, term=1, data=b"v") for i in range(1, n + 1)])


@pytest.mark.parametrize("role", [Role.FOLLOWER, Role.CANDIDATE])
def test_a_small_append_off_the_leader_is_synced_on_the_loop(tmp_path, role):
    assert _node(tmp_path, role)._persist_inline(_append(INLINE_PERSIST_ENTRIES))


def test_a_leader_syncs_on_the_loop_only_when_nearly_idle(tmp_path):
    leader = _node(tmp_path, Role.LEADER)
    assert leader._persist_inline(_append(INLINE_LEADER_ENTRIES))
    assert not leader._persist_inline(_append(INLINE_LEADER_ENTRIES + 1))


def test_a_large_append_or_a_snapshot_goes_to_the_disk_thread(tmp_path):
    node = _node(tmp_path, Role.FOLLOWER)
    assert not node._persist_inline(_append(INLINE_PERSIST_ENTRIES + 1))
    assert not node._persist_inline(Ready(snapshot=Snapshot(index=5, term=1, data=b"s")))


def test_one_slow_sync_sends_syncs_to_the_disk_thread_for_a_while(tmp_path):
    """Found by review: a stall on the loop holds back heartbeats, so after a slow
    sync the loop must not wait on the next ones, and not only the very next."""
    node = _node(tmp_path, Role.FOLLOWER)
    node._note_sync(INLINE_SYNC_MAX_S / 2, time.monotonic())
    assert node._persist_inline(_append(1))
    node._note_sync(INLINE_SYNC_MAX_S * 2, time.monotonic())
    assert not node._persist_inline(_append(1))
    node._note_sync(INLINE_SYNC_MAX_S / 2, time.monotonic())  # fast again, but within the back-off
    assert not node._persist_inline(_append(1))
    node._inline_from = 0.0
    node._note_sync(INLINE_SYNC_MAX_S * 2, time.monotonic() - INLINE_BACKOFF_S - 1)  # long ago
    assert node._persist_inline(_append(1))


def test_the_slow_disk_fault_goes_to_the_disk_thread(tmp_path):
    assert not _node(tmp_path, Role.FOLLOWER, slow_disk_ms=10)._persist_inline(_append(1))


def test_fsync_off_never_syncs(tmp_path, monkeypatch):
    """`fsync = false` (benchmarks only) must reach no fdatasync or fsync at all: the
    file-system seam it overrides was renamed once and the override went dead."""
    from raftflow.cluster.node.server import open_storage
    from raftflow.raft.types import HardState

    def refuse(fd):
        raise AssertionError("a sync with fsync off")

    storage = open_storage(NodeConfig(id=1, peers={1: "127.0.0.1:1"}, data_dir=str(tmp_path / "d"), fsync=False, insecure=True))
    monkeypatch.setattr("os.fdatasync", refuse)
    monkeypatch.setattr("os.fsync", refuse)
    storage.persist(None, [Entry(index=1, term=1, data=b"v")], HardState(term=1, vote=1, commit=0))


def test_a_received_snapshot_is_decoded_off_the_loop_once(tmp_path, monkeypatch):
    """The transport decodes a whole snapshot in a thread; the core's check then
    finds it and does not decode again on the loop; a bad one is refused the same."""
    import asyncio

    node = _node(tmp_path, Role.FOLLOWER)
    source = Machine()
    good = source.snapshot()
    asyncio.run(node.predecode_snapshot(good))
    calls = []
    monkeypatch.setattr(node.machine, "decode_snapshot", lambda data: calls.append(data))
    node._check_snapshot(good)
    assert calls == [] and node._checked_snapshot[0] is good
    monkeypatch.undo()
    asyncio.run(node.predecode_snapshot(b"\x00\x01"))
    with pytest.raises(ValueError, match="snapshot"):
        node._check_snapshot(b"\x00\x01")
