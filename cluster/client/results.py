"""What the client returns: plain typed values, never protobuf messages."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

from raftflow.cluster.protocol.faults import PeerFault
from raftflow.raft.types import Role
from raftflow.statemachine.auth import AccessRole


class Consistency(enum.StrEnum):
    """How fresh a read must be (docs/cluster.md): the trade-off made visible."""

    LINEARIZABLE = "linearizable"  # ReadIndex: a heartbeat round confirms the leader
    LEASE = "lease"  # the leader's lease, no round (clock-bound)
    STALE = "stale"  # any node's applied state, marked stale; served without a quorum


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int


@dataclass(frozen=True, slots=True)
class WriteResult:
    index: int  # the log index the command was applied at
    revision: int  # the store's revision after it
    succeeded: bool  # cas: the comparison held; delete: a key was deleted; put: True
    prev: KeyValue | None = None  # put: the value replaced; delete: the value deleted
    current: KeyValue | None = None  # cas: the value now, or the one that failed the comparison


@dataclass(frozen=True, slots=True)
class ReadResult:
    kv: KeyValue | None
    applied_index: int
    node_id: int
    stale: bool
    leader_id: int
    since_leader_s: float  # seconds since the answering node heard from a leader; -1: never
    revision: int

    @property
    def value(self) -> bytes | None:
        return None if self.kv is None else self.kv.value


@dataclass(frozen=True, slots=True)
class PeerState:
    """A node's view of one peer."""

    id: int
    address: str  # its client port
    connected: bool  # this node's stream to it is open
    last_heard_s: float  # seconds since a message arrived from it; -1: never
    progress: str  # on a leader: the follower's replication state
    peer_address: str = ""  # its peer port


@dataclass(frozen=True, slots=True)
class NodeStatus:
    """One node's answer to `status()` (`raftflow cluster status` prints these)."""

    id: int
    address: str  # where clients reach it
    cluster_id: str
    role: Role
    term: int
    leader_id: int  # 0: unknown
    leader_address: str
    last_index: int
    commit_index: int
    applied_index: int
    snapshot_index: int
    leader_unknown_s: float  # how long no leader has been known (0 when one is)
    pid: int
    pending_proposals: int
    version: str
    peers: tuple[PeerState, ...] = ()
    faults: tuple[PeerFault, ...] = ()  # the network faults it injects toward peers
    refused: dict[str, int] = field(default_factory=dict)  # peer messages refused since start, by rule
    peer_address: str = ""  # where peers reach it
    insecure: bool = False  # plaintext, nothing authenticated (--insecure)
    calls_refused: dict[str, int] = field(default_factory=dict)  # client calls refused: unauthenticated, permission_denied


@dataclass(frozen=True, slots=True)
class StateHash:
    applied_index: int
    hash: str  # hex sha256 of the state machine's snapshot bytes at that index


@dataclass(frozen=True, slots=True)
class LeaderTransfer:
    leader_id: int  # the leader after the transfer
    term: int


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """A token the cluster knows (`auth list`); its secret is not stored anywhere."""

    token_id: str
    role: AccessRole
    queues: tuple[str, ...]  # a worker token's task queues
    name: str
    issued_ms: int  # the cluster's clock (ms since the epoch) when it was issued
    expires_ms: int  # 0: never


@dataclass(frozen=True, slots=True)
class IssuedToken:
    """A new token. `token` is its whole text, shown once: keep it secret."""

    token: str
    info: TokenInfo

    def __repr__(self) -> str:
        return f"IssuedToken(token=..., info={self.info!r})"
