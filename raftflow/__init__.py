"""raftflow's public Python API in one place.

    from raftflow import activity, ApplicationError, Client, AsyncClient, Worker, workflow

- `activity`: `@activity.defn`, and inside a running activity `activity.info()`
  (workflow id, step, attempt, idempotency key) and `activity.heartbeat(details)`;
- `workflow`: workflow types in Python (`workflow.define`, `workflow.step`,
  `workflow.compensate`, `workflow.timer`, `workflow.wait_signal`, `workflow.parallel`,
  `workflow.RetryPolicy`, `workflow.load` for a YAML/JSON file);
- `Client` / `AsyncClient`: key-value commands, and `client.workflows` (register,
  start, wait, describe, history, list, signal, cancel, terminate);
- `Worker`: runs activities for a task queue;
- `raftflow.testing`: run a workflow against in-process activities, no cluster.

The implementation lives in `cluster/` (client, worker, activities) and
`statemachine/workflow/` (the engine and definitions); this package only names it.
"""

from raftflow.cluster.worker import activity
from raftflow.cluster.worker.activity import ActivityCancelled, ApplicationError
from raftflow.cluster.client import (
    AlreadyExists,
    AsyncClient,
    Busy,
    Client,
    FailedPrecondition,
    InvalidArgument,
    NotFound,
    OutcomeUnknown,
    RaftflowError,
    Unavailable,
)
from raftflow.cluster.worker.worker import Worker
from raftflow import workflow

__all__ = [
    "ActivityCancelled",
    "AlreadyExists",
    "ApplicationError",
    "AsyncClient",
    "Busy",
    "Client",
    "FailedPrecondition",
    "InvalidArgument",
    "NotFound",
    "OutcomeUnknown",
    "RaftflowError",
    "Unavailable",
    "Worker",
    "activity",
    "workflow",
]
