"""The deterministic state machine behind the Raft log.

The driver applies committed entries in index order: `apply(index, data)` for a client
command, `apply_noop(index)` for a leader's no-op. A result depends only on the
machine's state and the entry, so replicas that apply the same log stay byte-identical
(`state_hash()`). Clients get exactly-once commands through sessions (thesis §6.3).
Access tokens issued and revoked through the log are in `Machine.auth` on every replica.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from raftflow.statemachine.auth import (
    AccessRole,
    AuthNamespace,
    IssueToken,
    RevokeToken,
    TokenIssued,
    TokenRecord,
    TokenRevoked,
    check_secret,
)
from raftflow.statemachine.commands import (
    MAX_KEY_BYTES,
    MAX_VALUE_BYTES,
    Cas,
    CasResult,
    Command,
    CommandError,
    Delete,
    DeleteResult,
    KeyValue,
    Op,
    OpenSession,
    Put,
    PutResult,
    Rejected,
    RejectReason,
    Result,
    ResultError,
    SessionOpened,
    SnapshotError,
    decode_command,
    decode_result,
    encode_command,
    encode_result,
    validate_op,
)
from raftflow.statemachine.machine import Machine


@runtime_checkable
class StateMachine(Protocol):
    """What the Raft driver needs from a state machine. `apply` and `apply_noop` take
    exactly applied_index + 1; `restore` replaces the whole state with a snapshot's."""

    applied_index: int

    def apply(self, index: int, data: bytes) -> Result: ...

    def apply_noop(self, index: int) -> None: ...

    def snapshot(self) -> bytes: ...

    def restore(self, data: bytes) -> None: ...

    def state_hash(self) -> str: ...


__all__ = [
    "MAX_KEY_BYTES",
    "MAX_VALUE_BYTES",
    "AccessRole",
    "AuthNamespace",
    "Cas",
    "CasResult",
    "Command",
    "CommandError",
    "Delete",
    "DeleteResult",
    "IssueToken",
    "KeyValue",
    "Machine",
    "Op",
    "OpenSession",
    "Put",
    "PutResult",
    "Rejected",
    "RejectReason",
    "Result",
    "ResultError",
    "RevokeToken",
    "SessionOpened",
    "SnapshotError",
    "StateMachine",
    "TokenIssued",
    "TokenRecord",
    "TokenRevoked",
    "check_secret",
    "decode_command",
    "decode_result",
    "encode_command",
    "encode_result",
    "validate_op",
]
