"""Attacks and edge cases: request_id reuse across users and entities, history of deleted private sets,
keys minting longer-lived keys, forged page tokens, NUL characters, concurrent retries, huge JSON numbers."""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import UTC, datetime, timedelta

import grpc
import pytest
from conftest import Edge, Factory, Stubs, expect_failure, struct
from google.protobuf import field_mask_pb2
from smooth.core.v1 import (
    api_key_pb2,
    api_key_pb2_grpc,
    audit_log_pb2,
    audit_log_pb2_grpc,
    common_pb2,
)
from smooth.core.v1 import (
    tool_item_pb2 as item_pb,
)
from smooth.core.v1 import (
    tool_set_pb2 as set_pb,
)

from agent.grpc_client import authorized_channel
from server.domain.entities import UserRole

INVALID = grpc.StatusCode.INVALID_ARGUMENT


async def test_request_ids_belong_to_their_caller_and_target(edge: Edge) -> None:
    _, a_secret = await edge.user_with_key(UserRole.OPERATOR)
    _, b_secret = await edge.user_with_key(UserRole.OPERATOR)
    async with authorized_channel(edge.address, a_secret) as ca, authorized_channel(edge.address, b_secret) as cb:
        a, b = Stubs(ca), Stubs(cb)
        secret_set = await a.sets.CreateToolSet(
            set_pb.CreateToolSetRequest(
                tool_set=set_pb.ToolSet(name="A's", description="CONFIDENTIAL"), request_id="r-1"
            )
        )
        # B reusing A's request_id gets its own new set, never A's.
        mine = await b.sets.CreateToolSet(
            set_pb.CreateToolSetRequest(tool_set=set_pb.ToolSet(name="B's"), request_id="r-1")
        )
        assert mine.id != secret_set.id and mine.description == ""
        x, y = await Factory(a).item(), await Factory(a).item()
        patch = lambda item_id: item_pb.UpdateToolItemRequest(  # noqa: E731
            tool_item=item_pb.ToolItem(id=item_id, version=1, description="d"),
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
            request_id="upd-1",
        )
        await a.items.UpdateToolItem(patch(x.id))
        err = await expect_failure(a.items.UpdateToolItem(patch(y.id)))
        assert err.code == INVALID and err.fields == ["request_id"]
        err = await expect_failure(
            a.items.DeleteToolItem(item_pb.DeleteToolItemRequest(id=y.id, version=1, request_id="upd-1"))
        )
        assert err.code == INVALID
        assert (await a.items.GetToolItem(item_pb.GetToolItemRequest(id=y.id))).version == 1


async def test_history_of_a_deleted_private_set_stays_private(edge: Edge) -> None:
    _, a_secret = await edge.user_with_key(UserRole.OPERATOR)
    _, b_secret = await edge.user_with_key(UserRole.OPERATOR)
    async with authorized_channel(edge.address, a_secret) as ca, authorized_channel(edge.address, b_secret) as cb:
        a, b = Stubs(ca), Stubs(cb)
        private = await Factory(a).tool_set(name="secret plan")
        await a.sets.DeleteToolSet(set_pb.DeleteToolSetRequest(id=private.id, version=1))
        err = await expect_failure(b.sets.ListRevisions(common_pb2.ListRevisionsRequest(id=private.id)))
        assert err.code == grpc.StatusCode.NOT_FOUND
        assert len((await a.sets.ListRevisions(common_pb2.ListRevisionsRequest(id=private.id))).revisions) == 2
        # Its id is not free again: re-creating it would hand the history to someone else.
        err = await expect_failure(Factory(b).tool_set(id=private.id))
        assert err.code == grpc.StatusCode.ALREADY_EXISTS


async def test_a_key_cannot_mint_a_longer_lived_key(edge: Edge) -> None:
    user_id, _ = await edge.user_with_key(UserRole.OPERATOR)
    admin_keys = api_key_pb2_grpc.ApiKeyServiceStub(edge.channel)
    request = api_key_pb2.CreateApiKeyRequest(user_id=str(user_id), scopes=["read", "write"])
    expires = datetime.now(UTC).replace(microsecond=0) + timedelta(minutes=5)
    request.expire_time.FromDatetime(expires)
    short = await admin_keys.CreateApiKey(request)
    async with authorized_channel(edge.address, short.secret) as channel:
        child = await api_key_pb2_grpc.ApiKeyServiceStub(channel).CreateApiKey(
            api_key_pb2.CreateApiKeyRequest(scopes=["read"])
        )
    assert child.api_key.expire_time.ToDatetime(tzinfo=UTC) == expires


async def test_concurrent_retries_get_the_same_answer(edge: Edge) -> None:
    request = item_pb.CreateToolItemRequest(
        tool_item=item_pb.ToolItem(name="retry storm", tool_type=item_pb.TOOL_TYPE_OTHER),
        request_id=f"storm-{uuid.uuid4()}",
    )
    answers = await asyncio.gather(*(edge.stubs.items.CreateToolItem(request) for _ in range(6)))
    assert len({a.id for a in answers}) == 1
    listed = await edge.stubs.items.ListToolItems(item_pb.ListToolItemsRequest(filter='name = "retry storm"'))
    assert len(listed.tool_items) == 1


async def test_huge_json_numbers_keep_the_audit_chain_intact(edge: Edge, make: Factory) -> None:
    await make.item(geometry=struct({"DC": 10, "NOF": 4, "OAL": 72, "x-serial": 1.2345678901234568e20}))
    result = await edge.use_cases.audit.verify()
    assert result.ok, result.reason


@pytest.mark.parametrize("token", ["r²", "r" + "9" * 30, "x12", "r-1"])
async def test_bad_revision_tokens(edge: Edge, make: Factory, token: str) -> None:
    item = await make.item()
    err = await expect_failure(
        edge.stubs.items.ListRevisions(common_pb2.ListRevisionsRequest(id=item.id, page_token=token))
    )
    assert err.code == INVALID and err.fields == ["page_token"]


@pytest.mark.parametrize("token", ["a²", "a" + "9" * 30])
async def test_bad_audit_tokens(edge: Edge, token: str) -> None:
    stub = audit_log_pb2_grpc.AuditLogServiceStub(edge.channel)
    err = await expect_failure(stub.ListAuditLogs(audit_log_pb2.ListAuditLogsRequest(page_token=token)))
    assert err.code == INVALID


def _forge(values: list[object], filter_text: str = "", order_by: str = "") -> str:
    import hashlib

    fingerprint = hashlib.sha256(f"tool_item\0{filter_text}\0{order_by}".encode()).hexdigest()[:16]
    raw = json.dumps({"q": fingerprint, "v": values}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    ("values", "order_by"),
    [
        (["2020-01-01T00:00:00", str(uuid.uuid4())], ""),  # no timezone
        ([["a"], str(uuid.uuid4())], "name"),
        ([{"a": 1}, str(uuid.uuid4())], "name"),
        (["x", 12], "name"),
        ([None, str(uuid.uuid4())], "name"),
    ],
)
async def test_forged_list_tokens_are_invalid_argument(edge: Edge, values: list[object], order_by: str) -> None:
    token = _forge(values, order_by=order_by)
    err = await expect_failure(
        edge.stubs.items.ListToolItems(item_pb.ListToolItemsRequest(page_token=token, order_by=order_by))
    )
    assert err.code == INVALID and err.fields == ["page_token"]


async def test_nul_characters_are_refused_everywhere(edge: Edge) -> None:
    keys = api_key_pb2_grpc.ApiKeyServiceStub(edge.channel)
    err = await expect_failure(keys.CreateApiKey(api_key_pb2.CreateApiKeyRequest(name="a\x00b", scopes=["read"])))
    assert err.code == INVALID and err.fields == ["name"]
    stub = audit_log_pb2_grpc.AuditLogServiceStub(edge.channel)
    err = await expect_failure(stub.ListAuditLogs(audit_log_pb2.ListAuditLogsRequest(entity_id="a\x00")))
    assert err.code == INVALID and err.fields == ["entity_id"]


async def test_strangers_get_unauthenticated_before_any_parsing_and_are_audited(edge: Edge) -> None:
    async with authorized_channel(edge.address, None) as anonymous:
        with pytest.raises(grpc.aio.AioRpcError) as err:
            await anonymous.unary_unary("/smooth.core.v1.ToolItemService/GetToolItem")(b"\xff\xff\xff")
        assert err.value.code() == grpc.StatusCode.UNAUTHENTICATED
        marker = f"probe-\x00-{uuid.uuid4().hex[:6]}"
        await expect_failure(Stubs(anonymous).items.CreateToolItem(item_pb.CreateToolItemRequest(request_id=marker)))
    stub = audit_log_pb2_grpc.AuditLogServiceStub(edge.channel)
    entries = (
        await stub.ListAuditLogs(audit_log_pb2.ListAuditLogsRequest(action="auth.unauthenticated", page_size=1000))
    ).entries
    assert any(e.request_id == marker.replace("\x00", "\\0") for e in entries)
