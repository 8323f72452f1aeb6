"""The msgpack codec: every message and the hard state survive a round trip, and
bytes that are not a valid encoding raise DecodeError, never something else."""

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftflow.raft import (
    AppendEntries,
    AppendResponse,
    Entry,
    EntryKind,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    RequestVote,
    Snapshot,
    TimeoutNow,
    VoteResponse,
)
from raftflow.raft.codec import DecodeError, decode_hard_state, decode_message, encode_hard_state, encode_message


def test_messages_round_trip_through_msgpack():
    msgs = [
        RequestVote(1, 2, 5, 10, 4, pre_vote=True, transfer=False),
        AppendEntries(1, 2, 5, 9, 4, [Entry(10, 5, b"x"), Entry(11, 5, b"", EntryKind.NOOP)], 8),
        Heartbeat(1, 3, 5, 8, 42),
        InstallSnapshot(1, 3, 5, Snapshot(100, 4, b"state")),
    ]
    for m in msgs:
        assert decode_message(encode_message(m)) == m


# --- every message, any field values ----------------------------------------------------

u64 = st.integers(0, 2**64 - 1)
node_ids = st.integers(1, 2**32)
entries = st.builds(Entry, index=u64, term=u64, data=st.binary(max_size=64), kind=st.sampled_from(EntryKind))
snapshots = st.builds(Snapshot, index=u64, term=u64, data=st.binary(max_size=64))
header = {"src": node_ids, "dst": node_ids, "term": u64}
messages = st.one_of(
    st.builds(RequestVote, **header, last_log_index=u64, last_log_term=u64, pre_vote=st.booleans(), transfer=st.booleans()),
    st.builds(VoteResponse, **header, granted=st.booleans(), pre_vote=st.booleans()),
    st.builds(AppendEntries, **header, prev_index=u64, prev_term=u64, entries=st.lists(entries, max_size=5), commit=u64),
    st.builds(AppendResponse, **header, success=st.booleans(), index=u64, hint_index=u64, hint_term=u64),
    st.builds(Heartbeat, **header, commit=u64, seq=u64),
    st.builds(HeartbeatResponse, **header, seq=u64),
    st.builds(InstallSnapshot, **header, snapshot=snapshots),
    st.builds(TimeoutNow, **header),
)


@given(messages)
def test_every_message_round_trips_through_msgpack(m):
    # STYLE §4: one conversion each way, losing nothing.
    decoded = decode_message(encode_message(m))
    assert decoded == m
    assert type(decoded) is type(m)


@given(st.builds(HardState, term=u64, vote=u64, commit=u64))
def test_hard_state_round_trips_through_msgpack(hs):
    assert decode_hard_state(encode_hard_state(hs)) == hs


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.binary(max_size=8) | st.text(max_size=8),
    lambda children: st.lists(children, max_size=6) | st.dictionaries(st.text(max_size=4), children, max_size=3),
    max_leaves=20,
)


@given(st.binary(max_size=64) | st.lists(msgpack_values, max_size=8).map(lambda v: msgpack.packb(v, use_bin_type=True)))
def test_arbitrary_bytes_decode_to_a_message_or_raise_decode_error(raw):
    # Whatever arrives, the caller needs to handle only DecodeError.
    try:
        m = decode_message(raw)
    except DecodeError:
        return
    assert isinstance(m, (RequestVote, VoteResponse, AppendEntries, AppendResponse, Heartbeat,
                          HeartbeatResponse, InstallSnapshot, TimeoutNow))


@pytest.mark.parametrize(
    ("kind", "fields"),
    [(-1, []), (-8, [0, 0, False, False]), (True, [True, False]), (8, []), (255, []), (1.0, [True, False])],
)
def test_unknown_message_kind_is_rejected(kind, fields):
    # A corrupted kind must not turn into some other message (-1 into a TimeoutNow,
    # which starts an election past leader stickiness); only 0..7 are kinds.
    raw = msgpack.packb([kind, 1, 2, 3, *fields], use_bin_type=True)
    with pytest.raises(DecodeError, match="unknown message kind"):
        decode_message(raw)


@pytest.mark.parametrize(
    "fields, named",
    [
        ([0, "1", 2, 5, 10, 4, True, False], "src"),  # RequestVote with a string src
        ([0, 1, 2, 5, 10, 4, 1, False], "pre_vote"),  # an int where a bool belongs
        ([0, 1, 2, -5, 10, 4, True, False], "term"),  # a negative term
        ([3, 1, 2, 5, True], "AppendResponse has 4 fields"),  # too few fields
        ([2, 1, 2, 5, 9, 4, [[10, 5, 7, b"x"]], 8], "malformed entry"),  # unknown entry kind
        ([2, 1, 2, 5, 9, 4, [[10, 5, 0, "x"]], 8], "malformed entry"),  # str data
        ([6, 1, 2, 5, [3, 1, "data"], 0, True], "snapshot data"),
    ],
)
def test_malformed_fields_are_refused_naming_the_field(fields, named):
    with pytest.raises(DecodeError, match=named):
        decode_message(msgpack.packb(fields, use_bin_type=True))


def test_a_malformed_hard_state_is_refused():
    with pytest.raises(DecodeError, match="vote"):
        decode_hard_state(msgpack.packb([1, "x", 0]))
