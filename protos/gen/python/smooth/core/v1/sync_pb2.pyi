import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from smooth.core.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class Change(_message.Message):
    __slots__ = ("seq", "tx_id", "entity_type", "entity_id", "version", "operation", "data_json", "change_time", "actor_id", "request_id")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    TX_ID_FIELD_NUMBER: _ClassVar[int]
    ENTITY_TYPE_FIELD_NUMBER: _ClassVar[int]
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    CHANGE_TIME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    seq: int
    tx_id: str
    entity_type: str
    entity_id: str
    version: int
    operation: _common_pb2.ChangeOperation
    data_json: str
    change_time: _timestamp_pb2.Timestamp
    actor_id: str
    request_id: str
    def __init__(self, seq: _Optional[int] = ..., tx_id: _Optional[str] = ..., entity_type: _Optional[str] = ..., entity_id: _Optional[str] = ..., version: _Optional[int] = ..., operation: _Optional[_Union[_common_pb2.ChangeOperation, str]] = ..., data_json: _Optional[str] = ..., change_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class PushChangesRequest(_message.Message):
    __slots__ = ("origin_id", "after_seq", "changes", "schema_version")
    ORIGIN_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    SCHEMA_VERSION_FIELD_NUMBER: _ClassVar[int]
    origin_id: str
    after_seq: int
    changes: _containers.RepeatedCompositeFieldContainer[Change]
    schema_version: str
    def __init__(self, origin_id: _Optional[str] = ..., after_seq: _Optional[int] = ..., changes: _Optional[_Iterable[_Union[Change, _Mapping]]] = ..., schema_version: _Optional[str] = ...) -> None: ...

class PushChangesResponse(_message.Message):
    __slots__ = ("acked_seq", "rejected")
    ACKED_SEQ_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    acked_seq: int
    rejected: _containers.RepeatedCompositeFieldContainer[RejectedChange]
    def __init__(self, acked_seq: _Optional[int] = ..., rejected: _Optional[_Iterable[_Union[RejectedChange, _Mapping]]] = ...) -> None: ...

class RejectedChange(_message.Message):
    __slots__ = ("seq", "entity_type", "entity_id", "reason")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    ENTITY_TYPE_FIELD_NUMBER: _ClassVar[int]
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    seq: int
    entity_type: str
    entity_id: str
    reason: str
    def __init__(self, seq: _Optional[int] = ..., entity_type: _Optional[str] = ..., entity_id: _Optional[str] = ..., reason: _Optional[str] = ...) -> None: ...

class PullChangesRequest(_message.Message):
    __slots__ = ("origin_id", "after_seq", "limit")
    ORIGIN_ID_FIELD_NUMBER: _ClassVar[int]
    AFTER_SEQ_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    origin_id: str
    after_seq: int
    limit: int
    def __init__(self, origin_id: _Optional[str] = ..., after_seq: _Optional[int] = ..., limit: _Optional[int] = ...) -> None: ...

class PullChangesResponse(_message.Message):
    __slots__ = ("changes", "next_cursor", "more", "central_id", "resync_required")
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_CURSOR_FIELD_NUMBER: _ClassVar[int]
    MORE_FIELD_NUMBER: _ClassVar[int]
    CENTRAL_ID_FIELD_NUMBER: _ClassVar[int]
    RESYNC_REQUIRED_FIELD_NUMBER: _ClassVar[int]
    changes: _containers.RepeatedCompositeFieldContainer[Change]
    next_cursor: int
    more: bool
    central_id: str
    resync_required: bool
    def __init__(self, changes: _Optional[_Iterable[_Union[Change, _Mapping]]] = ..., next_cursor: _Optional[int] = ..., more: _Optional[bool] = ..., central_id: _Optional[str] = ..., resync_required: _Optional[bool] = ...) -> None: ...

class GetSnapshotRequest(_message.Message):
    __slots__ = ("origin_id", "entity_type", "page_size", "page_token")
    ORIGIN_ID_FIELD_NUMBER: _ClassVar[int]
    ENTITY_TYPE_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    origin_id: str
    entity_type: str
    page_size: int
    page_token: str
    def __init__(self, origin_id: _Optional[str] = ..., entity_type: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class GetSnapshotResponse(_message.Message):
    __slots__ = ("as_of_seq", "entities_json", "next_page_token")
    AS_OF_SEQ_FIELD_NUMBER: _ClassVar[int]
    ENTITIES_JSON_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    as_of_seq: int
    entities_json: _containers.RepeatedScalarFieldContainer[str]
    next_page_token: str
    def __init__(self, as_of_seq: _Optional[int] = ..., entities_json: _Optional[_Iterable[str]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ListConflictsRequest(_message.Message):
    __slots__ = ("entity_id", "page_size", "page_token")
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    entity_id: str
    page_size: int
    page_token: str
    def __init__(self, entity_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListConflictsResponse(_message.Message):
    __slots__ = ("conflicts", "next_page_token")
    CONFLICTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    conflicts: _containers.RepeatedCompositeFieldContainer[Conflict]
    next_page_token: str
    def __init__(self, conflicts: _Optional[_Iterable[_Union[Conflict, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class Conflict(_message.Message):
    __slots__ = ("sequence", "origin_id", "origin_seq", "entity_type", "entity_id", "central_version", "edge_version", "winner", "resolved_version", "central_data_json", "edge_data_json", "resolved_data_json", "create_time")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_ID_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_SEQ_FIELD_NUMBER: _ClassVar[int]
    ENTITY_TYPE_FIELD_NUMBER: _ClassVar[int]
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    CENTRAL_VERSION_FIELD_NUMBER: _ClassVar[int]
    EDGE_VERSION_FIELD_NUMBER: _ClassVar[int]
    WINNER_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_VERSION_FIELD_NUMBER: _ClassVar[int]
    CENTRAL_DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    EDGE_DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_DATA_JSON_FIELD_NUMBER: _ClassVar[int]
    CREATE_TIME_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    origin_id: str
    origin_seq: int
    entity_type: str
    entity_id: str
    central_version: int
    edge_version: int
    winner: str
    resolved_version: int
    central_data_json: str
    edge_data_json: str
    resolved_data_json: str
    create_time: _timestamp_pb2.Timestamp
    def __init__(self, sequence: _Optional[int] = ..., origin_id: _Optional[str] = ..., origin_seq: _Optional[int] = ..., entity_type: _Optional[str] = ..., entity_id: _Optional[str] = ..., central_version: _Optional[int] = ..., edge_version: _Optional[int] = ..., winner: _Optional[str] = ..., resolved_version: _Optional[int] = ..., central_data_json: _Optional[str] = ..., edge_data_json: _Optional[str] = ..., resolved_data_json: _Optional[str] = ..., create_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class GetWatermarkRequest(_message.Message):
    __slots__ = ("origin_id",)
    ORIGIN_ID_FIELD_NUMBER: _ClassVar[int]
    origin_id: str
    def __init__(self, origin_id: _Optional[str] = ...) -> None: ...

class Watermark(_message.Message):
    __slots__ = ("origin_id", "last_seq")
    ORIGIN_ID_FIELD_NUMBER: _ClassVar[int]
    LAST_SEQ_FIELD_NUMBER: _ClassVar[int]
    origin_id: str
    last_seq: int
    def __init__(self, origin_id: _Optional[str] = ..., last_seq: _Optional[int] = ...) -> None: ...

class GetReplicationStatusRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ReplicationStatus(_message.Message):
    __slots__ = ("central", "origin_id", "connected", "last_local_seq", "acked_seq", "backlog", "lag_seconds", "last_error", "last_success_time", "rejected", "state", "resyncs", "pulled_cursor")
    CENTRAL_FIELD_NUMBER: _ClassVar[int]
    ORIGIN_ID_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    LAST_LOCAL_SEQ_FIELD_NUMBER: _ClassVar[int]
    ACKED_SEQ_FIELD_NUMBER: _ClassVar[int]
    BACKLOG_FIELD_NUMBER: _ClassVar[int]
    LAG_SECONDS_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    LAST_SUCCESS_TIME_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    RESYNCS_FIELD_NUMBER: _ClassVar[int]
    PULLED_CURSOR_FIELD_NUMBER: _ClassVar[int]
    central: str
    origin_id: str
    connected: bool
    last_local_seq: int
    acked_seq: int
    backlog: int
    lag_seconds: float
    last_error: str
    last_success_time: _timestamp_pb2.Timestamp
    rejected: int
    state: str
    resyncs: int
    pulled_cursor: int
    def __init__(self, central: _Optional[str] = ..., origin_id: _Optional[str] = ..., connected: _Optional[bool] = ..., last_local_seq: _Optional[int] = ..., acked_seq: _Optional[int] = ..., backlog: _Optional[int] = ..., lag_seconds: _Optional[float] = ..., last_error: _Optional[str] = ..., last_success_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., rejected: _Optional[int] = ..., state: _Optional[str] = ..., resyncs: _Optional[int] = ..., pulled_cursor: _Optional[int] = ...) -> None: ...
