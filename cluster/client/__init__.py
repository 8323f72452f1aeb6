"""The client SDK: `Client` / `AsyncClient` (key-value commands, reads at a chosen
consistency, cluster status and faults) and `client.workflows`. Everything it
returns is a plain typed value (`results.py`, the workflow records)."""

from raftflow.cluster.client.client import AsyncClient, Client, parse_endpoints
from raftflow.cluster.client.durations import Duration
from raftflow.cluster.client.errors import (
    AlreadyExists,
    Busy,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutcomeUnknown,
    PermissionDenied,
    RaftflowError,
    Rejected,
    Unauthenticated,
    Unavailable,
)
from raftflow.cluster.client.results import (
    AccessRole,
    Consistency,
    IssuedToken,
    TokenInfo,
    KeyValue,
    LeaderTransfer,
    NodeStatus,
    PeerState,
    ReadResult,
    StateHash,
    WriteResult,
)
from raftflow.cluster.client.sync import run_sync
from raftflow.cluster.security.credentials import Credentials
from raftflow.cluster.client.workflows import (
    AsyncWorkflows,
    HistoryEvent,
    Task,
    TypeRegistered,
    WorkflowDescription,
    WorkflowRun,
    Workflows,
    WorkflowStatus,
    WorkflowSummary,
)

__all__ = [
    "AccessRole", "Credentials", "IssuedToken", "PermissionDenied", "TokenInfo", "Unauthenticated",
    "AlreadyExists", "AsyncClient", "AsyncWorkflows", "Busy", "Client", "Consistency", "Duration",
    "FailedPrecondition", "HistoryEvent", "InvalidArgument", "KeyValue", "LeaderTransfer", "NodeStatus", "NotFound",
    "OutcomeUnknown", "PeerState", "RaftflowError", "ReadResult", "Rejected", "StateHash", "Task", "TypeRegistered",
    "Unavailable", "WorkflowDescription", "WorkflowRun", "WorkflowStatus", "WorkflowSummary", "Workflows",
    "WriteResult", "parse_endpoints", "run_sync",
]
