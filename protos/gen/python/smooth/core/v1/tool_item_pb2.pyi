import datetime

from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from smooth.core.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ToolType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TOOL_TYPE_UNSPECIFIED: _ClassVar[ToolType]
    TOOL_TYPE_DRILL: _ClassVar[ToolType]
    TOOL_TYPE_END_MILL: _ClassVar[ToolType]
    TOOL_TYPE_BALL_END_MILL: _ClassVar[ToolType]
    TOOL_TYPE_FACE_MILL: _ClassVar[ToolType]
    TOOL_TYPE_REAMER: _ClassVar[ToolType]
    TOOL_TYPE_TAP: _ClassVar[ToolType]
    TOOL_TYPE_THREAD_MILL: _ClassVar[ToolType]
    TOOL_TYPE_TURNING_INSERT: _ClassVar[ToolType]
    TOOL_TYPE_BORING_BAR: _ClassVar[ToolType]
    TOOL_TYPE_HOLDER: _ClassVar[ToolType]
    TOOL_TYPE_OTHER: _ClassVar[ToolType]
TOOL_TYPE_UNSPECIFIED: ToolType
TOOL_TYPE_DRILL: ToolType
TOOL_TYPE_END_MILL: ToolType
TOOL_TYPE_BALL_END_MILL: ToolType
TOOL_TYPE_FACE_MILL: ToolType
TOOL_TYPE_REAMER: ToolType
TOOL_TYPE_TAP: ToolType
TOOL_TYPE_THREAD_MILL: ToolType
TOOL_TYPE_TURNING_INSERT: ToolType
TOOL_TYPE_BORING_BAR: ToolType
TOOL_TYPE_HOLDER: ToolType
TOOL_TYPE_OTHER: ToolType

class ToolItem(_message.Message):
    __slots__ = ("id", "name", "description", "manufacturer", "part_number", "tool_type", "geometry", "tags", "calibration_interval_days", "tool_life", "created_at", "updated_at", "version", "owner_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    MANUFACTURER_FIELD_NUMBER: _ClassVar[int]
    PART_NUMBER_FIELD_NUMBER: _ClassVar[int]
    TOOL_TYPE_FIELD_NUMBER: _ClassVar[int]
    GEOMETRY_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_INTERVAL_DAYS_FIELD_NUMBER: _ClassVar[int]
    TOOL_LIFE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    description: str
    manufacturer: str
    part_number: str
    tool_type: ToolType
    geometry: _struct_pb2.Struct
    tags: _containers.RepeatedScalarFieldContainer[str]
    calibration_interval_days: int
    tool_life: _struct_pb2.Struct
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    version: int
    owner_id: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., manufacturer: _Optional[str] = ..., part_number: _Optional[str] = ..., tool_type: _Optional[_Union[ToolType, str]] = ..., geometry: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., tags: _Optional[_Iterable[str]] = ..., calibration_interval_days: _Optional[int] = ..., tool_life: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., version: _Optional[int] = ..., owner_id: _Optional[str] = ...) -> None: ...

class GetToolItemRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListToolItemsRequest(_message.Message):
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

class ListToolItemsResponse(_message.Message):
    __slots__ = ("tool_items", "next_page_token")
    TOOL_ITEMS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tool_items: _containers.RepeatedCompositeFieldContainer[ToolItem]
    next_page_token: str
    def __init__(self, tool_items: _Optional[_Iterable[_Union[ToolItem, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CreateToolItemRequest(_message.Message):
    __slots__ = ("tool_item", "request_id")
    TOOL_ITEM_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    tool_item: ToolItem
    request_id: str
    def __init__(self, tool_item: _Optional[_Union[ToolItem, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class UpdateToolItemRequest(_message.Message):
    __slots__ = ("tool_item", "update_mask", "request_id")
    TOOL_ITEM_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    tool_item: ToolItem
    update_mask: _field_mask_pb2.FieldMask
    request_id: str
    def __init__(self, tool_item: _Optional[_Union[ToolItem, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class DeleteToolItemRequest(_message.Message):
    __slots__ = ("id", "version", "request_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    version: int
    request_id: str
    def __init__(self, id: _Optional[str] = ..., version: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class ToolItemRevision(_message.Message):
    __slots__ = ("revision", "tool_item")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    TOOL_ITEM_FIELD_NUMBER: _ClassVar[int]
    revision: _common_pb2.RevisionInfo
    tool_item: ToolItem
    def __init__(self, revision: _Optional[_Union[_common_pb2.RevisionInfo, _Mapping]] = ..., tool_item: _Optional[_Union[ToolItem, _Mapping]] = ...) -> None: ...

class ListToolItemRevisionsResponse(_message.Message):
    __slots__ = ("revisions", "next_page_token")
    REVISIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    revisions: _containers.RepeatedCompositeFieldContainer[ToolItemRevision]
    next_page_token: str
    def __init__(self, revisions: _Optional[_Iterable[_Union[ToolItemRevision, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
