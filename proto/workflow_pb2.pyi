from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class WorkflowSummary(_message.Message):
    __slots__ = ("workflow_id", "run_id", "type_name", "version", "status", "start_ms", "close_ms")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    START_MS_FIELD_NUMBER: _ClassVar[int]
    CLOSE_MS_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    run_id: int
    type_name: str
    version: int
    status: str
    start_ms: int
    close_ms: int
    def __init__(self, workflow_id: _Optional[str] = ..., run_id: _Optional[int] = ..., type_name: _Optional[str] = ..., version: _Optional[int] = ..., status: _Optional[str] = ..., start_ms: _Optional[int] = ..., close_ms: _Optional[int] = ...) -> None: ...

class DescribeRequest(_message.Message):
    __slots__ = ("workflow_id",)
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    def __init__(self, workflow_id: _Optional[str] = ...) -> None: ...

class DescribeReply(_message.Message):
    __slots__ = ("summary", "details")
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    summary: WorkflowSummary
    details: bytes
    def __init__(self, summary: _Optional[_Union[WorkflowSummary, _Mapping]] = ..., details: _Optional[bytes] = ...) -> None: ...

class HistoryRequest(_message.Message):
    __slots__ = ("workflow_id",)
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    def __init__(self, workflow_id: _Optional[str] = ...) -> None: ...

class Event(_message.Message):
    __slots__ = ("event_id", "time_ms", "event_type", "attributes")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    TIME_MS_FIELD_NUMBER: _ClassVar[int]
    EVENT_TYPE_FIELD_NUMBER: _ClassVar[int]
    ATTRIBUTES_FIELD_NUMBER: _ClassVar[int]
    event_id: int
    time_ms: int
    event_type: str
    attributes: bytes
    def __init__(self, event_id: _Optional[int] = ..., time_ms: _Optional[int] = ..., event_type: _Optional[str] = ..., attributes: _Optional[bytes] = ...) -> None: ...

class HistoryReply(_message.Message):
    __slots__ = ("summary", "events")
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    summary: WorkflowSummary
    events: _containers.RepeatedCompositeFieldContainer[Event]
    def __init__(self, summary: _Optional[_Union[WorkflowSummary, _Mapping]] = ..., events: _Optional[_Iterable[_Union[Event, _Mapping]]] = ...) -> None: ...

class ListRequest(_message.Message):
    __slots__ = ("status", "limit")
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    status: str
    limit: int
    def __init__(self, status: _Optional[str] = ..., limit: _Optional[int] = ...) -> None: ...

class ListReply(_message.Message):
    __slots__ = ("workflows",)
    WORKFLOWS_FIELD_NUMBER: _ClassVar[int]
    workflows: _containers.RepeatedCompositeFieldContainer[WorkflowSummary]
    def __init__(self, workflows: _Optional[_Iterable[_Union[WorkflowSummary, _Mapping]]] = ...) -> None: ...

class PollRequest(_message.Message):
    __slots__ = ("task_queue", "identity", "max_tasks", "wait_ms")
    TASK_QUEUE_FIELD_NUMBER: _ClassVar[int]
    IDENTITY_FIELD_NUMBER: _ClassVar[int]
    MAX_TASKS_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    task_queue: str
    identity: str
    max_tasks: int
    wait_ms: int
    def __init__(self, task_queue: _Optional[str] = ..., identity: _Optional[str] = ..., max_tasks: _Optional[int] = ..., wait_ms: _Optional[int] = ...) -> None: ...

class ActivityTask(_message.Message):
    __slots__ = ("task_id", "attempt", "workflow_id", "run_id", "step", "activity", "task_queue", "input", "compensation", "secret")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    STEP_FIELD_NUMBER: _ClassVar[int]
    ACTIVITY_FIELD_NUMBER: _ClassVar[int]
    TASK_QUEUE_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    COMPENSATION_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    task_id: int
    attempt: int
    workflow_id: str
    run_id: int
    step: str
    activity: str
    task_queue: str
    input: bytes
    compensation: bool
    secret: bytes
    def __init__(self, task_id: _Optional[int] = ..., attempt: _Optional[int] = ..., workflow_id: _Optional[str] = ..., run_id: _Optional[int] = ..., step: _Optional[str] = ..., activity: _Optional[str] = ..., task_queue: _Optional[str] = ..., input: _Optional[bytes] = ..., compensation: _Optional[bool] = ..., secret: _Optional[bytes] = ...) -> None: ...

class PollReply(_message.Message):
    __slots__ = ("tasks",)
    TASKS_FIELD_NUMBER: _ClassVar[int]
    tasks: _containers.RepeatedCompositeFieldContainer[ActivityTask]
    def __init__(self, tasks: _Optional[_Iterable[_Union[ActivityTask, _Mapping]]] = ...) -> None: ...

class WaitRequest(_message.Message):
    __slots__ = ("workflow_id", "run_id", "wait_ms")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    WAIT_MS_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    run_id: int
    wait_ms: int
    def __init__(self, workflow_id: _Optional[str] = ..., run_id: _Optional[int] = ..., wait_ms: _Optional[int] = ...) -> None: ...

class WaitReply(_message.Message):
    __slots__ = ("closed", "workflow")
    CLOSED_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    closed: bool
    workflow: DescribeReply
    def __init__(self, closed: _Optional[bool] = ..., workflow: _Optional[_Union[DescribeReply, _Mapping]] = ...) -> None: ...
