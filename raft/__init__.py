"""raft: a pure, I/O-free Raft consensus core (see raft.node for the contract)."""

from raftflow.raft.config import MUTATIONS, Config, ConfigError
from raftflow.raft.node import Node, Status
from raftflow.raft.storage import DurableState, LogStore, MemoryStorage
from raftflow.raft.types import (
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
