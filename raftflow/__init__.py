"""raftflow's public Python API: everything a user imports comes from here.

    from raftflow import activity, ApplicationError, Client, AsyncClient, Worker, workflow

- `activity`: `@activity.defn`, and inside a running activity `activity.info()`
  (workflow id, step, attempt, idempotency key) and `activity.heartbeat(details)`;
- `workflow`: workflow types in Python (`workflow.define`, `workflow.step`,
  `workflow.compensate`, `workflow.timer`, `workflow.wait_signal`, `workflow.parallel`,
  `workflow.RetryPolicy`, `workflow.load` for a YAML/JSON file);
- `Client` / `AsyncClient`: key-value commands and reads (`Consistency`), cluster
  status and faults, and `client.workflows` (register, start, wait, describe,
  history, list, signal, cancel, terminate);
- `Credentials`: the CA and bearer token a client shows (`Credentials.from_cluster_dir`,
  `from_env`, `plaintext`); tokens are issued with `client.issue_token(AccessRole...)`;
- `Worker`: runs activities for a task queue;
- the results, all plain typed values (`WriteResult`, `ReadResult`, `KeyValue`,
  `NodeStatus`, `WorkflowRun`, `WorkflowDescription`, `WorkflowSummary`,
  `HistoryEvent`, ...), enums for statuses and levels (`WorkflowStatus`,
  `Consistency`, `Role`), and the errors (each `RaftflowError` is one line naming
  its cause);
- durations are a `datetime.timedelta` or seconds, everywhere;
- `raftflow.testing`: run a workflow against in-process activities, no cluster.

The implementation lives in `cluster/` (client, worker, activities) and
`statemachine/workflow/` (the engine and definitions); this package only names it.
"""

from raftflow import workflow
from raftflow.cluster.client import (
    AccessRole,
    AlreadyExists,
    AsyncClient,
    Busy,
    Client,
    Consistency,
    Credentials,
    Duration,
    FailedPrecondition,
    HistoryEvent,
    InvalidArgument,
    IssuedToken,
    KeyValue,
    LeaderTransfer,
    NodeStatus,
    NotFound,
    OutcomeUnknown,
    PeerState,
    PermissionDenied,
    RaftflowError,
    ReadResult,
    Rejected,
    StateHash,
    Task,
    TokenInfo,
    TypeRegistered,
    Unauthenticated,
    Unavailable,
    WorkflowDescription,
    WorkflowRun,
    WorkflowStatus,
    WorkflowSummary,
    WriteResult,
)
from raftflow.cluster.protocol.faults import PeerFault
from raftflow.cluster.worker import ActivityCancelled, ApplicationError, Worker, activity
from raftflow.raft.types import Role
from raftflow.statemachine.workflow.events import EventType
from raftflow.statemachine.workflow.records import ActivityError, TaskDescription, TaskState
from raftflow.statemachine.workflow.retry import DefinitionError, RetryPolicy
from raftflow.version import __version__

__all__ = [
    "AccessRole",
    "ActivityCancelled",
    "ActivityError",
    "AlreadyExists",
    "ApplicationError",
    "AsyncClient",
    "Busy",
    "Client",
    "Consistency",
    "Credentials",
    "DefinitionError",
    "Duration",
    "EventType",
    "FailedPrecondition",
    "HistoryEvent",
    "InvalidArgument",
    "IssuedToken",
    "KeyValue",
    "LeaderTransfer",
    "NodeStatus",
    "NotFound",
    "OutcomeUnknown",
    "PeerFault",
    "PeerState",
    "PermissionDenied",
    "RaftflowError",
    "ReadResult",
    "Rejected",
    "RetryPolicy",
    "Role",
    "StateHash",
    "Task",
    "TaskDescription",
    "TaskState",
    "TokenInfo",
    "TypeRegistered",
    "Unauthenticated",
    "Unavailable",
    "Worker",
    "WorkflowDescription",
    "WorkflowRun",
    "WorkflowStatus",
    "WorkflowSummary",
    "WriteResult",
    "__version__",
    "activity",
    "workflow",
]
