import datetime

from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from smooth.core.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ToolUsage(_message.Message):
    __slots__ = ("id", "tool_instance_id", "start_time", "end_time", "machine_id", "program_name", "operator", "usage_metrics", "wear_measurements", "notes", "created_at", "updated_at", "version", "owner_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    MACHINE_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_NAME_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    USAGE_METRICS_FIELD_NUMBER: _ClassVar[int]
    WEAR_MEASUREMENTS_FIELD_NUMBER: _ClassVar[int]
    NOTES_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    tool_instance_id: str
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    machine_id: str
    program_name: str
    operator: str
    usage_metrics: _struct_pb2.Struct
    wear_measurements: _struct_pb2.Struct
    notes: str
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    version: int
    owner_id: str
    def __init__(self, id: _Optional[str] = ..., tool_instance_id: _Optional[str] = ..., start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., machine_id: _Optional[str] = ..., program_name: _Optional[str] = ..., operator: _Optional[str] = ..., usage_metrics: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., wear_measurements: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., notes: _Optional[str] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., version: _Optional[int] = ..., owner_id: _Optional[str] = ...) -> None: ...

class GetToolUsageRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListToolUsagesRequest(_message.Message):
    __slots__ = ("page_size", "page_token", "filter", "order_by")
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    FILTER_FIELD_NUMBER: _ClassVar[int]
    ORDER_BY_FIELD_NUMBER: _ClassVar[int]
    page_size: int
    page_token: str
    filter: str
    order_by: str
    def __init__(self, page_size: _Optional[int] = ..., page_token: _Optional[str] = ..., filter: _Optional[str] = ..., order_by: _Optional[str] = ...) -> None: ...

class ListToolUsagesResponse(_message.Message):
    __slots__ = ("tool_usages", "next_page_token")
    TOOL_USAGES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tool_usages: _containers.RepeatedCompositeFieldContainer[ToolUsage]
    next_page_token: str
    def __init__(self, tool_usages: _Optional[_Iterable[_Union[ToolUsage, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CreateToolUsageRequest(_message.Message):
    __slots__ = ("tool_usage", "request_id")
    TOOL_USAGE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    tool_usage: ToolUsage
    request_id: str
    def __init__(self, tool_usage: _Optional[_Union[ToolUsage, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class UpdateToolUsageRequest(_message.Message):
    __slots__ = ("tool_usage", "update_mask", "request_id")
    TOOL_USAGE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    tool_usage: ToolUsage
    update_mask: _field_mask_pb2.FieldMask
    request_id: str
    def __init__(self, tool_usage: _Optional[_Union[ToolUsage, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class DeleteToolUsageRequest(_message.Message):
    __slots__ = ("id", "version", "request_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    version: int
    request_id: str
    def __init__(self, id: _Optional[str] = ..., version: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class ToolUsageRevision(_message.Message):
    __slots__ = ("revision", "tool_usage")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    TOOL_USAGE_FIELD_NUMBER: _ClassVar[int]
    revision: _common_pb2.RevisionInfo
    tool_usage: ToolUsage
    def __init__(self, revision: _Optional[_Union[_common_pb2.RevisionInfo, _Mapping]] = ..., tool_usage: _Optional[_Union[ToolUsage, _Mapping]] = ...) -> None: ...

class ListToolUsageRevisionsResponse(_message.Message):
    __slots__ = ("revisions", "next_page_token")
    REVISIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    revisions: _containers.RepeatedCompositeFieldContainer[ToolUsageRevision]
    next_page_token: str
    def __init__(self, revisions: _Optional[_Iterable[_Union[ToolUsageRevision, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
