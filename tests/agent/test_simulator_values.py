"""The simulator's server keeps each monitored item's value through fast_values.copied: equal to what was written,
sharing nothing mutable with it; values that are not all-immutable scalars are still deep-copied. And a real
subscription still gets every value change (asyncua client against the simulator's asyncua server)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

from asyncua import Client, ua
from asyncua.server.monitored_item_service import MonitoredItemValues
from conftest import free_port

from agent.simulator import fast_values, server  # server installs fast_values
from agent.simulator.server import CNC_NS, CncSimulator, SimMachine
from agent.simulator.timeline import Step

NOW = datetime(2026, 12, 2, 8, 0, 0, 123456, tzinfo=UTC)


def test_installed_with_the_simulator() -> None:
    assert server.fast_values is fast_values
    assert MonitoredItemValues.set_current_datavalue is fast_values._set_current_datavalue


def test_a_scalar_value_is_copied_field_for_field() -> None:
    for scalar, vtype in ((7, ua.VariantType.Int32), (2.5, ua.VariantType.Double), ("T7", ua.VariantType.String),
                          (True, ua.VariantType.Boolean), (NOW, ua.VariantType.DateTime), (b"\x01", ua.VariantType.ByteString)):  # fmt: skip
        written = ua.DataValue(
            ua.Variant(scalar, vtype), StatusCode=ua.StatusCode(ua.StatusCodes.Good), SourceTimestamp=NOW,
            ServerTimestamp=NOW, SourcePicoseconds=5,
        )  # fmt: skip
        values = MonitoredItemValues()
        values.set_current_datavalue(written)
        kept = values.get_current_datavalue()
        assert kept == written
        assert kept is not written and kept.Value is not written.Value and kept.StatusCode is not written.StatusCode
        written.Value.Value = "changed in place"  # what the copy protects against
        written.StatusCode.value = ua.StatusCodes.Bad
        assert kept.Value.Value == scalar and kept.StatusCode.is_good()


def test_an_array_is_still_deep_copied_and_the_old_value_kept() -> None:
    values = MonitoredItemValues()
    first = ua.DataValue(ua.Variant(1, ua.VariantType.Int32))
    values.set_current_datavalue(first)
    array = ua.DataValue(ua.Variant([1, 2, 3], ua.VariantType.Int32))
    values.set_current_datavalue(array)
    array.Value.Value.append(4)
    assert values.get_current_datavalue().Value.Value == [1, 2, 3]
    assert values.get_old_datavalue() == first


async def test_a_subscription_sees_every_change_the_simulator_writes() -> None:
    endpoint = f"opc.tcp://127.0.0.1:{free_port()}/values-sim/"
    async with CncSimulator([SimMachine("M1", "cnc", [])], endpoint) as sim, Client(endpoint) as client:
        ns = await client.get_namespace_index(CNC_NS)
        seen: list[object] = []
        arrived: asyncio.Queue[object] = asyncio.Queue()

        class Handler:
            def datachange_notification(self, node: object, val: object, data: object) -> None:
                seen.append(val)
                arrived.put_nowait(val)

        tool = await client.nodes.objects.get_child(
            [f"{ns}:CncInterface", f"{ns}:CncChannelList", f"{ns}:Channel1", f"{ns}:ToolId"]
        )
        subscription = await client.create_subscription(20, Handler())
        await subscription.subscribe_data_change(tool)
        for number in (3, 4, 5):
            await sim.apply("M1", Step(at_s=0.0, tool=number))
            value: object = None
            while value != number:  # each change is seen before the next is written
                value = await asyncio.wait_for(arrived.get(), 10)
        await subscription.delete()
    assert seen == [0, 3, 4, 5]
