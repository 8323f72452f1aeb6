"""Client sessions: exactly-once commands over a client that retries (thesis §6.3).

A client opens a session, then numbers its commands 1, 2, 3, ... and retries a command
until it has the reply. The machine caches each applied command's result by (session,
seq), so a retry that reaches the log twice is answered from the cache instead of being
applied again. Each command also carries the client's ack floor: every seq below it has
been answered, so its cached result may be dropped, and a command below the floor can
only be a stale duplicate.

Time is the leader's, read from the entries: a session unused for `session_ttl_ms` of
that time expires. Every session has an owner, the id of the token that opened it
("" without tokens), so that no caller can push out another's sessions: opening one
past `max_sessions_per_owner` expires that owner's least recently used session, and
past `max_sessions` in all, the least recently used session of the owner that holds
the most. Every replica expires the same sessions at the same entry.
"""

from __future__ import annotations

import heapq
from collections import OrderedDict
from dataclasses import dataclass, field

from raftflow.statemachine.auth import check_token_id
from raftflow.statemachine.commands import (
    Command,
    Rejected,
    RejectReason,
    Result,
    ResultError,
    SessionOpened,
    SnapshotError,
    check_int,
    check_row,
    check_type,
    decode_result,
    encode_result,
)

DEFAULT_SESSION_TTL_MS = 3_600_000  # an hour of leader time
DEFAULT_MAX_SESSIONS = 100_000
DEFAULT_MAX_SESSIONS_PER_OWNER = 10_000
DEFAULT_MAX_RESULTS_PER_SESSION = 4096


@dataclass(frozen=True, slots=True)
class SessionLimits:
    """The bounds on sessions, checked at start. Every replica must use the same ones:
    they decide which sessions expire, so they are part of the machine's definition."""

    session_ttl_ms: int = DEFAULT_SESSION_TTL_MS  # a session unused this long expires
    max_sessions: int = DEFAULT_MAX_SESSIONS  # opening one more expires the least recently used
    max_results_per_session: int = DEFAULT_MAX_RESULTS_PER_SESSION  # unacknowledged results cached
    # Per token; sessions without an owner ("": --insecure, or opened before owners
    # existed) have only max_sessions.
    max_sessions_per_owner: int = DEFAULT_MAX_SESSIONS_PER_OWNER

    def __post_init__(self) -> None:
        for name in ("session_ttl_ms", "max_sessions", "max_results_per_session", "max_sessions_per_owner"):
            value = getattr(self, name)
            if type(value) is not int or value < 1:
                raise ValueError(f"{name}={value!r} must be an integer of at least 1")


@dataclass(slots=True)
class _Session:
    last_used_ms: int  # the machine's now_ms when a command last named this session
    owner: str = ""  # the id of the token that opened it
    ack_floor: int = 0  # the highest ack_floor seen; every cached seq is >= ack_floor
    results: dict[int, Result] = field(default_factory=dict)  # seq -> result of the applied command
    seqs: list[int] = field(default_factory=list)  # a heap of the keys of results


class SessionTable:
    """The open sessions, least recently used first, and their cached results."""

    def __init__(self, limits: SessionLimits) -> None:
        self.limits = limits
        # Ordered by last use, so last_used_ms never decreases along it: expiry pops
        # from the front and costs O(expired).
        self._sessions: OrderedDict[int, _Session] = OrderedDict()
        self._owned: dict[str, OrderedDict[int, None]] = {}  # owner -> its session ids, least recently used first

    def __len__(self) -> int:
        return len(self._sessions)

    def __contains__(self, session_id: int) -> bool:
        return session_id in self._sessions

    def owner(self, session_id: int) -> str | None:
        """The owner of an open session, None if it is not open."""
        session = self._sessions.get(session_id)
        return None if session is None else session.owner

    def _forget(self, session_id: int) -> None:
        session = self._sessions.pop(session_id)
        owned = self._owned[session.owner]
        del owned[session_id]
        if not owned:
            del self._owned[session.owner]

    def expire(self, now_ms: int) -> None:
        """Forgets every session unused for session_ttl_ms at `now_ms`."""
        sessions = self._sessions
        while sessions:
            session = sessions[next(iter(sessions))]
            if session.last_used_ms + self.limits.session_ttl_ms > now_ms:
                return
            self._forget(next(iter(sessions)))

    def open(self, session_id: int, now_ms: int, owner: str = "") -> SessionOpened:
        """Opens session `session_id` (the index of its OpenSession entry) for `owner`.
        Past the owner's quota its own least recently used session expires; past
        max_sessions, that of the owner holding the most (the opener if it is one of
        them, else the first by name)."""
        assert session_id not in self._sessions, session_id  # indexes are applied once
        limits = self.limits
        owned = self._owned.get(owner)
        if owner and owned is not None and len(owned) >= limits.max_sessions_per_owner:
            self._forget(next(iter(owned)))
        elif len(self._sessions) >= limits.max_sessions:
            most = max(len(ids) for ids in self._owned.values())
            if owned is not None and len(owned) == most:
                heaviest = owner  # among the heaviest: the opener pays, no one else
            else:
                heaviest = min((o for o, ids in self._owned.items() if len(ids) == most))
            self._forget(next(iter(self._owned[heaviest])))
        self._sessions[session_id] = _Session(last_used_ms=now_ms, owner=owner)
        self._owned.setdefault(owner, OrderedDict())[session_id] = None
        return SessionOpened(session_id)

    def cached_or_rejected(self, cmd: Command, now_ms: int) -> Result | None:
        """The reply owed to `cmd` without applying it (its cached result, or why it is
        refused), or None: apply it, then `record` its result. Any command naming a
        live session counts as a use and raises its ack floor."""
        session = self._sessions.get(cmd.session_id)
        if session is None:
            return Rejected(
                RejectReason.SESSION_UNKNOWN,
                f"session {cmd.session_id} is unknown or expired; open a new session",
            )
        assert now_ms >= session.last_used_ms, (now_ms, session.last_used_ms)
        session.last_used_ms = now_ms
        self._sessions.move_to_end(cmd.session_id)
        self._owned[session.owner].move_to_end(cmd.session_id)
        _raise_floor(session, cmd.ack_floor)  # ack_floor <= seq: never drops this seq's result
        if cmd.seq < session.ack_floor:
            return Rejected(
                RejectReason.STALE_SEQUENCE,
                f"seq {cmd.seq} of session {cmd.session_id} is below its ack floor {session.ack_floor}; "
                "its reply was delivered and forgotten",
            )
        cached = session.results.get(cmd.seq)
        if cached is not None:
            return cached
        if len(session.results) >= self.limits.max_results_per_session:
            return Rejected(
                RejectReason.TOO_MANY_PENDING,
                f"session {cmd.session_id} holds {len(session.results)} unacknowledged results "
                f"(max_results_per_session={self.limits.max_results_per_session}); raise ack_floor to free them",
            )
        return None

    def record(self, cmd: Command, result: Result) -> None:
        """Caches the result of `cmd`, just applied after cached_or_rejected said so."""
        session = self._sessions[cmd.session_id]
        assert cmd.seq >= session.ack_floor and cmd.seq not in session.results, (cmd, session.ack_floor)
        session.results[cmd.seq] = result
        heapq.heappush(session.seqs, cmd.seq)

    # --- snapshots -----------------------------------------------------------------------

    def capture(self) -> list[tuple[int, int, int, dict[int, Result], str]]:
        """A copy of every session (results are immutable, so their dicts are
        copied shallowly)."""
        return [(sid, s.ack_floor, s.last_used_ms, dict(s.results), s.owner) for sid, s in self._sessions.items()]

    @staticmethod
    def state_rows(captured: list[tuple[int, int, int, dict[int, Result], str]]) -> list:
        """Sessions in LRU order (the log decides it), each with its results by seq
        and, when it has one, its owner:
        [[session_id, ack_floor, last_used_ms, [[seq, encoded result], ...](, owner)], ...].
        A session without an owner has the row of a build that predates owners."""
        rows = []
        for sid, ack_floor, last_used_ms, results, owner in captured:
            row = [sid, ack_floor, last_used_ms, [[seq, encode_result(results[seq])] for seq in sorted(results)]]
            if owner:
                row.append(owner)
            rows.append(row)
        return rows

    def snapshot_state(self) -> list:
        return self.state_rows(self.capture())

    def restore_state(self, state: object, *, now_ms: int) -> None:
        """Replaces the sessions with `state` from snapshot_state, checking every field
        and invariant; raises SnapshotError (and changes nothing) if one fails."""
        check_type(state, list, "sessions", SnapshotError)
        if len(state) > self.limits.max_sessions:
            raise SnapshotError(f"snapshot holds {len(state)} sessions; max_sessions={self.limits.max_sessions}")
        sessions: OrderedDict[int, _Session] = OrderedDict()
        owned: dict[str, OrderedDict[int, None]] = {}
        last_used_floor = 0
        for row in state:
            owner = ""
            if type(row) is list and len(row) == 5:
                *row, owner = row
                check_token_id(owner, "session owner", SnapshotError)
            session_id, ack_floor, last_used_ms, result_rows = check_row(row, 4, "session", SnapshotError)
            what = f"session {session_id!r}"
            check_int(session_id, "session_id", SnapshotError, minimum=1)
            if session_id in sessions:
                raise SnapshotError(f"{what} appears twice")
            check_int(ack_floor, f"{what} ack_floor", SnapshotError)
            check_int(last_used_ms, f"{what} last_used_ms", SnapshotError, minimum=last_used_floor)
            if last_used_ms > now_ms:
                raise SnapshotError(f"{what} last_used_ms={last_used_ms} is after now_ms={now_ms}")
            last_used_floor = last_used_ms  # LRU order: last use never decreases
            results = self._restore_results(result_rows, ack_floor, what)
            sessions[session_id] = _Session(last_used_ms, owner, ack_floor, results, seqs=list(results))  # ascending: a heap
            owned.setdefault(owner, OrderedDict())[session_id] = None
        self._sessions = sessions
        self._owned = owned

    def _restore_results(self, rows: object, ack_floor: int, what: str) -> dict[int, Result]:
        check_type(rows, list, f"{what} results", SnapshotError)
        if len(rows) > self.limits.max_results_per_session:
            raise SnapshotError(
                f"{what} holds {len(rows)} results; max_results_per_session={self.limits.max_results_per_session}"
            )
        results: dict[int, Result] = {}
        next_seq = ack_floor  # seqs ascend from the ack floor
        for row in rows:
            seq, data = check_row(row, 2, f"{what} result", SnapshotError)
            check_int(seq, f"{what} result seq", SnapshotError, minimum=next_seq)
            try:
                results[seq] = decode_result(data)
            except ResultError as exc:
                raise SnapshotError(f"{what} seq {seq}: {exc}") from exc
            next_seq = seq + 1
        return results


def _raise_floor(session: _Session, ack_floor: int) -> None:
    """Raises the session's floor to `ack_floor` and drops the results below it."""
    if ack_floor <= session.ack_floor:
        return
    session.ack_floor = ack_floor
    while session.seqs and session.seqs[0] < ack_floor:
        del session.results[heapq.heappop(session.seqs)]
