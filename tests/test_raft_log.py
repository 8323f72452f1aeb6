"""RaftLog on its own: the follower's side of AppendEntries (Raft §5.3), fast
backtracking's term search, the up-to-date rule (§5.4.1), batching limits, and the
bookkeeping of what the driver still has to persist -- checked against a plain list
of terms as the model."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftflow.raft import Entry, Snapshot
from raftflow.raft.log import RaftLog


def entry(index: int, term: int) -> Entry:
    return Entry(index, term, f"{index}@{term}".encode())


def raft_log(terms: list[int], snapshot_index: int = 0, commit: int | None = None) -> RaftLog:
    """A RaftLog, all stable, whose entry at index i has term terms[i - 1]; entries up
    to `snapshot_index` are compacted into a snapshot."""
    snapshot = Snapshot(snapshot_index, terms[snapshot_index - 1]) if snapshot_index else None
    log = RaftLog(snapshot, [entry(i, t) for i, t in enumerate(terms, 1)][snapshot_index:])
    if commit is not None:
        log.commit_to(commit)
    return log


def terms_of(log: RaftLog) -> list[int]:
    return [e.term for e in log.entries]


# --- reading -------------------------------------------------------------------------


def test_term_is_known_from_the_snapshot_point_to_the_last_index():
    # Raft §7: the snapshot keeps the last included index and term, nothing before.
    log = raft_log([1, 1, 2, 3, 3], snapshot_index=2)
    assert [log.term(i) for i in range(7)] == [None, None, 1, 2, 3, 3, None]
    assert (log.first_index(), log.last_index(), log.last_term()) == (3, 5, 3)
    assert raft_log([]).term(0) == 0, "index 0 is the empty log's matching point"


def test_snapshot_alone_gives_the_last_index_and_term():
    log = raft_log([1, 2, 2], snapshot_index=3)
    assert (log.last_index(), log.last_term(), log.entries) == (3, 2, [])


@pytest.mark.parametrize(
    ("last_index", "last_term", "up_to_date"),
    [(3, 2, True), (4, 2, True), (2, 2, False), (9, 1, False), (1, 3, True)],
)
def test_up_to_date_compares_last_terms_then_lengths(last_index, last_term, up_to_date):
    # Raft §5.4.1.
    assert raft_log([1, 1, 2]).is_up_to_date(last_index, last_term) is up_to_date


def test_slice_is_bounded_by_count_and_bytes_but_holds_at_least_one_entry():
    # Thesis §10.2 (batching); STYLE §6: every batch is bounded.
    log = RaftLog(None, [Entry(i, 1, b"x" * size) for i, size in enumerate([10, 10, 10, 50, 10], 1)])
    indices = lambda entries: [e.index for e in entries]  # noqa: E731
    assert indices(log.slice(1, 6, max_count=2, max_bytes=1000)) == [1, 2]
    assert indices(log.slice(1, 6, max_count=10, max_bytes=25)) == [1, 2]
    assert indices(log.slice(4, 6, max_count=10, max_bytes=25)) == [4], "too big, sent alone"
    assert indices(log.slice(2, 4, max_count=10, max_bytes=1000)) == [2, 3], "hi is exclusive"


@given(
    sizes=st.lists(st.integers(0, 40), min_size=1, max_size=20),
    data=st.data(),
    max_count=st.integers(1, 8),
    max_bytes=st.integers(1, 100),
)
def test_slice_returns_the_longest_prefix_within_both_limits(sizes, data, max_count, max_bytes):
    # Thesis §10.2: as much as the limits allow, never nothing.
    log = RaftLog(None, [Entry(i, 1, b"x" * size) for i, size in enumerate(sizes, 1)])
    lo = data.draw(st.integers(1, len(sizes)))
    hi = data.draw(st.integers(lo + 1, len(sizes) + 1))
    out = log.slice(lo, hi, max_count, max_bytes)
    assert out == log.entries[lo - 1 : lo - 1 + len(out)], "a prefix of [lo, hi)"
    assert 1 <= len(out) <= min(max_count, hi - lo)
    assert len(out) == 1 or sum(len(e.data) for e in out) <= max_bytes
    if len(out) < min(max_count, hi - lo):
        assert sum(len(e.data) for e in log.entries[lo - 1 : lo + len(out)]) > max_bytes, "not maximal"


# --- the follower's side of AppendEntries (Raft §5.3) ---------------------------------


@pytest.mark.parametrize(
    ("prev_index", "prev_term", "new_terms", "result", "after"),
    [
        # the consistency check fails: nothing changes
        (3, 2, [4], None, [1, 2, 3]),
        (4, 3, [4], None, [1, 2, 3]),
        # a heartbeat-like append: nothing to add, the match point is prev_index
        (3, 3, [], 3, [1, 2, 3]),
        (1, 1, [], 1, [1, 2, 3]),
        # a clean append at the end
        (3, 3, [4, 4], 5, [1, 2, 3, 4, 4]),
        # entries we already hold (a duplicate): nothing changes, the rest is kept
        (1, 1, [2], 2, [1, 2, 3]),
        (0, 0, [1, 2, 3], 3, [1, 2, 3]),
        # a conflict: the divergent suffix goes, the leader's entries come
        (1, 1, [4], 2, [1, 4]),
        (1, 1, [2, 4, 4], 4, [1, 2, 4, 4]),
        (2, 2, [3, 4], 4, [1, 2, 3, 4]),
    ],
)
def test_maybe_append(prev_index, prev_term, new_terms, result, after):
    # Raft Figure 2, AppendEntries receiver steps 2-4.
    log = raft_log([1, 2, 3])
    new = [entry(prev_index + 1 + n, t) for n, t in enumerate(new_terms)]
    assert log.maybe_append(prev_index, prev_term, new) == result
    assert terms_of(log) == after


def test_truncating_a_committed_entry_is_a_broken_invariant():
    # Raft §5.4 (Leader Completeness): no leader ever sends a conflicting committed
    # entry; if one arrives, something is badly wrong: stop.
    log = raft_log([1, 2, 3], commit=2)
    with pytest.raises(AssertionError, match="truncating committed entry 2"):
        log.maybe_append(1, 1, [entry(2, 4)])
    assert terms_of(log) == [1, 2, 3]


def test_commit_never_passes_the_last_index_nor_moves_back():
    # Raft Figure 2: commitIndex only grows, and only over entries we hold.
    log = raft_log([1, 1])
    assert log.commit_to(2) and not log.commit_to(1)
    assert log.commit == 2
    with pytest.raises(AssertionError):
        log.commit_to(3)


def test_replaced_entries_are_handed_to_the_driver_again():
    # The Ready contract: a truncated suffix must be overwritten on disk too.
    log = raft_log([1, 1, 2, 2])
    log.maybe_append(2, 1, [entry(3, 3)])
    assert [(e.index, e.term) for e in log.unstable_entries()] == [(3, 3)]
    assert log.stable == 2


def test_stable_to_ignores_an_acknowledgement_for_an_entry_since_replaced():
    # The driver persisted (4, term 2), but meanwhile index 4 was replaced by a term-3
    # entry that is not on disk yet: the old acknowledgement must not count for it.
    log = raft_log([1, 1, 2])
    log.append([entry(4, 2)])
    handed_out = log.unstable_entries()
    log.unstable_from = log.last_index() + 1
    log.maybe_append(3, 2, [entry(4, 3)])
    log.stable_to(handed_out[-1].index, handed_out[-1].term)
    assert log.stable == 3
    assert [(e.index, e.term) for e in log.unstable_entries()] == [(4, 3)]


# --- compaction and snapshots (Raft §7) ----------------------------------------------


def test_compact_forgets_applied_entries_and_remembers_the_last_ones_term():
    # Raft §7: only applied entries can be covered by a snapshot of the state machine.
    log = raft_log([1, 1, 2, 2, 3], commit=4)
    log.applied = 4
    assert log.compact(3) == 2
    assert (log.snapshot_index, log.snapshot_term, log.first_index(), terms_of(log)) == (3, 2, 4, [2, 3])
    with pytest.raises(AssertionError):
        log.compact(5)  # not applied yet


def test_restore_replaces_the_whole_log_and_hands_out_the_snapshot():
    # Raft Figure 13, step 7 (and 8: the driver restores the state machine from it).
    log = raft_log([1, 1, 2], commit=1)
    snapshot = Snapshot(5, 4, b"state")
    log.restore(snapshot)
    assert (log.entries, log.last_index(), log.last_term(), log.commit) == ([], 5, 4, 5)
    assert log.pending_snapshot == snapshot
    assert log.maybe_append(5, 4, [entry(6, 4)]) == 6


# --- the term search behind fast backtracking (Raft §5.3) ------------------------------


@pytest.mark.parametrize(
    ("index", "term", "found"),
    [
        (6, 3, (6, 3)),  # the entry itself qualifies
        (6, 2, (4, 2)),  # skip the whole run of term 3
        (6, 1, (2, 1)),
        (6, 0, (0, 0)),  # nothing: the start of the log
        (9, 2, (4, 2)),  # past the end: search from the last index
        (3, 5, (3, 2)),
    ],
)
def test_find_conflict_by_term(index, term, found):
    # Raft §5.3 (last paragraph).
    assert raft_log([1, 1, 2, 2, 3, 3]).find_conflict_by_term(index, term) == found


def test_find_conflict_by_term_stops_at_the_snapshot_point():
    # Raft §7: terms before the snapshot point are gone.
    log = raft_log([1, 1, 2, 2, 3, 3], snapshot_index=3)
    assert log.find_conflict_by_term(6, 1) == (3, 2), "we cannot look past the snapshot"
    assert log.find_conflict_by_term(2, 1) == (2, 0), "compacted: term unknown"


# --- the same rules against a list model ------------------------------------------------


def model_term(terms: list[int], index: int) -> int | None:
    if index == 0:
        return 0
    return terms[index - 1] if index <= len(terms) else None


def model_maybe_append(terms, prev_index, prev_term, new_terms):
    """Raft Figure 2, AppendEntries receiver steps 2-4, on a list of terms. Returns
    (result, terms after, index of the first replaced entry or None)."""
    if model_term(terms, prev_index) != prev_term:
        return None, terms, None
    out = list(terms)
    for n, t in enumerate(new_terms):
        index = prev_index + 1 + n
        if index <= len(out) and out[index - 1] == t:
            continue
        replaced = index if index <= len(out) else None
        out = out[: index - 1] + new_terms[n:]
        return prev_index + len(new_terms), out, replaced
    return prev_index + len(new_terms), out, None


@st.composite
def logs_and_appends(draw):
    terms = sorted(draw(st.lists(st.integers(1, 5), max_size=20)))
    snapshot_index = draw(st.integers(0, len(terms)))
    commit = draw(st.integers(snapshot_index, len(terms)))
    prev_index = draw(st.integers(snapshot_index, len(terms) + 2))
    actual = model_term(terms, prev_index)
    prev_term = draw(st.integers(0, 7) if actual is None else st.one_of(st.just(actual), st.integers(0, 7)))
    new_terms = sorted(draw(st.lists(st.integers(max(prev_term, 1), 7), max_size=8)))
    return terms, snapshot_index, commit, prev_index, prev_term, new_terms


@given(logs_and_appends())
def test_maybe_append_matches_the_list_model(case):
    # Raft Figure 2, AppendEntries receiver steps 2-4, for any log and any request.
    terms, snapshot_index, commit, prev_index, prev_term, new_terms = case
    log = raft_log(terms, snapshot_index, commit)
    new = [entry(prev_index + 1 + n, t) for n, t in enumerate(new_terms)]
    result, expected, replaced = model_maybe_append(terms, prev_index, prev_term, new_terms)
    if replaced is not None and replaced <= commit:
        with pytest.raises(AssertionError, match="truncating committed entry"):
            log.maybe_append(prev_index, prev_term, new)
        return
    assert log.maybe_append(prev_index, prev_term, new) == result
    assert terms_of(log) == expected[snapshot_index:]
    assert log.last_index() == len(expected)
    # Everything new or replaced, and only that, is still to be persisted.
    first_changed = next(
        (i for i in range(1, len(expected) + 1) if model_term(terms, i) != expected[i - 1]),
        len(expected) + 1,
    )
    assert [e.index for e in log.unstable_entries()] == list(range(first_changed, len(expected) + 1))
    assert log.stable == first_changed - 1
    assert log.commit == commit, "appending alone commits nothing"


@given(
    terms=st.lists(st.integers(1, 6), max_size=25).map(sorted),
    data=st.data(),
)
def test_find_conflict_by_term_matches_the_list_model(terms, data):
    # Raft §5.3: the largest index <= `index` whose term is <= `term`, within reach.
    snapshot_index = data.draw(st.integers(0, len(terms)))
    index = data.draw(st.integers(snapshot_index, len(terms) + 3))
    term = data.draw(st.integers(0, 7))
    log = raft_log(terms, snapshot_index)
    found = min(index, len(terms))
    while found > snapshot_index and terms[found - 1] > term:
        found -= 1
    assert log.find_conflict_by_term(index, term) == (found, model_term(terms, found))
    if found > snapshot_index:
        assert model_term(terms, found) <= term
