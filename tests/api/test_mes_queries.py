"""MES queries (issue 13) through the real gRPC API on SQLite and PostgreSQL: remaining tool life and "at or past
prewarning" by machine and by tool item, calibration due before a date, usage totals per grouping checked
against the usages written here, and job readiness with every reason a tool can be missing and its
replacements."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from typing import Any

import grpc
from conftest import Edge, expect_failure, struct
from google.protobuf import field_mask_pb2, timestamp_pb2
from google.type import date_pb2
from smooth.core.v1 import mes_pb2, mes_pb2_grpc
from smooth.core.v1 import tool_instance_pb2 as inst_pb
from smooth.core.v1 import tool_item_pb2 as item_pb

from server.domain.entities import UserRole

T0 = datetime(2026, 11, 2, 6, 0, tzinfo=UTC)
TODAY = date(2026, 12, 1)


def ts(at: datetime) -> timestamp_pb2.Timestamp:
    out = timestamp_pb2.Timestamp()
    out.FromDatetime(at)
    return out


def day(d: date) -> date_pb2.Date:
    return date_pb2.Date(year=d.year, month=d.month, day=d.day)


def machine() -> str:
    return f"M-{uuid.uuid4().hex[:8]}"


def queries(edge: Edge) -> mes_pb2_grpc.ToolQueryServiceStub:
    return mes_pb2_grpc.ToolQueryServiceStub(edge.channel)


async def closed_usage(edge: Edge, instance_id: str, at: datetime, **fields: Any) -> None:
    metrics = fields.pop("metrics", {"parts": 1})
    await edge.make.usage(
        tool_instance_id=instance_id,
        start_time=ts(at),
        end_time=ts(at + timedelta(minutes=5)),
        usage_metrics=struct(metrics),
        **fields,
    )


async def test_tool_life_least_first_by_machine_and_by_item_with_pages(edge: Edge) -> None:
    item = await edge.make.item(tool_life=struct({"parts": {"limit": 100, "prewarning": 80}}))
    a = await edge.make.instance(tool_item_id=item.id)
    b = await edge.make.instance(tool_item_id=item.id)
    c = await edge.make.instance(tool_item_id=item.id)
    unlimited = await edge.make.instance()
    mill = machine()
    for instance in (a, b, unlimited):
        await edge.make.preset(tool_instance_id=instance.id, machine_id=mill)
    await closed_usage(edge, a.id, T0, metrics={"parts": 85})
    await closed_usage(edge, b.id, T0, metrics={"parts": 20})
    await closed_usage(edge, c.id, T0, metrics={"parts": 100})
    q = queries(edge)

    on_mill = await q.ListToolLife(mes_pb2.ListToolLifeRequest(machine_id=mill))
    assert [t.tool_instance_id for t in on_mill.tool_lives] == [a.id, b.id]  # least life first; unlimited left out
    first = on_mill.tool_lives[0]
    assert first.level == mes_pb2.TOOL_LIFE_LEVEL_PREWARNING
    assert first.remaining_fraction == 0.15 and first.machine_ids == [mill]
    (parts,) = first.counters
    assert (parts.counter, parts.limit, parts.prewarning, parts.used, parts.remaining) == ("parts", 100, 80, 85, 15)
    assert parts.direction == "UP" and parts.HasField("prewarned_at") and not parts.HasField("reached_at")
    assert on_mill.tool_lives[1].level == mes_pb2.TOOL_LIFE_LEVEL_OK

    everything = await q.ListToolLife(
        mes_pb2.ListToolLifeRequest(machine_id=mill, min_level=mes_pb2.TOOL_LIFE_LEVEL_UNLIMITED)
    )
    assert [t.tool_instance_id for t in everything.tool_lives] == [a.id, b.id, unlimited.id]
    assert everything.tool_lives[2].level == mes_pb2.TOOL_LIFE_LEVEL_UNLIMITED

    # "At or past prewarning" of one tool item, a page at a time.
    seen, token = [], ""
    while True:
        page = await q.ListToolLife(
            mes_pb2.ListToolLifeRequest(
                tool_item_id=item.id, min_level=mes_pb2.TOOL_LIFE_LEVEL_PREWARNING, page_size=1, page_token=token
            )
        )
        seen += [(t.tool_instance_id, t.level) for t in page.tool_lives]
        token = page.next_page_token
        if not token:
            break
    assert seen == [(c.id, mes_pb2.TOOL_LIFE_LEVEL_EXPIRED), (a.id, mes_pb2.TOOL_LIFE_LEVEL_PREWARNING)]

    first_page = await q.ListToolLife(mes_pb2.ListToolLifeRequest(tool_item_id=item.id, page_size=1))
    wrong = await expect_failure(
        q.ListToolLife(mes_pb2.ListToolLifeRequest(machine_id=mill, page_token=first_page.next_page_token))
    )
    assert wrong.code == grpc.StatusCode.INVALID_ARGUMENT and wrong.fields == ["page_token"]
    bad_id = await expect_failure(q.ListToolLife(mes_pb2.ListToolLifeRequest(tool_item_id="nope")))
    assert bad_id.code == grpc.StatusCode.INVALID_ARGUMENT and bad_id.fields == ["tool_item_id"]


async def test_a_lowered_limit_on_the_item_moves_its_instances_at_once(edge: Edge) -> None:
    item = await edge.make.item(tool_life=struct({"parts": {"limit": 100, "prewarning": 80}}))
    fresh = await edge.make.instance(tool_item_id=item.id)
    worn = await edge.make.instance(tool_item_id=item.id)
    await closed_usage(edge, worn.id, T0, metrics={"parts": 60})
    q = queries(edge)
    listed = await q.ListToolLife(mes_pb2.ListToolLifeRequest(tool_item_id=item.id))
    # A new instance shows its full life at once (no usage needed).
    assert [(t.tool_instance_id, t.remaining_fraction) for t in listed.tool_lives] == [(worn.id, 0.4), (fresh.id, 1)]

    current = await edge.stubs.items.GetToolItem(item_pb.GetToolItemRequest(id=item.id))
    current.tool_life.Clear()
    current.tool_life.update({"parts": {"limit": 50, "prewarning": 40}})
    await edge.stubs.items.UpdateToolItem(
        item_pb.UpdateToolItemRequest(tool_item=current, update_mask=field_mask_pb2.FieldMask(paths=["tool_life"]))
    )
    expired = await q.ListToolLife(
        mes_pb2.ListToolLifeRequest(tool_item_id=item.id, min_level=mes_pb2.TOOL_LIFE_LEVEL_EXPIRED)
    )
    assert [t.tool_instance_id for t in expired.tool_lives] == [worn.id]
    got = await edge.stubs.instances.GetToolInstance(inst_pb.GetToolInstanceRequest(id=worn.id))
    assert got.status == inst_pb.TOOL_INSTANCE_STATUS_MAINTENANCE and "limits changed" in got.status_reason


async def test_calibration_due_before_a_date_soonest_first(edge: Edge) -> None:
    item = await edge.make.item()
    due = [date(2026, 1, 10), date(2026, 2, 10), date(2026, 3, 10)]
    made = [await edge.make.instance(tool_item_id=item.id, calibration_due=day(d)) for d in due]
    await edge.make.instance(tool_item_id=item.id)  # never measured: no calibration_due
    retired = await edge.make.instance(tool_item_id=item.id, calibration_due=day(date(2026, 1, 1)))
    retired.status, retired.status_reason = inst_pb.TOOL_INSTANCE_STATUS_RETIRED, "broken"
    await edge.stubs.instances.UpdateToolInstance(
        inst_pb.UpdateToolInstanceRequest(
            tool_instance=retired, update_mask=field_mask_pb2.FieldMask(paths=["status", "status_reason"])
        )
    )
    mill = machine()
    await edge.make.preset(tool_instance_id=made[1].id, machine_id=mill)
    q = queries(edge)
    page = await q.ListCalibrationDue(
        mes_pb2.ListCalibrationDueRequest(tool_item_id=item.id, due_before=day(date(2026, 3, 10)))
    )
    assert [i.tool_instance_id for i in page.instances] == [made[0].id, made[1].id]  # strictly before; not retired
    assert (page.instances[0].calibration_due.month, page.instances[1].machine_ids) == (1, [mill])
    one = await q.ListCalibrationDue(
        mes_pb2.ListCalibrationDueRequest(tool_item_id=item.id, due_before=day(date(2027, 1, 1)), page_size=2)
    )
    rest = await q.ListCalibrationDue(
        mes_pb2.ListCalibrationDueRequest(
            tool_item_id=item.id, due_before=day(date(2027, 1, 1)), page_size=2, page_token=one.next_page_token
        )
    )
    assert [i.tool_instance_id for i in [*one.instances, *rest.instances]] == [m.id for m in made]
    assert not rest.next_page_token
    by_machine = await q.ListCalibrationDue(
        mes_pb2.ListCalibrationDueRequest(machine_id=mill, due_before=day(date(2027, 1, 1)))
    )
    assert [i.tool_instance_id for i in by_machine.instances] == [made[1].id]
    missing = await expect_failure(q.ListCalibrationDue(mes_pb2.ListCalibrationDueRequest(tool_item_id=item.id)))
    assert missing.code == grpc.StatusCode.INVALID_ARGUMENT and missing.fields == ["due_before"]


async def test_usage_totals_per_grouping_match_the_usages_written(edge: Edge) -> None:
    mill, lathe = machine(), machine()
    cutter = await edge.make.item()
    assembly = await edge.make.assembly(cutter_id=cutter.id)
    direct = await edge.make.instance(tool_item_id=cutter.id)
    mounted = await edge.make.instance(tool_assembly_id=assembly.id)
    other = await edge.make.instance()
    start = T0 + timedelta(days=3)
    rows = [  # (instance, machine, program, operator, minutes after start, metrics)
        (direct, mill, "O100", "ann", 0, {"parts": 2, "cycles": 2, "time_in_spindle_s": 60, "spindle_runtime_s": 50}),
        (mounted, mill, "O100", "bob", 10, {"parts": 3, "time_in_spindle_s": 30.5, "spindle_runtime_s": 20}),
        (other, lathe, "O200", "ann", 20, {"parts": 1, "cycles": 1, "time_in_spindle_s": 10}),
        (direct, lathe, "O200", "ann", 30, {"parts": 4}),
    ]
    for instance, where, program, operator, minutes, metrics in rows:
        await closed_usage(
            edge, instance.id, start + timedelta(minutes=minutes), machine_id=where, program_name=program,
            operator=operator, metrics=metrics,
        )  # fmt: skip
    # An open one (counts, adds no time yet) and one outside the range.
    await edge.make.usage(
        tool_instance_id=other.id,
        machine_id=lathe,
        operator="ann",
        program_name="O200",
        usage_metrics=struct({}),
        start_time=ts(start + timedelta(minutes=40)),
    )
    await closed_usage(edge, other.id, start - timedelta(minutes=1), machine_id=lathe, metrics={"parts": 100})
    q = queries(edge)

    def request(group: int, **kw: Any) -> mes_pb2.SummarizeUsageRequest:
        return mes_pb2.SummarizeUsageRequest(
            start_time=ts(start), end_time=ts(start + timedelta(hours=1)), group_by=group, **kw
        )

    by_machine = await q.SummarizeUsage(request(mes_pb2.USAGE_GROUPING_MACHINE, operator="ann"))
    got = {
        g.key: (g.totals.usages, g.totals.parts, g.totals.cycles, g.totals.time_in_spindle_s) for g in by_machine.groups
    }
    assert got == {mill: (1, 2, 2, 60), lathe: (3, 5, 1, 10)}
    assert (by_machine.totals.usages, by_machine.totals.open_usages, by_machine.totals.parts) == (4, 1, 7)

    by_item = await q.SummarizeUsage(request(mes_pb2.USAGE_GROUPING_TOOL_ITEM, machine_id=mill))
    # The mounted instance's usages count for its assembly's cutter.
    assert [(g.key, g.totals.usages, g.totals.parts) for g in by_item.groups] == [(cutter.id, 2, 5)]
    assert by_item.totals.spindle_runtime_s == 70 and by_item.totals.time_in_spindle_s == 90.5

    pages, token = [], ""
    while True:
        page = await q.SummarizeUsage(request(mes_pb2.USAGE_GROUPING_PROGRAM, page_size=1, page_token=token))
        pages.append([(g.key, g.totals.usages) for g in page.groups])
        token = page.next_page_token
        if not token:
            break
    assert pages == [[("O100", 2)], [("O200", 3)]]
    first = (await q.SummarizeUsage(request(mes_pb2.USAGE_GROUPING_TOOL_INSTANCE))).groups[0]
    assert first.totals.first_start_time.ToDatetime(UTC) >= start

    bad = await expect_failure(q.SummarizeUsage(mes_pb2.SummarizeUsageRequest(start_time=ts(start))))
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT and set(bad.fields) == {"group_by", "end_time"}
    backwards = await expect_failure(
        q.SummarizeUsage(
            mes_pb2.SummarizeUsageRequest(
                start_time=ts(start), end_time=ts(start), group_by=mes_pb2.USAGE_GROUPING_MACHINE
            )
        )
    )
    assert backwards.fields == ["end_time"]


async def test_job_readiness_names_every_missing_thing_and_the_replacements(edge: Edge) -> None:
    mill, lathe = machine(), machine()
    item = await edge.make.item(tool_life=struct({"parts": {"limit": 100, "prewarning": 80}}))
    good_due, past_due = day(TODAY + timedelta(days=30)), day(TODAY - timedelta(days=1))

    async def tool(on_mill: bool = True, **fields: Any) -> inst_pb.ToolInstance:
        fields.setdefault("calibration_due", good_due)
        instance = await edge.make.instance(tool_item_id=item.id, **fields)
        if on_mill:
            await edge.make.preset(tool_instance_id=instance.id, machine_id=mill)
        return instance

    ready = await tool()
    absent = await tool(on_mill=False)
    locked = await tool(status=inst_pb.TOOL_INSTANCE_STATUS_MAINTENANCE, status_reason="chipped edge")
    unmeasured = await edge.make.instance(tool_item_id=item.id)
    await edge.make.preset(tool_instance_id=unmeasured.id, machine_id=mill)
    overdue = await tool(calibration_due=past_due)
    worn = await tool()
    await closed_usage(edge, worn.id, T0, metrics={"parts": 90})
    elsewhere = await tool()
    await edge.make.usage(tool_instance_id=elsewhere.id, machine_id=lathe)  # open: IN_USE on the lathe
    retired = await tool()
    retired.status, retired.status_reason = inst_pb.TOOL_INSTANCE_STATUS_RETIRED, "scrapped"
    await edge.stubs.instances.UpdateToolInstance(
        inst_pb.UpdateToolInstanceRequest(
            tool_instance=retired, update_mask=field_mask_pb2.FieldMask(paths=["status", "status_reason"])
        )
    )
    via_preset = await edge.make.instance(tool_item_id=item.id, calibration_due=good_due)
    preset = await edge.make.preset(tool_instance_id=via_preset.id, machine_id=mill)
    # Sisters: one spare on the shelf, one spare already on the mill (a little used), and ones that cannot help.
    spare = await tool(on_mill=False)
    loaded_spare = await tool()
    await closed_usage(edge, loaded_spare.id, T0, metrics={"parts": 10})
    await tool(on_mill=False, status=inst_pb.TOOL_INSTANCE_STATUS_MAINTENANCE)
    await tool(on_mill=False, calibration_due=past_due)
    nearly_done = await tool(on_mill=False)
    await closed_usage(edge, nearly_done.id, T0, metrics={"parts": 95})

    members = [ready, absent, locked, unmeasured, overdue, worn, elsewhere, retired]
    tool_set = await edge.make.tool_set(
        tool_instance_ids=[m.id for m in members], tool_preset_ids=[preset.id], is_global=True
    )
    q = queries(edge)
    answer = await q.CheckJobReadiness(
        mes_pb2.CheckJobReadinessRequest(
            tool_set_id=tool_set.id, machine_id=mill, parts=20, max_replacements=2, on_date=day(TODAY)
        )
    )
    assert not answer.ready
    by_id = {t.tool_instance_id: t for t in answer.tools}
    assert set(by_id) == {m.id for m in members} | {via_preset.id}
    issues = {i: [p.issue for p in t.problems] for i, t in by_id.items()}
    r = mes_pb2
    assert issues == {
        ready.id: [],
        via_preset.id: [],
        absent.id: [r.READINESS_ISSUE_NOT_ON_MACHINE],
        locked.id: [r.READINESS_ISSUE_LOCKED],
        unmeasured.id: [r.READINESS_ISSUE_NOT_CALIBRATED],
        overdue.id: [r.READINESS_ISSUE_CALIBRATION_DUE],
        worn.id: [r.READINESS_ISSUE_INSUFFICIENT_LIFE],
        elsewhere.id: [r.READINESS_ISSUE_IN_USE_ELSEWHERE],
        retired.id: [r.READINESS_ISSUE_RETIRED],
    }
    assert by_id[ready.id].ready and by_id[ready.id].tool_preset_id
    assert "chipped edge" in by_id[locked.id].problems[0].message
    assert "parts 10 left, job needs 20" in by_id[worn.id].problems[0].message
    assert lathe in by_id[elsewhere.id].problems[0].message
    # Most remaining life first; only AVAILABLE, calibrated ones with life enough for the job, none of the set.
    replacements = [(x.tool_instance_id, x.on_machine) for x in by_id[worn.id].replacements]
    assert replacements == [(spare.id, False), (loaded_spare.id, True)]
    assert by_id[worn.id].replacements[1].remaining_fraction == 0.9
    assert by_id[ready.id].replacements == []

    small_job = await q.CheckJobReadiness(
        mes_pb2.CheckJobReadinessRequest(tool_set_id=tool_set.id, machine_id=mill, parts=5, on_date=day(TODAY))
    )
    assert [p.issue for p in {t.tool_instance_id: t for t in small_job.tools}[worn.id].problems] == []

    bad = await expect_failure(
        q.CheckJobReadiness(mes_pb2.CheckJobReadinessRequest(tool_set_id=tool_set.id, parts=float("nan")))
    )
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT and set(bad.fields) == {"machine_id", "parts"}
    missing = await expect_failure(
        q.CheckJobReadiness(mes_pb2.CheckJobReadinessRequest(tool_set_id=str(uuid.uuid4()), machine_id=mill))
    )
    assert missing.code == grpc.StatusCode.NOT_FOUND


async def test_replacements_for_several_tools_at_once_come_from_each_ones_own_assembly_or_item(edge: Edge) -> None:
    """One readiness answer for tools of two items and an assembly: each tool's sisters are its own assembly's
    instances (for an assembly instance) or its own item's (for an item instance), never another tool's, at most
    `max_replacements` each, most remaining life first."""
    mill = machine()
    due = day(TODAY + timedelta(days=30))
    first, second = await edge.make.item(), await edge.make.item()
    assembly = await edge.make.assembly(cutter_id=first.id)

    async def instance(on_mill: bool, **fields: Any) -> inst_pb.ToolInstance:
        made = await edge.make.instance(calibration_due=due, **fields)
        if on_mill:
            await edge.make.preset(tool_instance_id=made.id, machine_id=mill)
        return made

    # Members, none of them on the mill: each lacks NOT_ON_MACHINE and wants replacements.
    of_first = await instance(False, tool_item_id=first.id)
    of_second = await instance(False, tool_item_id=second.id)
    of_assembly = await instance(False, tool_assembly_id=assembly.id)
    spares_first = [await instance(False, tool_item_id=first.id) for _ in range(3)]
    spare_second = await instance(True, tool_item_id=second.id)
    spare_assembly = await instance(False, tool_assembly_id=assembly.id)
    await closed_usage(edge, spares_first[0].id, T0, metrics={"parts": 1})  # no limit: life stays whole

    tool_set = await edge.make.tool_set(tool_instance_ids=[of_first.id, of_second.id, of_assembly.id], is_global=True)
    answer = await queries(edge).CheckJobReadiness(
        mes_pb2.CheckJobReadinessRequest(
            tool_set_id=tool_set.id, machine_id=mill, max_replacements=2, on_date=day(TODAY)
        )
    )
    by_id = {t.tool_instance_id: t for t in answer.tools}
    sisters = {i: [(r.tool_instance_id, r.on_machine) for r in t.replacements] for i, t in by_id.items()}
    assert len(sisters[of_first.id]) == 2
    assert {s for s, _ in sisters[of_first.id]} <= {s.id for s in spares_first}
    assert sisters[of_first.id] == sorted(sisters[of_first.id])  # equal life: by id
    assert sisters[of_second.id] == [(spare_second.id, True)]
    assert sisters[of_assembly.id] == [(spare_assembly.id, False)]


async def test_a_private_tool_set_is_not_found_for_others_and_queries_need_the_read_scope(edge: Edge) -> None:
    from agent.grpc_client import authorized_channel

    private = await edge.make.tool_set(is_global=False, name="mine")
    _, operator_key = await edge.user_with_key(UserRole.OPERATOR)
    _, collector_key = await edge.user_with_key(UserRole.OPERATOR, scopes=["usage:report"])
    async with authorized_channel(edge.address, operator_key) as channel:
        hidden = await expect_failure(
            mes_pb2_grpc.ToolQueryServiceStub(channel).CheckJobReadiness(
                mes_pb2.CheckJobReadinessRequest(tool_set_id=private.id, machine_id="M")
            )
        )
        assert hidden.code == grpc.StatusCode.NOT_FOUND
    async with authorized_channel(edge.address, collector_key) as channel:
        refused = await expect_failure(
            mes_pb2_grpc.ToolQueryServiceStub(channel).ListToolLife(mes_pb2.ListToolLifeRequest())
        )
        assert refused.code == grpc.StatusCode.PERMISSION_DENIED
