"""Activity workers: `Worker` runs the activities of one task queue; `activity`
holds `@activity.defn`, `activity.info()` and `activity.heartbeat()`."""

from raftflow.cluster.worker import activity
from raftflow.cluster.worker.activity import ActivityCancelled, ApplicationError
from raftflow.cluster.worker.worker import Worker

__all__ = ["ActivityCancelled", "ApplicationError", "Worker", "activity"]
