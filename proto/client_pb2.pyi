from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Consistency(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    LINEARIZABLE: _ClassVar[Consistency]
    LEASE: _ClassVar[Consistency]
    STALE: _ClassVar[Consistency]
LINEARIZABLE: Consistency
LEASE: Consistency
STALE: Consistency

class OpenSessionRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class OpenSessionReply(_message.Message):
    __slots__ = ("session_id", "leader_id")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: int
    leader_id: int
    def __init__(self, session_id: _Optional[int] = ..., leader_id: _Optional[int] = ...) -> None: ...

class Put(_message.Message):
    __slots__ = ("key", "value")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: bytes
    def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ...) -> None: ...

class Delete(_message.Message):
    __slots__ = ("key",)
    KEY_FIELD_NUMBER: _ClassVar[int]
    key: str
    def __init__(self, key: _Optional[str] = ...) -> None: ...

class Cas(_message.Message):
    __slots__ = ("key", "value", "expected_value", "expected_revision")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VALUE_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_REVISION_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: bytes
    expected_value: bytes
    expected_revision: int
    def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ..., expected_value: _Optional[bytes] = ..., expected_revision: _Optional[int] = ...) -> None: ...

class RegisterWorkflowType(_message.Message):
    __slots__ = ("definition_json",)
    DEFINITION_JSON_FIELD_NUMBER: _ClassVar[int]
    definition_json: str
    def __init__(self, definition_json: _Optional[str] = ...) -> None: ...

class StartWorkflow(_message.Message):
    __slots__ = ("workflow_id", "type_name", "version", "input", "return_running")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    RETURN_RUNNING_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    type_name: str
    version: int
    input: bytes
    return_running: bool
    def __init__(self, workflow_id: _Optional[str] = ..., type_name: _Optional[str] = ..., version: _Optional[int] = ..., input: _Optional[bytes] = ..., return_running: _Optional[bool] = ...) -> None: ...

class CompleteActivity(_message.Message):
    __slots__ = ("task_id", "attempt", "result", "secret")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    RESULT_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    task_id: int
    attempt: int
    result: bytes
    secret: bytes
    def __init__(self, task_id: _Optional[int] = ..., attempt: _Optional[int] = ..., result: _Optional[bytes] = ..., secret: _Optional[bytes] = ...) -> None: ...

class FailActivity(_message.Message):
    __slots__ = ("task_id", "attempt", "error_type", "message", "retryable", "secret")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    ERROR_TYPE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RETRYABLE_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    task_id: int
    attempt: int
    error_type: str
    message: str
    retryable: bool
    secret: bytes
    def __init__(self, task_id: _Optional[int] = ..., attempt: _Optional[int] = ..., error_type: _Optional[str] = ..., message: _Optional[str] = ..., retryable: _Optional[bool] = ..., secret: _Optional[bytes] = ...) -> None: ...

class HeartbeatActivity(_message.Message):
    __slots__ = ("task_id", "attempt", "details", "secret")
    TASK_ID_FIELD_NUMBER: _ClassVar[int]
    ATTEMPT_FIELD_NUMBER: _ClassVar[int]
    DETAILS_FIELD_NUMBER: _ClassVar[int]
    SECRET_FIELD_NUMBER: _ClassVar[int]
    task_id: int
    attempt: int
    details: bytes
    secret: bytes
    def __init__(self, task_id: _Optional[int] = ..., attempt: _Optional[int] = ..., details: _Optional[bytes] = ..., secret: _Optional[bytes] = ...) -> None: ...

class SignalWorkflow(_message.Message):
    __slots__ = ("workflow_id", "name", "input")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    INPUT_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    name: str
    input: bytes
    def __init__(self, workflow_id: _Optional[str] = ..., name: _Optional[str] = ..., input: _Optional[bytes] = ...) -> None: ...

class CancelWorkflow(_message.Message):
    __slots__ = ("workflow_id",)
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    def __init__(self, workflow_id: _Optional[str] = ...) -> None: ...

class TerminateWorkflow(_message.Message):
    __slots__ = ("workflow_id", "reason")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    reason: str
    def __init__(self, workflow_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class IssueToken(_message.Message):
    __slots__ = ("token_id", "role", "queues", "secret_sha256", "name", "expires_ms")
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    SECRET_SHA256_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_MS_FIELD_NUMBER: _ClassVar[int]
    token_id: str
    role: str
    queues: _containers.RepeatedScalarFieldContainer[str]
    secret_sha256: bytes
    name: str
    expires_ms: int
    def __init__(self, token_id: _Optional[str] = ..., role: _Optional[str] = ..., queues: _Optional[_Iterable[str]] = ..., secret_sha256: _Optional[bytes] = ..., name: _Optional[str] = ..., expires_ms: _Optional[int] = ...) -> None: ...

class RevokeToken(_message.Message):
    __slots__ = ("token_id",)
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    token_id: str
    def __init__(self, token_id: _Optional[str] = ...) -> None: ...

class Command(_message.Message):
    __slots__ = ("request_id", "session_id", "seq", "ack_floor", "put", "delete", "cas", "register_workflow_type", "start_workflow", "complete_activity", "fail_activity", "heartbeat_activity", "signal_workflow", "cancel_workflow", "terminate_workflow", "read", "issue_token", "revoke_token")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ACK_FLOOR_FIELD_NUMBER: _ClassVar[int]
    PUT_FIELD_NUMBER: _ClassVar[int]
    DELETE_FIELD_NUMBER: _ClassVar[int]
    CAS_FIELD_NUMBER: _ClassVar[int]
    REGISTER_WORKFLOW_TYPE_FIELD_NUMBER: _ClassVar[int]
    START_WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    COMPLETE_ACTIVITY_FIELD_NUMBER: _ClassVar[int]
    FAIL_ACTIVITY_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_ACTIVITY_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    CANCEL_WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    TERMINATE_WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    READ_FIELD_NUMBER: _ClassVar[int]
    ISSUE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    REVOKE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    session_id: int
    seq: int
    ack_floor: int
    put: Put
    delete: Delete
    cas: Cas
    register_workflow_type: RegisterWorkflowType
    start_workflow: StartWorkflow
    complete_activity: CompleteActivity
    fail_activity: FailActivity
    heartbeat_activity: HeartbeatActivity
    signal_workflow: SignalWorkflow
    cancel_workflow: CancelWorkflow
    terminate_workflow: TerminateWorkflow
    read: ReadRequest
    issue_token: IssueToken
    revoke_token: RevokeToken
    def __init__(self, request_id: _Optional[int] = ..., session_id: _Optional[int] = ..., seq: _Optional[int] = ..., ack_floor: _Optional[int] = ..., put: _Optional[_Union[Put, _Mapping]] = ..., delete: _Optional[_Union[Delete, _Mapping]] = ..., cas: _Optional[_Union[Cas, _Mapping]] = ..., register_workflow_type: _Optional[_Union[RegisterWorkflowType, _Mapping]] = ..., start_workflow: _Optional[_Union[StartWorkflow, _Mapping]] = ..., complete_activity: _Optional[_Union[CompleteActivity, _Mapping]] = ..., fail_activity: _Optional[_Union[FailActivity, _Mapping]] = ..., heartbeat_activity: _Optional[_Union[HeartbeatActivity, _Mapping]] = ..., signal_workflow: _Optional[_Union[SignalWorkflow, _Mapping]] = ..., cancel_workflow: _Optional[_Union[CancelWorkflow, _Mapping]] = ..., terminate_workflow: _Optional[_Union[TerminateWorkflow, _Mapping]] = ..., read: _Optional[_Union[ReadRequest, _Mapping]] = ..., issue_token: _Optional[_Union[IssueToken, _Mapping]] = ..., revoke_token: _Optional[_Union[RevokeToken, _Mapping]] = ...) -> None: ...

class WorkflowResult(_message.Message):
    __slots__ = ("workflow_id", "run_id", "existing", "status", "type_name", "version")
    WORKFLOW_ID_FIELD_NUMBER: _ClassVar[int]
    RUN_ID_FIELD_NUMBER: _ClassVar[int]
    EXISTING_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    TYPE_NAME_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    workflow_id: str
    run_id: int
    existing: bool
    status: str
    type_name: str
    version: int
    def __init__(self, workflow_id: _Optional[str] = ..., run_id: _Optional[int] = ..., existing: _Optional[bool] = ..., status: _Optional[str] = ..., type_name: _Optional[str] = ..., version: _Optional[int] = ...) -> None: ...

class TokenResult(_message.Message):
    __slots__ = ("token_id", "issued_ms", "revoked")
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    ISSUED_MS_FIELD_NUMBER: _ClassVar[int]
    REVOKED_FIELD_NUMBER: _ClassVar[int]
    token_id: str
    issued_ms: int
    revoked: bool
    def __init__(self, token_id: _Optional[str] = ..., issued_ms: _Optional[int] = ..., revoked: _Optional[bool] = ...) -> None: ...

class KeyValue(_message.Message):
    __slots__ = ("key", "value", "create_revision", "mod_revision", "version")
    KEY_FIELD_NUMBER: _ClassVar[int]
    VALUE_FIELD_NUMBER: _ClassVar[int]
    CREATE_REVISION_FIELD_NUMBER: _ClassVar[int]
    MOD_REVISION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    key: str
    value: bytes
    create_revision: int
    mod_revision: int
    version: int
    def __init__(self, key: _Optional[str] = ..., value: _Optional[bytes] = ..., create_revision: _Optional[int] = ..., mod_revision: _Optional[int] = ..., version: _Optional[int] = ...) -> None: ...

class CommandReply(_message.Message):
    __slots__ = ("request_id", "code", "message", "leader_id", "leader_address", "index", "revision", "succeeded", "prev", "current", "maybe_applied", "workflow", "read", "token")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    INDEX_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    SUCCEEDED_FIELD_NUMBER: _ClassVar[int]
    PREV_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    MAYBE_APPLIED_FIELD_NUMBER: _ClassVar[int]
    WORKFLOW_FIELD_NUMBER: _ClassVar[int]
    READ_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    code: int
    message: str
    leader_id: int
    leader_address: str
    index: int
    revision: int
    succeeded: bool
    prev: KeyValue
    current: KeyValue
    maybe_applied: bool
    workflow: WorkflowResult
    read: ReadReply
    token: TokenResult
    def __init__(self, request_id: _Optional[int] = ..., code: _Optional[int] = ..., message: _Optional[str] = ..., leader_id: _Optional[int] = ..., leader_address: _Optional[str] = ..., index: _Optional[int] = ..., revision: _Optional[int] = ..., succeeded: _Optional[bool] = ..., prev: _Optional[_Union[KeyValue, _Mapping]] = ..., current: _Optional[_Union[KeyValue, _Mapping]] = ..., maybe_applied: _Optional[bool] = ..., workflow: _Optional[_Union[WorkflowResult, _Mapping]] = ..., read: _Optional[_Union[ReadReply, _Mapping]] = ..., token: _Optional[_Union[TokenResult, _Mapping]] = ...) -> None: ...

class CommandBatch(_message.Message):
    __slots__ = ("commands",)
    COMMANDS_FIELD_NUMBER: _ClassVar[int]
    commands: _containers.RepeatedCompositeFieldContainer[Command]
    def __init__(self, commands: _Optional[_Iterable[_Union[Command, _Mapping]]] = ...) -> None: ...

class ReplyBatch(_message.Message):
    __slots__ = ("replies",)
    REPLIES_FIELD_NUMBER: _ClassVar[int]
    replies: _containers.RepeatedCompositeFieldContainer[CommandReply]
    def __init__(self, replies: _Optional[_Iterable[_Union[CommandReply, _Mapping]]] = ...) -> None: ...

class ReadRequest(_message.Message):
    __slots__ = ("key", "consistency")
    KEY_FIELD_NUMBER: _ClassVar[int]
    CONSISTENCY_FIELD_NUMBER: _ClassVar[int]
    key: str
    consistency: Consistency
    def __init__(self, key: _Optional[str] = ..., consistency: _Optional[_Union[Consistency, str]] = ...) -> None: ...

class ReadReply(_message.Message):
    __slots__ = ("found", "kv", "applied_index", "node_id", "stale", "leader_id", "since_leader_s", "revision")
    FOUND_FIELD_NUMBER: _ClassVar[int]
    KV_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    NODE_ID_FIELD_NUMBER: _ClassVar[int]
    STALE_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    SINCE_LEADER_S_FIELD_NUMBER: _ClassVar[int]
    REVISION_FIELD_NUMBER: _ClassVar[int]
    found: bool
    kv: KeyValue
    applied_index: int
    node_id: int
    stale: bool
    leader_id: int
    since_leader_s: float
    revision: int
    def __init__(self, found: _Optional[bool] = ..., kv: _Optional[_Union[KeyValue, _Mapping]] = ..., applied_index: _Optional[int] = ..., node_id: _Optional[int] = ..., stale: _Optional[bool] = ..., leader_id: _Optional[int] = ..., since_leader_s: _Optional[float] = ..., revision: _Optional[int] = ...) -> None: ...
