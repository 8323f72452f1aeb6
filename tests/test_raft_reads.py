"""Linearizable reads without writing to the log -- ReadIndex and the leader lease
(thesis §6.4, §6.4.1) -- and leadership transfer (thesis §3.10), which ends a lease."""

from __future__ import annotations

import pytest

from raftflow.raft import (
    NONE,
    AppendResponse,
    Heartbeat,
    HeartbeatResponse,
    LeaseExpired,
    NotLeader,
    ProposalDropped,
    RaftError,
    ReadDropped,
    ReadState,
    Role,
    TimeoutNow,
)
from raftnet import Network

ELECTION_TICKS = 10


def heartbeat_round(net: Network, leader: int) -> int:
    """Send one heartbeat round from `leader`; returns its sequence number."""
    net.tick(leader)
    rd = net.process(leader)
    (seq,) = {m.seq for m in rd.early_messages if isinstance(m, Heartbeat)}
    return seq


def ack_round(net: Network, seq: int, *followers: int) -> None:
    """`followers` receive heartbeat round `seq` and their answers reach the leader."""
    for follower in followers:
        net.deliver(Heartbeat, dst=follower, where=lambda m: m.seq == seq)
        net.process(follower)
        net.deliver(HeartbeatResponse, src=follower)


def is_append_answer(m) -> bool:
    return isinstance(m, AppendResponse)


# --- ReadIndex (thesis §6.4) ------------------------------------------------------------


def test_read_index_is_answered_only_after_a_quorum_acks_a_round_sent_after_the_request():
    # Thesis §6.4 steps 2-3: record the commit index, then confirm leadership with a
    # heartbeat round sent *after* the request; an earlier round proves nothing.
    net = Network(3)
    net.elect(1)
    leader = net.nodes[1]
    net.propose(1, b"x")
    net.stabilize()
    earlier = heartbeat_round(net, 1)
    leader.read_index(b"r")
    net.propose(1, b"after the read")  # not part of what the read must see
    rd = net.process(1)
    assert not [m for m in rd.early_messages if isinstance(m, Heartbeat)], "waits for the round in flight"
    ack_round(net, earlier, 2, 3)
    rd = net.process(1)
    assert net.read_states[1] == [], "a round sent before the request"
    (later,) = {m.seq for m in rd.early_messages if isinstance(m, Heartbeat)}
    assert later > earlier
    ack_round(net, later, 2)
    net.process(1)
    assert net.read_states[1] == [ReadState(b"r", index=2)], "the commit index when asked"


def test_reads_arriving_while_a_round_is_in_flight_are_served_by_the_next_round_only():
    # Thesis §6.4: one round confirms every read registered before it was sent, so
    # reads batch: at most one round is in flight, and the reads that arrive
    # meanwhile wait for the next one, which leaves when a quorum acks the first.
    net = Network(3)
    net.elect(1)
    leader = net.nodes[1]
    leader.read_index(b"a")
    first = heartbeat_round(net, 1)
    leader.read_index(b"b")
    leader.read_index(b"c")
    rd = net.process(1)
    assert not [m for m in rd.early_messages if isinstance(m, Heartbeat)], "one round in flight at a time"
    ack_round(net, first, 2)  # a quorum: the leader and node 2
    rd = net.process(1)
    assert net.read_states[1] == [ReadState(b"a", index=1)], "b and c arrived after the round was sent"
    (second,) = {m.seq for m in rd.early_messages if isinstance(m, Heartbeat)}
    assert second == first + 1, "the next round leaves at once, for b and c together"
    ack_round(net, first, 3)  # the late answer to the first round serves nothing more
    net.process(1)
    assert net.read_states[1] == [ReadState(b"a", index=1)]
    ack_round(net, second, 3)
    net.process(1)
    assert net.read_states[1][1:] == [ReadState(b"b", index=1), ReadState(b"c", index=1)]


def test_a_lost_read_round_does_not_stall_reads():
    # Thesis §6.4: a round whose heartbeats are lost is never acknowledged; the next
    # heartbeat tick sends a new round, which serves the reads waiting behind it.
    net = Network(3, heartbeat_ticks=2)
    net.elect(1)
    leader = net.nodes[1]
    leader.read_index(b"a")
    net.process(1)
    net.drop(Heartbeat)  # the read round is lost
    leader.read_index(b"b")
    net.stabilize()
    assert net.read_states[1] == [], "nothing acked yet: the lost round is still outstanding"
    net.run(2)  # one heartbeat interval
    assert net.read_states[1] == [ReadState(b"a", index=1), ReadState(b"b", index=1)]
    leader.read_index(b"c")
    net.stabilize()
    assert net.read_states[1][2:] == [ReadState(b"c", index=1)], "a round leaves at once again"


def test_read_index_waits_until_the_leader_has_committed_an_entry_of_its_term():
    # Thesis §6.4 step 1: a new leader learns the commit index only when its no-op
    # commits; until then a read could miss an entry an earlier leader committed.
    net = Network(3, logs={1: [1, 1], 2: [1, 1], 3: [1, 1]})
    net.elect(1, settle=False)
    net.nodes[1].read_index(b"r")
    net.stabilize(hold=is_append_answer)
    heartbeat_round(net, 1)
    net.stabilize(hold=is_append_answer)
    assert net.nodes[1].log.commit == 0 and net.read_states[1] == [], "acked, but no commit in term 2"
    net.stabilize()
    assert net.read_states[1] == [ReadState(b"r", index=3)], "the no-op's index"


def test_pending_reads_are_dropped_when_leadership_is_lost():
    # Thesis §6.4: a deposed leader can never confirm them; the caller retries elsewhere.
    net = Network(3)
    net.elect(1)
    net.nodes[1].read_index(b"r")
    net.isolate(1)
    net.run(2 * ELECTION_TICKS)  # CheckQuorum makes it step down
    assert net.nodes[1].role is Role.FOLLOWER
    assert net.read_states[1] == []
    assert net.reads_dropped[1] == [ReadDropped(b"r", "leadership lost")]


def test_reads_waiting_for_the_first_commit_are_dropped_too():
    # Thesis §6.4: a read deferred for the no-op is dropped like any other.
    net = Network(3)
    net.elect(1, settle=False)
    net.nodes[1].read_index(b"r")
    net.isolate(1)  # its no-op never commits
    net.run(ELECTION_TICKS)
    assert net.nodes[1].role is Role.FOLLOWER
    assert net.reads_dropped[1] == [ReadDropped(b"r", "leadership lost")]


def test_read_index_on_a_single_node_needs_no_round_trip():
    # Thesis §6.4: with a quorum of one, the leader confirms itself.
    net = Network(1)
    net.elect(1)
    net.nodes[1].read_index(b"r")
    net.stabilize()
    assert net.read_states[1] == [ReadState(b"r", index=1)]


def test_read_index_on_a_follower_raises_not_leader():
    # Thesis §6.4: only the leader knows the commit index a read must wait for.
    net = Network(3)
    net.elect(1)
    with pytest.raises(NotLeader, match="the leader is node 1"):
        net.nodes[2].read_index(b"r")


def test_read_index_beyond_max_pending_reads_is_refused():
    # STYLE §6: bounded; the message names the setting.
    net = Network(3, max_pending_reads=2)
    net.elect(1)
    net.nodes[1].read_index(b"a")
    net.nodes[1].read_index(b"b")
    with pytest.raises(RaftError, match="max_pending_reads=2"):
        net.nodes[1].read_index(b"c")


# --- the leader lease (thesis §6.4.1) ------------------------------------------------------


def test_lease_read_needs_a_quorum_acked_round_in_this_term():
    # Thesis §6.4.1: followers that acked a round will not elect anyone else for an
    # election timeout, so for a shorter time the leader can answer alone.
    net = Network(3)
    net.elect(1)
    with pytest.raises(LeaseExpired, match="node 1 holds no valid lease in term 1"):
        net.nodes[1].read_lease()
    net.run(1)
    assert net.nodes[1].read_lease() == net.nodes[1].log.commit == 1


def test_lease_expires_lease_ticks_after_the_last_acked_round_was_sent():
    # Thesis §6.4.1: the lease counts from when the acknowledged round was sent.
    net = Network(3, lease_ticks=5)
    net.elect(1)
    leader = net.nodes[1]
    seq = heartbeat_round(net, 1)
    sent_at = leader.ticks
    ack_round(net, seq, 2)
    net.isolate(1)  # no more acks
    while leader.ticks < sent_at + 4:
        heartbeat_round(net, 1)
        assert leader.read_lease() == 1, leader.ticks - sent_at
    heartbeat_round(net, 1)
    with pytest.raises(LeaseExpired):
        leader.read_lease()
    assert leader.role is Role.LEADER, "still leader: only the lease ran out"


def test_old_leaders_lease_runs_out_before_anyone_else_can_be_elected():
    # Thesis §6.4.1: voters that acked a round refuse votes for an election timeout
    # after hearing it; the lease, counted from when the round was sent, is shorter.
    net = Network(3)
    net.elect(1)
    net.run(1)
    net.isolate(1)
    lease_ticks = 0
    while net.leader() in (1, None):
        lease_ticks += net.nodes[1].lease_valid()
        net.run(1)
    assert not net.nodes[1].lease_valid(), "a new leader while the old lease holds"
    assert lease_ticks == ELECTION_TICKS - 1, "the default lease: one tick short of the timeout"


def test_lease_is_given_up_when_a_transfer_begins():
    # Thesis §3.10 with §6.4.1: the target may win before the lease would end.
    net = Network(3)
    net.elect(1)
    net.crash(3)
    net.run(1)
    assert net.nodes[1].read_lease() == 1
    net.nodes[1].transfer_leadership(3)
    with pytest.raises(LeaseExpired):
        net.nodes[1].read_lease()
    net.run(ELECTION_TICKS)  # the transfer is aborted, but a late TimeoutNow could still land
    assert net.nodes[1].status().lead_transferee == NONE
    with pytest.raises(LeaseExpired):
        net.nodes[1].read_lease()


def test_lease_read_on_a_follower_raises_not_leader():
    # Thesis §6.4.1: only a leader holds a lease.
    net = Network(3)
    net.elect(1)
    with pytest.raises(NotLeader):
        net.nodes[2].read_lease()


# --- leadership transfer (thesis §3.10) -------------------------------------------------------


def lagging_target() -> Network:
    """Node 1 leads; node 3 was down while two entries were committed."""
    net = Network(3)
    net.elect(1)
    net.crash(3)
    net.propose(1, b"a", b"b")
    net.stabilize()
    net.restart(3)
    return net


def test_transfer_catches_the_target_up_before_sending_timeout_now():
    # Thesis §3.10 steps 1-2: TimeoutNow goes out only once the target's log matches.
    net = lagging_target()
    net.nodes[1].transfer_leadership(3)
    rd = net.process(1)
    assert not [m for m in rd.early_messages if isinstance(m, TimeoutNow)], "3 lacks entries 2-3"
    net.tick(1)  # a heartbeat answer tells the leader how far behind 3 is
    net.stabilize(hold=lambda m: isinstance(m, TimeoutNow))
    (timeout_now,) = net.take(TimeoutNow)
    assert timeout_now.dst == 3
    assert net.nodes[3].log.last_index() == net.nodes[1].log.last_index() == 3
    net.step(timeout_now)
    net.stabilize()
    assert net.leader() == 3 and net.nodes[3].term == 2
    assert net.applied[3] == [b"a", b"b"]


def test_transfer_target_wins_at_once_without_waiting_for_its_election_timeout():
    # Thesis §3.10 step 3: TimeoutNow makes the target campaign now, skipping the
    # pre-vote, and voters grant it despite a recent leader. No clock moves here.
    net = Network(3)
    net.elect(1)
    net.run(2 * ELECTION_TICKS)
    ticks = {i: n.ticks for i, n in net.nodes.items()}
    net.nodes[1].transfer_leadership(2)
    net.stabilize()
    assert net.leader() == 2
    assert {n.term for n in net.nodes.values()} == {2}
    assert {i: n.ticks for i, n in net.nodes.items()} == ticks
    net.propose(2, b"x")
    net.stabilize()
    assert net.applied[1] == [b"x"]


def test_proposals_are_refused_while_a_transfer_is_in_progress():
    # Thesis §3.10: new entries would keep the target from ever catching up.
    net = lagging_target()
    net.nodes[1].transfer_leadership(3)
    with pytest.raises(ProposalDropped, match="leadership transfer to node 3 in progress"):
        net.propose(1, b"x")
    assert net.nodes[1].log.last_index() == 3


def test_transfer_to_a_down_target_is_aborted_after_an_election_timeout():
    # Thesis §3.10: "if the transfer does not complete within an election timeout,
    # the leader aborts it and resumes accepting client requests".
    net = Network(3)
    net.elect(1)
    net.crash(3)
    net.nodes[1].transfer_leadership(3)
    net.run(ELECTION_TICKS - 1)
    assert net.nodes[1].status().lead_transferee == 3
    with pytest.raises(ProposalDropped):
        net.propose(1, b"x")
    net.run(1)
    assert net.nodes[1].status().lead_transferee == NONE
    assert net.leader() == 1 and net.nodes[1].term == 1
    net.propose(1, b"x")
    net.stabilize()
    assert net.applied[2] == [b"x"]


def test_transfer_is_refused_on_a_follower_and_to_a_non_voter():
    # Thesis §3.10: only the leader transfers, and only to a voter.
    net = Network(3)
    net.elect(1)
    with pytest.raises(NotLeader):
        net.nodes[2].transfer_leadership(3)
    with pytest.raises(RaftError, match="node 7 is not a voter"):
        net.nodes[1].transfer_leadership(7)


def test_an_expired_lease_is_not_revived_by_a_round_sent_before_the_stall():
    # The driver expires the lease when ticks were missed (a paused leader): real time
    # ran ahead of the ticks, so a round sent before the stall proves nothing about
    # now; a round sent after it starts a new lease.
    net = Network(3)
    net.elect(1)
    leader = net.nodes[1]
    net.stabilize()
    ack_round(net, heartbeat_round(net, 1), 2, 3)
    assert leader.lease_valid()
    before = heartbeat_round(net, 1)  # sent, then the leader stalls
    leader.expire_lease()
    assert not leader.lease_valid()
    with pytest.raises(LeaseExpired):
        leader.read_lease()
    ack_round(net, before, 2, 3)  # acknowledged after the stall
    assert not leader.lease_valid(), "a round sent before the stall revived the lease"
    ack_round(net, heartbeat_round(net, 1), 2, 3)
    assert leader.lease_valid()
