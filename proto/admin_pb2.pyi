from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class StatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class PeerState(_message.Message):
    __slots__ = ("id", "address", "connected", "last_heard_s", "progress", "peer_address")
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    LAST_HEARD_S_FIELD_NUMBER: _ClassVar[int]
    PROGRESS_FIELD_NUMBER: _ClassVar[int]
    PEER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    id: int
    address: str
    connected: bool
    last_heard_s: float
    progress: str
    peer_address: str
    def __init__(self, id: _Optional[int] = ..., address: _Optional[str] = ..., connected: _Optional[bool] = ..., last_heard_s: _Optional[float] = ..., progress: _Optional[str] = ..., peer_address: _Optional[str] = ...) -> None: ...

class StatusReply(_message.Message):
    __slots__ = ("id", "address", "cluster_id", "role", "term", "leader_id", "leader_address", "last_index", "commit_index", "applied_index", "snapshot_index", "leader_unknown_s", "peers", "pid", "pending_proposals", "version", "faults", "refused", "peer_address", "insecure", "calls_refused")
    class RefusedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    class CallsRefusedEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: int
        def __init__(self, key: _Optional[str] = ..., value: _Optional[int] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    LEADER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    LAST_INDEX_FIELD_NUMBER: _ClassVar[int]
    COMMIT_INDEX_FIELD_NUMBER: _ClassVar[int]
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    SNAPSHOT_INDEX_FIELD_NUMBER: _ClassVar[int]
    LEADER_UNKNOWN_S_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    PENDING_PROPOSALS_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    FAULTS_FIELD_NUMBER: _ClassVar[int]
    REFUSED_FIELD_NUMBER: _ClassVar[int]
    PEER_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    INSECURE_FIELD_NUMBER: _ClassVar[int]
    CALLS_REFUSED_FIELD_NUMBER: _ClassVar[int]
    id: int
    address: str
    cluster_id: str
    role: str
    term: int
    leader_id: int
    leader_address: str
    last_index: int
    commit_index: int
    applied_index: int
    snapshot_index: int
    leader_unknown_s: float
    peers: _containers.RepeatedCompositeFieldContainer[PeerState]
    pid: int
    pending_proposals: int
    version: str
    faults: _containers.RepeatedCompositeFieldContainer[PeerFault]
    refused: _containers.ScalarMap[str, int]
    peer_address: str
    insecure: bool
    calls_refused: _containers.ScalarMap[str, int]
    def __init__(self, id: _Optional[int] = ..., address: _Optional[str] = ..., cluster_id: _Optional[str] = ..., role: _Optional[str] = ..., term: _Optional[int] = ..., leader_id: _Optional[int] = ..., leader_address: _Optional[str] = ..., last_index: _Optional[int] = ..., commit_index: _Optional[int] = ..., applied_index: _Optional[int] = ..., snapshot_index: _Optional[int] = ..., leader_unknown_s: _Optional[float] = ..., peers: _Optional[_Iterable[_Union[PeerState, _Mapping]]] = ..., pid: _Optional[int] = ..., pending_proposals: _Optional[int] = ..., version: _Optional[str] = ..., faults: _Optional[_Iterable[_Union[PeerFault, _Mapping]]] = ..., refused: _Optional[_Mapping[str, int]] = ..., peer_address: _Optional[str] = ..., insecure: _Optional[bool] = ..., calls_refused: _Optional[_Mapping[str, int]] = ...) -> None: ...

class PeerFault(_message.Message):
    __slots__ = ("peer_id", "drop_out", "drop_in", "delay_out_ms", "delay_in_ms")
    PEER_ID_FIELD_NUMBER: _ClassVar[int]
    DROP_OUT_FIELD_NUMBER: _ClassVar[int]
    DROP_IN_FIELD_NUMBER: _ClassVar[int]
    DELAY_OUT_MS_FIELD_NUMBER: _ClassVar[int]
    DELAY_IN_MS_FIELD_NUMBER: _ClassVar[int]
    peer_id: int
    drop_out: bool
    drop_in: bool
    delay_out_ms: int
    delay_in_ms: int
    def __init__(self, peer_id: _Optional[int] = ..., drop_out: _Optional[bool] = ..., drop_in: _Optional[bool] = ..., delay_out_ms: _Optional[int] = ..., delay_in_ms: _Optional[int] = ...) -> None: ...

class SetFaultsRequest(_message.Message):
    __slots__ = ("faults", "replace")
    FAULTS_FIELD_NUMBER: _ClassVar[int]
    REPLACE_FIELD_NUMBER: _ClassVar[int]
    faults: _containers.RepeatedCompositeFieldContainer[PeerFault]
    replace: bool
    def __init__(self, faults: _Optional[_Iterable[_Union[PeerFault, _Mapping]]] = ..., replace: _Optional[bool] = ...) -> None: ...

class FaultsReply(_message.Message):
    __slots__ = ("faults",)
    FAULTS_FIELD_NUMBER: _ClassVar[int]
    faults: _containers.RepeatedCompositeFieldContainer[PeerFault]
    def __init__(self, faults: _Optional[_Iterable[_Union[PeerFault, _Mapping]]] = ...) -> None: ...

class TransferRequest(_message.Message):
    __slots__ = ("target_id",)
    TARGET_ID_FIELD_NUMBER: _ClassVar[int]
    target_id: int
    def __init__(self, target_id: _Optional[int] = ...) -> None: ...

class TransferReply(_message.Message):
    __slots__ = ("leader_id", "term")
    LEADER_ID_FIELD_NUMBER: _ClassVar[int]
    TERM_FIELD_NUMBER: _ClassVar[int]
    leader_id: int
    term: int
    def __init__(self, leader_id: _Optional[int] = ..., term: _Optional[int] = ...) -> None: ...

class StateHashRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class StateHashReply(_message.Message):
    __slots__ = ("applied_index", "hash")
    APPLIED_INDEX_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    applied_index: int
    hash: str
    def __init__(self, applied_index: _Optional[int] = ..., hash: _Optional[str] = ...) -> None: ...

class ListTokensRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TokenInfo(_message.Message):
    __slots__ = ("token_id", "role", "queues", "name", "issued_ms", "expires_ms")
    TOKEN_ID_FIELD_NUMBER: _ClassVar[int]
    ROLE_FIELD_NUMBER: _ClassVar[int]
    QUEUES_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    ISSUED_MS_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_MS_FIELD_NUMBER: _ClassVar[int]
    token_id: str
    role: str
    queues: _containers.RepeatedScalarFieldContainer[str]
    name: str
    issued_ms: int
    expires_ms: int
    def __init__(self, token_id: _Optional[str] = ..., role: _Optional[str] = ..., queues: _Optional[_Iterable[str]] = ..., name: _Optional[str] = ..., issued_ms: _Optional[int] = ..., expires_ms: _Optional[int] = ...) -> None: ...

class ListTokensReply(_message.Message):
    __slots__ = ("tokens",)
    TOKENS_FIELD_NUMBER: _ClassVar[int]
    tokens: _containers.RepeatedCompositeFieldContainer[TokenInfo]
    def __init__(self, tokens: _Optional[_Iterable[_Union[TokenInfo, _Mapping]]] = ...) -> None: ...
