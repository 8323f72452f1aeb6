"""The machine the Raft driver applies committed entries to.

`Machine.apply(index, data)` depends on nothing but the machine's state and the entry:
no wall clock, randomness or I/O. "Now" is the latest timestamp a leader stamped into
an entry, so every replica that applies the same log reaches the same state, expires
the same sessions and returns the same results.

The machine owns the log position, the clock and the sessions; each concern's state is
a namespace (the key-value store, the workflow engine, then the access tokens) that
applies the op types it lists, at the machine's clamped now_ms. A command goes:
decode -> advance the clock -> expire sessions -> dedup by (session, seq) -> the
namespace that owns its op -> cache the result. The leader's own ops (LEADER_OPS:
ActivityTaskStarted, Tick, RearmTimeouts) carry no session and skip the dedup and the
cache: each is fenced or idempotent by itself.
"""

from __future__ import annotations

from dataclasses import dataclass

import hashlib
from typing import ClassVar, Protocol

import msgpack

from raftflow.statemachine.auth import DEFAULT_MAX_TOKENS, AuthNamespace
from raftflow.statemachine.commands import (
    Command,
    CommandError,
    KeyValue,
    Op,
    OpenSession,
    Rejected,
    RejectReason,
    Result,
    SnapshotError,
    check_int,
    check_row,
    decode_command,
    show,
    unpack,
)
from raftflow.statemachine.kv import KvStore
from raftflow.statemachine.workflow.ops import LEADER_OPS, WorkflowLimits, WorkflowNamespace, WorkflowQueries
from raftflow.statemachine.sessions import (
    DEFAULT_MAX_RESULTS_PER_SESSION,
    DEFAULT_MAX_SESSIONS,
    DEFAULT_MAX_SESSIONS_PER_OWNER,
    DEFAULT_SESSION_TTL_MS,
    SessionLimits,
    SessionTable,
)

# The newest snapshot format this build writes; bump on any layout change (restore
# refuses formats it does not know). 2 added the workflow namespace, 3 the auth
# namespace. While the auth namespace is empty the snapshot is written as format 2,
# in the layout of builds before the auth namespace: a state an older build could
# reach (no tokens, no session owners, no task secrets; e.g. the committed v1 data
# directory) hashes as it did. From the first token on it is format 3: the same
# row with the auth namespace third. (Running old and new builds side by side is
# not supported: the new ops and fields are MALFORMED to an old build.) Restore reads both, and refuses a format 3 snapshot
# with no token, which this build never writes (one state, one encoding).
SNAPSHOT_FORMAT = 3
SNAPSHOT_FORMAT_WITHOUT_AUTH = 2


class Namespace(Protocol):
    """One concern's state inside the machine. It applies the ops in OPS, depending only
    on its state, the op and the machine's now_ms (the leader's time, never going back;
    a namespace without timers ignores it), and saves and restores its own part of a snapshot
    (`restore_state` is called on a fresh instance and raises SnapshotError)."""

    OPS: ClassVar[tuple[type, ...]]

    def apply(self, op: Op, now_ms: int) -> Result: ...

    def capture(self) -> object:
        """A cheap, consistent copy of the state (shallow copies of immutable
        values), taken on the driver's loop; `state_rows` encodes it elsewhere."""
        ...

    @staticmethod
    def state_rows(captured: object) -> list:
        """Its part of a snapshot, from `capture()`; pure, so it may run in
        another thread while the namespace goes on applying."""
        ...

    def snapshot_state(self) -> list: ...

    def restore_state(self, state: object) -> None: ...


@dataclass(frozen=True, slots=True)
class SnapshotView:
    """What `Machine.capture()` copied; `encode()` gives the snapshot bytes."""

    applied_index: int
    now_ms: int
    sessions: object
    namespaces: list[tuple[type, object]]

    def hash(self) -> str:
        """Hex SHA-256 of the encoded snapshot: equal on replicas in the same state."""
        return hashlib.sha256(self.encode()).hexdigest()

    def encode(self) -> bytes:
        """Format 2 while the auth namespace (the last) holds no token, else 3: see SNAPSHOT_FORMAT."""
        namespace_rows = [ns.state_rows(captured) for ns, captured in self.namespaces]
        assert self.namespaces[-1][0] is AuthNamespace, self.namespaces
        version = SNAPSHOT_FORMAT
        if not namespace_rows[-1]:
            version, namespace_rows = SNAPSHOT_FORMAT_WITHOUT_AUTH, namespace_rows[:-1]
        row = [version, self.applied_index, self.now_ms, SessionTable.state_rows(self.sessions), namespace_rows]
        return msgpack.packb(row, use_bin_type=True)


@dataclass(frozen=True, slots=True)
class DecodedSnapshot:
    """A snapshot's state, checked, before `Machine.adopt` installs it."""

    applied_index: int
    now_ms: int
    sessions: object
    kv: object
    workflows: object
    auth: object


class Machine:
    def __init__(
        self,
        *,
        session_ttl_ms: int = DEFAULT_SESSION_TTL_MS,
        max_sessions: int = DEFAULT_MAX_SESSIONS,
        max_results_per_session: int = DEFAULT_MAX_RESULTS_PER_SESSION,
        workflow_limits: WorkflowLimits = WorkflowLimits(),
        max_tokens: int = DEFAULT_MAX_TOKENS,
        max_sessions_per_owner: int = DEFAULT_MAX_SESSIONS_PER_OWNER,
    ) -> None:
        """Every replica must be built with the same limits: they decide which sessions
        expire and which workflow starts and token issues are refused."""
        limits = SessionLimits(session_ttl_ms, max_sessions, max_results_per_session, max_sessions_per_owner)
        self._workflow_limits = workflow_limits
        self._max_tokens = max_tokens
        self.applied_index = 0  # the last entry applied; the next must be applied_index + 1
        self.now_ms = 0  # the latest leader timestamp applied; never decreases
        self._install(SessionTable(limits), KvStore(), WorkflowNamespace(workflow_limits), AuthNamespace(max_tokens))

    def _install(self, sessions: SessionTable, kv: KvStore, workflows: WorkflowNamespace, auth: AuthNamespace) -> None:
        self._sessions = sessions
        self._kv = kv
        self._workflows = workflows
        self._auth = auth
        # Snapshot order: a new namespace goes last (SnapshotView.encode leaves out an empty auth).
        self._namespaces: tuple[Namespace, ...] = (kv, workflows, auth)
        self._namespace_of: dict[type, Namespace] = {op: ns for ns in self._namespaces for op in ns.OPS}

    @property
    def session_count(self) -> int:
        return len(self._sessions)

    def has_session(self, session_id: int) -> bool:
        """Session `session_id` is open as of the applied index (it may still expire
        before a command in it applies: the apply decides)."""
        return session_id in self._sessions

    def session_owner(self, session_id: int) -> str | None:
        """The id of the token that opened session `session_id` ("" for none), or
        None if it is not open as of the applied index."""
        return self._sessions.owner(session_id)

    @property
    def revision(self) -> int:
        """The key-value store's revision as of applied_index (etcd's header revision)."""
        return self._kv.revision

    def get(self, key: str) -> KeyValue | None:
        """The key as of applied_index (a linearizable read must first wait for the
        read index to be applied)."""
        return self._kv.get(key)

    @property
    def workflow(self) -> WorkflowQueries:
        """The workflow engine's queries as of applied_index (describe, history,
        pending_tasks, next_deadline_ms, list_workflows); only committed ops change it."""
        return self._workflows.engine

    @property
    def auth(self) -> AuthNamespace:
        """The access tokens as of applied_index (token, tokens, len), for reading
        only: only committed IssueToken and RevokeToken ops change them."""
        return self._auth

    def apply(self, index: int, data: bytes, decoded: Command | None = None) -> Result:
        """Applies the committed entry at `index`, which must be applied_index + 1, and
        returns the reply owed to its client. Never raises on bad data: entry data that
        is not a command is Rejected MALFORMED and changes nothing but applied_index.
        `decoded`: the Command `data` was encoded from (the leader's own proposal), so
        it need not be decoded again; decode_command(data) would give an equal one."""
        assert index == self.applied_index + 1, (index, self.applied_index)
        self.applied_index = index
        if decoded is not None:
            cmd = decoded
        else:
            try:
                cmd = decode_command(data)
            except CommandError as exc:
                return Rejected(RejectReason.MALFORMED, f"entry {index} is not a command: {exc}")
        # A leader whose clock is behind its predecessor's cannot move time back, so it
        # can neither revive an expired session nor make a live one look older.
        if cmd.timestamp_ms > self.now_ms:
            self.now_ms = cmd.timestamp_ms
        now_ms = self.now_ms
        sessions = self._sessions
        sessions.expire(now_ms)
        op = cmd.op
        kind = type(op)
        if kind is OpenSession:
            return sessions.open(index, now_ms, op.owner)  # thesis §6.3: the id is the index
        if kind in LEADER_OPS:
            return self._namespace_of[kind].apply(op, now_ms)
        reply = sessions.cached_or_rejected(cmd, now_ms)
        if reply is not None:
            return reply
        result = self._namespace_of[kind].apply(op, now_ms)
        sessions.record(cmd, result)
        return result

    def apply_noop(self, index: int) -> None:
        """Applies a Raft no-op entry (a new leader's first, Raft §8): only the index moves."""
        assert index == self.applied_index + 1, (index, self.applied_index)
        self.applied_index = index

    def snapshot(self) -> bytes:
        """The whole state as canonical msgpack: machines in the same state give the
        same bytes, whatever order the keys were written in. Sessions keep their LRU
        order, which the log decides."""
        return self.capture().encode()

    def capture(self) -> SnapshotView:
        """The state as of applied_index, copied cheaply (O(keys) pointer copies,
        no encoding): the driver captures on its loop and encodes the view in a
        thread, so a large snapshot never stalls heartbeats."""
        return SnapshotView(
            self.applied_index,
            self.now_ms,
            self._sessions.capture(),
            [(type(ns), ns.capture()) for ns in self._namespaces],
        )

    def restore(self, data: bytes) -> None:
        """Replaces the whole state with a snapshot's. Raises SnapshotError naming the
        field if `data` is not a valid snapshot, and then leaves the machine as it was."""
        self.adopt(self.decode_snapshot(data))

    def decode_snapshot(self, data: bytes) -> DecodedSnapshot:
        """A snapshot's state, decoded and checked but not installed (SnapshotError
        naming the field if `data` is not a valid snapshot); `adopt` installs it."""
        row = check_row(unpack(data, SnapshotError, "snapshot"), 5, "snapshot", SnapshotError)
        version, applied_index, now_ms, session_state, namespace_states = row
        if type(version) is not int or version not in (SNAPSHOT_FORMAT_WITHOUT_AUTH, SNAPSHOT_FORMAT):
            raise SnapshotError(
                f"snapshot format is {show(version)}; this build reads format {SNAPSHOT_FORMAT} "
                f"(and {SNAPSHOT_FORMAT_WITHOUT_AUTH}, which it writes while no access token exists)"
            )
        check_int(applied_index, "applied_index", SnapshotError)
        check_int(now_ms, "now_ms", SnapshotError)
        sessions = SessionTable(self._sessions.limits)
        sessions.restore_state(session_state, now_ms=now_ms)
        if version == SNAPSHOT_FORMAT_WITHOUT_AUTH:
            kv_state, workflow_state = check_row(namespace_states, 2, "namespaces", SnapshotError)
            auth_state = []
        else:
            kv_state, workflow_state, auth_state = check_row(namespace_states, 3, "namespaces", SnapshotError)
            if auth_state == []:
                raise SnapshotError(
                    f"auth tokens is []; a format {SNAPSHOT_FORMAT} snapshot holds at least one "
                    f"(no token is written as format {SNAPSHOT_FORMAT_WITHOUT_AUTH})"
                )
        kv = KvStore()
        kv.restore_state(kv_state)
        workflows = WorkflowNamespace(self._workflow_limits)
        workflows.restore_state(workflow_state)
        auth = AuthNamespace(self._max_tokens)
        auth.restore_state(auth_state)
        return DecodedSnapshot(applied_index, now_ms, sessions, kv, workflows, auth)

    def adopt(self, decoded: DecodedSnapshot) -> None:
        """Install a decoded snapshot's state (pointer moves; `decoded` is used up)."""
        self.applied_index, self.now_ms = decoded.applied_index, decoded.now_ms
        self._install(decoded.sessions, decoded.kv, decoded.workflows, decoded.auth)

    def state_hash(self) -> str:
        """Hex SHA-256 of snapshot(): equal on replicas that applied the same log."""
        return self.capture().hash()
