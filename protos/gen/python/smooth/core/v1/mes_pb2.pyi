import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.type import date_pb2 as _date_pb2
from smooth.core.v1 import common_pb2 as _common_pb2
from smooth.core.v1 import tool_instance_pb2 as _tool_instance_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ToolLifeLevel(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TOOL_LIFE_LEVEL_UNSPECIFIED: _ClassVar[ToolLifeLevel]
    TOOL_LIFE_LEVEL_UNLIMITED: _ClassVar[ToolLifeLevel]
    TOOL_LIFE_LEVEL_OK: _ClassVar[ToolLifeLevel]
    TOOL_LIFE_LEVEL_PREWARNING: _ClassVar[ToolLifeLevel]
    TOOL_LIFE_LEVEL_EXPIRED: _ClassVar[ToolLifeLevel]

class UsageGrouping(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    USAGE_GROUPING_UNSPECIFIED: _ClassVar[UsageGrouping]
    USAGE_GROUPING_MACHINE: _ClassVar[UsageGrouping]
    USAGE_GROUPING_PROGRAM: _ClassVar[UsageGrouping]
    USAGE_GROUPING_OPERATOR: _ClassVar[UsageGrouping]
    USAGE_GROUPING_TOOL_INSTANCE: _ClassVar[UsageGrouping]
    USAGE_GROUPING_TOOL_ITEM: _ClassVar[UsageGrouping]

class ReadinessIssue(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    READINESS_ISSUE_UNSPECIFIED: _ClassVar[ReadinessIssue]
    READINESS_ISSUE_NOT_ON_MACHINE: _ClassVar[ReadinessIssue]
    READINESS_ISSUE_LOCKED: _ClassVar[ReadinessIssue]
    READINESS_ISSUE_RETIRED: _ClassVar[ReadinessIssue]
    READINESS_ISSUE_IN_USE_ELSEWHERE: _ClassVar[ReadinessIssue]
    READINESS_ISSUE_NOT_CALIBRATED: _ClassVar[ReadinessIssue]
    READINESS_ISSUE_CALIBRATION_DUE: _ClassVar[ReadinessIssue]
    READINESS_ISSUE_INSUFFICIENT_LIFE: _ClassVar[ReadinessIssue]

class ToolEventType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    TOOL_EVENT_TYPE_UNSPECIFIED: _ClassVar[ToolEventType]
    TOOL_EVENT_TYPE_USAGE_OPENED: _ClassVar[ToolEventType]
    TOOL_EVENT_TYPE_USAGE_CLOSED: _ClassVar[ToolEventType]
    TOOL_EVENT_TYPE_MEASURED: _ClassVar[ToolEventType]
    TOOL_EVENT_TYPE_PREWARNING_REACHED: _ClassVar[ToolEventType]
    TOOL_EVENT_TYPE_LIFE_LIMIT_REACHED: _ClassVar[ToolEventType]
    TOOL_EVENT_TYPE_STATUS_CHANGED: _ClassVar[ToolEventType]
    TOOL_EVENT_TYPE_TOOL_LIFE_RESET: _ClassVar[ToolEventType]
TOOL_LIFE_LEVEL_UNSPECIFIED: ToolLifeLevel
TOOL_LIFE_LEVEL_UNLIMITED: ToolLifeLevel
TOOL_LIFE_LEVEL_OK: ToolLifeLevel
TOOL_LIFE_LEVEL_PREWARNING: ToolLifeLevel
TOOL_LIFE_LEVEL_EXPIRED: ToolLifeLevel
USAGE_GROUPING_UNSPECIFIED: UsageGrouping
USAGE_GROUPING_MACHINE: UsageGrouping
USAGE_GROUPING_PROGRAM: UsageGrouping
USAGE_GROUPING_OPERATOR: UsageGrouping
USAGE_GROUPING_TOOL_INSTANCE: UsageGrouping
USAGE_GROUPING_TOOL_ITEM: UsageGrouping
READINESS_ISSUE_UNSPECIFIED: ReadinessIssue
READINESS_ISSUE_NOT_ON_MACHINE: ReadinessIssue
READINESS_ISSUE_LOCKED: ReadinessIssue
READINESS_ISSUE_RETIRED: ReadinessIssue
READINESS_ISSUE_IN_USE_ELSEWHERE: ReadinessIssue
READINESS_ISSUE_NOT_CALIBRATED: ReadinessIssue
READINESS_ISSUE_CALIBRATION_DUE: ReadinessIssue
READINESS_ISSUE_INSUFFICIENT_LIFE: ReadinessIssue
TOOL_EVENT_TYPE_UNSPECIFIED: ToolEventType
TOOL_EVENT_TYPE_USAGE_OPENED: ToolEventType
TOOL_EVENT_TYPE_USAGE_CLOSED: ToolEventType
TOOL_EVENT_TYPE_MEASURED: ToolEventType
TOOL_EVENT_TYPE_PREWARNING_REACHED: ToolEventType
TOOL_EVENT_TYPE_LIFE_LIMIT_REACHED: ToolEventType
TOOL_EVENT_TYPE_STATUS_CHANGED: ToolEventType
TOOL_EVENT_TYPE_TOOL_LIFE_RESET: ToolEventType

class ListToolLifeRequest(_message.Message):
    __slots__ = ("machine_id", "tool_item_id", "min_level", "page_size", "page_token")
    MACHINE_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    MIN_LEVEL_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    machine_id: str
    tool_item_id: str
    min_level: ToolLifeLevel
    page_size: int
    page_token: str
    def __init__(self, machine_id: _Optional[str] = ..., tool_item_id: _Optional[str] = ..., min_level: _Optional[_Union[ToolLifeLevel, str]] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListToolLifeResponse(_message.Message):
    __slots__ = ("tool_lives", "next_page_token")
    TOOL_LIVES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    tool_lives: _containers.RepeatedCompositeFieldContainer[ToolLife]
    next_page_token: str
    def __init__(self, tool_lives: _Optional[_Iterable[_Union[ToolLife, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CounterLife(_message.Message):
    __slots__ = ("counter", "limit", "prewarning", "direction", "used", "remaining", "prewarned_at", "reached_at")
    COUNTER_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    PREWARNING_FIELD_NUMBER: _ClassVar[int]
    DIRECTION_FIELD_NUMBER: _ClassVar[int]
    USED_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FIELD_NUMBER: _ClassVar[int]
    PREWARNED_AT_FIELD_NUMBER: _ClassVar[int]
    REACHED_AT_FIELD_NUMBER: _ClassVar[int]
    counter: str
    limit: float
    prewarning: float
    direction: str
    used: float
    remaining: float
    prewarned_at: _timestamp_pb2.Timestamp
    reached_at: _timestamp_pb2.Timestamp
    def __init__(self, counter: _Optional[str] = ..., limit: _Optional[float] = ..., prewarning: _Optional[float] = ..., direction: _Optional[str] = ..., used: _Optional[float] = ..., remaining: _Optional[float] = ..., prewarned_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., reached_at: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ToolLife(_message.Message):
    __slots__ = ("tool_instance_id", "serial_number", "tool_item_id", "tool_assembly_id", "status", "level", "remaining_fraction", "counters", "machine_ids")
    TOOL_INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    SERIAL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    TOOL_ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_ASSEMBLY_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FRACTION_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    MACHINE_IDS_FIELD_NUMBER: _ClassVar[int]
    tool_instance_id: str
    serial_number: str
    tool_item_id: str
    tool_assembly_id: str
    status: _tool_instance_pb2.ToolInstanceStatus
    level: ToolLifeLevel
    remaining_fraction: float
    counters: _containers.RepeatedCompositeFieldContainer[CounterLife]
    machine_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tool_instance_id: _Optional[str] = ..., serial_number: _Optional[str] = ..., tool_item_id: _Optional[str] = ..., tool_assembly_id: _Optional[str] = ..., status: _Optional[_Union[_tool_instance_pb2.ToolInstanceStatus, str]] = ..., level: _Optional[_Union[ToolLifeLevel, str]] = ..., remaining_fraction: _Optional[float] = ..., counters: _Optional[_Iterable[_Union[CounterLife, _Mapping]]] = ..., machine_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class ListCalibrationDueRequest(_message.Message):
    __slots__ = ("due_before", "machine_id", "tool_item_id", "page_size", "page_token")
    DUE_BEFORE_FIELD_NUMBER: _ClassVar[int]
    MACHINE_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    due_before: _date_pb2.Date
    machine_id: str
    tool_item_id: str
    page_size: int
    page_token: str
    def __init__(self, due_before: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., machine_id: _Optional[str] = ..., tool_item_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class ListCalibrationDueResponse(_message.Message):
    __slots__ = ("instances", "next_page_token")
    INSTANCES_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    instances: _containers.RepeatedCompositeFieldContainer[CalibrationDue]
    next_page_token: str
    def __init__(self, instances: _Optional[_Iterable[_Union[CalibrationDue, _Mapping]]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CalibrationDue(_message.Message):
    __slots__ = ("tool_instance_id", "serial_number", "tool_item_id", "tool_assembly_id", "status", "calibration_due", "last_calibration", "machine_ids")
    TOOL_INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    SERIAL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    TOOL_ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_ASSEMBLY_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_DUE_FIELD_NUMBER: _ClassVar[int]
    LAST_CALIBRATION_FIELD_NUMBER: _ClassVar[int]
    MACHINE_IDS_FIELD_NUMBER: _ClassVar[int]
    tool_instance_id: str
    serial_number: str
    tool_item_id: str
    tool_assembly_id: str
    status: _tool_instance_pb2.ToolInstanceStatus
    calibration_due: _date_pb2.Date
    last_calibration: _timestamp_pb2.Timestamp
    machine_ids: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, tool_instance_id: _Optional[str] = ..., serial_number: _Optional[str] = ..., tool_item_id: _Optional[str] = ..., tool_assembly_id: _Optional[str] = ..., status: _Optional[_Union[_tool_instance_pb2.ToolInstanceStatus, str]] = ..., calibration_due: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., last_calibration: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., machine_ids: _Optional[_Iterable[str]] = ...) -> None: ...

class SummarizeUsageRequest(_message.Message):
    __slots__ = ("start_time", "end_time", "group_by", "machine_id", "program_name", "operator", "tool_instance_id", "page_size", "page_token")
    START_TIME_FIELD_NUMBER: _ClassVar[int]
    END_TIME_FIELD_NUMBER: _ClassVar[int]
    GROUP_BY_FIELD_NUMBER: _ClassVar[int]
    MACHINE_ID_FIELD_NUMBER: _ClassVar[int]
    PROGRAM_NAME_FIELD_NUMBER: _ClassVar[int]
    OPERATOR_FIELD_NUMBER: _ClassVar[int]
    TOOL_INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    PAGE_SIZE_FIELD_NUMBER: _ClassVar[int]
    PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    start_time: _timestamp_pb2.Timestamp
    end_time: _timestamp_pb2.Timestamp
    group_by: UsageGrouping
    machine_id: str
    program_name: str
    operator: str
    tool_instance_id: str
    page_size: int
    page_token: str
    def __init__(self, start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., end_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., group_by: _Optional[_Union[UsageGrouping, str]] = ..., machine_id: _Optional[str] = ..., program_name: _Optional[str] = ..., operator: _Optional[str] = ..., tool_instance_id: _Optional[str] = ..., page_size: _Optional[int] = ..., page_token: _Optional[str] = ...) -> None: ...

class UsageTotals(_message.Message):
    __slots__ = ("usages", "open_usages", "time_in_spindle_s", "spindle_runtime_s", "cycles", "parts", "first_start_time", "last_start_time")
    USAGES_FIELD_NUMBER: _ClassVar[int]
    OPEN_USAGES_FIELD_NUMBER: _ClassVar[int]
    TIME_IN_SPINDLE_S_FIELD_NUMBER: _ClassVar[int]
    SPINDLE_RUNTIME_S_FIELD_NUMBER: _ClassVar[int]
    CYCLES_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    FIRST_START_TIME_FIELD_NUMBER: _ClassVar[int]
    LAST_START_TIME_FIELD_NUMBER: _ClassVar[int]
    usages: int
    open_usages: int
    time_in_spindle_s: float
    spindle_runtime_s: float
    cycles: float
    parts: float
    first_start_time: _timestamp_pb2.Timestamp
    last_start_time: _timestamp_pb2.Timestamp
    def __init__(self, usages: _Optional[int] = ..., open_usages: _Optional[int] = ..., time_in_spindle_s: _Optional[float] = ..., spindle_runtime_s: _Optional[float] = ..., cycles: _Optional[float] = ..., parts: _Optional[float] = ..., first_start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., last_start_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class UsageGroup(_message.Message):
    __slots__ = ("key", "totals")
    KEY_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    key: str
    totals: UsageTotals
    def __init__(self, key: _Optional[str] = ..., totals: _Optional[_Union[UsageTotals, _Mapping]] = ...) -> None: ...

class SummarizeUsageResponse(_message.Message):
    __slots__ = ("groups", "totals", "next_page_token")
    GROUPS_FIELD_NUMBER: _ClassVar[int]
    TOTALS_FIELD_NUMBER: _ClassVar[int]
    NEXT_PAGE_TOKEN_FIELD_NUMBER: _ClassVar[int]
    groups: _containers.RepeatedCompositeFieldContainer[UsageGroup]
    totals: UsageTotals
    next_page_token: str
    def __init__(self, groups: _Optional[_Iterable[_Union[UsageGroup, _Mapping]]] = ..., totals: _Optional[_Union[UsageTotals, _Mapping]] = ..., next_page_token: _Optional[str] = ...) -> None: ...

class CheckJobReadinessRequest(_message.Message):
    __slots__ = ("tool_set_id", "machine_id", "parts", "minutes", "max_replacements", "on_date")
    TOOL_SET_ID_FIELD_NUMBER: _ClassVar[int]
    MACHINE_ID_FIELD_NUMBER: _ClassVar[int]
    PARTS_FIELD_NUMBER: _ClassVar[int]
    MINUTES_FIELD_NUMBER: _ClassVar[int]
    MAX_REPLACEMENTS_FIELD_NUMBER: _ClassVar[int]
    ON_DATE_FIELD_NUMBER: _ClassVar[int]
    tool_set_id: str
    machine_id: str
    parts: float
    minutes: float
    max_replacements: int
    on_date: _date_pb2.Date
    def __init__(self, tool_set_id: _Optional[str] = ..., machine_id: _Optional[str] = ..., parts: _Optional[float] = ..., minutes: _Optional[float] = ..., max_replacements: _Optional[int] = ..., on_date: _Optional[_Union[_date_pb2.Date, _Mapping]] = ...) -> None: ...

class ReadinessProblem(_message.Message):
    __slots__ = ("issue", "message")
    ISSUE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    issue: ReadinessIssue
    message: str
    def __init__(self, issue: _Optional[_Union[ReadinessIssue, str]] = ..., message: _Optional[str] = ...) -> None: ...

class Replacement(_message.Message):
    __slots__ = ("tool_instance_id", "serial_number", "remaining_fraction", "calibration_due", "on_machine")
    TOOL_INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    SERIAL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FRACTION_FIELD_NUMBER: _ClassVar[int]
    CALIBRATION_DUE_FIELD_NUMBER: _ClassVar[int]
    ON_MACHINE_FIELD_NUMBER: _ClassVar[int]
    tool_instance_id: str
    serial_number: str
    remaining_fraction: float
    calibration_due: _date_pb2.Date
    on_machine: bool
    def __init__(self, tool_instance_id: _Optional[str] = ..., serial_number: _Optional[str] = ..., remaining_fraction: _Optional[float] = ..., calibration_due: _Optional[_Union[_date_pb2.Date, _Mapping]] = ..., on_machine: _Optional[bool] = ...) -> None: ...

class ToolReadiness(_message.Message):
    __slots__ = ("tool_instance_id", "serial_number", "tool_item_id", "tool_assembly_id", "tool_preset_id", "status", "ready", "problems", "replacements", "remaining_fraction")
    TOOL_INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    SERIAL_NUMBER_FIELD_NUMBER: _ClassVar[int]
    TOOL_ITEM_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_ASSEMBLY_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_PRESET_ID_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    READY_FIELD_NUMBER: _ClassVar[int]
    PROBLEMS_FIELD_NUMBER: _ClassVar[int]
    REPLACEMENTS_FIELD_NUMBER: _ClassVar[int]
    REMAINING_FRACTION_FIELD_NUMBER: _ClassVar[int]
    tool_instance_id: str
    serial_number: str
    tool_item_id: str
    tool_assembly_id: str
    tool_preset_id: str
    status: _tool_instance_pb2.ToolInstanceStatus
    ready: bool
    problems: _containers.RepeatedCompositeFieldContainer[ReadinessProblem]
    replacements: _containers.RepeatedCompositeFieldContainer[Replacement]
    remaining_fraction: float
    def __init__(self, tool_instance_id: _Optional[str] = ..., serial_number: _Optional[str] = ..., tool_item_id: _Optional[str] = ..., tool_assembly_id: _Optional[str] = ..., tool_preset_id: _Optional[str] = ..., status: _Optional[_Union[_tool_instance_pb2.ToolInstanceStatus, str]] = ..., ready: _Optional[bool] = ..., problems: _Optional[_Iterable[_Union[ReadinessProblem, _Mapping]]] = ..., replacements: _Optional[_Iterable[_Union[Replacement, _Mapping]]] = ..., remaining_fraction: _Optional[float] = ...) -> None: ...

class CheckJobReadinessResponse(_message.Message):
    __slots__ = ("ready", "tools")
    READY_FIELD_NUMBER: _ClassVar[int]
    TOOLS_FIELD_NUMBER: _ClassVar[int]
    ready: bool
    tools: _containers.RepeatedCompositeFieldContainer[ToolReadiness]
    def __init__(self, ready: _Optional[bool] = ..., tools: _Optional[_Iterable[_Union[ToolReadiness, _Mapping]]] = ...) -> None: ...

class WatchChangesRequest(_message.Message):
    __slots__ = ("entity_types", "machine_id", "tool_instance_id", "cursor", "bookmark_interval")
    ENTITY_TYPES_FIELD_NUMBER: _ClassVar[int]
    MACHINE_ID_FIELD_NUMBER: _ClassVar[int]
    TOOL_INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    BOOKMARK_INTERVAL_FIELD_NUMBER: _ClassVar[int]
    entity_types: _containers.RepeatedScalarFieldContainer[str]
    machine_id: str
    tool_instance_id: str
    cursor: str
    bookmark_interval: _duration_pb2.Duration
    def __init__(self, entity_types: _Optional[_Iterable[str]] = ..., machine_id: _Optional[str] = ..., tool_instance_id: _Optional[str] = ..., cursor: _Optional[str] = ..., bookmark_interval: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class ToolEvent(_message.Message):
    __slots__ = ("type", "tool_instance_id", "machine_id", "from_status", "to_status", "reason", "counters")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    TOOL_INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    MACHINE_ID_FIELD_NUMBER: _ClassVar[int]
    FROM_STATUS_FIELD_NUMBER: _ClassVar[int]
    TO_STATUS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    COUNTERS_FIELD_NUMBER: _ClassVar[int]
    type: ToolEventType
    tool_instance_id: str
    machine_id: str
    from_status: _tool_instance_pb2.ToolInstanceStatus
    to_status: _tool_instance_pb2.ToolInstanceStatus
    reason: str
    counters: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, type: _Optional[_Union[ToolEventType, str]] = ..., tool_instance_id: _Optional[str] = ..., machine_id: _Optional[str] = ..., from_status: _Optional[_Union[_tool_instance_pb2.ToolInstanceStatus, str]] = ..., to_status: _Optional[_Union[_tool_instance_pb2.ToolInstanceStatus, str]] = ..., reason: _Optional[str] = ..., counters: _Optional[_Iterable[str]] = ...) -> None: ...

class ChangeEvent(_message.Message):
    __slots__ = ("sequence", "entity_type", "entity_id", "version", "operation", "change_time", "actor_id", "request_id", "entity", "events", "cursor")
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    ENTITY_TYPE_FIELD_NUMBER: _ClassVar[int]
    ENTITY_ID_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    OPERATION_FIELD_NUMBER: _ClassVar[int]
    CHANGE_TIME_FIELD_NUMBER: _ClassVar[int]
    ACTOR_ID_FIELD_NUMBER: _ClassVar[int]
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    ENTITY_FIELD_NUMBER: _ClassVar[int]
    EVENTS_FIELD_NUMBER: _ClassVar[int]
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    entity_type: str
    entity_id: str
    version: int
    operation: _common_pb2.ChangeOperation
    change_time: _timestamp_pb2.Timestamp
    actor_id: str
    request_id: str
    entity: _struct_pb2.Struct
    events: _containers.RepeatedCompositeFieldContainer[ToolEvent]
    cursor: str
    def __init__(self, sequence: _Optional[int] = ..., entity_type: _Optional[str] = ..., entity_id: _Optional[str] = ..., version: _Optional[int] = ..., operation: _Optional[_Union[_common_pb2.ChangeOperation, str]] = ..., change_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., actor_id: _Optional[str] = ..., request_id: _Optional[str] = ..., entity: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ..., events: _Optional[_Iterable[_Union[ToolEvent, _Mapping]]] = ..., cursor: _Optional[str] = ...) -> None: ...

class Bookmark(_message.Message):
    __slots__ = ("sequence",)
    SEQUENCE_FIELD_NUMBER: _ClassVar[int]
    sequence: int
    def __init__(self, sequence: _Optional[int] = ...) -> None: ...

class WatchChangesResponse(_message.Message):
    __slots__ = ("cursor", "changes", "bookmark")
    CURSOR_FIELD_NUMBER: _ClassVar[int]
    CHANGES_FIELD_NUMBER: _ClassVar[int]
    BOOKMARK_FIELD_NUMBER: _ClassVar[int]
    cursor: str
    changes: _containers.RepeatedCompositeFieldContainer[ChangeEvent]
    bookmark: Bookmark
    def __init__(self, cursor: _Optional[str] = ..., changes: _Optional[_Iterable[_Union[ChangeEvent, _Mapping]]] = ..., bookmark: _Optional[_Union[Bookmark, _Mapping]] = ...) -> None: ...
