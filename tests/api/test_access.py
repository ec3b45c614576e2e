"""Authentication and authorization on every RPC: default deny, scopes, keys (shown once, hashed, revocable,
expiring), users and ownership rules — over real gRPC with real keys. Key expiry is decided on the use cases'
injected clock, which the expiry test moves: nothing waits for a key to expire."""

from __future__ import annotations

import importlib
import pkgutil
from datetime import UTC, datetime, timedelta
from pathlib import Path

import grpc
import pytest
import smooth.core.v1 as core
import sqlalchemy as sa
from conftest import Edge, Stubs, expect_failure, start_edge, struct
from google.protobuf import field_mask_pb2, message_factory
from smooth.core.v1 import (
    api_key_pb2,
    api_key_pb2_grpc,
    user_pb2,
    user_pb2_grpc,
)
from smooth.core.v1 import (
    tool_instance_pb2 as inst_pb,
)
from smooth.core.v1 import (
    tool_item_pb2 as item_pb,
)
from smooth.core.v1 import (
    tool_set_pb2 as set_pb,
)
from smooth.core.v1 import (
    tool_usage_pb2 as usage_pb,
)

from agent.grpc_client import authorized_channel
from server.api.auth import METHOD_SCOPES
from server.domain.entities import UserRole
from server.domain.identity import Scope
from server.store.tables import api_keys, audit_log

DENIED, UNAUTH = grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAUTHENTICATED


def every_method() -> list[tuple[str, type]]:
    """Every RPC of every service in the smooth.core.v1 package, from the protobuf descriptors."""
    out = []
    for info in pkgutil.iter_modules(core.__path__):
        if not info.name.endswith("_pb2"):
            continue
        module = importlib.import_module(f"smooth.core.v1.{info.name}")
        for service in module.DESCRIPTOR.services_by_name.values():
            for method in service.methods:
                out.append((f"/{service.full_name}/{method.name}", message_factory.GetMessageClass(method.input_type)))
    return out


METHODS = every_method()


def test_every_method_has_an_access_rule() -> None:
    assert len(METHODS) >= 40
    missing = [m for m, _ in METHODS if m not in METHOD_SCOPES]
    assert not missing, f"methods without a scope rule (they are refused to everyone): {missing}"
    assert set(METHOD_SCOPES) <= {m for m, _ in METHODS}, "rules for methods that do not exist"


async def test_every_method_refuses_calls_without_a_key_and_with_a_key_lacking_scope(edge: Edge) -> None:
    async with authorized_channel(edge.address, None) as anonymous:
        for method, request_cls in METHODS:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await anonymous.unary_unary(method)(request_cls().SerializeToString())
            assert err.value.code() == UNAUTH, method
    for method, request_cls in METHODS:
        lacking = sorted(s.value for s in set(Scope) - METHOD_SCOPES[method] - {Scope.ADMIN})
        assert lacking, f"{method}: every scope passes, so no key can lack one"
        _, secret = await edge.user_with_key(UserRole.ADMIN, lacking)
        async with authorized_channel(edge.address, secret) as channel:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await channel.unary_unary(method)(request_cls().SerializeToString())
            assert err.value.code() == DENIED, f"{method} with scopes {lacking}: {err.value.code()}"


async def test_bad_keys_are_unauthenticated(edge: Edge) -> None:
    for secret in ["nonsense", "sek_000000000000_" + "A" * 43, edge.admin_secret[:-1] + "x"]:
        async with authorized_channel(edge.address, secret) as channel:
            err = await expect_failure(Stubs(channel).items.ListToolItems(item_pb.ListToolItemsRequest()))
            assert err.code == UNAUTH


async def test_key_is_shown_once_and_stored_only_hashed(edge: Edge) -> None:
    keys = api_key_pb2_grpc.ApiKeyServiceStub(edge.channel)
    user_id, _ = await edge.user_with_key(UserRole.OPERATOR)
    created = await keys.CreateApiKey(
        api_key_pb2.CreateApiKeyRequest(user_id=str(user_id), name="station 2", scopes=["measurements:write"])
    )
    secret = created.secret
    assert secret.startswith(f"sek_{created.api_key.key_id}_")
    listed = await keys.ListApiKeys(api_key_pb2.ListApiKeysRequest(user_id=str(user_id)))
    assert created.api_key.id in [k.id for k in listed.api_keys]
    assert secret not in str(listed)
    secret_part = secret.split("_", 2)[2]  # "sek_<key_id>_<secret>": the secret itself may contain "_"
    async with edge.store.read() as tx:
        rows = (await tx._conn.execute(sa.select(api_keys))).all() + (
            await tx._conn.execute(sa.select(audit_log))
        ).all()
    assert rows and all(secret_part not in str(row) for row in rows)
    if edge.store.dialect == "sqlite":
        db = edge.store.engine.url.database
        for suffix in ("", "-wal"):
            try:
                raw = open(f"{db}{suffix}", "rb").read()
            except FileNotFoundError:
                continue
            assert secret_part.encode() not in raw
    async with authorized_channel(edge.address, secret) as channel:  # and the key works
        await Stubs(channel).instances.ListToolInstances(inst_pb.ListToolInstancesRequest(page_size=1))


async def test_revoked_and_deactivated_keys_are_refused_at_once(edge: Edge) -> None:
    keys = api_key_pb2_grpc.ApiKeyServiceStub(edge.channel)
    user_id, secret = await edge.user_with_key(UserRole.OPERATOR)
    async with authorized_channel(edge.address, secret) as channel:
        stubs = Stubs(channel)
        await stubs.items.ListToolItems(item_pb.ListToolItemsRequest(page_size=1))
        listed = await keys.ListApiKeys(api_key_pb2.ListApiKeysRequest(user_id=str(user_id)))
        live = [k for k in listed.api_keys if not k.HasField("revoke_time")]
        revoked = await keys.RevokeApiKey(api_key_pb2.RevokeApiKeyRequest(id=live[0].id))
        assert revoked.HasField("revoke_time")
        err = await expect_failure(stubs.items.ListToolItems(item_pb.ListToolItemsRequest(page_size=1)))
        assert err.code == UNAUTH and err.reason == "KEY_REVOKED"

    _, other = await edge.user_with_key(UserRole.OPERATOR)
    users = user_pb2_grpc.UserServiceStub(edge.channel)
    async with authorized_channel(edge.address, other) as channel:
        await Stubs(channel).items.ListToolItems(item_pb.ListToolItemsRequest(page_size=1))
        mine = await api_key_pb2_grpc.ApiKeyServiceStub(channel).ListApiKeys(api_key_pb2.ListApiKeysRequest())
        target = await users.GetUser(user_pb2.GetUserRequest(id=mine.api_keys[0].user_id))
        await users.DeactivateUser(user_pb2.DeactivateUserRequest(id=target.id, version=target.version))
        err = await expect_failure(Stubs(channel).items.ListToolItems(item_pb.ListToolItemsRequest(page_size=1)))
        assert err.code == UNAUTH


class _Clock:
    """The use cases' clock, moved by the test."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


async def test_a_key_is_refused_from_its_expire_time_on(tmp_path: Path) -> None:
    clock = _Clock(datetime(2026, 6, 1, 8, 0, tzinfo=UTC))
    async for edge in start_edge(str(tmp_path / "clock.db"), clock=clock):
        use_cases, address, admin = edge.use_cases, edge.address, edge.admin_secret
        operator, _, _ = await use_cases.api_keys.bootstrap(email="op@clock.test", role=UserRole.OPERATOR)
        expire = clock.now + timedelta(hours=8)
        async with authorized_channel(address, admin) as channel:
            keys = api_key_pb2_grpc.ApiKeyServiceStub(channel)
            past = api_key_pb2.CreateApiKeyRequest(user_id=str(operator.id), scopes=["read"])
            past.expire_time.FromDatetime(clock.now)
            err = await expect_failure(keys.CreateApiKey(past))
            assert err.code == grpc.StatusCode.INVALID_ARGUMENT and err.fields == ["expire_time"]
            request = api_key_pb2.CreateApiKeyRequest(user_id=str(operator.id), scopes=["read"])
            request.expire_time.FromDatetime(expire)
            shift = await keys.CreateApiKey(request)
        one = item_pb.ListToolItemsRequest(page_size=1)
        async with authorized_channel(address, shift.secret) as channel:
            items = Stubs(channel).items
            await items.ListToolItems(one)
            clock.now = expire - timedelta(milliseconds=1)
            await items.ListToolItems(one)  # valid to the last moment
            clock.now = expire
            err = await expect_failure(items.ListToolItems(one))
            assert err.code == UNAUTH and err.reason == "KEY_EXPIRED"


async def test_key_scopes_are_bounded_by_role_and_caller(edge: Edge) -> None:
    keys = api_key_pb2_grpc.ApiKeyServiceStub(edge.channel)
    viewer_id, _ = await edge.user_with_key(UserRole.VIEWER)
    err = await expect_failure(
        keys.CreateApiKey(api_key_pb2.CreateApiKeyRequest(user_id=str(viewer_id), scopes=["write"]))
    )
    assert err.code == DENIED and err.reason == "SCOPE_BEYOND_ROLE"
    err = await expect_failure(
        keys.CreateApiKey(api_key_pb2.CreateApiKeyRequest(user_id=str(viewer_id), scopes=["fly"]))
    )
    assert err.code == grpc.StatusCode.INVALID_ARGUMENT and err.fields == ["scopes.0"]
    op_id, op_secret = await edge.user_with_key(UserRole.OPERATOR, ["read", "write"])
    async with authorized_channel(edge.address, op_secret) as channel:
        own = api_key_pb2_grpc.ApiKeyServiceStub(channel)
        made = await own.CreateApiKey(api_key_pb2.CreateApiKeyRequest(scopes=["read"]))
        assert made.api_key.user_id == str(op_id)
        err = await expect_failure(own.CreateApiKey(api_key_pb2.CreateApiKeyRequest(scopes=["usage:report"])))
        assert err.code == DENIED and err.reason == "SCOPE_BEYOND_CALLER"
        err = await expect_failure(
            own.CreateApiKey(api_key_pb2.CreateApiKeyRequest(user_id=str(viewer_id), scopes=["read"]))
        )
        assert err.code == DENIED
        others = await own.ListApiKeys(api_key_pb2.ListApiKeysRequest())
        assert {k.user_id for k in others.api_keys} == {str(op_id)}


async def test_users_service(edge: Edge) -> None:
    users = user_pb2_grpc.UserServiceStub(edge.channel)
    created = await users.CreateUser(
        user_pb2.CreateUserRequest(
            user=user_pb2.User(email="  Mia.Keller@Shop.Example ", role=user_pb2.USER_ROLE_OPERATOR)
        )
    )
    assert created.email == "mia.keller@shop.example" and created.is_active and created.version == 1
    dup = await expect_failure(
        users.CreateUser(
            user_pb2.CreateUserRequest(
                user=user_pb2.User(email="MIA.KELLER@shop.example", role=user_pb2.USER_ROLE_VIEWER)
            )
        )
    )
    assert dup.code == grpc.StatusCode.ALREADY_EXISTS and dup.fields == ["email"]
    bad = await expect_failure(
        users.CreateUser(user_pb2.CreateUserRequest(user=user_pb2.User(email="nope", role=user_pb2.USER_ROLE_VIEWER)))
    )
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT and bad.fields == ["email"]
    bad = await expect_failure(users.CreateUser(user_pb2.CreateUserRequest(user=user_pb2.User(email="a@b.cd"))))
    assert bad.code == grpc.StatusCode.INVALID_ARGUMENT and bad.fields == ["role"]
    updated = await users.UpdateUser(
        user_pb2.UpdateUserRequest(
            user=user_pb2.User(id=created.id, version=1, role=user_pb2.USER_ROLE_VIEWER),
            update_mask=field_mask_pb2.FieldMask(paths=["role"]),
        )
    )
    assert updated.role == user_pb2.USER_ROLE_VIEWER and updated.version == 2
    listed = await users.ListUsers(user_pb2.ListUsersRequest(filter='email = "mia.keller@shop.example"'))
    assert [u.id for u in listed.users] == [created.id]
    stale = await expect_failure(users.DeactivateUser(user_pb2.DeactivateUserRequest(id=created.id, version=1)))
    assert stale.code == grpc.StatusCode.ABORTED  # optimistic locking holds for deactivation too
    unversioned = await expect_failure(users.DeactivateUser(user_pb2.DeactivateUserRequest(id=created.id)))
    assert unversioned.code == grpc.StatusCode.INVALID_ARGUMENT and unversioned.fields == ["version"]
    off = await users.DeactivateUser(user_pb2.DeactivateUserRequest(id=created.id, version=2))
    assert not off.is_active and off.version == 3
    history = await users.ListRevisions(core.common_pb2.ListRevisionsRequest(id=created.id))
    assert [r.revision.version for r in history.revisions] == [1, 2, 3]


async def test_ownership_rules(edge: Edge) -> None:
    a_id, a_secret = await edge.user_with_key(UserRole.OPERATOR)
    _, b_secret = await edge.user_with_key(UserRole.OPERATOR)
    _, viewer_secret = await edge.user_with_key(UserRole.VIEWER)
    _, collector_secret = await edge.user_with_key(UserRole.OPERATOR, ["usage:report"])
    _, station_secret = await edge.user_with_key(UserRole.OPERATOR, ["measurements:write"])
    async with (
        authorized_channel(edge.address, a_secret) as ca,
        authorized_channel(edge.address, b_secret) as cb,
        authorized_channel(edge.address, viewer_secret) as cv,
        authorized_channel(edge.address, collector_secret) as cc,
        authorized_channel(edge.address, station_secret) as cs,
    ):
        a, b, viewer, collector, station = Stubs(ca), Stubs(cb), Stubs(cv), Stubs(cc), Stubs(cs)
        from conftest import Factory

        item = await Factory(a).item()
        assert item.owner_id == str(a_id)
        instance = await Factory(a).instance(tool_item_id=item.id)
        # Others read it, but only the owner (or an admin) changes or deletes it.
        assert (await b.items.GetToolItem(item_pb.GetToolItemRequest(id=item.id))).id == item.id
        patch = item_pb.UpdateToolItemRequest(
            tool_item=item_pb.ToolItem(id=item.id, version=1, description="b was here"),
            update_mask=field_mask_pb2.FieldMask(paths=["description"]),
        )
        err = await expect_failure(b.items.UpdateToolItem(patch))
        assert err.code == DENIED and err.reason == "NOT_OWNER"
        err = await expect_failure(b.items.DeleteToolItem(item_pb.DeleteToolItemRequest(id=item.id, version=1)))
        assert err.code == DENIED
        assert (await a.items.UpdateToolItem(patch)).version == 2
        # Viewers read only.
        err = await expect_failure(Factory(viewer).item())
        assert err.code == DENIED
        # Shop-floor data: a measuring station updates measurements of anyone's instance, nothing else.
        measured = inst_pb.UpdateToolInstanceRequest(
            tool_instance=inst_pb.ToolInstance(
                id=instance.id, version=1, measurements=struct({"LF": {"value": 80.01}})
            ),
            update_mask=field_mask_pb2.FieldMask(paths=["measurements"]),
        )
        assert (await station.instances.UpdateToolInstance(measured)).version == 2
        renamed = inst_pb.UpdateToolInstanceRequest(
            tool_instance=inst_pb.ToolInstance(id=instance.id, version=2, serial_number="STOLEN"),
            update_mask=field_mask_pb2.FieldMask(paths=["serial_number"]),
        )
        err = await expect_failure(station.instances.UpdateToolInstance(renamed))
        assert err.code == DENIED
        # Any collector records usage on any instance; the usage is the collector's.
        usage = usage_pb.ToolUsage(tool_instance_id=instance.id, machine_id="M1")
        usage.start_time.GetCurrentTime()
        recorded = await collector.usages.CreateToolUsage(usage_pb.CreateToolUsageRequest(tool_usage=usage))
        closed = usage_pb.ToolUsage(id=recorded.id, version=1)
        closed.end_time.GetCurrentTime()
        await collector.usages.UpdateToolUsage(
            usage_pb.UpdateToolUsageRequest(tool_usage=closed, update_mask=field_mask_pb2.FieldMask(paths=["end_time"]))
        )
        err = await expect_failure(collector.items.ListToolItems(item_pb.ListToolItemsRequest()))
        assert err.code == DENIED
        # Private tool sets are the owner's; global ones are everyone's to read.
        private = await Factory(a).tool_set(name="A private")
        public = await Factory(a).tool_set(name="A global", is_global=True)
        err = await expect_failure(b.sets.GetToolSet(set_pb.GetToolSetRequest(id=private.id)))
        assert err.code == grpc.StatusCode.NOT_FOUND
        seen_by_b = {s.id for s in (await b.sets.ListToolSets(set_pb.ListToolSetsRequest(page_size=1000))).tool_sets}
        assert public.id in seen_by_b and private.id not in seen_by_b
        seen_by_admin = {
            s.id for s in (await edge.stubs.sets.ListToolSets(set_pb.ListToolSetsRequest(page_size=1000))).tool_sets
        }
        assert {public.id, private.id} <= seen_by_admin
        # Admins change anything.
        await edge.stubs.items.UpdateToolItem(
            item_pb.UpdateToolItemRequest(
                tool_item=item_pb.ToolItem(id=item.id, version=2, description="admin"),
                update_mask=field_mask_pb2.FieldMask(paths=["description"]),
            )
        )
