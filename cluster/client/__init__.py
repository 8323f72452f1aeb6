"""The client SDK: `Client` / `AsyncClient` (key-value commands, reads at a chosen
consistency, cluster status and faults) and `client.workflows`."""

from raftflow.cluster.client.client import AsyncClient, Client, KeyValue, ReadResult, WriteResult, parse_endpoints
from raftflow.cluster.client.errors import (
    AlreadyExists,
    Busy,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutcomeUnknown,
    RaftflowError,
    Rejected,
    Unavailable,
)
from raftflow.cluster.client.sync import run_sync
from raftflow.cluster.client.workflows import AsyncWorkflows, Task, WorkflowRun, Workflows

__all__ = [
    "AlreadyExists", "AsyncClient", "AsyncWorkflows", "Busy", "Client", "FailedPrecondition", "InvalidArgument",
    "KeyValue", "NotFound", "OutcomeUnknown", "RaftflowError", "ReadResult", "Rejected", "Task", "Unavailable",
    "WorkflowRun", "Workflows", "WriteResult", "parse_endpoints", "run_sync",
]
