"""Typed values that cross the raft/ boundary: log entries, hard state, snapshots,
the messages nodes exchange, and the Ready batch a node hands to its driver.

Every message carries `src`, `dst` and `term` (the sender's current term). All are
frozen, slotted dataclasses; `raft.codec` turns them into msgpack bytes and back.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

NONE = 0  # "no node": node ids are positive integers


class EntryKind(enum.IntEnum):
    NORMAL = 0  # a client proposal; `data` is opaque to the core
    NOOP = 1  # appended by a new leader at the start of its term (Raft §8)


# Not frozen: an Entry is built per proposal and per decoded entry, and a frozen
# dataclass's __init__ costs about 4x as much (36% of core throughput at batch 256,
# bench/core_bench.py). Nothing mutates an Entry once built; it stays hashable.
@dataclass(slots=True, unsafe_hash=True)
class Entry:
    index: int
    term: int
    data: bytes = b""
    kind: EntryKind = EntryKind.NORMAL


@dataclass(frozen=True, slots=True)
class HardState:
    """What must be durable before a node promises anything (Raft Figure 2)."""

    term: int = 0
    vote: int = NONE
    commit: int = 0  # commit <= last durable log index


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The state machine as of `index` (whose entry had `term`), as opaque bytes."""

    index: int
    term: int
    data: bytes = b""


class Role(enum.Enum):
    FOLLOWER = "follower"
    PRE_CANDIDATE = "pre-candidate"
    CANDIDATE = "candidate"
    LEADER = "leader"


# --- messages ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestVote:
    """A (pre-)candidate asks for a vote for `term` (Raft §5.2; PreVote: thesis §9.6).

    A pre-vote asks "would you vote for me in `term`?" and changes no one's term.
    `transfer` marks an election started by TimeoutNow: voters grant it even when
    they heard from a leader recently (thesis §3.10).
    """

    src: int
    dst: int
    term: int
    last_log_index: int
    last_log_term: int
    pre_vote: bool = False
    transfer: bool = False


@dataclass(frozen=True, slots=True)
class VoteResponse:
    src: int
    dst: int
    term: int
    granted: bool
    pre_vote: bool = False


@dataclass(frozen=True, slots=True)
class AppendEntries:
    src: int
    dst: int
    term: int
    prev_index: int
    prev_term: int
    entries: list[Entry]  # never mutated once sent
    commit: int


@dataclass(frozen=True, slots=True)
class AppendResponse:
    """Answer to AppendEntries or InstallSnapshot.

    Success: `index` is the last index known to match the leader's log.
    Reject: `index` is the rejected `prev_index`; `hint_index`/`hint_term` let the
    leader skip a whole conflicting term per round trip (Raft §5.3, last paragraph):
    `hint_index` is the follower's largest index <= min(prev_index, its last index)
    whose term is <= the rejected prev_term (stopping at its snapshot point), and
    `hint_term` is that entry's term (0 only at index 0).
    """

    src: int
    dst: int
    term: int
    success: bool
    index: int
    hint_index: int = 0
    hint_term: int = 0


@dataclass(frozen=True, slots=True)
class Heartbeat:
    """Keeps followers from campaigning and carries a round number `seq` that
    ReadIndex and the leader lease count acknowledgements of (thesis §6.4)."""

    src: int
    dst: int
    term: int
    commit: int  # min(leader commit, follower match): never past what the follower holds
    seq: int


@dataclass(frozen=True, slots=True)
class HeartbeatResponse:
    src: int
    dst: int
    term: int
    seq: int


@dataclass(frozen=True, slots=True)
class InstallSnapshot:
    """One chunk of a snapshot (Raft §7): `snapshot` names its index and term and
    carries the bytes at [offset, offset + len(data)); `done` marks the last chunk.
    Chunks may arrive in any order; the follower installs once it holds them all."""

    src: int
    dst: int
    term: int
    snapshot: Snapshot
    offset: int = 0
    done: bool = True


@dataclass(frozen=True, slots=True)
class TimeoutNow:
    """Leadership transfer: the target campaigns at once (thesis §3.10)."""

    src: int
    dst: int
    term: int


Message = (
    RequestVote
    | VoteResponse
    | AppendEntries
    | AppendResponse
    | Heartbeat
    | HeartbeatResponse
    | InstallSnapshot
    | TimeoutNow
)


# --- what the node hands to its driver -------------------------------------


@dataclass(frozen=True, slots=True)
class SoftState:
    """Volatile facts a driver may show; not persisted."""

    leader: int
    role: Role


@dataclass(frozen=True, slots=True)
class ReadState:
    """A linearizable read may be served once the state machine applied `index`."""

    ctx: bytes
    index: int


@dataclass(frozen=True, slots=True)
class ReadDropped:
    """A ReadIndex request that will never complete here (leadership lost)."""

    ctx: bytes
    reason: str


@dataclass(slots=True)
class Ready:
    """One batch of effects. The driver must, in this order:

    1. send `early_messages` at any time: a leader's appends, heartbeats,
       snapshots and TimeoutNow, and a follower's heartbeat responses. They
       promise nothing about this node's disk (Raft thesis §10.2.1 lets a leader
       write to its disk in parallel; etcd sends heartbeat responses early too);
    2. durably persist `snapshot` (if any), then `entries` (which may overwrite a
       suffix of the log starting at entries[0].index) and `hard_state` (if any),
       all together;
    3. then send `messages` (votes and acknowledgements that promise what was
       just persisted);
    4. restore `snapshot` into the state machine, then apply `committed` in order
       (when there is no snapshot and every committed entry is at or below the
       node's durable index `log.stable`, they may be applied before step 2: they
       are committed and on this disk, whatever this Ready persists);
    5. call `Node.advance(ready)`.
    """

    soft_state: SoftState | None = None
    hard_state: HardState | None = None
    snapshot: Snapshot | None = None
    entries: list[Entry] = field(default_factory=list)
    committed: list[Entry] = field(default_factory=list)
    early_messages: list[Message] = field(default_factory=list)
    messages: list[Message] = field(default_factory=list)
    read_states: list[ReadState] = field(default_factory=list)
    reads_dropped: list[ReadDropped] = field(default_factory=list)

    def must_persist(self) -> bool:
        return bool(self.entries) or self.hard_state is not None or self.snapshot is not None


# --- expected failures -------------------------------------------------------


class RaftError(Exception):
    """Base of the failures a caller is expected to handle."""


class NotLeader(RaftError):
    def __init__(self, node: int, leader: int) -> None:
        self.node = node
        self.leader = leader  # NONE when unknown
        hint = f"the leader is node {leader}" if leader != NONE else "no leader is known"
        super().__init__(f"node {node} is not the leader; {hint}")


class ProposalDropped(RaftError):
    """The leader refused a proposal; nothing was appended."""


class LeaseExpired(RaftError):
    """The leader cannot vouch for its leadership locally; use ReadIndex."""
