"""Shared fixtures: a migrated SQLite file (or a fresh PostgreSQL database), a real grpc.aio server on port 0,
a real channel, and a factory that creates valid entities through the public API."""

from __future__ import annotations

import itertools
import os
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import grpc
import pytest
from google.protobuf import struct_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from smooth.core.v1 import (
    tool_assembly_pb2 as asm_pb,
)
from smooth.core.v1 import (
    tool_assembly_pb2_grpc as asm_grpc,
)
from smooth.core.v1 import (
    tool_instance_pb2 as inst_pb,
)
from smooth.core.v1 import (
    tool_instance_pb2_grpc as inst_grpc,
)
from smooth.core.v1 import (
    tool_item_pb2 as item_pb,
)
from smooth.core.v1 import (
    tool_item_pb2_grpc as item_grpc,
)
from smooth.core.v1 import (
    tool_preset_pb2 as preset_pb,
)
from smooth.core.v1 import (
    tool_preset_pb2_grpc as preset_grpc,
)
from smooth.core.v1 import (
    tool_set_pb2 as set_pb,
)
from smooth.core.v1 import (
    tool_set_pb2_grpc as set_grpc,
)
from smooth.core.v1 import (
    tool_usage_pb2 as usage_pb,
)
from smooth.core.v1 import (
    tool_usage_pb2_grpc as usage_grpc,
)

from agent.grpc_client import authorized_channel
from server.api.server import GrpcServer
from server.domain.entities import UserRole
from server.store import migrate
from server.store.repository import Store
from server.usecases.app import UseCases, build
from server.usecases.entities import Caller, utc_now

_TOOL_NUMBERS = itertools.count(1)
PG_ENV = "SMOOTH_EDGE_TEST_PG_URL"
PG_REQUIRED_ENV = "SMOOTH_EDGE_REQUIRE_PG"


def struct(values: dict[str, Any]) -> struct_pb2.Struct:
    s = struct_pb2.Struct()
    s.update(values)
    return s


@dataclass
class RpcFailure:
    code: grpc.StatusCode
    message: str
    reason: str
    metadata: dict[str, str]
    fields: list[str]


def failure(err: grpc.aio.AioRpcError) -> RpcFailure:
    """The status code and google.rpc details of a failed call."""
    status = rpc_status.from_call(err)
    reason, metadata, fields = "", {}, []
    if status is not None:
        for detail in status.details:
            if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                info = error_details_pb2.ErrorInfo()
                detail.Unpack(info)
                reason, metadata = info.reason, dict(info.metadata)
            elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
                bad = error_details_pb2.BadRequest()
                detail.Unpack(bad)
                fields = [v.field for v in bad.field_violations]
    return RpcFailure(err.code(), err.details() or "", reason, metadata, fields)


async def expect_failure(call: Any) -> RpcFailure:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return failure(info.value)


class Stubs:
    def __init__(self, channel: grpc.aio.Channel) -> None:
        self.items = item_grpc.ToolItemServiceStub(channel)
        self.assemblies = asm_grpc.ToolAssemblyServiceStub(channel)
        self.instances = inst_grpc.ToolInstanceServiceStub(channel)
        self.presets = preset_grpc.ToolPresetServiceStub(channel)
        self.usages = usage_grpc.ToolUsageServiceStub(channel)
        self.sets = set_grpc.ToolSetServiceStub(channel)


class Factory:
    """Creates valid entities (and what they depend on) through the API; each call makes unique data."""

    def __init__(self, stubs: Stubs) -> None:
        self.s = stubs

    async def item(self, **overrides: Any) -> item_pb.ToolItem:
        fields: dict[str, Any] = dict(
            name="End mill 10",
            manufacturer="Acme",
            part_number=f"PN-{uuid.uuid4().hex[:8]}",
            tool_type=item_pb.TOOL_TYPE_END_MILL,
            geometry=struct({"DC": 10, "NOF": 4, "OAL": 72}),
            tags=["carbide"],
        )
        fields.update(overrides)
        return await self.s.items.CreateToolItem(item_pb.CreateToolItemRequest(tool_item=item_pb.ToolItem(**fields)))

    async def holder(self) -> item_pb.ToolItem:
        return await self.item(
            name="HSK63 chuck", tool_type=item_pb.TOOL_TYPE_HOLDER, geometry=struct({"CCMS": "HSK63A"})
        )

    async def assembly(self, **overrides: Any) -> asm_pb.ToolAssembly:
        fields: dict[str, Any] = dict(
            name="Assembly",
            holder_id=(await self.holder()).id,
            cutter_id=(await self.item()).id,
            assembly_data=struct({"gauge_length": 120.5}),
            tags=["a"],
        )
        fields.update(overrides)
        return await self.s.assemblies.CreateToolAssembly(
            asm_pb.CreateToolAssemblyRequest(tool_assembly=asm_pb.ToolAssembly(**fields))
        )

    async def instance(self, **overrides: Any) -> inst_pb.ToolInstance:
        fields: dict[str, Any] = dict(
            serial_number=f"SN-{uuid.uuid4().hex[:10]}", status=inst_pb.TOOL_INSTANCE_STATUS_AVAILABLE
        )
        if "tool_item_id" not in overrides and "tool_assembly_id" not in overrides:
            fields["tool_item_id"] = (await self.item()).id
        fields.update(overrides)
        return await self.s.instances.CreateToolInstance(
            inst_pb.CreateToolInstanceRequest(tool_instance=inst_pb.ToolInstance(**fields))
        )

    async def preset(self, **overrides: Any) -> preset_pb.ToolPreset:
        number = next(_TOOL_NUMBERS)  # one T number per preset: a machine refuses duplicates
        fields: dict[str, Any] = dict(
            name=f"T{number}", machine_id="MILL-01", parameters=struct({"tool_number": number})
        )
        if "tool_instance_id" not in overrides:
            fields["tool_instance_id"] = (await self.instance()).id
        fields.update(overrides)
        return await self.s.presets.CreateToolPreset(
            preset_pb.CreateToolPresetRequest(tool_preset=preset_pb.ToolPreset(**fields))
        )

    async def usage(self, **overrides: Any) -> usage_pb.ToolUsage:
        msg = usage_pb.ToolUsage(machine_id="MILL-01", program_name="O1000", usage_metrics=struct({"parts": 2}))
        start = overrides.pop("start_time", None)
        if "tool_instance_id" not in overrides:
            msg.tool_instance_id = (await self.instance()).id
        for k, v in overrides.items():
            setattr(msg, k, v) if not isinstance(v, Message) else getattr(msg, k).CopyFrom(v)
        if start is None:
            msg.start_time.GetCurrentTime()
        else:
            msg.start_time.CopyFrom(start)
        return await self.s.usages.CreateToolUsage(usage_pb.CreateToolUsageRequest(tool_usage=msg))

    async def tool_set(self, **overrides: Any) -> set_pb.ToolSet:
        fields: dict[str, Any] = dict(name="Job 1", is_global=False)
        fields.update(overrides)
        return await self.s.sets.CreateToolSet(set_pb.CreateToolSetRequest(tool_set=set_pb.ToolSet(**fields)))


@dataclass
class Edge:
    store: Store
    server: GrpcServer
    channel: grpc.aio.Channel
    stubs: Stubs
    make: Factory
    use_cases: UseCases
    address: str
    admin_secret: str

    async def user_with_key(self, role: UserRole, scopes: list[str] | None = None) -> tuple[uuid.UUID, str]:
        """A new user of `role` and a key (default: every scope the role allows); returns (user id, secret)."""
        user, key, secret = await self.use_cases.api_keys.bootstrap(
            email=f"u-{uuid.uuid4().hex[:8]}@test.local", role=role
        )
        if scopes is not None:
            await self.use_cases.api_keys.revoke(key.id, caller=Caller())
            _, secret = await self.use_cases.api_keys.create(
                user_id=user.id, name="test", scopes=scopes, expires_at=None, caller=Caller()
            )
        return user.id, secret


def free_port() -> int:
    """A TCP port free on the loopback now, for a server a test starts in another process (or must know in advance)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def pg_url() -> str:
    """The PostgreSQL URL for tests; skips (or, under CI, fails) when it is not set or not reachable."""
    url = os.environ.get(PG_ENV)
    if not url:
        if os.environ.get(PG_REQUIRED_ENV):
            pytest.fail(f"{PG_REQUIRED_ENV} is set but {PG_ENV} is not")
        pytest.skip(f"PostgreSQL tests need {PG_ENV}=postgresql://user@host:port/db")
    return url


@asynccontextmanager
async def fresh_pg_database(pg_url: str) -> AsyncIterator[str]:
    """A fresh, empty PostgreSQL database, dropped afterwards; yields its SQLAlchemy URL."""
    base = pg_url.replace("postgresql+asyncpg://", "postgresql://")
    name = f"smooth_test_{uuid.uuid4().hex[:12]}"
    try:
        admin = await asyncpg.connect(base)
    except (OSError, asyncpg.PostgresError) as exc:
        if os.environ.get(PG_REQUIRED_ENV):
            pytest.fail(f"PostgreSQL at {base} is required but unreachable: {exc}")
        pytest.skip(f"PostgreSQL at {base} unreachable: {exc}")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield base.rsplit("/", 1)[0].replace("postgresql://", "postgresql+asyncpg://") + f"/{name}"
    finally:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.close()


@pytest.fixture
async def pg_database(pg_url: str) -> AsyncIterator[str]:
    async with fresh_pg_database(pg_url) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
async def migrated_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    """A migrated store on each engine: a SQLite file, and a fresh PostgreSQL database."""
    if request.param == "sqlite":
        async with Store(str(tmp_path / "edge.db")) as store:
            await migrate.upgrade(store.engine)
            yield store
        return
    async with fresh_pg_database(request.getfixturevalue("pg_url")) as url, Store(url) as store:
        await migrate.upgrade(store.engine)
        yield store


async def start_edge(
    db_url: str, *, central: bool = False, clock: Callable[[], datetime] = utc_now, **server_options: Any
) -> AsyncIterator[Edge]:
    """A migrated store, a real server on a free port, an admin user and a channel authenticated as that admin.

    `central=True` serves as the central store (accepts replication); `listen` picks the address.
    """
    listen = server_options.pop("listen", "127.0.0.1:0")
    async with Store(db_url) as store:
        await migrate.upgrade(store.engine)
        use_cases = build(store, clock, central=central, schema_version=migrate.head_revision())
        _, _, secret = await use_cases.api_keys.bootstrap(
            email=f"admin-{uuid.uuid4().hex[:6]}@test.local", role=UserRole.ADMIN
        )
        async with GrpcServer(use_cases, listen, shutdown_grace_s=1, **server_options) as server:
            address = f"127.0.0.1:{server.port}"
            async with authorized_channel(address, secret) as channel:
                stubs = Stubs(channel)
                yield Edge(store, server, channel, stubs, Factory(stubs), use_cases, address, secret)


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
async def edge(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Edge]:
    """One server over a real, migrated store shared by a module's tests: a SQLite file (the edge default)
    and a fresh PostgreSQL database (central mode runs the same code)."""
    if request.param == "sqlite":
        db: Path = tmp_path_factory.mktemp("edge") / "edge.db"
        async for e in start_edge(str(db)):
            yield e
        return
    async with fresh_pg_database(request.getfixturevalue("pg_url")) as url:
        async for e in start_edge(url):
            yield e


@pytest.fixture
def stubs(edge: Edge) -> Stubs:
    return edge.stubs


@pytest.fixture
def make(edge: Edge) -> Factory:
    return edge.make


@pytest.fixture(scope="session", autouse=True)
def _quiet_logs() -> None:
    """Per-RPC log lines at INFO would drown test output; tests that check logs configure their own."""
    from agent.logs import configure_logging

    configure_logging("WARNING")
