"""One rulebook for every writer: for every rule the API enforces, the same bad entity sent through the API
and through PushChanges is refused with the same reason, and the push rejects that change alone (the valid
changes around it in the same batch are applied). Real central on PostgreSQL, real gRPC."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import grpc
import pytest
from conftest import Edge, expect_failure
from google.protobuf import field_mask_pb2
from pushing import central, new_item, push_between_valid, wire
from smooth.core.v1 import common_pb2

from server.api.mapping import to_proto
from server.api.services import PROTO_MODULES
from server.domain.entities import (
    ToolAssembly,
    ToolInstance,
    ToolItem,
    ToolPreset,
    ToolType,
    ToolUsage,
    User,
    UserRole,
    Versioned,
)
from server.domain.registry import KIND_BY_CLASS
from server.usecases.entities import utc_now

pytestmark = pytest.mark.postgres
__all__ = ["central"]  # the module's fixture


async def create_through_api(central: Edge, entity: Versioned) -> Any:
    kind = KIND_BY_CLASS[type(entity)]
    module = PROTO_MODULES[kind.name]
    message = to_proto(dataclasses.replace(entity, id=uuid.uuid4()), getattr(module, kind.label))
    grpc_module = __import__(f"smooth.core.v1.{kind.name}_pb2_grpc", fromlist=["x"])
    stub = getattr(grpc_module, f"{kind.label}ServiceStub")(central.channel)
    request = getattr(module, f"Create{kind.label}Request")(**{kind.name: message})
    return await getattr(stub, f"Create{kind.label}")(request)


def _instance(item_id: uuid.UUID, serial: str) -> ToolInstance:
    now = utc_now()
    return ToolInstance(
        id=uuid.uuid4(), tool_item_id=item_id, serial_number=serial, created_at=now, updated_at=now, version=1
    )


async def blank_name(central: Edge) -> Versioned:
    return dataclasses.replace(new_item(), name="   ")


async def serial_taken(central: Edge) -> Versioned:
    existing = await central.make.instance()
    return _instance(uuid.UUID(existing.tool_item_id), existing.serial_number)


async def tool_number_taken(central: Edge) -> Versioned:
    existing = await central.make.preset()
    instance = await central.make.instance()
    now = utc_now()
    return ToolPreset(
        id=uuid.uuid4(),
        name="second tool under the same T number",
        tool_instance_id=uuid.UUID(instance.id),
        machine_id=existing.machine_id,
        parameters={"tool_number": int(existing.parameters["tool_number"])},
        created_at=now,
        updated_at=now,
        version=1,
    )


async def calibration_interval_too_long(central: Edge) -> Versioned:
    # A rule of the rulebook's own (not a field rule of check_entity), on a kind central applies in bulk: the bulk
    # path skips check_entity for what it validated while parsing, never the rulebook's own checks.
    return dataclasses.replace(new_item(), calibration_interval_days=36501)


async def holder_that_is_no_holder(central: Edge) -> Versioned:
    mill = await central.make.item()
    now = utc_now()
    return ToolAssembly(
        id=uuid.uuid4(), name="bad holder", holder_id=uuid.UUID(mill.id), created_at=now, updated_at=now, version=1
    )


async def cutter_that_is_a_holder(central: Edge) -> Versioned:
    holder = await central.make.holder()
    now = utc_now()
    return ToolAssembly(
        id=uuid.uuid4(), name="bad cutter", cutter_id=uuid.UUID(holder.id), created_at=now, updated_at=now, version=1
    )


async def missing_reference(central: Edge) -> Versioned:
    return _instance(uuid.uuid4(), f"SN-{uuid.uuid4().hex[:8]}")


async def email_differing_in_case(central: Edge) -> Versioned:
    user, _, _ = await central.use_cases.api_keys.bootstrap(
        email=f"case-{uuid.uuid4().hex[:6]}@shop.example", role=UserRole.VIEWER
    )
    now = utc_now()
    return User(id=uuid.uuid4(), email=user.email.upper(), created_at=now, updated_at=now, version=1)


async def usage_ending_before_it_starts(central: Edge) -> Versioned:
    instance = await central.make.instance()
    now = utc_now()
    return ToolUsage(
        id=uuid.uuid4(),
        tool_instance_id=uuid.UUID(instance.id),
        start_time=now,
        end_time=now - timedelta(minutes=1),
        created_at=now,
        updated_at=now,
        version=1,
    )


CREATE_CASES: dict[str, Callable[[Edge], Awaitable[Versioned]]] = {
    "required text blank": blank_name,
    "calibration interval over 100 years": calibration_interval_too_long,
    "serial number taken": serial_taken,
    "T number taken on the machine": tool_number_taken,
    "holder is not a HOLDER": holder_that_is_no_holder,
    "cutter is a HOLDER": cutter_that_is_a_holder,
    "reference to a missing entity": missing_reference,
    "e-mail differing only in case": email_differing_in_case,
    "usage ends before it starts": usage_ending_before_it_starts,
}


@pytest.mark.parametrize("case", sorted(CREATE_CASES))
async def test_a_bad_create_is_refused_alike_by_the_api_and_by_a_push(central: Edge, case: str) -> None:
    entity = await CREATE_CASES[case](central)
    api = await expect_failure(create_through_api(central, entity))
    response = await push_between_valid(central, wire(0, entity))
    assert response.rejected[0].reason == f"{api.reason}: {api.message}"
    async with central.store.read() as tx:
        assert await tx.get(KIND_BY_CLASS[type(entity)], entity.id) is None


async def test_a_holder_in_use_cannot_change_type_through_the_api_or_a_push(central: Edge) -> None:
    holder = await central.make.holder()
    await central.make.assembly(holder_id=holder.id)
    api = await expect_failure(
        central.stubs.items.UpdateToolItem(
            PROTO_MODULES["tool_item"].UpdateToolItemRequest(
                tool_item=PROTO_MODULES["tool_item"].ToolItem(
                    id=holder.id, version=holder.version, tool_type=PROTO_MODULES["tool_item"].TOOL_TYPE_OTHER
                ),
                update_mask=field_mask_pb2.FieldMask(paths=["tool_type"]),
            )
        )
    )
    assert api.code == grpc.StatusCode.FAILED_PRECONDITION and api.reason == "ROLE_IN_USE"
    async with central.store.read() as tx:
        stored = await tx.get(KIND_BY_CLASS[ToolItem], uuid.UUID(holder.id))
    assert isinstance(stored, ToolItem)
    drill = dataclasses.replace(stored, tool_type=ToolType.OTHER, version=stored.version + 1)
    response = await push_between_valid(central, wire(0, drill, common_pb2.CHANGE_OPERATION_UPDATE))
    assert response.rejected[0].reason == f"{api.reason}: {api.message}"
    async with central.store.read() as tx:
        after = await tx.get(KIND_BY_CLASS[ToolItem], uuid.UUID(holder.id))
    assert isinstance(after, ToolItem) and after.tool_type == ToolType.HOLDER
