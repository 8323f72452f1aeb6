"""Log replication (Raft §5.3), the commit rule (§5.4.2, Figure 8), the leader's
no-op (§8), batching and pipelining (thesis §10.2) and the leader writing to its
own disk in parallel (thesis §10.2.1)."""

from __future__ import annotations

import random

import pytest

from raftflow.raft import (
    AppendEntries,
    AppendResponse,
    Entry,
    EntryKind,
    NotLeader,
    ProposalDropped,
    Role,
)
from raftflow.raft.progress import ProgressState
from raftnet import Network, log_terms

PAPER = {"pre_vote": False, "check_quorum": False}


def appends_to(messages, dst: int) -> list[AppendEntries]:
    return [m for m in messages if isinstance(m, AppendEntries) and m.dst == dst]


def rejections(net: Network, src: int) -> int:
    return net.count(AppendResponse, where=lambda m: m.src == src and not m.success)


# --- the happy path ---------------------------------------------------------------


def test_new_leader_appends_a_noop_in_its_term_and_commits_earlier_entries_with_it():
    # Raft §8: a leader does not know which entries of earlier terms are committed
    # until it commits one of its own term; the no-op is that entry.
    net = Network(3, logs={1: [1, 1], 2: [1, 1], 3: [1]})
    net.elect(1)
    leader = net.nodes[1]
    noop = leader.log.entries[-1]
    assert (noop.index, noop.term, noop.kind, noop.data) == (3, 2, EntryKind.NOOP, b"")
    assert all(n.log.commit == 3 for n in net.nodes.values())
    assert all(net.applied[i] == [b"1@1", b"2@1"] for i in net.ids), "no-ops are not applied"


def test_proposals_commit_and_apply_in_order_on_every_node():
    # Raft §5.3: the leader appends, replicates, and once a majority stores an entry
    # every node applies it in log order.
    net = Network(5)
    net.elect(1)
    assert net.propose(1, b"a") == (2, 1)
    assert net.propose(1, b"b", b"c") == (3, 1)
    net.stabilize()
    net.propose(1, b"d")
    net.stabilize()
    assert all(net.applied[i] == [b"a", b"b", b"c", b"d"] for i in net.ids)
    assert {n.log.commit for n in net.nodes.values()} == {5}


def test_follower_acknowledges_entries_only_in_the_ready_that_persists_them():
    # Raft §5.3 with Figure 2: an acknowledgement promises the entries are durable.
    net = Network(3)
    net.elect(1)
    net.propose(1, b"x")
    net.process(1)
    net.deliver(AppendEntries, dst=2)
    rd = net.ready(2)
    assert [e.data for e in rd.entries] == [b"x"]
    assert rd.early_messages == []
    assert rd.messages == [AppendResponse(src=2, dst=1, term=1, success=True, index=2)]
    assert not [m for m in net.queue if m.src == 2], "nothing leaves before persist()"


def test_follower_crash_before_persisting_loses_the_entries_and_their_ack():
    # The driver contract: a crash between Ready and disk write loses both, so the
    # leader never counted them; it re-sends and the follower catches up.
    net = Network(3)
    net.elect(1)
    net.propose(1, b"x")
    net.process(1)
    net.deliver(AppendEntries, dst=2)
    net.ready(2)
    net.crash(2)
    assert net.nodes[1].progress[2].match == 1
    net.restart(2)
    assert net.nodes[2].log.last_index() == 1
    net.run(1)  # a heartbeat round tells the leader what 2 lacks
    assert net.applied[2] == [b"x"]


def test_append_is_rejected_when_the_previous_entry_does_not_match():
    # Raft §5.3 (consistency check): a follower takes entries only right after an entry
    # matching the leader's prev_index and prev_term.
    net = Network(3, logs={2: [1, 1, 2]}, terms={2: 3})
    follower = net.nodes[2]
    x = Entry(4, 3, b"x")
    for prev_index, prev_term in [(3, 3), (4, 2), (2, 2)]:
        net.step(AppendEntries(1, 2, 3, prev_index, prev_term, [Entry(prev_index + 1, 3, b"x")], commit=0))
        (response,) = net.process(2).messages
        assert not response.success and response.index == prev_index
        assert log_terms(follower) == [1, 1, 2]
    net.step(AppendEntries(1, 2, 3, 3, 2, [x], commit=0))
    (response,) = net.process(2).messages
    assert response.success and response.index == 4
    assert log_terms(follower) == [1, 1, 2, 3]


@pytest.mark.parametrize(
    ("prev_index", "prev_term", "hint"),
    [
        (9, 3, (5, 3)),  # our log is shorter: its last entry is a candidate match point
        (5, 2, (2, 1)),  # our whole run of term 3 is newer than prev_term: skip it
        (4, 4, (4, 3)),  # our entry at prev_index is older than prev_term: try it
    ],
)
def test_rejection_hints_the_last_entry_that_could_match(prev_index, prev_term, hint):
    # Raft §5.3 (last paragraph): the hint lets the leader skip a term per round trip.
    net = Network(3, logs={2: [1, 1, 3, 3, 3]}, terms={2: 4})
    net.step(AppendEntries(1, 2, 4, prev_index, prev_term, [], commit=0))
    (response,) = net.process(2).messages
    assert not response.success and response.index == prev_index
    assert (response.hint_index, response.hint_term) == hint


def test_append_from_a_stale_term_is_rejected_with_the_current_term():
    # Raft §5.1: a request with a stale term is rejected; the answer carries the newer
    # term so a deposed leader learns of it and steps down.
    net = Network(3, terms={2: 5})
    net.step(AppendEntries(1, 2, 4, 0, 0, [Entry(1, 4, b"x")], commit=0))
    (response,) = net.process(2).messages
    assert (response.term, response.success) == (5, False)
    assert net.nodes[2].log.last_index() == 0


# Raft Figure 7: the leader's log for term 8, and follower logs it may meet.
FIGURE_7_LEADER = [1, 1, 1, 4, 4, 5, 5, 6, 6, 6]
FIGURE_7_FOLLOWERS = {
    "a-missing-one": [1, 1, 1, 4, 4, 5, 5, 6, 6],
    "b-missing-many": [1, 1, 1, 4],
    "c-extra-uncommitted": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 6],
    "d-extra-from-term-7": [1, 1, 1, 4, 4, 5, 5, 6, 6, 6, 7, 7],
    "e-divergent-term-4": [1, 1, 1, 4, 4, 4, 4],
    "f-divergent-terms-2-3": [1, 1, 1, 2, 2, 2, 3, 3, 3, 3, 3],
}


@pytest.mark.parametrize("follower_log", FIGURE_7_FOLLOWERS.values(), ids=FIGURE_7_FOLLOWERS.keys())
def test_follower_log_is_made_identical_to_the_leaders(follower_log):
    # Raft §5.3 (Figure 7): missing entries are filled in and a divergent suffix is
    # deleted and replaced by the leader's entries.
    net = Network(3, logs={1: FIGURE_7_LEADER, 2: FIGURE_7_LEADER, 3: follower_log}, terms={1: 7, 2: 7, 3: 7})
    net.elect(1)
    assert net.nodes[1].term == 8
    assert log_terms(net.nodes[3]) == FIGURE_7_LEADER + [8]
    assert [e.term for e in net.storages[3].load().entries] == FIGURE_7_LEADER + [8], "and on its disk"
    assert net.applied[3] == net.applied[1]


# --- fast backtracking (Raft §5.3, last paragraph) ----------------------------------


def test_backtracking_skips_a_long_run_of_a_stale_term_in_one_round_trip():
    # Raft §5.3: "the follower can include the term of the conflicting entry and the
    # first index it stores for that term" -- one rejection per term, not per entry.
    net = Network(3, logs={1: [1] + [3] * 50, 2: [1] + [3] * 50, 3: [1] + [2] * 80})
    net.elect(1)
    assert rejections(net, 3) == 1, "fifty entries apart, one term apart"
    assert log_terms(net.nodes[3]) == [1] + [3] * 50 + [4]


def test_backtracking_takes_one_round_trip_per_distinct_term_not_per_entry():
    # Raft §5.3: every rejection skips at least one whole term of the leader's or
    # the follower's divergent suffix.
    leader_log = [1, 1] + [2] * 20 + [5] * 20 + [6] * 20
    follower_log = [1, 1] + [2] * 10 + [3] * 20 + [4] * 20
    net = Network(3, logs={1: leader_log, 2: leader_log, 3: follower_log})
    net.elect(1)
    assert log_terms(net.nodes[3]) == leader_log + [7]
    distinct_terms = len({2, 3, 4, 5, 6})  # in either divergent suffix (after index 12)
    assert 1 <= rejections(net, 3) <= distinct_terms
    assert rejections(net, 3) < 10, "far below the 48 entries that differ"


def random_histories(rng: random.Random) -> tuple[list[int], list[int]]:
    """A leader's and a follower's log: a common prefix, then suffixes from disjoint
    terms (so Log Matching holds), the leader's last term the highest."""
    prefix = sorted(rng.choices(range(1, 4), k=rng.randrange(1, 6)))
    terms = list(range(prefix[-1] + 1, prefix[-1] + 9))
    rng.shuffle(terms)
    leader_terms = sorted(terms[:4])
    follower_terms = sorted(t for t in terms[4:] if t < leader_terms[-1])

    def suffix(run_terms: list[int]) -> list[int]:
        return [t for t in run_terms for _ in range(rng.randrange(1, 25))]

    return prefix + suffix(leader_terms), prefix + suffix(follower_terms)


@pytest.mark.parametrize("seed", range(20))
def test_backtracking_round_trips_are_bounded_by_distinct_terms_in_random_histories(seed):
    # Raft §5.3, over many shapes of divergence.
    leader_log, follower_log = random_histories(random.Random(seed))
    net = Network(3, logs={1: leader_log, 2: leader_log, 3: follower_log})
    net.elect(1)
    assert log_terms(net.nodes[3]) == leader_log + [net.nodes[1].term]
    common = 0
    while common < min(len(leader_log), len(follower_log)) and leader_log[common] == follower_log[common]:
        common += 1
    distinct_terms = len(set(leader_log[common:]) | set(follower_log[common:]))
    assert rejections(net, 3) <= max(1, distinct_terms), (leader_log, follower_log)


# --- the commit rule (Raft §5.4.2, Figure 8) ------------------------------------------


def figure_8(**config) -> Network:
    """Figure 8 after (b): S1 led term 2 and put index 2 on S2; S5 led term 3 and put
    its own index 2 on itself only. S5 is down, S4 cannot hear S1."""
    net = Network(
        5,
        logs={1: [1, 2], 2: [1, 2], 3: [1], 4: [1], 5: [1, 3]},
        terms={1: 3, 2: 3, 3: 3, 4: 3, 5: 3},
        max_msg_entries=1,
        **PAPER,
        **config,
    )
    net.crash(5)
    net.cut(1, 4)
    return net


def acks(src: int, index: int):
    return lambda m: isinstance(m, AppendResponse) and m.src == src and m.success and m.index == index


def test_leader_commits_only_current_term_by_counting():
    # Raft §5.4.2 (Figure 8 c): in term 4, S1 brings index 2 (term 2) to S3. It is now
    # on a majority (S1, S2, S3) yet not committed: S5 could still win and replace it.
    net = figure_8()
    net.nodes[1].campaign()
    net.stabilize(hold=acks(3, 3))  # S3's ack of S1's term-4 no-op is still on its way
    leader = net.nodes[1]
    assert (leader.role, leader.term) == (Role.LEADER, 4)
    assert {i: leader.progress[i].match for i in (1, 2, 3)} == {1: 3, 2: 3, 3: 2}
    assert leader.log.commit == 0
    net.stabilize()  # Figure 8 (e): the term-4 entry reaches a majority
    assert leader.log.commit == 3
    assert net.applied[1] == [b"1@1", b"2@2"]


def test_commit_old_term_mutation_commits_by_counting():
    # Raft §5.4.2, broken on purpose: proves the switch the simulator's checkers rely on.
    net = figure_8(mutations=frozenset({"commit-old-term"}))
    net.nodes[1].campaign()
    net.stabilize(hold=acks(3, 3))
    assert net.nodes[1].log.commit == 2


def test_commit_old_term_mutation_lets_a_committed_entry_be_overwritten():
    # Raft Figure 8 (d): why the rule exists. S1 commits index 2 by counting, applies
    # it and crashes; S5 wins with S3 and S4 and replaces index 2 everywhere else.
    net = figure_8(mutations=frozenset({"commit-old-term"}))
    net.nodes[1].campaign()
    net.stabilize(hold=acks(3, 2))
    net.deliver(AppendResponse, src=3)
    net.process(1)
    assert net.applied[1] == [b"1@1", b"2@2"]
    net.crash(1)
    net.drop(src=1)
    net.restart(5)
    net.elect(5)
    net.stabilize()
    assert net.applied[3] == [b"1@1", b"2@3"], "State Machine Safety is broken"


# --- batching and pipelining (thesis §10.2) ---------------------------------------------


def test_append_entries_carry_at_most_max_msg_entries():
    # Thesis §10.2 (batching); STYLE §6: bounded by Config.
    net = Network(3, max_msg_entries=3)
    net.elect(1)
    net.propose(1, *[b"x"] * 10)
    rd = net.ready(1)
    assert [len(m.entries) for m in appends_to(rd.early_messages, 2)] == [3, 3, 3, 1]


def test_append_entries_carry_at_most_max_msg_bytes_but_at_least_one_entry():
    # Thesis §10.2 (batching): an entry larger than the limit still travels, alone.
    net = Network(3, max_msg_bytes=250)
    net.elect(1)
    net.propose(1, *[b"x" * 100] * 5, b"y" * 1000, b"z" * 100)
    rd = net.ready(1)
    batches = [[len(e.data) for e in m.entries] for m in appends_to(rd.early_messages, 2)]
    assert batches == [[100, 100], [100, 100], [100], [1000], [100]]
    net.stabilize()
    assert len(net.applied[2]) == 7


def test_probe_state_sends_one_append_and_replicate_state_pipelines_up_to_max_inflight_msgs():
    # Thesis §10.2: while the leader does not know where a follower's log matches it
    # sends one AppendEntries and waits; once it knows, it pipelines.
    net = Network(3, max_msg_entries=1, max_inflight_msgs=3)
    net.elect(1, settle=False)
    net.propose(1, *[b"x"] * 5)  # after the no-op: six entries to send
    rd = net.process(1)
    assert [len(m.entries) for m in appends_to(rd.early_messages, 2)] == [1], "probe: one"
    net.deliver()
    net.process(2)
    net.deliver(AppendResponse)  # the probe matched: replicate
    rd = net.process(1)
    assert [m.entries[0].index for m in appends_to(rd.early_messages, 2)] == [2, 3, 4]
    net.deliver(AppendEntries, dst=2)
    net.process(2)
    (first, *_) = net.take(AppendResponse, src=2)
    net.step(first)
    rd = net.process(1)
    assert [m.entries[0].index for m in appends_to(rd.early_messages, 2)] == [5], "one freed slot, one more"


def test_rejected_pipeline_falls_back_to_probing():
    # Thesis §10.2: with one message of the pipeline lost, the ones after it do not
    # follow the follower's log; it rejects them and the leader probes from its match.
    net = Network(3, max_msg_entries=1, max_inflight_msgs=4)
    net.elect(1)
    net.propose(1, b"a", b"b", b"c")
    net.process(1)
    net.drop(AppendEntries, where=lambda m: m.dst == 3 and m.entries[0].data == b"a")
    net.deliver(AppendEntries, dst=3)  # b and c do not follow index 1: rejected
    net.process(3)
    net.deliver(AppendResponse, src=3)
    assert net.nodes[1].progress[3].state is ProgressState.PROBE
    net.stabilize()
    assert net.applied[3] == [b"a", b"b", b"c"]


# --- the leader's own disk (thesis §10.2.1) ----------------------------------------------


def test_leader_does_not_count_its_own_unpersisted_entries_toward_quorum():
    # Thesis §10.2.1: the leader sends entries while its own write runs, but counts
    # itself toward the quorum only for entries already on its disk.
    net = Network(3)
    net.elect(1)
    net.crash(3)
    net.propose(1, b"x")
    net.ready(1)  # AppendEntries leave; the leader's disk write is still running
    net.deliver(AppendEntries, dst=2)
    net.process(2)
    net.deliver(AppendResponse, src=2)
    assert net.nodes[1].progress[2].match == 2
    assert net.nodes[1].log.commit == 1, "one durable copy of two needed"
    net.persist(1)  # advance(): now on the leader's disk too
    assert net.nodes[1].log.commit == 2
    net.process(1)
    assert net.applied[1] == [b"x"]


def test_ack_before_persist_mutation_counts_the_leaders_unpersisted_entries():
    # Thesis §10.2.1, broken on purpose: proves the switch the simulator relies on.
    net = Network(3, mutations=frozenset({"ack-before-persist"}))
    net.elect(1)
    net.crash(3)
    net.propose(1, b"x")
    net.ready(1)
    net.deliver(AppendEntries, dst=2)
    net.process(2)
    net.deliver(AppendResponse, src=2)
    assert net.nodes[1].log.commit == 2


# --- what callers are told ------------------------------------------------------------


def test_propose_on_a_follower_raises_not_leader_naming_the_leader():
    # Raft §8: a follower rejects the request and says who it last heard lead.
    net = Network(3)
    net.elect(1)
    with pytest.raises(NotLeader, match="node 2 is not the leader; the leader is node 1") as caught:
        net.propose(2, b"x")
    assert (caught.value.node, caught.value.leader) == (2, 1)


def test_propose_with_no_known_leader_says_so():
    # Raft §8.
    net = Network(3)
    with pytest.raises(NotLeader, match="no leader is known"):
        net.propose(2, b"x")


def test_proposals_beyond_max_uncommitted_entries_are_dropped():
    # STYLE §6: a full queue answers "dropped" at once; nothing was appended.
    net = Network(3, max_uncommitted_entries=3)
    net.elect(1)
    net.crash(2)
    net.crash(3)
    net.propose(1, b"a", b"b")
    with pytest.raises(ProposalDropped, match="max_uncommitted_entries=3"):
        net.propose(1, b"c", b"d")
    assert net.nodes[1].log.last_index() == 3
    net.propose(1, b"c")
