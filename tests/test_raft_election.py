"""Leader election (Raft §5.2, §5.4.1) and its thesis extensions: PreVote (§9.6),
CheckQuorum (§6.2), leader stickiness (§4.2.3) and the restart vote guard."""

from __future__ import annotations

import pytest

from raftflow.raft import (
    NONE,
    AppendEntries,
    HardState,
    Heartbeat,
    RequestVote,
    Role,
    SoftState,
    VoteResponse,
)
from raftnet import Network

# Raft as the paper describes it, without the thesis extensions that hold votes back.
PAPER = {"pre_vote": False, "check_quorum": False}
ELECTION_TICKS = 10  # Config's default


def vote_requests(net: Network, dst: int) -> list[RequestVote]:
    return [m for m in net.queue if isinstance(m, RequestVote) and m.dst == dst]


def vote(net: Network, request: RequestVote) -> VoteResponse | None:
    """Deliver `request`; the vote response its recipient sends (after persisting),
    or None when it does not answer."""
    net.step(request)
    net.process(request.dst)
    responses = net.take(VoteResponse, src=request.dst)
    assert len(responses) <= 1, responses
    return responses[0] if responses else None


# --- randomized timeouts ------------------------------------------------------------


def test_election_timeouts_are_randomized_and_the_first_to_fire_wins():
    # Raft §5.2: each node draws its timeout from [election_ticks, 2*election_ticks),
    # so usually one candidate times out, and wins, before any other tries.
    winners = set()
    for seed in range(20):
        net = Network(5, seed=seed)
        timeouts = {i: n.randomized_election_ticks for i, n in net.nodes.items()}
        assert all(ELECTION_TICKS <= t < 2 * ELECTION_TICKS for t in timeouts.values()), timeouts
        shortest = min(timeouts.values())
        first = [i for i, t in timeouts.items() if t == shortest]
        leader = net.elect()
        if len(first) == 1:
            assert leader == first[0], (seed, timeouts)
            assert net.nodes[leader].term == 1, "no split vote: one election was enough"
        winners.add(leader)
    assert len(winners) > 1, "the seed, not the node id, decides who times out first"


def test_same_seed_replays_the_same_election():
    # STYLE §8: one seed, one run -- a failing scenario replays exactly.
    def run(seed: int) -> tuple[int, int]:
        net = Network(5, seed=seed)
        leader = net.elect()
        return leader, net.nodes[leader].term

    assert run(7) == run(7)


# --- persisting before answering ------------------------------------------------------


def test_candidate_persists_its_term_and_self_vote_before_asking_for_votes():
    # Raft Figure 2: currentTerm and votedFor are durable before any RPC goes out.
    net = Network(3, **PAPER)
    net.nodes[1].campaign()
    rd = net.ready(1)
    assert rd.hard_state == HardState(term=1, vote=1, commit=0)
    assert rd.early_messages == [] and net.queue == [], "nothing leaves before the disk write"
    assert {(m.dst, m.term) for m in rd.messages} == {(2, 1), (3, 1)}
    net.persist(1)
    assert net.storages[1].state.hard_state == HardState(term=1, vote=1)
    assert len(vote_requests(net, 2)) == len(vote_requests(net, 3)) == 1


def test_granted_vote_is_in_the_hard_state_of_the_ready_that_sends_it():
    # Raft Figure 2: "updated on stable storage before responding to RPCs".
    net = Network(3, **PAPER)
    net.nodes[1].campaign()
    net.process(1)
    net.deliver(RequestVote, dst=2)
    rd = net.ready(2)
    assert rd.hard_state == HardState(term=1, vote=1, commit=0)
    assert rd.messages == [VoteResponse(src=2, dst=1, term=1, granted=True)]
    assert rd.early_messages == [] and not [m for m in net.queue if m.src == 2]


def test_vote_lost_in_a_crash_before_persisting_was_never_sent():
    # Raft Figure 2: a vote and its response are one durable act. A crash between the
    # Ready and the disk write loses both, so the node may vote again in that term.
    net = Network(3, **PAPER)
    net.nodes[1].campaign()
    net.process(1)
    net.deliver(RequestVote, dst=2)
    net.ready(2)
    net.crash(2)
    assert not [m for m in net.queue if m.src == 2], "the answer never left"
    node = net.restart(2)
    assert (node.term, node.vote) == (0, NONE)
    assert vote(net, RequestVote(src=3, dst=2, term=1, last_log_index=0, last_log_term=0)).granted


# --- who may get a vote -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("last_log_index", "last_log_term", "granted"),
    [
        (3, 1, False),  # a lower last term loses, however long the log
        (1, 2, False),  # the same last term and a shorter log loses
        (2, 2, True),  # the same last entry is up to date
        (3, 2, True),  # a longer log in the same term is more up to date
        (1, 3, True),  # a higher last term wins, however short the log
    ],
)
def test_vote_is_denied_to_a_candidate_whose_log_is_less_up_to_date(last_log_index, last_log_term, granted):
    # Raft §5.4.1: compare the last entries' terms, then the logs' lengths.
    net = Network(3, logs={2: [1, 2]}, **PAPER)
    voter = net.nodes[2]
    request = RequestVote(src=1, dst=2, term=3, last_log_index=last_log_index, last_log_term=last_log_term)
    assert vote(net, request).granted is granted
    assert voter.term == 3, "a higher term is adopted whether or not the vote is granted"
    assert voter.vote == (1 if granted else NONE)


def test_skip_up_to_date_check_mutation_grants_the_stale_candidate_its_vote():
    # Raft §5.4.1, broken on purpose: proves the switch the simulator's checkers rely on.
    net = Network(3, logs={2: [1, 2]}, mutations=frozenset({"skip-up-to-date-check"}), **PAPER)
    assert vote(net, RequestVote(src=1, dst=2, term=3, last_log_index=3, last_log_term=1)).granted


def test_candidate_missing_committed_entries_cannot_win():
    # Raft §5.4.1 (Leader Completeness): a majority holds every committed entry and
    # refuses to vote for a log that lacks it.
    net = Network(3, **PAPER)
    net.elect(1)
    net.crash(3)
    net.propose(1, b"committed")
    net.stabilize()
    assert net.nodes[1].log.commit == net.nodes[2].log.commit == 2
    net.crash(1)
    net.restart(3)
    net.nodes[3].campaign()
    net.stabilize()
    assert net.nodes[3].role is not Role.LEADER
    assert [m.granted for m in net.delivered if isinstance(m, VoteResponse) and m.dst == 3] == [False]
    net.elect(2)
    net.stabilize()
    assert net.applied[3] == [b"committed"]


def test_node_grants_at_most_one_vote_per_term():
    # Raft §5.2: "each server will vote for at most one candidate in a given term,
    # on a first-come-first-served basis" -- also across a restart.
    net = Network(3, **PAPER)
    from_1 = RequestVote(src=1, dst=3, term=1, last_log_index=0, last_log_term=0)
    from_2 = RequestVote(src=2, dst=3, term=1, last_log_index=0, last_log_term=0)
    assert vote(net, from_1).granted
    assert not vote(net, from_2).granted
    assert vote(net, from_1).granted, "a repeated request from the same candidate is answered the same"
    net.crash(3)
    net.restart(3)
    assert not vote(net, from_2).granted, "the vote survived the restart"


def test_split_vote_is_resolved_by_a_later_election():
    # Raft §5.2: with no majority, candidates time out and start a new term.
    net = Network(4, **PAPER)
    net.nodes[1].campaign()
    net.nodes[2].campaign()
    net.process(1)
    net.process(2)
    net.deliver(RequestVote, src=1, dst=3)  # first come, first served
    net.deliver(RequestVote, src=2, dst=4)
    net.stabilize()
    assert net.leader() is None, "two votes each: no majority of four"
    assert net.nodes[1].role is net.nodes[2].role is Role.CANDIDATE
    leader = net.elect()  # clocks run: randomized timeouts fire one at a time
    assert net.nodes[leader].term >= 2


def test_candidate_becomes_follower_when_a_leader_of_its_term_appears():
    # Raft §5.2: "If AppendEntries RPC received from new leader: convert to follower".
    net = Network(3, **PAPER)
    net.nodes[3].campaign()
    net.process(3)
    net.step(AppendEntries(src=1, dst=3, term=1, prev_index=0, prev_term=0, entries=[], commit=0))
    assert (net.nodes[3].role, net.nodes[3].leader, net.nodes[3].term) == (Role.FOLLOWER, 1, 1)


def test_stale_leader_steps_down_when_it_hears_a_higher_term():
    # Raft §5.1: a server that sees a higher term adopts it and becomes a follower.
    net = Network(3, **PAPER)
    net.elect(1)
    net.isolate(1)
    net.elect(2)
    assert net.nodes[1].role is Role.LEADER, "cut off, it still believes it leads term 1"
    net.heal()
    net.run(1)
    assert (net.nodes[1].role, net.nodes[1].term, net.nodes[1].leader) == (Role.FOLLOWER, 2, 2)


def test_single_node_cluster_elects_itself_and_commits_once_persisted():
    # Raft §5.2 with a quorum of one; thesis §10.2.1: its own disk is the whole quorum.
    net = Network(1)
    net.tick_until_campaign(1)
    assert net.nodes[1].role is Role.LEADER
    net.propose(1, b"alone")
    assert net.nodes[1].log.commit == 0, "nothing is durable yet"
    net.stabilize()
    assert net.applied[1] == [b"alone"]


def test_ready_announces_role_and_leader_changes_in_its_soft_state():
    # Drivers learn who leads from the Ready; it is volatile, never persisted.
    net = Network(3, **PAPER)
    net.nodes[1].campaign()
    net.stabilize()
    assert net.soft_states[1] == [SoftState(NONE, Role.CANDIDATE), SoftState(1, Role.LEADER)]
    assert net.soft_states[2] == [SoftState(1, Role.FOLLOWER)]
    net.crash(1)
    net.nodes[2].campaign()
    net.process(2)
    assert net.soft_states[2][-1] == SoftState(NONE, Role.CANDIDATE)


# --- PreVote (thesis §9.6) ------------------------------------------------------------------


def test_prevote_is_granted_without_changing_term_or_vote():
    # Thesis §9.6: a pre-vote asks "would you vote for me?" and changes nothing durable.
    net = Network(3, check_quorum=False)
    voter = net.nodes[2]
    net.step(RequestVote(src=1, dst=2, term=1, last_log_index=0, last_log_term=0, pre_vote=True))
    rd = net.process(2)
    assert rd.hard_state is None
    assert rd.messages == [VoteResponse(src=2, dst=1, term=1, granted=True, pre_vote=True)]
    assert (voter.term, voter.vote) == (0, NONE)


def test_prevote_rejoining_partitioned_node_does_not_bump_terms_or_disrupt_the_leader():
    # Thesis §9.6: a node cut off keeps failing pre-elections at its old term; when it
    # rejoins, the healthy leader keeps its term and its leadership.
    net = Network(3)
    net.elect(1)
    term = net.nodes[1].term
    net.isolate(3)
    net.tick_until_campaign(3)
    assert (net.nodes[3].role, net.nodes[3].term, net.nodes[3].vote) == (Role.PRE_CANDIDATE, term, 1)
    net.run(5 * ELECTION_TICKS)
    assert net.nodes[3].role is Role.PRE_CANDIDATE
    assert net.nodes[3].term == term, "pre-elections changed no term"
    assert net.count(RequestVote, where=lambda m: m.src == 3) == 0, "all were lost"
    net.propose(1, b"while 3 was away")
    net.heal()
    net.run(2 * ELECTION_TICKS)
    assert net.leader() == 1
    assert {n.term for n in net.nodes.values()} == {term}
    assert net.nodes[3].leader == 1
    assert net.applied[3] == [b"while 3 was away"]


def test_without_prevote_a_rejoining_node_disrupts_the_leader():
    # The problem PreVote solves (thesis §9.6): the cut-off node's term grew with every
    # timeout; when it rejoins, its higher term deposes a healthy leader.
    net = Network(3, **PAPER)
    net.elect(1)
    term = net.nodes[1].term
    net.isolate(3)
    net.run(5 * ELECTION_TICKS)
    assert net.nodes[3].term > term + 1
    net.heal()
    net.run(1)
    assert net.nodes[1].term > term and net.nodes[1].role is not Role.LEADER


# --- CheckQuorum (thesis §6.2) and leader stickiness (thesis §4.2.3) -----------------------


def test_isolated_leader_steps_down_after_an_election_timeout_without_a_quorum():
    # Thesis §6.2: every election timeout the leader checks it heard from a majority
    # during the last one; if not, it steps down instead of leading a minority.
    net = Network(3)
    net.elect(1)
    net.isolate(1)
    net.run(ELECTION_TICKS)
    assert net.nodes[1].role is Role.LEADER, "it heard a quorum early in this timeout"
    net.run(ELECTION_TICKS)
    assert (net.nodes[1].role, net.nodes[1].leader) == (Role.FOLLOWER, NONE)
    assert net.nodes[1].term == 1, "it stepped down on its own: no higher term reached it"


def test_leader_with_a_quorum_keeps_leading():
    # Thesis §6.2: one follower down is not a lost quorum.
    net = Network(3)
    net.elect(1)
    net.crash(3)
    net.run(10 * ELECTION_TICKS)
    assert net.leader() == 1 and net.nodes[1].term == 1


def test_follower_ignores_vote_requests_while_it_hears_from_a_leader():
    # Thesis §4.2.3 (enabled with CheckQuorum, as in etcd): a follower that heard from
    # a leader within the election timeout neither adopts the higher term nor votes.
    net = Network(3)
    net.elect(1)
    net.run(2 * ELECTION_TICKS)
    follower = net.nodes[2]
    request = RequestVote(src=3, dst=2, term=5, last_log_index=99, last_log_term=1)
    assert vote(net, request) is None
    assert (follower.term, follower.vote, follower.leader) == (1, 1, 1)
    net.tick(2, ELECTION_TICKS)  # a whole timeout without the leader
    assert vote(net, request).granted and follower.term == 5


def test_transfer_vote_request_bypasses_leader_stickiness():
    # Thesis §3.10: the leader asked for this election, so voters need not protect it.
    net = Network(3)
    net.elect(1)
    net.run(2 * ELECTION_TICKS)
    request = RequestVote(src=3, dst=2, term=2, last_log_index=99, last_log_term=1, transfer=True)
    assert vote(net, request).granted and net.nodes[2].term == 2


def test_leader_ignores_vote_requests_of_a_higher_term():
    # Thesis §4.2.3: the leader itself is the freshest news of a leader.
    net = Network(3)
    net.elect(1)
    assert vote(net, RequestVote(src=3, dst=1, term=9, last_log_index=99, last_log_term=1)) is None
    assert (net.nodes[1].role, net.nodes[1].term) == (Role.LEADER, 1)


def test_restarted_node_refuses_votes_for_one_election_timeout():
    # It forgot when it last heard from a leader; granting at once could end a
    # leader's lease early (thesis §6.4.1), so it waits one election timeout.
    net = Network(3)
    net.elect(1)
    net.crash(2)
    voter = net.restart(2)
    request = RequestVote(src=3, dst=2, term=2, last_log_index=99, last_log_term=1)
    net.tick(2, ELECTION_TICKS - 1)
    assert vote(net, request) is None
    assert voter.term == 1
    net.tick(2)
    assert vote(net, request).granted


def test_heartbeat_resets_the_follower_election_timer():
    # Raft §5.2: a follower stays one as long as it hears from a leader.
    net = Network(3)
    net.elect(1)
    net.run(10 * ELECTION_TICKS)
    assert net.leader() == 1 and all(n.term == 1 for n in net.nodes.values())
    assert net.count(Heartbeat) > 0
