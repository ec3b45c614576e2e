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

class ToolAssembly(_message.Message):
    __slots__ = ("id", "name", "description", "holder_id", "cutter_id", "assembly_data", "tags", "tool_life", "created_at", "updated_at", "version", "owner_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    HOLDER_ID_FIELD_NUMBER: _ClassVar[int]
    CUTTER_ID_FIELD_NUMBER: _ClassVar[int]
    ASSEMBLY_DATA_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    TOOL_LIFE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    name: str
    description: str
    holder_id: str
    cutter_id: str
    assembly_data: _struct_pb2.Struct
    tags: _containers.RepeatedScalarFieldContainer[str]
    tool_life: _struct_pb2.Struct
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    version: int
    owner_id: str
    def __init__(self, id: _Optional[str] = ..., name: _Optional[str] = ..., description: _Optional[str] = ..., holder_id: _Optional[str] = ..., cutter_id: _Optional[str] = ..., assembly_data: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., tags: _Optional[_Iterable[str]] = ..., tool_life: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., version: _Optional[int] = ..., owner_id: _Optional[str] = ...) -> None: ...

class GetToolAssemblyRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListToolAssembliesRequest(_message.Message):
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

class ListToolAssembliesResponse(_message.Message):
    __slots__ = ("tool_assemblies", "next_page_token")
    TOOL_ASSEMBLIES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tool_assemblies: _containers.RepeatedCompositeFieldContainer[ToolAssembly]
    next_page_token: str
    def __init__(self, tool_assemblies: _Optional[_Iterable[_Union[ToolAssembly, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CreateToolAssemblyRequest(_message.Message):
    __slots__ = ("tool_assembly", "request_id")
    TOOL_ASSEMBLY_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    tool_assembly: ToolAssembly
    request_id: str
    def __init__(self, tool_assembly: _Optional[_Union[ToolAssembly, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class UpdateToolAssemblyRequest(_message.Message):
    __slots__ = ("tool_assembly", "update_mask", "request_id")
    TOOL_ASSEMBLY_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    tool_assembly: ToolAssembly
    update_mask: _field_mask_pb2.FieldMask
    request_id: str
    def __init__(self, tool_assembly: _Optional[_Union[ToolAssembly, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class DeleteToolAssemblyRequest(_message.Message):
    __slots__ = ("id", "version", "request_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    version: int
    request_id: str
    def __init__(self, id: _Optional[str] = ..., version: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class ToolAssemblyRevision(_message.Message):
    __slots__ = ("revision", "tool_assembly")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    TOOL_ASSEMBLY_FIELD_NUMBER: _ClassVar[int]
    revision: _common_pb2.RevisionInfo
    tool_assembly: ToolAssembly
    def __init__(self, revision: _Optional[_Union[_common_pb2.RevisionInfo, _Mapping]] = ..., tool_assembly: _Optional[_Union[ToolAssembly, _Mapping]] = ...) -> None: ...

class ListToolAssemblyRevisionsResponse(_message.Message):
    __slots__ = ("revisions", "next_page_token")
    REVISIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    revisions: _containers.RepeatedCompositeFieldContainer[ToolAssemblyRevision]
    next_page_token: str
    def __init__(self, revisions: _Optional[_Iterable[_Union[ToolAssemblyRevision, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...
