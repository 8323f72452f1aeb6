"""The access-token namespace: which tokens exist, replicated through the log so that
every replica knows the same ones.

A token is issued and revoked by ops in a client session like any other (exactly-once
by (session, seq)). The log holds only the SHA-256 of a token's secret, never the
secret: whoever reads the log, a snapshot or a data directory learns nothing that
would let them use a token. Who may issue, and what a role may call, is the network
side's business; this namespace only keeps the records and answers `token(token_id)`.
A record is immutable: to change a token, revoke it and issue another.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
from dataclasses import dataclass
from typing import ClassVar, TypeAlias

from raftflow.statemachine._checks import (
    CommandError,
    Rejected,
    RejectReason,
    SnapshotError,
    check_int,
    check_row,
    check_type,
    show,
)

DEFAULT_MAX_TOKENS = 10_000
MAX_TOKEN_ID_CHARS = 64
MAX_QUEUES = 64  # task queues one worker token may use
MAX_QUEUE_BYTES = 256  # a queue's name, UTF-8
MAX_TOKEN_NAME_BYTES = 256  # a token's human label, UTF-8
SECRET_SHA256_BYTES = 32
_TOKEN_ID = re.compile(r"[A-Za-z0-9_-]+")  # ASCII only: an id goes in headers and logs as is


class AccessRole(enum.StrEnum):
    ADMIN = "admin"
    WRITER = "writer"
    READER = "reader"
    WORKER = "worker"  # limited to the task queues its token names


_ROLES = {role.value: role for role in AccessRole}


@dataclass(frozen=True, slots=True)
class TokenRecord:
    token_id: str
    role: AccessRole
    queues: tuple[str, ...]  # the task queues a worker token may use; empty for every other role
    secret_sha256: bytes  # SHA-256 of the token's secret (32 bytes); the secret never enters the log
    name: str  # a human label, e.g. "billing workers"
    issued_ms: int  # the machine's now_ms when the IssueToken applied
    expires_ms: int  # 0: never; else the token is refused from this leader time on


# --- ops and results --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class IssueToken:
    """Creates token `token_id`; Rejected ALREADY_EXISTS if the id is taken (even by a
    token that has expired), QUOTA_EXCEEDED past max_tokens."""

    token_id: str
    role: str  # an AccessRole or its value
    queues: list[str] | tuple[str, ...]  # for role worker only, at least one; decoded from the log as a list
    secret_sha256: bytes
    name: str
    expires_ms: int  # 0: never


@dataclass(frozen=True, slots=True)
class RevokeToken:
    """Removes token `token_id`; revoking an unknown id is not an error (revoked=False),
    so a retried or repeated revoke is harmless."""

    token_id: str


@dataclass(frozen=True, slots=True)
class TokenIssued:
    token_id: str
    issued_ms: int


@dataclass(frozen=True, slots=True)
class TokenRevoked:
    token_id: str
    revoked: bool  # False: there was no such token


AuthOp: TypeAlias = IssueToken | RevokeToken
AuthResult: TypeAlias = TokenIssued | TokenRevoked
AUTH_OPS: tuple[type, ...] = (IssueToken, RevokeToken)  # their codes: commands.OP_CLASSES
AUTH_RESULTS: tuple[type, ...] = (TokenIssued, TokenRevoked)  # their codes: commands.RESULT_CLASSES


def validate_auth_op(op: AuthOp) -> None:
    """The rules an auth op must meet; CommandError naming the field if one fails.
    Whether the id is free is the namespace's to answer, when the op applies."""
    match op:
        case IssueToken(token_id, role, queues, secret_sha256, name, expires_ms):
            check_token_id(token_id, "token_id", CommandError)
            _check_token_fields(role, queues, secret_sha256, name, expires_ms, "", CommandError)
        case RevokeToken(token_id):
            check_token_id(token_id, "token_id", CommandError)
        case _:
            raise AssertionError(f"validate_auth_op was handed {op!r}, which is not an auth op")


def _check_token_fields(
    role: object,
    queues: object,
    secret_sha256: object,
    name: object,
    expires_ms: object,
    where: str,
    error: type[ValueError],
) -> None:
    """The fields after the id that an IssueToken and a snapshot's token row share.
    `where` prefixes each field's name in a message ("" for an op, "auth token 'id' "
    for a snapshot row)."""
    # An AccessRole is a str too: the leader may propose its own op with the enum in it.
    if type(role) not in (str, AccessRole) or role not in _ROLES:
        raise error(f"{where}role is {show(role)}; expected one of {', '.join(_ROLES)}")
    _check_queues(queues, role, f"{where}queues", error)
    if type(secret_sha256) is not bytes or len(secret_sha256) != SECRET_SHA256_BYTES:
        raise error(f"{where}secret_sha256 is {show(secret_sha256)}; expected the {SECRET_SHA256_BYTES} bytes of a SHA-256 digest")
    _check_utf8(name, f"{where}name", MAX_TOKEN_NAME_BYTES, error)
    check_int(expires_ms, f"{where}expires_ms", error)


def check_token_id(token_id: object, what: str, error: type[ValueError]) -> None:
    """A token id: 1 to 64 characters of A-Z a-z 0-9 _ - (an error of type `error` if not)."""
    check_type(token_id, str, what, error)
    if len(token_id) > MAX_TOKEN_ID_CHARS:
        raise error(f"{what} is {len(token_id)} characters; at most {MAX_TOKEN_ID_CHARS}")
    if not _TOKEN_ID.fullmatch(token_id):
        raise error(f"{what} is {show(token_id)}; expected 1 to {MAX_TOKEN_ID_CHARS} characters of A-Z a-z 0-9 _ -")


def _check_queues(queues: object, role: str, what: str, error: type[ValueError]) -> None:
    if type(queues) not in (list, tuple):
        raise error(f"{what} is {show(queues)}; expected a list of task queue names")
    if role != AccessRole.WORKER:
        if queues:
            raise error(f"{what} has {len(queues)} items; only a worker token names task queues (role is {role!s})")
        return
    if not 1 <= len(queues) <= MAX_QUEUES:
        raise error(f"{what} has {len(queues)} items; a worker token names 1 to {MAX_QUEUES} task queues")
    seen: set[str] = set()
    for i, queue in enumerate(queues):
        _check_utf8(queue, f"{what}[{i}]", MAX_QUEUE_BYTES, error)
        if not queue:
            raise error(f"{what}[{i}] is empty")
        if queue in seen:
            raise error(f"{what}[{i}] is {show(queue)}, named twice")
        seen.add(queue)


def _check_utf8(value: object, what: str, max_bytes: int, error: type[ValueError]) -> None:
    check_type(value, str, what, error)
    try:
        size = len(value.encode())
    except UnicodeEncodeError:
        raise error(f"{what} is not valid UTF-8 (a lone surrogate)") from None
    if size > max_bytes:
        raise error(f"{what} is {size} bytes of UTF-8; at most {max_bytes}")


def check_secret(record: TokenRecord, secret: bytes, now_ms: int) -> bool:
    """Whether `secret` is the token's and the token has not expired at `now_ms`. The
    digests are compared in constant time, so the time taken does not tell a caller
    how much of a guess was right."""
    if record.expires_ms and now_ms >= record.expires_ms:
        return False
    return hmac.compare_digest(hashlib.sha256(secret).digest(), record.secret_sha256)


# --- the namespace ----------------------------------------------------------------------


class AuthNamespace:
    """The issued tokens by id. `token`, `tokens` and `len` are the queries a node reads
    between applies; only committed IssueToken and RevokeToken change the answers."""

    OPS: ClassVar[tuple[type, ...]] = AUTH_OPS

    def __init__(self, max_tokens: int = DEFAULT_MAX_TOKENS) -> None:
        """Like the session and workflow limits, every replica must use the same
        max_tokens: it decides which IssueToken is refused."""
        if type(max_tokens) is not int or max_tokens < 1:
            raise ValueError(f"max_tokens={max_tokens!r} must be an integer of at least 1")
        self.max_tokens = max_tokens
        self._tokens: dict[str, TokenRecord] = {}  # len(_tokens) <= max_tokens

    def __len__(self) -> int:
        return len(self._tokens)

    def token(self, token_id: str) -> TokenRecord | None:
        """The token as of applied_index, None if it was never issued or is revoked
        (an expired token is still here: ask check_secret)."""
        return self._tokens.get(token_id)

    def tokens(self) -> list[TokenRecord]:
        """Every token, sorted by token_id."""
        return [self._tokens[token_id] for token_id in sorted(self._tokens)]

    def apply(self, op: AuthOp, now_ms: int) -> TokenIssued | TokenRevoked | Rejected:
        match op:
            case IssueToken(token_id, role, queues, secret_sha256, name, expires_ms):
                if token_id in self._tokens:
                    return Rejected(RejectReason.ALREADY_EXISTS, f"token {token_id!r} exists; revoke it first")
                if len(self._tokens) >= self.max_tokens:
                    return Rejected(
                        RejectReason.QUOTA_EXCEEDED,
                        f"{len(self._tokens)} tokens exist (max_tokens={self.max_tokens}); revoke one first",
                    )
                self._tokens[token_id] = TokenRecord(
                    token_id, _ROLES[role], tuple(queues), secret_sha256, name, now_ms, expires_ms
                )
                return TokenIssued(token_id, now_ms)
            case RevokeToken(token_id):
                return TokenRevoked(token_id, self._tokens.pop(token_id, None) is not None)
        raise AssertionError(f"AuthNamespace was handed {op!r}, which is not in OPS")

    # --- snapshots -----------------------------------------------------------------------

    def capture(self) -> dict[str, TokenRecord]:
        return dict(self._tokens)  # TokenRecord is frozen: a shallow copy is a snapshot

    @staticmethod
    def state_rows(captured: dict[str, TokenRecord]) -> list:
        """[token rows sorted by token_id], each [token_id, role, [queues], secret_sha256,
        name, issued_ms, expires_ms]: the same tokens give the same bytes whatever order
        they were issued in. No tokens give [] (machine.py then writes format 2)."""
        return [_token_row(captured[token_id]) for token_id in sorted(captured)]

    def snapshot_state(self) -> list:
        return self.state_rows(self.capture())

    def restore_state(self, state: object) -> None:
        """Replaces the tokens with `state` from snapshot_state, checking each field by
        the rules an IssueToken meets; SnapshotError (and no change) if one fails."""
        check_type(state, list, "auth tokens", SnapshotError)
        if len(state) > self.max_tokens:
            raise SnapshotError(f"snapshot holds {len(state)} tokens; max_tokens={self.max_tokens}")
        tokens: dict[str, TokenRecord] = {}
        previous = ""  # ids are non-empty, so every id sorts after it
        for row in state:
            record = _token_from_row(row)
            if record.token_id <= previous:
                raise SnapshotError(f"auth token {record.token_id!r} is out of order after {previous!r}")
            tokens[record.token_id] = record
            previous = record.token_id
        self._tokens = tokens


def _token_row(record: TokenRecord) -> list:
    return [
        record.token_id,
        record.role.value,
        list(record.queues),
        record.secret_sha256,
        record.name,
        record.issued_ms,
        record.expires_ms,
    ]


def _token_from_row(row: object) -> TokenRecord:
    token_id, role, queues, secret_sha256, name, issued_ms, expires_ms = check_row(row, 7, "auth token", SnapshotError)
    check_token_id(token_id, "auth token_id", SnapshotError)
    where = f"auth token {token_id!r} "
    _check_token_fields(role, queues, secret_sha256, name, expires_ms, where, SnapshotError)
    check_int(issued_ms, f"{where}issued_ms", SnapshotError)
    return TokenRecord(token_id, _ROLES[role], tuple(queues), secret_sha256, name, issued_ms, expires_ms)
