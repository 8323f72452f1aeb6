"""raft: a pure, I/O-free Raft consensus core (see raft.node for the contract)."""

from raft.config import MUTATIONS, Config, ConfigError
from raft.node import Node, Status
from raft.storage import DurableState, LogStore, MemoryStorage
from raft.types import (
    NONE,
    AppendEntries,
    AppendResponse,
    Entry,
    EntryKind,
    HardState,
    Heartbeat,
    HeartbeatResponse,
    InstallSnapshot,
    LeaseExpired,
    Message,
    NotLeader,
    ProposalDropped,
    RaftError,
    ReadDropped,
    Ready,
    ReadState,
    RequestVote,
    Role,
    Snapshot,
    SoftState,
    TimeoutNow,
    VoteResponse,
)

__all__ = [
    "MUTATIONS", "NONE", "AppendEntries", "AppendResponse", "Config", "ConfigError",
    "DurableState", "Entry", "EntryKind", "HardState", "Heartbeat", "HeartbeatResponse",
    "InstallSnapshot", "LeaseExpired", "LogStore", "MemoryStorage", "Message", "Node",
    "NotLeader", "ProposalDropped", "RaftError", "ReadDropped", "Ready", "ReadState",
    "RequestVote", "Role", "Snapshot", "SoftState", "Status", "TimeoutNow", "VoteResponse",
]
