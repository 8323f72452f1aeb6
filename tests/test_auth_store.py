"""The access-token store: tokens issued and revoked through the log are known to every
replica, each op is checked by its rules on the way in, the store is bounded by
max_tokens, and a machine that never held a token writes exactly the snapshot bytes,
so the state hashes, of a build that had no auth namespace (format 2)."""

import hashlib
import re
from dataclasses import replace

import msgpack
import pytest
from hypothesis import given
from hypothesis import strategies as st

from raftflow.statemachine import (
    AccessRole,
    Command,
    CommandError,
    IssueToken,
    Machine,
    OpenSession,
    Put,
    Rejected,
    RejectReason,
    RevokeToken,
    SessionOpened,
    SnapshotError,
    TokenIssued,
    TokenRecord,
    TokenRevoked,
    check_secret,
    decode_command,
    encode_command,
    validate_op,
)
from raftflow.statemachine.machine import SNAPSHOT_FORMAT

SECRET = b"correct horse battery staple"
SECRET_SHA256 = hashlib.sha256(SECRET).digest()

# Measured on the build before the auth namespace existed (commit 5f8c41e): a machine
# that holds no token must still give these, byte for byte.
EMPTY_SNAPSHOT_HEX = "9502000090929200909703010190909090"
EMPTY_STATE_HASH = "3bf9c614dcad7485dc03b096b483386b31148753ae3b374d74e1253b9869156e"
ONE_PUT_STATE_HASH = "5bdf62d097b9a8d04cbde73793506a24bfb9ba7bcf371288477c6a63f27baf97"


# --- a driver that appends each entry at the next index, as Raft would ----------------


def apply(m: Machine, data: bytes):
    return m.apply(m.applied_index + 1, data)


def open_session(m: Machine, at_ms: int = 0) -> int:
    result = apply(m, encode_command(Command(at_ms, 0, 0, 0, OpenSession())))
    assert type(result) is SessionOpened, result
    return result.session_id


def send(m: Machine, session: int, seq: int, op, *, at_ms: int = 0):
    return apply(m, encode_command(Command(at_ms, session, seq, seq, op)))


def issue(token_id="t1", role="admin", queues=(), secret_sha256=SECRET_SHA256, name="ops", expires_ms=0) -> IssueToken:
    return IssueToken(token_id, role, list(queues), secret_sha256, name, expires_ms)


def worker(token_id="w1", queues=("billing",), **fields) -> IssueToken:
    return issue(token_id, "worker", queues, **fields)


# --- issue and revoke -------------------------------------------------------------------


def test_an_issued_token_is_recorded_with_the_machines_time():
    m = Machine()
    s = open_session(m)
    assert send(m, s, 1, worker(name="billing workers", expires_ms=9000), at_ms=1500) == TokenIssued("w1", 1500)
    assert m.auth.token("w1") == TokenRecord(
        "w1", AccessRole.WORKER, ("billing",), SECRET_SHA256, "billing workers", issued_ms=1500, expires_ms=9000
    )
    assert m.auth.token("nope") is None
    assert len(m.auth) == 1


def test_tokens_are_listed_by_id_whatever_order_they_were_issued_in():
    m = Machine()
    s = open_session(m)
    for seq, token_id in enumerate(["c", "a", "b"], start=1):
        send(m, s, seq, issue(token_id))
    assert [record.token_id for record in m.auth.tokens()] == ["a", "b", "c"]


def test_revoke_removes_the_token_and_revoking_again_is_not_an_error():
    m = Machine()
    s = open_session(m)
    send(m, s, 1, issue("t1"))
    assert send(m, s, 2, RevokeToken("t1")) == TokenRevoked("t1", True)
    assert m.auth.token("t1") is None
    assert send(m, s, 3, RevokeToken("t1")) == TokenRevoked("t1", False)
    assert send(m, s, 4, RevokeToken("never")) == TokenRevoked("never", False)


def test_issuing_an_id_that_exists_is_rejected_and_changes_nothing():
    m = Machine()
    s = open_session(m)
    send(m, s, 1, issue("t1", role="reader"), at_ms=10)
    result = send(m, s, 2, issue("t1", role="admin"), at_ms=20)
    assert result == Rejected(RejectReason.ALREADY_EXISTS, "token 't1' exists; revoke it first")
    assert m.auth.tokens() == [TokenRecord("t1", AccessRole.READER, (), SECRET_SHA256, "ops", 10, 0)]


def test_an_expired_token_still_holds_its_id_until_revoked():
    m = Machine()
    s = open_session(m)
    send(m, s, 1, issue("t1", expires_ms=50))
    assert send(m, s, 2, issue("t1"), at_ms=100).reason is RejectReason.ALREADY_EXISTS
    send(m, s, 3, RevokeToken("t1"), at_ms=100)
    assert send(m, s, 4, issue("t1"), at_ms=100) == TokenIssued("t1", 100)


def test_issuing_past_max_tokens_is_rejected_naming_the_bound_until_one_is_revoked():
    m = Machine(max_tokens=2)
    s = open_session(m)
    send(m, s, 1, issue("a"))
    send(m, s, 2, issue("b"))
    result = send(m, s, 3, issue("c"))
    assert result == Rejected(RejectReason.QUOTA_EXCEEDED, "2 tokens exist (max_tokens=2); revoke one first")
    assert m.auth.token("c") is None
    send(m, s, 4, RevokeToken("a"))
    assert send(m, s, 5, issue("c")) == TokenIssued("c", 0)


def test_a_duplicate_id_is_answered_before_the_quota():
    m = Machine(max_tokens=1)
    s = open_session(m)
    send(m, s, 1, issue("a"))
    assert send(m, s, 2, issue("a")).reason is RejectReason.ALREADY_EXISTS


@pytest.mark.parametrize("bad", [0, -1, "10", 1.5, True])
def test_max_tokens_is_checked_at_construction(bad):
    with pytest.raises(ValueError, match=re.escape(f"max_tokens={bad!r} must be an integer of at least 1")):
        Machine(max_tokens=bad)


def test_a_retried_issue_is_answered_from_the_session_cache_not_applied_again():
    # thesis §6.3: the retry reaches the log twice; the second gets the first's answer.
    m = Machine()
    s = open_session(m)
    data = encode_command(Command(7, s, 1, 0, issue("t1")))
    first = apply(m, data)
    assert first == TokenIssued("t1", 7)
    assert apply(m, data) == first  # not ALREADY_EXISTS


def test_an_auth_op_outside_a_session_is_refused_like_any_client_op():
    m = Machine()
    assert send(m, 42, 1, issue("t1")).reason is RejectReason.SESSION_UNKNOWN
    assert len(m.auth) == 0


def test_the_leaders_own_op_with_an_enum_role_and_a_tuple_applies_as_its_decoding_does():
    # The leader applies the Command it proposed (decoded=...); followers decode the bytes.
    op = IssueToken("w1", AccessRole.WORKER, ("q1", "q2"), SECRET_SHA256, "n", 0)
    validate_op(op)
    leader, follower = Machine(), Machine()
    for m in (leader, follower):
        open_session(m)
    cmd = Command(5, 1, 1, 1, op)
    data = encode_command(cmd)
    assert leader.apply(2, data, decoded=cmd) == follower.apply(2, data) == TokenIssued("w1", 5)
    assert leader.auth.token("w1") == follower.auth.token("w1")
    assert leader.auth.token("w1").queues == ("q1", "q2")
    assert leader.state_hash() == follower.state_hash()


# --- validation: each rule, at the edge (validate_op) and on decode --------------------

LONG_ID = "x" * 65
BAD_OPS = [
    (issue(""), "token_id is ''; expected 1 to 64 characters of A-Z a-z 0-9 _ -"),
    (issue(LONG_ID), "token_id is 65 characters; at most 64"),
    (issue("a b"), "token_id is 'a b'; expected 1 to 64 characters"),
    (issue("tök"), "token_id is 'tök'; expected 1 to 64 characters"),
    (issue("t\n"), "token_id is 't\\n'; expected 1 to 64 characters"),
    (issue(7), "token_id is 7; expected str"),
    (RevokeToken("a/b"), "token_id is 'a/b'; expected 1 to 64 characters"),
    (RevokeToken(None), "token_id is None; expected str"),
    (issue(role="root"), "role is 'root'; expected one of admin, writer, reader, worker"),
    (issue(role="Admin"), "role is 'Admin'; expected one of"),
    (issue(role=1), "role is 1; expected one of"),
    (issue(role="admin", queues=["q"]), "queues has 1 items; only a worker token names task queues (role is admin)"),
    (issue(role="reader", queues=["q"]), "queues has 1 items; only a worker token names task queues (role is reader)"),
    (worker(queues=()), "queues has 0 items; a worker token names 1 to 64 task queues"),
    (worker(queues=[f"q{i}" for i in range(65)]), "queues has 65 items; a worker token names 1 to 64 task queues"),
    (IssueToken("w1", "worker", "billing", SECRET_SHA256, "", 0), "queues is 'billing'; expected a list of task queue names"),
    (worker(queues=["a", ""]), "queues[1] is empty"),
    (worker(queues=["a", b"b"]), "queues[1] is b'b'; expected str"),
    (worker(queues=["é" * 129]), "queues[0] is 258 bytes of UTF-8; at most 256"),
    (worker(queues=["a", "b", "a"]), "queues[2] is 'a', named twice"),
    (issue(secret_sha256=b"\x00" * 31), "secret_sha256 is b'\\x00\\x00"),
    (issue(secret_sha256=SECRET_SHA256 + b"\x00"), "expected the 32 bytes of a SHA-256 digest"),
    (issue(secret_sha256=SECRET_SHA256.hex()), "secret_sha256 is '"),
    (issue(name=None), "name is None; expected str"),
    (issue(name="n" * 257), "name is 257 bytes of UTF-8; at most 256"),
    (issue(expires_ms=-1), "expires_ms is -1; expected an integer from 0 to 18446744073709551615"),
    (issue(expires_ms=2**64), "expires_ms is 18446744073709551616; expected an integer from 0"),
    (issue(expires_ms=1.0), "expires_ms is 1.0; expected an integer"),
    (issue(expires_ms=False), "expires_ms is False; expected an integer"),
]


@pytest.mark.parametrize(("op", "message"), BAD_OPS, ids=[message[:40] for _, message in BAD_OPS])
def test_validate_op_names_the_field_and_the_rule(op, message):
    with pytest.raises(CommandError, match=re.escape(message)):
        validate_op(op)


@pytest.mark.parametrize(("op", "message"), BAD_OPS, ids=[message[:40] for _, message in BAD_OPS])
def test_the_same_rules_refuse_the_op_when_its_entry_is_decoded(op, message):
    # Packed by hand: a faulty or hostile leader proposes what validate_op would refuse.
    row = [1, 0, 1, 1, 1, [15 if type(op) is IssueToken else 16, *[getattr(op, f) for f in type(op).__slots__]]]
    try:
        data = msgpack.packb(row, use_bin_type=True)
    except OverflowError:
        return  # 2**64 does not even pack: no entry can carry it
    with pytest.raises(CommandError, match=re.escape(message)):
        decode_command(data)
    m = Machine()
    open_session(m)
    assert apply(m, data).reason is RejectReason.MALFORMED
    assert len(m.auth) == 0


def test_the_limits_themselves_are_allowed():
    validate_op(issue("A-z_09" + "x" * 58, name="n" * 256, expires_ms=2**64 - 1))
    validate_op(worker(queues=[f"q{i}" for i in range(63)] + ["é" * 128]))
    for role in ("admin", "writer", "reader"):
        validate_op(issue(role=role, name=""))


# --- check_secret ------------------------------------------------------------------------


def record(expires_ms: int = 0) -> TokenRecord:
    return TokenRecord("t1", AccessRole.ADMIN, (), SECRET_SHA256, "ops", 100, expires_ms)


def test_check_secret_accepts_the_secret_whose_digest_is_recorded():
    assert check_secret(record(), SECRET, now_ms=10**12)


def test_check_secret_refuses_another_secret():
    assert not check_secret(record(), SECRET + b"!", now_ms=0)
    assert not check_secret(record(), b"", now_ms=0)
    assert not check_secret(record(), SECRET_SHA256, now_ms=0)  # the digest is not the secret


def test_check_secret_refuses_from_the_expiry_time_on():
    assert check_secret(record(expires_ms=500), SECRET, now_ms=499)
    assert not check_secret(record(expires_ms=500), SECRET, now_ms=500)
    assert not check_secret(record(expires_ms=500), SECRET, now_ms=501)


# --- replicas agree ---------------------------------------------------------------------


def auth_log() -> list[bytes]:
    """Opens a session and issues, refuses, revokes and re-issues tokens."""
    ops = [
        worker("w1", queues=["billing", "mail"], expires_ms=10_000),
        issue("a1"),
        issue("a1"),  # ALREADY_EXISTS
        issue("r1", role="reader"),
        issue("x1"),  # QUOTA_EXCEEDED at max_tokens=3
        RevokeToken("a1"),
        RevokeToken("a1"),  # revoked=False
        issue("x1", role="writer"),
        Put("k", b"v"),
    ]
    log = [encode_command(Command(100, 0, 0, 0, OpenSession()))]
    log += [encode_command(Command(100 + 10 * seq, 1, seq, seq, op)) for seq, op in enumerate(ops, start=1)]
    return log


def test_replicas_applying_the_same_commands_reach_the_same_state_and_results():
    first, second = Machine(max_tokens=3), Machine(max_tokens=3)
    results = [apply(first, data) for data in auth_log()]
    assert [apply(second, data) for data in auth_log()] == results
    assert [type(r).__name__ if type(r) is not Rejected else r.reason.name for r in results] == [
        "SessionOpened", "TokenIssued", "TokenIssued", "ALREADY_EXISTS", "TokenIssued", "QUOTA_EXCEEDED",
        "TokenRevoked", "TokenRevoked", "TokenIssued", "PutResult",
    ]
    assert first.state_hash() == second.state_hash()
    assert first.auth.tokens() == second.auth.tokens()
    assert [t.token_id for t in first.auth.tokens()] == ["r1", "w1", "x1"]


@pytest.mark.parametrize("cut", range(len(auth_log()) + 1))
def test_a_replica_restored_from_a_snapshot_midway_ends_the_same(cut):
    log = auth_log()
    whole = Machine(max_tokens=3)
    for data in log:
        apply(whole, data)
    head = Machine(max_tokens=3)
    for data in log[:cut]:
        apply(head, data)
    restored = Machine(max_tokens=3)
    restored.restore(head.snapshot())
    for data in log[cut:]:
        apply(restored, data)
    assert restored.snapshot() == whole.snapshot()


# --- snapshots: format 2 while empty, format 3 once a token exists --------------------


def test_a_machine_without_tokens_writes_the_snapshot_of_the_build_before_auth():
    assert Machine().snapshot().hex() == EMPTY_SNAPSHOT_HEX
    assert Machine().state_hash() == EMPTY_STATE_HASH
    m = Machine()
    m.apply(1, encode_command(Command(1000, 0, 0, 0, OpenSession())))
    m.apply(2, encode_command(Command(2000, 1, 1, 0, Put("k", b"v"))))
    assert m.state_hash() == ONE_PUT_STATE_HASH
    assert msgpack.unpackb(m.snapshot())[0] == 2 and len(msgpack.unpackb(m.snapshot())[4]) == 2


def test_the_first_token_makes_it_format_3_and_revoking_the_last_makes_it_format_2_again():
    m = Machine()
    s = open_session(m)
    send(m, s, 1, worker("w1", queues=["q"]), at_ms=5)
    row = msgpack.unpackb(m.snapshot())
    assert row[0] == SNAPSHOT_FORMAT == 3
    assert row[4][2] == [["w1", "worker", ["q"], SECRET_SHA256, "ops", 5, 0]]
    send(m, s, 2, RevokeToken("w1"))
    row = msgpack.unpackb(m.snapshot())
    assert row[0] == 2 and len(row[4]) == 2


def test_a_snapshot_with_tokens_restores_them_and_the_same_bytes():
    m = Machine()
    s = open_session(m)
    send(m, s, 1, worker("w1", queues=["b", "a"], name="billing workers", expires_ms=9), at_ms=3)
    send(m, s, 2, issue("a1", role="writer"), at_ms=4)
    restored = Machine()
    restored.restore(m.snapshot())
    assert restored.auth.tokens() == m.auth.tokens()
    assert restored.auth.token("w1").queues == ("b", "a")  # in the order issued
    assert restored.snapshot() == m.snapshot()
    assert restored.state_hash() == m.state_hash()
    assert send(restored, s, 3, issue("a1")).reason is RejectReason.ALREADY_EXISTS


def test_restoring_a_format_2_snapshot_empties_the_token_store():
    m = Machine()
    s = open_session(m)
    send(m, s, 1, issue("a1"))
    m.restore(Machine().snapshot())
    assert len(m.auth) == 0 and m.auth.token("a1") is None


def snapshot_with_tokens() -> list:
    m = Machine(max_tokens=3)
    s = open_session(m)
    send(m, s, 1, issue("a1"), at_ms=10)
    send(m, s, 2, worker("w1", queues=["q"]), at_ms=20)
    return msgpack.unpackb(m.snapshot())


def damaged(change) -> bytes:
    row = snapshot_with_tokens()
    change(row)
    return msgpack.packb(row, use_bin_type=True)


def set_field(token: int, field: int, value):
    def change(row):
        row[4][2][token][field] = value
    return change


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (damaged(lambda row: row.__setitem__(0, 4)),
         "snapshot format is 4; this build reads format 3 (and 2, which it writes while no access token exists)"),
        (damaged(lambda row: row[4].pop()), "namespaces is "),  # format 3 with 2 namespaces
        (damaged(lambda row: row.__setitem__(0, 2)), "namespaces is "),  # format 2 with 3 namespaces
        (damaged(lambda row: row[4].__setitem__(2, [])), "auth tokens is []; a format 3 snapshot holds at least one"),
        (damaged(lambda row: row[4].__setitem__(2, {"a1": 1})), "auth tokens is {'a1': 1}; expected list"),
        (damaged(lambda row: row[4][2].reverse()), "auth token 'a1' is out of order after 'w1'"),
        (damaged(lambda row: row[4][2].__setitem__(1, row[4][2][0])), "auth token 'a1' is out of order after 'a1'"),
        (damaged(lambda row: row[4][2][0].pop()), "auth token is ['a1', 'admin', [], b"),
        (damaged(set_field(0, 0, "a 1")), "auth token_id is 'a 1'; expected 1 to 64 characters"),
        (damaged(set_field(0, 0, 5)), "auth token_id is 5; expected str"),
        (damaged(set_field(0, 1, "root")), "auth token 'a1' role is 'root'; expected one of admin, writer, reader, worker"),
        (damaged(set_field(0, 2, ["q"])), "auth token 'a1' queues has 1 items; only a worker token"),
        (damaged(set_field(1, 2, [])), "auth token 'w1' queues has 0 items; a worker token names 1 to 64"),
        (damaged(set_field(1, 2, ["q", "q"])), "auth token 'w1' queues[1] is 'q', named twice"),
        (damaged(set_field(0, 3, b"short")), "auth token 'a1' secret_sha256 is b'short'; expected the 32 bytes"),
        (damaged(set_field(0, 4, 3)), "auth token 'a1' name is 3; expected str"),
        (damaged(set_field(0, 5, -1)), "auth token 'a1' issued_ms is -1; expected an integer from 0"),
        (damaged(set_field(0, 6, "never")), "auth token 'a1' expires_ms is 'never'; expected an integer"),
    ],
)
def test_restore_refuses_a_damaged_auth_section_naming_the_field_and_keeps_the_state(data, message):
    m = Machine()
    s = open_session(m)
    send(m, s, 1, issue("keep"))
    before = m.snapshot()
    with pytest.raises(SnapshotError, match=re.escape(message)):
        m.restore(data)
    assert m.snapshot() == before


def test_restore_refuses_more_tokens_than_max_tokens():
    data = msgpack.packb(snapshot_with_tokens(), use_bin_type=True)
    Machine(max_tokens=2).restore(data)
    with pytest.raises(SnapshotError, match=re.escape("snapshot holds 2 tokens; max_tokens=1")):
        Machine(max_tokens=1).restore(data)


# --- decode raises only its documented errors --------------------------------------------

plain = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats() | st.text(max_size=8) | st.binary(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=3), inner, max_size=3),
    max_leaves=8,
)


@st.composite
def auth_ops(draw) -> IssueToken | RevokeToken:
    """A valid IssueToken or RevokeToken (ids from a few, so that some collide), and
    half the time with one field replaced by any msgpack value."""
    token_id = draw(st.sampled_from(["a", "w1", "A-z_9"]))
    if draw(st.booleans()):
        op = RevokeToken(token_id)
    else:
        role = draw(st.sampled_from([r.value for r in AccessRole]))
        queues = draw(st.lists(st.sampled_from(["q1", "q2", "é"]), min_size=1, max_size=3, unique=True)) if role == "worker" else []
        op = IssueToken(
            token_id, role, queues, draw(st.binary(min_size=32, max_size=32)), draw(st.text(max_size=10)),
            draw(st.integers(0, 2**64 - 1)),
        )
    if draw(st.booleans()):
        field = draw(st.sampled_from(type(op).__slots__))
        op = replace(op, **{field: draw(st.text(max_size=70) | plain)})
    return op


@given(st.lists(auth_ops(), min_size=1, max_size=6))
def test_random_auth_ops_are_refused_by_decode_with_command_error_only_and_apply_never_raises(ops):
    m = Machine(max_tokens=2)
    s = open_session(m)
    for seq, op in enumerate(ops, start=1):
        row = [1, 0, s, seq, seq, [15 if type(op) is IssueToken else 16, *[getattr(op, f) for f in type(op).__slots__]]]
        data = msgpack.packb(row, use_bin_type=True)
        try:
            cmd = decode_command(data)
        except CommandError:
            with pytest.raises(CommandError):
                validate_op(op)  # the edge refuses what decode refuses
            assert apply(m, data).reason is RejectReason.MALFORMED
            continue
        validate_op(cmd.op)
        result = apply(m, data)
        assert type(result) in (TokenIssued, TokenRevoked, Rejected), result
    assert len(m.auth) <= 2
    restored = Machine(max_tokens=2)
    restored.restore(m.snapshot())
    assert restored.snapshot() == m.snapshot()


@given(st.one_of(st.lists(st.lists(plain, min_size=7, max_size=7), max_size=3), plain))
def test_a_random_auth_section_is_refused_with_snapshot_error_only(auth_state):
    row = snapshot_with_tokens()
    row[4][2] = auth_state
    data = msgpack.packb(row, use_bin_type=True)
    try:
        Machine(max_tokens=3).restore(data)
    except SnapshotError:
        pass
