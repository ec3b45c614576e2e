"""JSON field checks: schema rules, human messages with dotted paths, and the cross-field rules."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from importlib.resources import files
from typing import Any

import pytest
from google.protobuf import struct_pb2

from server.domain.errors import FieldViolation
from server.validation.json_fields import (
    SCHEMA_FILES,
    TOOL_TYPES,
    check_assembly_data,
    check_geometry,
    check_measurements,
    check_parameters,
    check_usage_metrics,
    check_wear_measurements,
)

Check = Callable[[Mapping[str, Any]], list[FieldViolation]]

REQUIRED: dict[str, dict[str, Any]] = {
    "DRILL": {"DC": 8.5, "SIG": 140, "OAL": 103},
    "END_MILL": {"DC": 10, "NOF": 4, "OAL": 72},
    "BALL_END_MILL": {"DC": 6, "NOF": 2, "RE": 3},
    "FACE_MILL": {"DC": 63, "ZEFP": 5, "KAPR": 45},
    "REAMER": {"DC": 12, "NOF": 6},
    "TAP": {"TD": 8, "TP": 1.25},
    "THREAD_MILL": {"TD": 10, "TP": 1.5},
    "TURNING_INSERT": {"IC": 12.7, "RE": 0.8, "S": 4.76},
    "BORING_BAR": {"DC": 16},
    "HOLDER": {"CCMS": "HSK63A"},
    "OTHER": {},
}
FULL_END_MILL: dict[str, Any] = {
    **REQUIRED["END_MILL"],
    **{"APMX": 22, "LF": 40, "LU": 35, "RE": 0.5, "DMM": 10, "KAPR": 90, "WT": 48.5, "CCMS": "HA10"},
    **{"x-coating": "AlTiN", "x-regrinds": 2, "x-coolant-through": True},
}
MEASURED: dict[str, Any] = {
    "LF": {"value": 120.012, "nominal": 120.0, "min": 119.98, "max": 120.02},
    "DC": {"value": 10.004},
    "NOF": {"value": 4.0},
    "RUNOUT_RADIAL": {"value": 0.003, "max": 0.005},
    "measured_at": "2024-05-01T08:30:00.25+02:00",
    "station_id": "ZOLLER-1",
    "operator": "anna",
    "measurement_id": "m-0001",
    "x-program": "P42",
}


def fields(violations: list[FieldViolation]) -> list[str]:
    return [violation.field for violation in violations]


def test_tool_types_each_have_a_required_set_in_the_geometry_schema() -> None:
    geometry = json.loads(files("server.validation").joinpath("schemas", SCHEMA_FILES["geometry"]).read_text())
    assert set(geometry["$defs"]) == set(TOOL_TYPES) == set(REQUIRED)


@pytest.mark.parametrize("tool_type", TOOL_TYPES)
def test_required_set_of_each_tool_type_is_valid(tool_type: str) -> None:
    assert check_geometry(tool_type, REQUIRED[tool_type]) == []


def test_full_geometry_and_protobuf_struct_input_pass() -> None:
    assert check_geometry("END_MILL", FULL_END_MILL) == []
    struct = struct_pb2.Struct()
    struct.update(FULL_END_MILL)  # every number becomes a float, NOF included
    assert check_geometry("END_MILL", struct) == []


@pytest.mark.parametrize(
    ("tool_type", "symbol"), [(tool_type, symbol) for tool_type, req in REQUIRED.items() for symbol in req]
)
def test_missing_required_symbol_is_named(tool_type: str, symbol: str) -> None:
    geometry = {key: value for key, value in REQUIRED[tool_type].items() if key != symbol}
    [violation] = check_geometry(tool_type, geometry)
    assert violation.field == f"geometry.{symbol}"
    assert violation.description.startswith(f"required for tool_type {tool_type} (")


def test_unknown_tool_type_is_one_violation() -> None:
    [violation] = check_geometry("SAW", {"DC": 100})
    assert violation.field == "tool_type" and "DRILL" in violation.description


@pytest.mark.parametrize(
    ("patch", "field", "says"),
    [
        ({"DC": "10"}, "geometry.DC", "> 0 (mm)"),
        ({"OAL": -72}, "geometry.OAL", "> 0 (mm)"),
        ({"DC": 0}, "geometry.DC", "> 0 (mm)"),
        ({"KAPR": 190}, "geometry.KAPR", "0 to 180 (deg)"),
        ({"NOF": 4.5}, "geometry.NOF", "whole number"),
        ({"NOF": True}, "geometry.NOF", "whole number"),
        ({"CCMS": "H" * 65}, "geometry.CCMS", "64"),
        ({"DC": float("nan")}, "geometry.DC", "> 0 (mm)"),
        ({"FOO": 1}, "geometry.FOO", "unknown key 'FOO'; allowed: DC, APMX"),
        ({"x-Coating": "TiN"}, "geometry.x-Coating", "bad extension key"),
        ({"x_coating": "TiN"}, "geometry.x_coating", "unknown key"),
        ({"x-coating": ["TiN"]}, "geometry.x-coating", "string (<= 256 chars), number or boolean"),
        ({"x-coating": "T" * 257}, "geometry.x-coating", "string (<= 256 chars)"),
        ({"unit": "inch"}, "geometry.unit", "units are not stored"),
    ],
)
def test_bad_geometry_value(patch: dict[str, Any], field: str, says: str) -> None:
    [violation] = check_geometry("END_MILL", {**REQUIRED["END_MILL"], **patch})
    assert violation.field == field and says in violation.description


@pytest.mark.parametrize(
    ("tool_type", "geometry", "field", "says"),
    [
        ("END_MILL", {"RE": 5.5}, "geometry.RE", "must be <= DC/2"),
        ("BALL_END_MILL", {"RE": 2.5}, "geometry.RE", "must equal DC/2"),
        ("BALL_END_MILL", {"RE": 3.5}, "geometry.RE", "must equal DC/2"),
        ("END_MILL", {"LU": 80}, "geometry.LU", "must be <= OAL"),
        ("END_MILL", {"LF": 72.1}, "geometry.LF", "must be <= OAL"),
        ("END_MILL", {"LF": 30, "APMX": 31}, "geometry.APMX", "must be <= LF"),
    ],
)
def test_cross_field_rule(tool_type: str, geometry: dict[str, Any], field: str, says: str) -> None:
    [violation] = check_geometry(tool_type, {**REQUIRED[tool_type], **geometry})
    assert violation.field == field and says in violation.description


def test_cross_field_rules_allow_equality_and_float_noise() -> None:
    assert check_geometry("BALL_END_MILL", {"DC": 6, "NOF": 2.0, "RE": 3.0000001}) == []
    assert check_geometry("END_MILL", {"DC": 10, "NOF": 4, "OAL": 72, "LF": 72, "LU": 72, "APMX": 72, "RE": 5}) == []


def test_cross_field_rule_skips_values_the_schema_refused() -> None:
    assert fields(check_geometry("END_MILL", {"DC": -10, "NOF": 4, "OAL": 72, "RE": 1})) == ["geometry.DC"]


@pytest.mark.parametrize(
    ("check", "field"),
    [
        (lambda value: check_geometry("OTHER", value), "geometry"),
        (lambda value: check_measurements(None, value), "measurements"),
        (check_parameters, "parameters"),
        (check_usage_metrics, "usage_metrics"),
        (check_wear_measurements, "wear_measurements"),
        (check_assembly_data, "assembly_data"),
    ],
)
def test_non_object_input_is_one_violation_on_the_field(check: Check, field: str) -> None:
    [violation] = check([{"DC": 1}])  # type: ignore[arg-type]
    assert violation.field == field and violation.description.startswith("must be an object")


def test_valid_measurement_passes_for_any_tool_type() -> None:
    assert check_measurements(None, MEASURED) == []
    assert check_measurements("TAP", MEASURED) == []  # presetters measure what they measure
    assert check_measurements("END_MILL", {"LF": {"value": 121, "min": 119.98, "max": 120.02}}) == []


@pytest.mark.parametrize(
    ("measurements", "field", "says"),
    [
        ({"LF": {"value": 120, "min": 120.02, "max": 119.98}}, "measurements.LF.max", "must be >= min"),
        ({"LF": {"nominal": 120}}, "measurements.LF.value", "required"),
        ({"LF": {"value": -1}}, "measurements.LF.value", "> 0 (mm)"),
        ({"LF": {"value": 120, "tol": 0.1}}, "measurements.LF.tol", "allowed: value, nominal, min, max"),
        ({"LF": 120}, "measurements.LF", "{value, nominal?, min?, max?}"),
        ({"NOF": {"value": 3.5}}, "measurements.NOF.value", "whole number"),
        ({"RUNOUT_AXIAL": {"value": -0.001}}, "measurements.RUNOUT_AXIAL.value", ">= 0 (mm)"),
        ({"CCMS": {"value": 1}}, "measurements.CCMS", "unknown key"),
        ({"unit": "inch"}, "measurements.unit", "units are not stored"),
        ({"units": "mm"}, "measurements.units", "units are not stored"),
        ({"unit_system": "METRIC"}, "measurements.unit_system", "units are not stored"),
        ({"LF": {"value": 4.7, "unit": "in"}}, "measurements.LF.unit", "units are not stored"),
        ({"station_id": "S" * 101}, "measurements.station_id", "<= 100"),
        ({"x-Bad": 1}, "measurements.x-Bad", "bad extension key"),
    ],
)
def test_bad_measurement(measurements: dict[str, Any], field: str, says: str) -> None:
    [violation] = check_measurements("END_MILL", measurements)
    assert violation.field == field and says in violation.description


@pytest.mark.parametrize(
    "measured_at",
    [
        "yesterday",
        "2024-05-01",
        "2024-05-01T08:30:00",
        "2024-02-30T08:30:00Z",
        "2024-05-01T25:00:00Z",
        20240501,
    ],
)
def test_bad_measured_at(measured_at: object) -> None:
    [violation] = check_measurements(None, {"measured_at": measured_at})
    assert violation.field == "measurements.measured_at" and "RFC 3339" in violation.description


@pytest.mark.parametrize(
    "measured_at", ["2024-05-01T08:30:00Z", "2024-05-01t08:30:00.123456789z", "2024-05-01T08:30:00-05:00"]
)
def test_good_measured_at(measured_at: str) -> None:
    assert check_measurements(None, {"measured_at": measured_at}) == []


def test_unknown_tool_type_in_measurements() -> None:
    assert fields(check_measurements("SAW", MEASURED)) == ["tool_type"]


LIFE = {"type": "MINUTES", "direction": "UP", "initial": 0, "warning": 50, "limit": 60}
PARAMETERS: dict[str, Any] = {
    "tool_number": 12.0,
    "pocket": 3,
    "spindle": "S1",
    "channel": "1",
    "tool_life": LIFE,
}
PARAMETERS |= {"length_offset": -0.5, "radius_offset": 5.0, "length_wear": 0.01, "radius_wear": -0.01}
PARAMETERS |= {"h_number": 12, "d_number": 12, "cutting_edge": 1, "max_speed_rpm": 12000}
USAGE: dict[str, Any] = {"time_in_spindle_s": 300, "spindle_runtime_s": 300.0000001, "cutting_time_s": 200}
USAGE |= {
    "cycles": 4.0,
    "parts": 4,
    "programs": ["O1000", "O2000"],
    "max_speed_rpm": 9000,
    "interrupted": False,
}
USAGE |= {"source": "COLLECTOR", "tool_number": 7}
WEAR: dict[str, Any] = {"before": {"DC": 10.0, "RE": 0.5}, "after": {"DC": 9.98, "RE": 0.45}, "VB": 0.12}
WEAR |= {"VB_max": 0.2, "KT": 0.05, "notes": "chipping on edge 2"}
ASSEMBLY: dict[str, Any] = {"gauge_length": 150.0, "stick_out": 45.0, "assembled_at": "2024-05-01T07:00:00Z"}
ASSEMBLY |= {"collet": "ER32", "clamping_torque_nm": 80, "balance_grade": "G2.5", "max_speed_rpm": 20000}
ASSEMBLY |= {"coolant": "MQL"}
CHECKS: dict[str, Check] = {
    "parameters": check_parameters,
    "usage_metrics": check_usage_metrics,
    "wear_measurements": check_wear_measurements,
    "assembly_data": check_assembly_data,
}


@pytest.mark.parametrize(
    ("field", "example"),
    [
        ("parameters", PARAMETERS),
        ("usage_metrics", USAGE),
        ("wear_measurements", WEAR),
        ("assembly_data", ASSEMBLY),
    ],
)
def test_full_example_passes(field: str, example: dict[str, Any]) -> None:
    assert CHECKS[field]({**example, "x-note": "kept as is"}) == []


@pytest.mark.parametrize(
    ("field", "data", "expected"),
    [
        ("parameters", {"tool_number": 12.5, "pocket": -1}, {"tool_number", "pocket"}),
        (
            "parameters",
            {"cutting_edge": 0, "max_speed_rpm": 0, "x": 1},
            {"cutting_edge", "max_speed_rpm", "x"},
        ),
        ("parameters", {"tool_number": 0, "h_number": 1.5}, {"tool_number", "h_number"}),
        ("parameters", {"tool_number": 100000.0, "spindle": "S" * 33}, {"tool_number", "spindle"}),
        (
            "parameters",
            {"tool_life": {"type": "KM"}},
            {"tool_life.type", "tool_life.direction", "tool_life.limit"},
        ),
        (
            "parameters",
            {"tool_life": {**LIFE, "limit": 0, "warning": -1}},
            {"tool_life.limit", "tool_life.warning"},
        ),
        (
            "usage_metrics",
            {"programs": [1], "cycles": 1.5, "source": "X"},
            {"programs.0", "cycles", "source"},
        ),
        ("usage_metrics", {"programs": ["O1"] * 101, "interrupted": "yes"}, {"programs", "interrupted"}),
        ("usage_metrics", {"time_in_spindle_s": 100, "spindle_runtime_s": 120}, {"spindle_runtime_s"}),
        (
            "wear_measurements",
            {"before": {"DC": {"value": 10}}, "after": {"FOO": 1}},
            {"before.DC", "after.FOO"},
        ),
        ("wear_measurements", {"VB": -0.1, "KT": "deep", "notes": "n" * 1001}, {"VB", "KT", "notes"}),
        ("assembly_data", {"gauge_length": 0, "coolant": "WATER"}, {"gauge_length", "coolant"}),
        ("assembly_data", {"collet": "C" * 101, "balance_grade": "G" * 17}, {"collet", "balance_grade"}),
        ("assembly_data", {"assembled_at": "2024-05-01 07:00", "units": "inch"}, {"assembled_at", "units"}),
    ],
)
def test_bad_values_are_all_reported(field: str, data: dict[str, Any], expected: set[str]) -> None:
    assert set(fields(CHECKS[field](data))) == {f"{field}.{path}" for path in expected}


def test_spindle_runtime_rule_says_why() -> None:
    [violation] = check_usage_metrics({"time_in_spindle_s": 100, "spindle_runtime_s": 120})
    assert violation.description == "must be <= time_in_spindle_s (120 > 100)"
