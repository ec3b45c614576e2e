"""All use cases over one store, built together (the composition root wires them to the API)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from server.domain.registry import KINDS
from server.usecases.audit import AuditService
from server.usecases.change_stream import ChangeStream
from server.usecases.entities import EntityService, utc_now
from server.usecases.identity import ApiKeyService, Authenticator, UserService
from server.usecases.lifecycle import InstanceService, LimitsService, UsageService
from server.usecases.measurements import MeasurementService
from server.usecases.mes import MesService
from server.usecases.ports import UnitOfWork
from server.usecases.replication.central import SyncApplier
from server.usecases.usage_recording import PresetService, UsageRecorder


@dataclass(frozen=True, slots=True)
class UseCases:
    store: UnitOfWork
    entities: dict[str, EntityService]  # by kind name, "user" included (a UserService)
    users: UserService
    api_keys: ApiKeyService
    audit: AuditService
    authenticator: Authenticator
    recorder: UsageRecorder
    measurements: MeasurementService
    sync: SyncApplier
    mes: MesService
    changes: ChangeStream


def build(
    store: UnitOfWork, clock: Callable[[], datetime] = utc_now, *, central: bool = False, schema_version: str = ""
) -> UseCases:
    """Every use case over `store`; `central` accepts replication from edges (SyncService)."""
    authenticator = Authenticator(store, clock)
    users = UserService(store, clock, authenticator.forget_all)
    entities = {name: EntityService(store, kind, clock) for name, kind in KINDS.items() if name != "user"}
    entities["user"] = users
    instances = InstanceService(store, KINDS["tool_instance"], clock)
    entities["tool_instance"] = instances
    for name in ("tool_item", "tool_assembly"):
        entities[name] = LimitsService(store, KINDS[name], clock, instances)
    entities["tool_usage"] = UsageService(store, KINDS["tool_usage"], clock, entities["tool_instance"])
    recorder = UsageRecorder(store, entities["tool_usage"], clock)
    measurements = MeasurementService(
        store, entities["tool_measurement"], entities["tool_instance"], entities["tool_usage"], clock
    )
    entities["tool_preset"] = PresetService(store, KINDS["tool_preset"], clock, recorder)
    changes = ChangeStream(store, clock)
    # Watchers wake on every commit of this process (and look again every second for other processes' writes).
    on_commit = getattr(store, "on_commit", None)
    if isinstance(on_commit, list):
        on_commit.append(changes.notify)
    return UseCases(
        store=store,
        entities=entities,
        users=users,
        api_keys=ApiKeyService(store, clock, authenticator),
        audit=AuditService(store, clock),
        authenticator=authenticator,
        recorder=recorder,
        measurements=measurements,
        sync=SyncApplier(store, clock, schema_version, central=central),
        mes=MesService(store, clock),
        changes=changes,
    )
