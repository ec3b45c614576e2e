import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ChangeOperation(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANGE_OPERATION_UNSPECIFIED: _ClassVar[ChangeOperation]
    CHANGE_OPERATION_CREATE: _ClassVar[ChangeOperation]
    CHANGE_OPERATION_UPDATE: _ClassVar[ChangeOperation]
    CHANGE_OPERATION_DELETE: _ClassVar[ChangeOperation]
CHANGE_OPERATION_UNSPECIFIED: ChangeOperation
CHANGE_OPERATION_CREATE: ChangeOperation
CHANGE_OPERATION_UPDATE: ChangeOperation
CHANGE_OPERATION_DELETE: ChangeOperation

class RevisionInfo(_message.Message):
    __slots__ = ("sequence", "version", "operation", "change_time", "actor_id", "request_id")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    CHANGE_TIME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    version: int
    operation: ChangeOperation
    change_time: _timestamp_pb2.Timestamp
    actor_id: str
    request_id: str
    def __init__(self, sequence: _Optional[int] = ..., version: _Optional[int] = ..., operation: _Optional[_Union[ChangeOperation, str]] = ..., change_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor_id: _Optional[str] = ..., request_id: _Optional[str] = ...) -> None: ...

class ListRevisionsRequest(_message.Message):
    __slots__ = ("id", "page_size", "page_token")
    ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    id: str
    page_size: int
    page_token: str
    def __init__(self, id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...
