"""Log compaction and InstallSnapshot (Raft §7, Figure 13)."""

from __future__ import annotations

import msgpack

from raftflow.raft import (
    AppendEntries,
    AppendResponse,
    Entry,
    InstallSnapshot,
    Role,
    Snapshot,
)
from raftflow.raft.progress import ProgressState
from raftnet import Network, log_terms

ELECTION_TICKS = 10


def compacted_cluster() -> Network:
    """Node 1 leads; node 3 was down while a..e were committed and node 1 compacted
    them away, then f was committed."""
    net = Network(3)
    net.elect(1)
    net.crash(3)
    net.propose(1, b"a", b"b", b"c", b"d", b"e")
    net.stabilize()
    net.compact(1)
    net.propose(1, b"f")
    net.stabilize()
    assert net.nodes[1].log.snapshot_index == 6 and net.nodes[1].log.first_index() == 7
    return net


def test_lagging_follower_catches_up_through_install_snapshot():
    # Raft §7: the leader sends its snapshot to a follower that needs entries it
    # discarded; the follower replaces its state and log, then takes later entries.
    net = compacted_cluster()
    net.restart(3)
    net.run(1)
    assert net.count(InstallSnapshot) == 1
    follower = net.nodes[3]
    assert (follower.log.snapshot_index, follower.log.commit, follower.log.applied) == (6, 7, 7)
    assert net.applied[3] == net.applied[1] == [b"a", b"b", b"c", b"d", b"e", b"f"]
    assert net.storages[3].load().snapshot == net.nodes[1].snapshot
    assert net.nodes[1].progress[3].state is ProgressState.REPLICATE
    net.propose(1, b"g")
    net.stabilize()
    assert net.applied[3][-1] == b"g"


def test_node_restarts_from_its_snapshot_and_replays_only_later_entries():
    # Raft §7: the snapshot replaces the compacted prefix on disk; a restart restores
    # the state machine from it and re-applies the committed entries after it.
    net = compacted_cluster()
    net.crash(1)
    node = net.restart(1)
    assert (node.log.snapshot_index, node.log.applied) == (6, 6)
    assert net.applied[1] == [b"a", b"b", b"c", b"d", b"e"]
    net.restart(3)
    net.elect(1)
    assert net.applied[1] == net.applied[2] == net.applied[3] == [b"a", b"b", b"c", b"d", b"e", b"f"]


def test_follower_keeps_the_log_after_a_snapshot_it_already_holds():
    # Raft Figure 13 step 6: "If existing log entry has same index and term as
    # snapshot's last included entry, retain log entries following it".
    net = Network(3, logs={2: [1, 1, 1, 1]})
    follower = net.nodes[2]
    net.step(InstallSnapshot(1, 2, 1, Snapshot(2, 1, msgpack.packb([]))))
    rd = net.process(2)
    assert rd.snapshot is None
    assert log_terms(follower) == [1, 1, 1, 1] and follower.log.commit == 2
    assert rd.messages == [AppendResponse(2, 1, 1, success=True, index=2)]


def test_follower_replaces_a_conflicting_log_with_the_snapshot():
    # Raft Figure 13 step 7: "Discard the entire log".
    net = Network(3, logs={2: [1, 1, 2, 2]}, terms={2: 3})
    follower = net.nodes[2]
    net.step(InstallSnapshot(1, 2, 3, Snapshot(3, 3, msgpack.packb([b"x"]))))
    net.process(2)
    assert (follower.log.snapshot_index, follower.log.last_index(), follower.log.entries) == (3, 3, [])
    assert net.applied[2] == [b"x"]
    assert net.storages[2].load().entries == []


def test_stale_install_snapshot_is_acknowledged_and_ignored():
    # Raft §7: a snapshot the follower is already past changes nothing; the answer
    # tells the leader where the follower really is.
    net = Network(3)
    net.elect(1)
    net.propose(1, b"a", b"b")
    net.stabilize()
    follower = net.nodes[2]
    net.step(InstallSnapshot(1, 2, 1, Snapshot(2, 1, b"")))
    rd = net.process(2)
    assert rd.snapshot is None and follower.log.last_index() == 3
    assert rd.messages == [AppendResponse(2, 1, 1, success=True, index=3)]


def test_lost_snapshot_is_sent_again_after_an_election_timeout():
    # Nothing else goes to a follower awaiting a snapshot; if none is acknowledged
    # within an election timeout, the leader probes again and re-sends it.
    net = compacted_cluster()
    net.restart(3)
    net.tick(1)
    net.stabilize(hold=lambda m: isinstance(m, InstallSnapshot))
    net.drop(InstallSnapshot)
    assert net.nodes[1].progress[3].state is ProgressState.SNAPSHOT
    net.run(ELECTION_TICKS)
    assert net.applied[3] == net.applied[1]
    assert net.count(InstallSnapshot) == 1, "the second one arrived"


def test_new_leader_sends_its_snapshot_to_a_follower_behind_it():
    # Raft §7: any leader may need to; here the snapshot was taken by a follower that
    # later became leader.
    net = compacted_cluster()
    net.compact(2)
    net.elect(2)
    net.restart(3)
    net.run(1)
    assert net.nodes[2].role is Role.LEADER
    assert [m.src for m in net.delivered if isinstance(m, InstallSnapshot)] == [2]
    assert net.applied[3] == net.applied[2]


def test_entries_after_a_received_snapshot_append_cleanly():
    # After restoring, the follower's log starts right after the snapshot point.
    net = Network(3, logs={2: [1]}, terms={2: 2})
    net.step(InstallSnapshot(1, 2, 2, Snapshot(5, 2, msgpack.packb([b"s"]))))
    net.process(2)
    net.step(AppendEntries(1, 2, 2, 5, 2, [Entry(6, 2, b"t")], commit=6))
    net.process(2)
    assert net.applied[2] == [b"s", b"t"]
    assert [e.index for e in net.storages[2].load().entries] == [6]
