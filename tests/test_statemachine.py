"""The state machine behind the log: key-value semantics with etcd's revisions,
exactly-once commands through sessions (thesis §6.3), expiry by the leader's clock only,
entries that do not decode, and determinism: replicas that apply the same log, with or
without a snapshot in the middle, end byte-identical."""

import random
import re
import subprocess
import sys

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from raftflow.statemachine import (
    MAX_KEY_BYTES,
    MAX_VALUE_BYTES,
    Cas,
    CasResult,
    Command,
    CommandError,
    Delete,
    DeleteResult,
    KeyValue,
    Machine,
    OpenSession,
    Put,
    PutResult,
    Rejected,
    RejectReason,
    ResultError,
    SessionOpened,
    SnapshotError,
    StateMachine,
    decode_command,
    decode_result,
    encode_command,
    encode_result,
    validate_op,
)
from raftflow.statemachine.commands import _command_from_row, _common_put, unpack

# --- a driver that appends each entry at the next index, as Raft would ----------------------


def apply(m: Machine, data: bytes):
    return m.apply(m.applied_index + 1, data)


def send(m: Machine, session: int, seq: int, op, *, ack_floor: int | None = None, at_ms: int = 0):
    """A client command; by default every earlier seq has been answered."""
    return apply(m, encode_command(Command(at_ms, session, seq, seq if ack_floor is None else ack_floor, op)))


def open_session(m: Machine, at_ms: int = 0, owner: str = "") -> int:
    result = apply(m, encode_command(Command(at_ms, 0, 0, 0, OpenSession(owner))))
    assert type(result) is SessionOpened, result
    return result.session_id


def rejected(result) -> RejectReason | None:
    return result.reason if type(result) is Rejected else None


def test_machine_is_a_state_machine():
    assert isinstance(Machine(), StateMachine)


@pytest.mark.parametrize("setting", ["session_ttl_ms", "max_sessions", "max_results_per_session", "max_sessions_per_owner"])
def test_every_bound_is_checked_at_construction(setting):
    with pytest.raises(ValueError, match=f"{setting}=0 must be an integer of at least 1"):
        Machine(**{setting: 0})


# --- key-value semantics ----------------------------------------------------------------------


def test_put_creates_a_key_at_version_1_and_bumps_the_revision():
    m = Machine()
    s = open_session(m)
    assert send(m, s, 1, Put("a", b"1")) == PutResult(1, None)
    assert send(m, s, 2, Put("b", b"2")) == PutResult(2, None)
    assert m.get("a") == KeyValue("a", b"1", create_revision=1, mod_revision=1, version=1)
    assert m.get("missing") is None


def test_put_over_a_key_keeps_its_create_revision_and_returns_the_previous_value():
    m = Machine()
    s = open_session(m)
    send(m, s, 1, Put("a", b"1"))
    send(m, s, 2, Put("b", b"x"))
    assert send(m, s, 3, Put("a", b"2")) == PutResult(3, KeyValue("a", b"1", 1, 1, 1))
    assert m.get("a") == KeyValue("a", b"2", create_revision=1, mod_revision=3, version=2)


def test_delete_bumps_the_revision_and_a_later_put_starts_the_key_afresh():
    m = Machine()
    s = open_session(m)
    send(m, s, 1, Put("a", b"1"))
    send(m, s, 2, Put("a", b"2"))
    assert send(m, s, 3, Delete("a")) == DeleteResult(3, KeyValue("a", b"2", 1, 2, 2))
    assert m.get("a") is None
    assert send(m, s, 4, Put("a", b"3")) == PutResult(4, None)
    assert m.get("a") == KeyValue("a", b"3", create_revision=4, mod_revision=4, version=1)


def test_deleting_a_missing_key_leaves_the_revision():
    m = Machine()
    s = open_session(m)
    send(m, s, 1, Put("a", b"1"))
    assert send(m, s, 2, Delete("b")) == DeleteResult(1, None)
    assert m.revision == 1
    assert send(m, s, 3, Put("c", b"")) == PutResult(2, None)


def test_cas_on_the_value_writes_only_when_it_matches():
    m = Machine()
    s = open_session(m)
    send(m, s, 1, Put("a", b"1"))
    assert send(m, s, 2, Cas("a", b"2", expected_value=b"1")) == CasResult(True, 2, KeyValue("a", b"2", 1, 2, 2))
    # A failed Cas reports the value that made it fail and changes nothing.
    assert send(m, s, 3, Cas("a", b"3", expected_value=b"1")) == CasResult(False, 2, KeyValue("a", b"2", 1, 2, 2))
    assert send(m, s, 4, Cas("b", b"3", expected_value=b"")) == CasResult(False, 2, None)
    assert m.get("a").value == b"2" and m.get("b") is None


def test_cas_on_the_revision_and_revision_0_means_the_key_must_not_exist():
    m = Machine()
    s = open_session(m)
    assert send(m, s, 1, Cas("a", b"1", expected_revision=0)) == CasResult(True, 1, KeyValue("a", b"1", 1, 1, 1))
    assert send(m, s, 2, Cas("a", b"2", expected_revision=0)) == CasResult(False, 1, KeyValue("a", b"1", 1, 1, 1))
    send(m, s, 3, Put("other", b""))  # revision 2: a Cas compares the key's mod_revision, not the store's
    assert send(m, s, 4, Cas("a", b"2", expected_revision=1)) == CasResult(True, 3, KeyValue("a", b"2", 1, 3, 2))
    assert send(m, s, 5, Cas("a", b"3", expected_revision=1)).succeeded is False


# --- sessions: exactly once (thesis §6.3) -------------------------------------------------------


def test_a_session_id_is_the_index_of_its_open_session_entry():
    m = Machine()
    m.apply_noop(1)
    apply(m, b"not a command")
    assert apply(m, encode_command(Command(0, 0, 0, 0, OpenSession()))) == SessionOpened(3)
    assert m.session_count == 1


def test_a_retried_command_gets_its_cached_result_and_is_applied_once():
    m = Machine()
    s = open_session(m)
    first = send(m, s, 1, Put("a", b"1"), ack_floor=1)
    assert send(m, s, 1, Put("a", b"1"), ack_floor=1) == first == PutResult(1, None)
    assert m.get("a").version == 1
    assert send(m, s, 2, Put("b", b""), ack_floor=1) == PutResult(2, None)  # the retry made no revision


def test_a_retried_cas_returns_its_first_outcome_instead_of_being_evaluated_again():
    m = Machine()
    s = open_session(m)
    first = send(m, s, 1, Cas("a", b"mine", expected_revision=0), ack_floor=1)
    assert first.succeeded
    send(m, s, 2, Put("a", b"later"), ack_floor=1)
    assert send(m, s, 1, Cas("a", b"mine", expected_revision=0), ack_floor=1) == first
    assert m.get("a").value == b"later"


def test_a_seq_below_the_ack_floor_is_stale_and_changes_nothing():
    m = Machine()
    s = open_session(m)
    send(m, s, 1, Put("a", b"1"), ack_floor=1)
    send(m, s, 2, Put("a", b"2"), ack_floor=2)  # the reply to seq 1 was delivered: forget it
    before = m.get("a")
    result = send(m, s, 1, Put("a", b"1"), ack_floor=1)
    assert result == Rejected(
        RejectReason.STALE_SEQUENCE,
        f"seq 1 of session {s} is below its ack floor 2; its reply was delivered and forgotten",
    )
    assert m.get("a") == before


def test_raising_the_ack_floor_drops_only_the_results_below_it():
    m = Machine()
    s = open_session(m)
    replies = {seq: send(m, s, seq, Put("a", bytes([seq])), ack_floor=1) for seq in (1, 2, 3)}
    send(m, s, 4, Put("b", b""), ack_floor=3)
    assert send(m, s, 3, Put("a", b"\x03"), ack_floor=3) == replies[3]
    assert rejected(send(m, s, 2, Put("a", b"\x02"), ack_floor=2)) is RejectReason.STALE_SEQUENCE
    assert m.get("a").version == 3


def test_a_session_holds_at_most_max_results_per_session_unacknowledged_results():
    m = Machine(max_results_per_session=2)
    s = open_session(m)
    send(m, s, 1, Put("a", b"1"), ack_floor=1)
    send(m, s, 2, Put("a", b"2"), ack_floor=1)
    assert send(m, s, 3, Put("a", b"3"), ack_floor=1) == Rejected(
        RejectReason.TOO_MANY_PENDING,
        f"session {s} holds 2 unacknowledged results (max_results_per_session=2); raise ack_floor to free them",
    )
    assert m.get("a").value == b"2"
    assert send(m, s, 2, Put("a", b"2"), ack_floor=1) == PutResult(2, KeyValue("a", b"1", 1, 1, 1))  # still cached
    # Acknowledging seq 1 frees a slot; the refused seq 3 was never applied, so it is now.
    assert send(m, s, 3, Put("a", b"3"), ack_floor=2) == PutResult(3, KeyValue("a", b"2", 1, 2, 2))


def test_a_command_in_a_session_never_opened_is_rejected():
    m = Machine()
    assert send(m, 42, 1, Put("a", b"1")) == Rejected(
        RejectReason.SESSION_UNKNOWN, "session 42 is unknown or expired; open a new session"
    )
    assert m.get("a") is None


# --- expiry by the leader's clock -----------------------------------------------------------------


def test_a_session_unused_for_the_ttl_of_leader_time_expires():
    m = Machine(session_ttl_ms=1000)
    s = open_session(m, at_ms=0)
    assert rejected(send(m, s, 1, Put("a", b""), at_ms=999)) is None
    assert rejected(send(m, s, 2, Put("a", b""), at_ms=1998)) is None  # 999 ms after its last use
    assert rejected(send(m, s, 3, Put("a", b""), at_ms=2998)) is RejectReason.SESSION_UNKNOWN
    assert m.session_count == 0


def test_any_entry_carries_the_time_that_expires_idle_sessions():
    m = Machine(session_ttl_ms=1000)
    idle = open_session(m, at_ms=0)
    busy = open_session(m, at_ms=500)
    open_session(m, at_ms=1000)
    assert m.session_count == 2
    assert rejected(send(m, idle, 1, Put("a", b""), at_ms=1000)) is RejectReason.SESSION_UNKNOWN
    assert rejected(send(m, busy, 1, Put("a", b""), at_ms=1000)) is None


def test_a_leader_with_a_slow_clock_neither_moves_time_back_nor_ages_a_session():
    m = Machine(session_ttl_ms=1000)
    s = open_session(m, at_ms=0)
    send(m, s, 1, Put("a", b""), at_ms=900)
    # A new leader whose clock reads 100: time stays at 900 and the use counts at 900,
    # so the session is still alive 999 ms later (counted at 100 it would expire at 1100).
    assert rejected(send(m, s, 2, Put("a", b""), at_ms=100)) is None
    assert m.now_ms == 900
    assert rejected(send(m, s, 3, Put("a", b""), at_ms=1899)) is None


def test_a_leader_with_a_slow_clock_cannot_revive_an_expired_session():
    m = Machine(session_ttl_ms=1000)
    s = open_session(m, at_ms=0)
    open_session(m, at_ms=5000)
    assert rejected(send(m, s, 1, Put("a", b""), at_ms=500)) is RejectReason.SESSION_UNKNOWN
    assert m.now_ms == 5000 and m.get("a") is None


def test_opening_past_max_sessions_expires_the_least_recently_used():
    m = Machine(max_sessions=2)
    older = open_session(m)
    newer = open_session(m)
    send(m, older, 1, Put("a", b""))  # now `newer` is the least recently used
    third = open_session(m)
    assert m.session_count == 2
    assert rejected(send(m, newer, 1, Put("b", b""))) is RejectReason.SESSION_UNKNOWN
    assert rejected(send(m, older, 2, Put("b", b""))) is None
    assert rejected(send(m, third, 1, Put("c", b""))) is None


def test_a_token_opening_sessions_past_its_quota_pushes_out_only_its_own():
    m = Machine(max_sessions=10, max_sessions_per_owner=3)
    victim = open_session(m, owner="victim")
    send(m, victim, 1, Put("v", b"1"))
    flood = [open_session(m, owner="flood") for _ in range(50)]  # the 1,000 OpenSession calls, scaled
    assert m.session_owner(victim) == "victim"
    assert rejected(send(m, victim, 2, Put("v", b"2"))) is None  # still open, its seq goes on
    assert [m.has_session(s) for s in flood[-3:]] == [True] * 3 and not m.has_session(flood[0])
    assert m.session_count == 4


def test_past_max_sessions_the_heaviest_owner_loses_its_least_recently_used():
    m = Machine(max_sessions=4, max_sessions_per_owner=3)
    a = open_session(m, owner="a")
    b1, b2 = open_session(m, owner="b"), open_session(m, owner="b")
    c = open_session(m, owner="c")
    open_session(m, owner="d")  # full: b holds the most; its least recently used goes
    assert not m.has_session(b1) and all(m.has_session(s) for s in (a, b2, c))
    assert m.session_owner(b2) == "b" and m.session_owner(b1) is None


def test_at_max_sessions_an_opener_among_the_heaviest_pays_itself():
    m = Machine(max_sessions=4, max_sessions_per_owner=3)
    a1, a2 = open_session(m, owner="a"), open_session(m, owner="a")
    b1, b2 = open_session(m, owner="b"), open_session(m, owner="b")
    open_session(m, owner="b")  # full, and b ties a: b's own oldest goes, not a's
    assert not m.has_session(b1) and all(m.has_session(s) for s in (a1, a2, b2))


def test_sessions_without_an_owner_snapshot_as_before_and_owners_survive_a_restore():
    legacy = Machine()
    open_session(legacy)
    rows = msgpack.unpackb(legacy.snapshot())[3]
    assert len(rows[0]) == 4  # no owner column: a build without owners reads it, and hashes agree
    owned = Machine()
    s = open_session(owned, owner="tok-1")
    send(owned, s, 1, Put("k", b"v"))
    copy = Machine()
    copy.restore(owned.snapshot())
    assert copy.session_owner(s) == "tok-1" and copy.state_hash() == owned.state_hash()
    bad = msgpack.unpackb(owned.snapshot())
    bad[3][0][4] = "not a token id"
    with pytest.raises(SnapshotError, match="session owner is 'not a token id'"):
        Machine().restore(msgpack.packb(bad, use_bin_type=True))


# --- entries that are not commands ----------------------------------------------------------------


def build_some_state(m: Machine) -> None:
    """Session 1 (ack floor 2, results for seqs 2 and 3, last used at 30); key b at revision 2 of 3."""
    s = open_session(m, at_ms=10)
    send(m, s, 1, Put("a", b"1"), ack_floor=1, at_ms=20)
    send(m, s, 2, Put("b", b"2"), ack_floor=1, at_ms=25)
    send(m, s, 3, Delete("a"), ack_floor=2, at_ms=30)


@pytest.mark.parametrize(
    "data",
    [b"", b"\xc1", b"\x93\x01\x02\x03", msgpack.packb({"op": "put"}), b"hello world", b"\x96" + b"\x01" * 5],
)
def test_an_entry_that_is_not_a_command_is_rejected_and_changes_only_applied_index(data):
    m, twin = Machine(), Machine()
    build_some_state(m)
    build_some_state(twin)
    result = apply(m, data)
    assert rejected(result) is RejectReason.MALFORMED
    assert result.message.startswith(f"entry {m.applied_index} is not a command: ")
    twin.apply_noop(twin.applied_index + 1)
    assert m.snapshot() == twin.snapshot()


msgpack_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=5) | st.binary(max_size=5),
    lambda inner: st.lists(inner, max_size=7) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=12,
)


@given(st.one_of(st.binary(max_size=64), msgpack_values.map(lambda v: msgpack.packb(v, use_bin_type=True))))
def test_apply_never_raises_on_arbitrary_entry_data(data):
    m = Machine()
    result = m.apply(1, data)
    assert m.applied_index == 1
    if rejected(result) is not RejectReason.MALFORMED:
        assert decode_command(data)  # it was a command after all


@given(st.binary(max_size=64))
def test_decode_result_raises_only_result_error(data):
    try:
        decode_result(data)
    except ResultError:
        pass


PUT_OP = [1, "k", b"v"]


def test_the_command_layout_is_format_timestamp_session_seq_ack_floor_op():
    row = [1, 5, 7, 2, 1, PUT_OP]
    assert decode_command(msgpack.packb(row, use_bin_type=True)) == Command(5, 7, 2, 1, Put("k", b"v"))
    assert msgpack.unpackb(encode_command(Command(5, 7, 2, 1, Put("k", b"v")))) == row


@pytest.mark.parametrize(
    "row, message",
    [
        ({"timestamp_ms": 1}, "command is {'timestamp_ms': 1}; expected an array of 6 items"),
        ([1, 0, 7, 1, PUT_OP], "command is [1, 0, 7, 1, [1, 'k', b'v']]; expected an array of 6 items"),
        ([2, 0, 7, 1, 1, PUT_OP], "command format is 2; this build reads format 1"),
        ([1, -1, 7, 1, 1, PUT_OP], "timestamp_ms is -1; expected an integer from 0"),
        ([1, 0, "7", 1, 1, PUT_OP], "session_id is '7'; expected an integer"),
        ([1, 0, 7, True, 1, PUT_OP], "seq is True; expected an integer"),
        ([1, 0, 7, 1, 1.0, PUT_OP], "ack_floor is 1.0; expected an integer"),
        ([1, 0, 7, 1, 1, "put"], "op is 'put'; expected an array [op_code, *fields]"),
        ([1, 0, 7, 1, 1, [99, "k", b"v"]], "op code is 99; expected one of [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16]"),
        ([1, 0, 7, 1, 1, [1, "k"]], "Put op has 1 fields; expected 2 ['key', 'value']"),
        ([1, 0, 7, 1, 1, [1, b"k", b"v"]], "key is b'k'; expected str"),
        ([1, 0, 7, 1, 1, [1, "k", "v"]], "value is 'v'; expected bytes"),
        ([1, 0, 7, 1, 1, [3, "k", b"v", "x", None]], "expected_value is 'x'; expected bytes"),
        ([1, 0, 7, 1, 1, [3, "k", b"v", None, -1]], "expected_revision is -1; expected an integer from 0"),
        ([1, 0, 7, 1, 1, [3, "k", b"v", None, None]], "exactly one of expected_value and expected_revision; got neither"),
        ([1, 0, 0, 1, 1, PUT_OP], "session_id is 0; a Put needs an open session"),
        ([1, 0, 7, 0, 0, PUT_OP], "seq is 0; sequence numbers in a session start at 1"),
        ([1, 0, 7, 1, 2, PUT_OP], "ack_floor is 2, above seq 1"),
        ([1, 0, 7, 0, 0, [0]], "session_id is 7; an OpenSession carries 0"),
        ([1, 0, 0, 0, 0, [0, "owner", "extra"]], "OpenSession op has 2 fields; expected 0 to 1 ['owner']"),
        ([1, 0, 0, 0, 0, [0, "not a token id"]], "owner is 'not a token id'; expected 1 to 64 characters"),
    ],
)
def test_decode_command_names_the_malformed_field(row, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        decode_command(msgpack.packb(row, use_bin_type=True))


def test_decode_command_refuses_what_is_not_msgpack_bytes():
    with pytest.raises(CommandError, match=re.escape("command is not msgpack (1 bytes)")):
        decode_command(b"\xc1")
    with pytest.raises(CommandError, match="command is str; expected bytes"):
        decode_command("text")


# --- validate_op: the rules at the server edge ----------------------------------------------------


@pytest.mark.parametrize(
    "op, message",
    [
        (Put("", b""), "key is empty"),
        (Put("a\0b", b""), "key 'a\\x00b' contains a NUL character"),
        (Put("é" * 513, b""), f"key is 1026 bytes of UTF-8; at most {MAX_KEY_BYTES}"),
        (Put("\ud800", b""), "is not valid UTF-8"),
        (Put(5, b""), "key is 5; expected str"),
        (Put("k", bytes(2_000_000)), "value is 2000000 bytes; at most 1048576"),
        (Put("k", bytearray(b"v")), "value is bytearray(b'v'); expected bytes"),
        (Delete(""), "key is empty"),
        (Cas("k", b"v"), "Cas takes exactly one of expected_value and expected_revision; got neither"),
        (Cas("k", b"v", b"x", 3), "got both"),
        (Cas("k", b"v", expected_value=bytes(MAX_VALUE_BYTES + 1)), "expected_value is 1048577 bytes; at most 1048576"),
        (Cas("k", b"v", expected_revision=-1), "expected_revision is -1"),
        ("put k v", "op is 'put k v'; expected OpenSession, Put, Delete or Cas"),
    ],
)
def test_validate_op_names_the_rule_an_op_breaks(op, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        validate_op(op)


def test_validate_op_accepts_ops_at_the_limits():
    validate_op(Put("k" * MAX_KEY_BYTES, bytes(MAX_VALUE_BYTES)))
    validate_op(Cas("ключ", b"", expected_revision=0))
    validate_op(Cas("k", b"", expected_value=b""))
    validate_op(OpenSession())


# --- the fast path for the usual Put: the same answers as the full checks ----------------------------

near_ints = st.one_of(
    st.integers(0, 3), st.integers(-2, -1), st.integers(2**64 - 2, 2**64 - 1), st.booleans(), st.floats(0, 2), st.none()
)
near_keys = st.one_of(
    st.text(alphabet=st.characters(max_codepoint=127), min_size=1, max_size=6),
    st.text(max_size=6),
    st.sampled_from(["a" * MAX_KEY_BYTES, "a" * (MAX_KEY_BYTES + 1), "é" * (MAX_KEY_BYTES // 2),
                     "é" * (MAX_KEY_BYTES // 2 + 1), "a\0b", ""]),
    st.binary(max_size=3), near_ints,
)
near_values = st.one_of(
    st.binary(max_size=6),
    st.sampled_from([b"x" * MAX_VALUE_BYTES, b"x" * (MAX_VALUE_BYTES + 1)]),
    st.text(max_size=3), near_ints,
)
near_op_rows = st.one_of(
    st.tuples(st.just(1), near_keys, near_values).map(list),
    st.tuples(st.sampled_from([0, 2, 3, 99, True, 1.0, -1]), near_keys, near_values).map(list),
    st.lists(st.one_of(st.just(1), near_keys, near_values), max_size=4),
    msgpack_values,
)
near_put_rows = st.one_of(
    st.tuples(
        st.just(1), st.integers(0, 2**64 - 1), st.integers(1, 2**64 - 1), st.integers(1, 9), st.integers(0, 9),
        st.tuples(st.just(1), st.one_of(st.text(min_size=1, max_size=6), near_keys), st.binary(max_size=6)).map(list),
    ).map(list),
    st.tuples(st.just(1), st.integers(0, 2**64 - 1), st.integers(1, 9), st.integers(1, 9), st.integers(0, 9), near_op_rows).map(list),
    st.tuples(st.sampled_from([1, 2, True]), near_ints, near_ints, near_ints, near_ints, near_op_rows).map(list),
    st.lists(st.one_of(st.just(1), near_ints, near_op_rows), max_size=7),
    msgpack_values,
)


def decode_with_every_check(data: bytes) -> Command:
    return _command_from_row(unpack(data, CommandError, "command"))


@settings(max_examples=10 * settings().max_examples)  # cheap examples; the equivalence is the point
@given(near_put_rows)
def test_the_fast_put_path_accepts_and_refuses_exactly_what_the_full_checks_do(row):
    data = msgpack.packb(row, use_bin_type=True)
    try:
        expected = decode_with_every_check(data)
    except CommandError as exc:
        assert _common_put(msgpack.unpackb(data, raw=False)) is None
        with pytest.raises(CommandError) as refused:
            decode_command(data)
        assert str(refused.value) == str(exc)  # the same field and rule named
    else:
        fast = _common_put(msgpack.unpackb(data, raw=False))
        assert fast is None or fast == expected
        assert decode_command(data) == expected


@pytest.mark.parametrize("key", ["k", "a" * MAX_KEY_BYTES, "~!09 az"])
def test_an_encoded_put_with_an_ascii_key_takes_the_fast_path(key):
    cmd = Command(1_764_000_000_000, 7, 3, 2, Put(key, b"v" * 100))
    assert _common_put(msgpack.unpackb(encode_command(cmd), raw=False)) == cmd


def test_a_command_that_cannot_be_packed_leaves_the_reused_packer_clean():
    with pytest.raises(TypeError):
        encode_command(Command(1, 7, 1, 1, Put("k", object())))  # type: ignore[arg-type]
    cmd = Command(1, 7, 2, 2, Put("k", b"v"))
    assert decode_command(encode_command(cmd)) == cmd


# --- encodings round-trip ---------------------------------------------------------------------------

u64 = st.integers(0, 2**64 - 1)
keys = st.text(min_size=1, max_size=8).filter(lambda k: "\0" not in k)
ops = st.one_of(
    st.builds(Put, keys, st.binary(max_size=8)),
    st.builds(Delete, keys),
    st.builds(Cas, keys, st.binary(max_size=8), expected_value=st.binary(max_size=8)),
    st.builds(Cas, keys, st.binary(max_size=8), expected_revision=u64),
)
commands = st.one_of(
    st.builds(Command, u64, st.just(0), st.just(0), st.just(0), st.just(OpenSession())),
    st.tuples(u64, st.integers(1, 2**64 - 1), st.integers(1, 2**64 - 1), ops).flatmap(
        lambda t: st.builds(Command, st.just(t[0]), st.just(t[1]), st.just(t[2]), st.integers(0, t[2]), st.just(t[3]))
    ),
)
key_values = st.builds(KeyValue, keys, st.binary(max_size=8), st.just(1), st.integers(1, 9), st.integers(1, 9))
results = st.one_of(
    st.builds(SessionOpened, st.integers(1, 2**64 - 1)),
    st.builds(PutResult, u64, st.none() | key_values),
    st.builds(DeleteResult, u64, st.none() | key_values),
    st.builds(CasResult, st.booleans(), u64, st.none() | key_values),
    st.builds(Rejected, st.sampled_from(RejectReason), st.text(max_size=20)),
)


@given(commands)
def test_every_command_round_trips(cmd):
    assert decode_command(encode_command(cmd)) == cmd


@given(results)
def test_every_result_round_trips(result):
    decoded = decode_result(encode_result(result))
    assert decoded == result and type(decoded) is type(result)


# --- snapshots --------------------------------------------------------------------------------------


def scripted_log(seed: int, length: int) -> list[bytes | None]:
    """A seeded log with sessions, retries, acks, expiry, no-ops and garbage."""
    rng = random.Random(seed)
    log: list[bytes | None] = []
    sessions: dict[int, int] = {}  # session -> next seq
    sent: list[bytes] = []
    clock = 0
    for _ in range(length):
        clock = max(0, clock + rng.randint(-1500, 2000))  # successive leaders' clocks disagree
        kind = rng.choice(["open", "command", "command", "command", "retry", "noop", "garbage"])
        if kind == "open" or (kind == "command" and not sessions):
            sessions[len(log) + 1] = 1
            log.append(encode_command(Command(clock, 0, 0, 0, OpenSession())))
        elif kind == "command":
            session = rng.choice(list(sessions))
            seq = sessions[session]
            sessions[session] += 1
            key = rng.choice("abcdefgh")
            op = rng.choice(
                [Put(key, bytes([seq % 256])), Delete(key), Cas(key, b"c", expected_revision=rng.randint(0, 5))]
            )
            sent.append(encode_command(Command(clock, session, seq, rng.randint(max(0, seq - 4), seq), op)))
            log.append(sent[-1])
        elif kind == "retry" and sent:
            log.append(rng.choice(sent))  # the same bytes again, as a client's retry would be
        elif kind == "garbage":
            log.append(rng.randbytes(rng.randint(0, 6)))
        else:
            log.append(None)  # a new leader's no-op
    return log


LIMITS = {"session_ttl_ms": 5000, "max_sessions": 3, "max_results_per_session": 3}


def run(m: Machine, log: list[bytes | None]) -> list:
    """Applies `log` from the machine's next index; returns the results (None for no-ops)."""
    start = m.applied_index + 1
    return [
        m.apply_noop(index) if data is None else m.apply(index, data) for index, data in enumerate(log, start)
    ]


def test_a_restored_snapshot_has_the_same_hash_and_behaves_the_same_afterwards():
    log = scripted_log(seed=3, length=120)
    m = Machine(**LIMITS)
    run(m, log[:60])
    restored = Machine(**LIMITS)
    restored.restore(m.snapshot())
    assert restored.state_hash() == m.state_hash()
    assert (restored.applied_index, restored.now_ms, restored.session_count) == (m.applied_index, m.now_ms, m.session_count)
    assert [restored.get(k) for k in "abcdefgh"] == [m.get(k) for k in "abcdefgh"]
    assert run(restored, log[60:]) == run(m, log[60:])
    assert restored.snapshot() == m.snapshot()


def test_a_capture_encodes_the_state_it_was_taken_at_while_applying_goes_on():
    """The node captures on its loop and encodes in a thread: what the machine
    applies after the capture must not leak into the encoded snapshot."""
    log = scripted_log(seed=5, length=120)
    m = Machine(**LIMITS)
    run(m, log[:60])
    expected = m.snapshot()
    view = m.capture()
    run(m, log[60:])
    assert view.encode() == expected
    assert m.snapshot() != expected


def test_a_restored_session_answers_retries_from_its_cache():
    m = Machine()
    s = open_session(m)
    first = send(m, s, 1, Put("a", b"1"), ack_floor=1)
    send(m, s, 2, Put("a", b"2"), ack_floor=1)
    restored = Machine()
    restored.restore(m.snapshot())
    assert send(restored, s, 1, Put("a", b"1"), ack_floor=1) == first
    assert restored.get("a").value == b"2"
    send(restored, s, 3, Put("a", b"3"), ack_floor=3)
    assert rejected(send(restored, s, 2, Put("a", b"2"), ack_floor=2)) is RejectReason.STALE_SEQUENCE


def test_results_applied_out_of_seq_order_restore_and_answer_retries():
    # A pipelining client's seq 2 can reach the log before its seq 1.
    m = Machine()
    s = open_session(m)
    second = send(m, s, 2, Put("a", b"2"), ack_floor=1)
    first = send(m, s, 1, Put("a", b"1"), ack_floor=1)
    restored = Machine()
    restored.restore(m.snapshot())
    assert restored.snapshot() == m.snapshot()
    assert send(restored, s, 1, Put("a", b"1"), ack_floor=1) == first
    assert send(restored, s, 2, Put("a", b"2"), ack_floor=1) == second


def valid_snapshot_row() -> list:
    m = Machine()
    build_some_state(m)
    return msgpack.unpackb(m.snapshot())


def with_field(path: tuple[int, ...], value) -> bytes:
    row = valid_snapshot_row()
    target = row
    for i in path[:-1]:
        target = target[i]
    target[path[-1]] = value
    return msgpack.packb(row, use_bin_type=True)


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\xc1", "snapshot is not msgpack"),
        (msgpack.packb([1, 2, 3]), "snapshot is [1, 2, 3]; expected an array of 5 items"),
        (with_field((0,), 9), "snapshot format is 9; this build reads format 3 (and 2, "),
        (with_field((1,), -3), "applied_index is -3"),
        (with_field((3, 0, 0), 0), "session_id is 0; expected an integer from 1"),
        (with_field((3, 0, 2), 99), "session 1 last_used_ms=99 is after now_ms=30"),
        (with_field((3, 0, 3, 0, 1), b"junk"), "session 1 seq 2: result is not msgpack"),
        (with_field((3, 0, 1), 5), "session 1 result seq is 2; expected an integer from 5"),
        (with_field((4,), []), "namespaces is []; expected an array of 2 items"),
        (with_field((4, 0, 0), 1), "kv key 'b' mod_revision=2 is above revision=1"),
        (with_field((4, 0, 1, 0, 0), ""), "kv key '' is out of order after ''"),
    ],
)
def test_restore_refuses_a_bad_snapshot_and_keeps_the_state(data, message):
    m = Machine()
    build_some_state(m)
    before = m.snapshot()
    with pytest.raises(SnapshotError, match=re.escape(message)):
        m.restore(data)
    assert m.snapshot() == before


def test_restore_refuses_more_sessions_than_max_sessions():
    m = Machine(max_sessions=3)
    for _ in range(3):
        open_session(m)
    small = Machine(max_sessions=2)
    with pytest.raises(SnapshotError, match=re.escape("snapshot holds 3 sessions; max_sessions=2")):
        small.restore(m.snapshot())


def test_the_snapshot_lists_keys_in_order_whatever_order_they_were_written_in():
    m = Machine()
    s = open_session(m)
    for seq, key in enumerate("cab", start=1):
        send(m, s, seq, Put(key, b""))
    kv_rows = msgpack.unpackb(m.snapshot())[4][0][1]
    assert [row[0] for row in kv_rows] == ["a", "b", "c"]


# --- determinism -----------------------------------------------------------------------------------


@st.composite
def logs(draw) -> list[bytes | None]:
    """Logs of opens, commands (with gaps in acks), verbatim retries, no-ops and garbage,
    stamped by leaders whose clocks go backwards as well as forwards."""
    log: list[bytes | None] = []
    sessions: dict[int, int] = {}  # session -> next seq
    sent: list[bytes] = []
    clock = 0
    for _ in range(draw(st.integers(1, 40))):
        clock = max(0, clock + draw(st.integers(-1000, 1500)))
        kind = draw(st.sampled_from(["open", "command", "command", "command", "command", "retry", "retry", "noop", "garbage"]))
        if kind == "open" or (kind == "command" and not sessions):
            sessions[len(log) + 1] = 1
            log.append(encode_command(Command(clock, 0, 0, 0, OpenSession())))
        elif kind == "command":
            session = draw(st.sampled_from(sorted(sessions)))
            seq = sessions[session]
            sessions[session] += 1
            op = draw(
                st.one_of(
                    st.builds(Put, st.sampled_from("abc"), st.binary(max_size=2)),
                    st.builds(Delete, st.sampled_from("abc")),
                    st.builds(Cas, st.sampled_from("abc"), st.just(b"c"), expected_revision=st.integers(0, 4)),
                )
            )
            ack_floor = draw(st.integers(max(0, seq - 4), seq))  # up to 4 replies outstanding
            sent.append(encode_command(Command(clock, session, seq, ack_floor, op)))
            log.append(sent[-1])
        elif kind == "retry" and sent:
            log.append(draw(st.sampled_from(sent)))
        elif kind == "garbage":
            log.append(draw(st.binary(max_size=6)))
        else:
            log.append(None)
    return log


@given(logs(), st.data())
def test_replicas_applying_the_same_log_end_byte_identical_with_or_without_a_snapshot(log, data):
    whole = Machine(**LIMITS)
    results = run(whole, log)
    cut = data.draw(st.integers(0, len(log)), label="snapshot after")
    head_machine = Machine(**LIMITS)
    head = run(head_machine, log[:cut])
    restored = Machine(**LIMITS)
    restored.restore(head_machine.snapshot())
    assert head + run(restored, log[cut:]) == results
    assert restored.snapshot() == whole.snapshot()
    replay = Machine(**LIMITS)
    assert run(replay, log) == results
    assert replay.snapshot() == whole.snapshot()


@given(logs())
def test_a_command_is_applied_at_most_once_and_every_answer_to_it_agrees(log):
    # thesis §6.3: a retry is answered from the cache or refused, never applied again.
    m = Machine(**LIMITS)
    answers: dict[tuple[int, int], object] = {}
    for data, result in zip(log, run(m, log)):
        if data is None or type(result) in (Rejected, SessionOpened):
            continue
        cmd = decode_command(data)
        assert answers.setdefault((cmd.session_id, cmd.seq), result) == result


REPLAY = """
import sys, msgpack
from raftflow.statemachine import Machine
m = Machine(session_ttl_ms=5000, max_sessions=3, max_results_per_session=3)
for index, data in enumerate(msgpack.unpackb(sys.stdin.buffer.read()), 1):
    m.apply_noop(index) if data is None else m.apply(index, data)
print(m.state_hash())
"""


def test_replaying_a_log_in_another_process_with_another_hash_seed_gives_the_same_state():
    log = scripted_log(seed=11, length=300)
    m = Machine(**LIMITS)
    run(m, log)
    for hash_seed in ("1", "2"):
        out = subprocess.run(
            [sys.executable, "-c", REPLAY],
            input=msgpack.packb(log, use_bin_type=True),
            capture_output=True,
            check=True,
            env={"PYTHONHASHSEED": hash_seed},
        )
        assert out.stdout.decode().strip() == m.state_hash()
