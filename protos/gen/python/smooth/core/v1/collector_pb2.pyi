import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ListMachineStatusesRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ListMachineStatusesResponse(_message.Message):
    __slots__ = ("machines",)
    MACHINES_FIELD_NUMBER: _ClassVar[int]
    machines: _containers.RepeatedCompositeFieldContainer[MachineStatus]
    def __init__(self, machines: _Optional[_Iterable[_Union[MachineStatus, _Mapping]]] = ...) -> None: ...

class MachineStatus(_message.Message):
    __slots__ = ("machine_id", "endpoint", "profile", "connected", "last_data_time", "last_error", "open_tool_number", "open_usage_id", "open_since", "unmatched", "failed_attempts", "open_tool_status")
    MACHINE_ID_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    PROFILE_FIELD_NUMBER: _ClassVar[int]
    CONNECTED_FIELD_NUMBER: _ClassVar[int]
    LAST_DATA_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_ERROR_FIELD_NUMBER: _ClassVar[int]
    OPEN_TOOL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    OPEN_USAGE_ID_FIELD_NUMBER: _ClassVar[int]
    OPEN_SINCE_FIELD_NUMBER: _ClassVar[int]
    UNMATCHED_FIELD_NUMBER: _ClassVar[int]
    FAILED_ATTEMPTS_FIELD_NUMBER: _ClassVar[int]
    OPEN_TOOL_STATUS_FIELD_NUMBER: _ClassVar[int]
    machine_id: str
    endpoint: str
    profile: str
    connected: bool
    last_data_time: _timestamp_pb2.Timestamp
    last_error: str
    open_tool_number: int
    open_usage_id: str
    open_since: _timestamp_pb2.Timestamp
    unmatched: _containers.RepeatedCompositeFieldContainer[UnmatchedToolNumber]
    failed_attempts: int
    open_tool_status: str
    def __init__(self, machine_id: _Optional[str] = ..., endpoint: _Optional[str] = ..., profile: _Optional[str] = ..., connected: _Optional[bool] = ..., last_data_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_error: _Optional[str] = ..., open_tool_number: _Optional[int] = ..., open_usage_id: _Optional[str] = ..., open_since: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., unmatched: _Optional[_Iterable[_Union[UnmatchedToolNumber, _Mapping]]] = ..., failed_attempts: _Optional[int] = ..., open_tool_status: _Optional[str] = ...) -> None: ...

class UnmatchedToolNumber(_message.Message):
    __slots__ = ("tool_number", "intervals", "first_seen", "last_seen")
    TOOL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    INTERVALS_FIELD_NUMBER: _ClassVar[int]
    FIRST_SEEN_FIELD_NUMBER: _ClassVar[int]
    LAST_SEEN_FIELD_NUMBER: _ClassVar[int]
    tool_number: int
    intervals: int
    first_seen: _timestamp_pb2.Timestamp
    last_seen: _timestamp_pb2.Timestamp
    def __init__(self, tool_number: _Optional[int] = ..., intervals: _Optional[int] = ..., first_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_seen: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...
