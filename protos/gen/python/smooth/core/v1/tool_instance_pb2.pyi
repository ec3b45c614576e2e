import datetime

from google.protobuf import empty_pb2 as _empty_pb2
from google.protobuf import field_mask_pb2 as _field_mask_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.type import date_pb2 as _date_pb2
from smooth.core.v1 import common_pb2 as _common_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ToolInstanceStatus(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TOOL_INSTANCE_STATUS_UNSPECIFIED: _ClassVar[ToolInstanceStatus]
    TOOL_INSTANCE_STATUS_AVAILABLE: _ClassVar[ToolInstanceStatus]
    TOOL_INSTANCE_STATUS_IN_USE: _ClassVar[ToolInstanceStatus]
    TOOL_INSTANCE_STATUS_MAINTENANCE: _ClassVar[ToolInstanceStatus]
    TOOL_INSTANCE_STATUS_RETIRED: _ClassVar[ToolInstanceStatus]
TOOL_INSTANCE_STATUS_UNSPECIFIED: ToolInstanceStatus
TOOL_INSTANCE_STATUS_AVAILABLE: ToolInstanceStatus
TOOL_INSTANCE_STATUS_IN_USE: ToolInstanceStatus
TOOL_INSTANCE_STATUS_MAINTENANCE: ToolInstanceStatus
TOOL_INSTANCE_STATUS_RETIRED: ToolInstanceStatus

class ToolInstance(_message.Message):
    __slots__ = ("id", "tool_item_id", "tool_assembly_id", "serial_number", "status", "measurements", "purchase_date", "last_calibration", "calibration_due", "tags", "status_reason", "tool_life", "tool_life_state", "created_at", "updated_at", "version", "owner_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_ASSEMBLY_ID_FIELD_NUMBER: _ClassVar[int]
    SERIAL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    MEASUREMENTS_FIELD_NUMBER: _ClassVar[int]
    PURCHASE_DATE_FIELD_NUMBER: _ClassVar[int]
    LAST_CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_DUE_FIELD_NUMBER: _ClassVar[int]
    TAGS_FIELD_NUMBER: _ClassVar[int]
    STATUS_REASON_FIELD_NUMBER: _ClassVar[int]
    TOOL_LIFE_FIELD_NUMBER: _ClassVar[int]
    TOOL_LIFE_STATE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    UPDATED_AT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    tool_item_id: str
    tool_assembly_id: str
    serial_number: str
    status: ToolInstanceStatus
    measurements: _struct_pb2.Struct
    purchase_date: _date_pb2.Date
    last_calibration: _timestamp_pb2.Timestamp
    calibration_due: _date_pb2.Date
    tags: _containers.RepeatedScalarFieldContainer[str]
    status_reason: str
    tool_life: _struct_pb2.Struct
    tool_life_state: _struct_pb2.Struct
    created_at: _timestamp_pb2.Timestamp
    updated_at: _timestamp_pb2.Timestamp
    version: int
    owner_id: str
    def __init__(self, id: _Optional[str] = ..., tool_item_id: _Optional[str] = ..., tool_assembly_id: _Optional[str] = ..., serial_number: _Optional[str] = ..., status: _Optional[_Union[ToolInstanceStatus, str]] = ..., measurements: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., purchase_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., last_calibration: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., calibration_due: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., tags: _Optional[_Iterable[str]] = ..., status_reason: _Optional[str] = ..., tool_life: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., tool_life_state: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., updated_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., version: _Optional[int] = ..., owner_id: _Optional[str] = ...) -> None: ...

class GetToolInstanceRequest(_message.Message):
    __slots__ = ("id",)
    ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    def __init__(self, id: _Optional[str] = ...) -> None: ...

class ListToolInstancesRequest(_message.Message):
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

class ListToolInstancesResponse(_message.Message):
    __slots__ = ("tool_instances", "next_page_token")
    TOOL_INSTANCES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tool_instances: _containers.RepeatedCompositeFieldContainer[ToolInstance]
    next_page_token: str
    def __init__(self, tool_instances: _Optional[_Iterable[_Union[ToolInstance, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CreateToolInstanceRequest(_message.Message):
    __slots__ = ("tool_instance", "request_id")
    TOOL_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    tool_instance: ToolInstance
    request_id: str
    def __init__(self, tool_instance: _Optional[_Union[ToolInstance, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class UpdateToolInstanceRequest(_message.Message):
    __slots__ = ("tool_instance", "update_mask", "request_id")
    TOOL_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    UPDATE_MASK_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    tool_instance: ToolInstance
    update_mask: _field_mask_pb2.FieldMask
    request_id: str
    def __init__(self, tool_instance: _Optional[_Union[ToolInstance, _Mapping]] = ..., update_mask: _Optional[_Union[_field_mask_pb2.FieldMask, _Mapping]] = ..., request_id: _Optional[str] = ...) -> None: ...

class DeleteToolInstanceRequest(_message.Message):
    __slots__ = ("id", "version", "request_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    version: int
    request_id: str
    def __init__(self, id: _Optional[str] = ..., version: _Optional[int] = ..., request_id: _Optional[str] = ...) -> None: ...

class ToolInstanceRevision(_message.Message):
    __slots__ = ("revision", "tool_instance")
    REVISION_FIELD_NUMBER: _ClassVar[int]
    TOOL_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    revision: _common_pb2.RevisionInfo
    tool_instance: ToolInstance
    def __init__(self, revision: _Optional[_Union[_common_pb2.RevisionInfo, _Mapping]] = ..., tool_instance: _Optional[_Union[ToolInstance, _Mapping]] = ...) -> None: ...

class ListToolInstanceRevisionsResponse(_message.Message):
    __slots__ = ("revisions", "next_page_token")
    REVISIONS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    revisions: _containers.RepeatedCompositeFieldContainer[ToolInstanceRevision]
    next_page_token: str
    def __init__(self, revisions: _Optional[_Iterable[_Union[ToolInstanceRevision, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class MeasuredValue(_message.Message):
    __slots__ = ("value", "nominal", "min", "max", "unit")
    VALUE_FIELD_NUMBER: _ClassVar[int]
    NOMINAL_FIELD_NUMBER: _ClassVar[int]
    MIN_FIELD_NUMBER: _ClassVar[int]
    MAX_FIELD_NUMBER: _ClassVar[int]
    UNIT_FIELD_NUMBER: _ClassVar[int]
    value: float
    nominal: float
    min: float
    max: float
    unit: str
    def __init__(self, value: _Optional[float] = ..., nominal: _Optional[float] = ..., min: _Optional[float] = ..., max: _Optional[float] = ..., unit: _Optional[str] = ...) -> None: ...

class Measurement(_message.Message):
    __slots__ = ("id", "tool_instance_id", "measurement_id", "station_id", "operator", "measured_at", "values", "in_tolerance", "out_of_tolerance", "created_at", "owner_id")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: MeasuredValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[MeasuredValue, _Mapping]] = ...) -> None: ...
    ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    MEASUREMENT_ID_FIELD_NUMBER: _ClassVar[int]
    STATION_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    MEASURED_AT_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    IN_TOLERANCE_FIELD_NUMBER: _ClassVar[int]
    OUT_OF_TOLERANCE_FIELD_NUMBER: _ClassVar[int]
    CREATED_AT_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    tool_instance_id: str
    measurement_id: str
    station_id: str
    operator: str
    measured_at: _timestamp_pb2.Timestamp
    values: _containers.MessageMap[str, MeasuredValue]
    in_tolerance: bool
    out_of_tolerance: _containers.RepeatedScalarFieldContainer[str]
    created_at: _timestamp_pb2.Timestamp
    owner_id: str
    def __init__(self, id: _Optional[str] = ..., tool_instance_id: _Optional[str] = ..., measurement_id: _Optional[str] = ..., station_id: _Optional[str] = ..., operator: _Optional[str] = ..., measured_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., values: _Optional[_Mapping[str, MeasuredValue]] = ..., in_tolerance: _Optional[bool] = ..., out_of_tolerance: _Optional[_Iterable[str]] = ..., created_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., owner_id: _Optional[str] = ...) -> None: ...

class RecordMeasurementRequest(_message.Message):
    __slots__ = ("tool_instance_id", "serial_number", "measurement_id", "station_id", "operator", "measured_at", "values")
    class ValuesEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: MeasuredValue
        def __init__(self, key: _Optional[str] = ..., value: _Optional[_Union[MeasuredValue, _Mapping]] = ...) -> None: ...
    TOOL_INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    SERIAL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    MEASUREMENT_ID_FIELD_NUMBER: _ClassVar[int]
    STATION_ID_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    MEASURED_AT_FIELD_NUMBER: _ClassVar[int]
    VALUES_FIELD_NUMBER: _ClassVar[int]
    tool_instance_id: str
    serial_number: str
    measurement_id: str
    station_id: str
    operator: str
    measured_at: _timestamp_pb2.Timestamp
    values: _containers.MessageMap[str, MeasuredValue]
    def __init__(self, tool_instance_id: _Optional[str] = ..., serial_number: _Optional[str] = ..., measurement_id: _Optional[str] = ..., station_id: _Optional[str] = ..., operator: _Optional[str] = ..., measured_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., values: _Optional[_Mapping[str, MeasuredValue]] = ...) -> None: ...

class RecordMeasurementResponse(_message.Message):
    __slots__ = ("measurement", "tool_instance", "replayed")
    MEASUREMENT_FIELD_NUMBER: _ClassVar[int]
    TOOL_INSTANCE_FIELD_NUMBER: _ClassVar[int]
    REPLAYED_FIELD_NUMBER: _ClassVar[int]
    measurement: Measurement
    tool_instance: ToolInstance
    replayed: bool
    def __init__(self, measurement: _Optional[_Union[Measurement, _Mapping]] = ..., tool_instance: _Optional[_Union[ToolInstance, _Mapping]] = ..., replayed: _Optional[bool] = ...) -> None: ...

class ListMeasurementsRequest(_message.Message):
    __slots__ = ("tool_instance_id", "page_size", "page_token")
    TOOL_INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tool_instance_id: str
    page_size: int
    page_token: str
    def __init__(self, tool_instance_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListMeasurementsResponse(_message.Message):
    __slots__ = ("measurements", "next_page_token")
    MEASUREMENTS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    measurements: _containers.RepeatedCompositeFieldContainer[Measurement]
    next_page_token: str
    def __init__(self, measurements: _Optional[_Iterable[_Union[Measurement, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class ResetToolLifeRequest(_message.Message):
    __slots__ = ("id", "version", "reason", "counters", "request_id")
    ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    id: str
    version: int
    reason: str
    counters: _containers.RepeatedScalarFieldContainer[str]
    request_id: str
    def __init__(self, id: _Optional[str] = ..., version: _Optional[int] = ..., reason: _Optional[str] = ..., counters: _Optional[_Iterable[str]] = ..., request_id: _Optional[str] = ...) -> None: ...
