import datetime

from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from smooth.core.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ToolSet(_message.Message):
    __slots__ = ("id", "name", "description", "is_global", "tool_instance_ids", "tool_preset_ids", "tags", "created_at", "updated_at", "version", "owner_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    IS_GLOBAL_FIELD_NUMBER: _ClassVar[int]
    TOOL_INSTANCE_IDS_FIELD_NUMBER: _ClassVar[int]
    TOOL_PRESET_IDS_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    description: str
    is_global: bool
    tool_instance_ids: _containers.RepeatedScalarFieldContainer[str]
    tool_preset_ids: _containers.RepeatedScalarFieldContainer[str]
    tags: _containers.RepeatedScalarFieldContainer[str]
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    version: int
    owner_id: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., is_global: _Optional[bool] = ..., tool_instance_ids: _Optional[_Iterable[str]] = ..., tool_preset_ids: _Optional[_Iterable[str]] = ..., tags: _Optional[_Iterable[str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., version: _Optional[int] = ..., owner_id: _Optional[str] = ...) -> None: ...

class GetToolSetRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListToolSetsRequest(_message.Message):
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

class ListToolSetsResponse(_message.Message):
    __slots__ = ("tool_sets", "next_page_token")
    TOOL_SETS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tool_sets: _containers.RepeatedCompositeFieldContainer[ToolSet]
    next_page_token: str
    def __init__(self, tool_sets: _Optional[_Iterable[_Union[ToolSet, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CreateToolSetRequest(_message.Message):
    __slots__ = ("tool_set", "request_id")
    TOOL_SET_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    tool_set: ToolSet
    request_id: str
    def __init__(self, tool_set: _Optional[_Union[ToolSet, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class UpdateToolSetRequest(_message.Message):
    __slots__ = ("tool_set", "update_mask", "request_id")
    TOOL_SET_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    tool_set: ToolSet
    update_mask: _field_mask_pb2.FieldMask
    request_id: str
    def __init__(self, tool_set: _Optional[_Union[ToolSet, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class DeleteToolSetRequest(_message.Message):
    __slots__ = ("id", "version", "request_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    version: int
    request_id: str
    def __init__(self, id: _Optional[str] = ..., version: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class ToolSetRevision(_message.Message):
    __slots__ = ("revision", "tool_set")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    TOOL_SET_FIELD_NUMBER: _ClassVar[int]
    revision: _common_pb2.RevisionInfo
    tool_set: ToolSet
    def __init__(self, revision: _Optional[_Union[_common_pb2.RevisionInfo, _Mapping]] = ..., tool_set: _Optional[_Union[ToolSet, _Mapping]] = ...) -> None: ...

class ListToolSetRevisionsResponse(_message.Message):
    __slots__ = ("revisions", "next_page_token")
    REVISIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    revisions: _containers.RepeatedCompositeFieldContainer[ToolSetRevision]
    next_page_token: str
    def __init__(self, revisions: _Optional[_Iterable[_Union[ToolSetRevision, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ToolSetMembersRequest(_message.Message):
    __slots__ = ("id", "version", "tool_instance_ids", "tool_preset_ids", "request_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    TOOL_INSTANCE_IDS_FIELD_NUMBER: _ClassVar[int]
    TOOL_PRESET_IDS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    version: int
    tool_instance_ids: _containers.RepeatedScalarFieldContainer[str]
    tool_preset_ids: _containers.RepeatedScalarFieldContainer[str]
    request_id: str
    def __init__(self, id: _Optional[str] = ..., version: _Optional[int] = ..., tool_instance_ids: _Optional[_Iterable[str]] = ..., tool_preset_ids: _Optional[_Iterable[str]] = ..., request_id: _Optional[str] = ...) -> None: ...
