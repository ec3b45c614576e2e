"""Which scope each RPC needs. Default deny: a method missing from this table is refused for everyone.

A call passes when its key holds any of the listed scopes (admin satisfies every rule). Ownership and the
shop-floor exceptions are checked by the use cases (server/usecases/access.py).
"""

from __future__ import annotations

from server.domain.errors import PermissionDenied
from server.domain.identity import Principal, Scope

R, W, A = Scope.READ, Scope.WRITE, Scope.ADMIN
USAGE, MEAS = Scope.USAGE_REPORT, Scope.MEASUREMENTS_WRITE

# Methods anyone may call without a key.
OPEN_PREFIXES = ("/grpc.health.v1.Health/",)
REFLECTION_PREFIXES = ("/grpc.reflection.v1alpha.ServerReflection/", "/grpc.reflection.v1.ServerReflection/")


def _crud(
    service: str, entity: str, plural: str, *, read: set[Scope], create: set[Scope], update: set[Scope]
) -> dict[str, frozenset[Scope]]:
    base = f"/smooth.core.v1.{service}/"
    return {
        f"{base}Get{entity}": frozenset(read),
        f"{base}List{plural}": frozenset(read),
        f"{base}ListRevisions": frozenset(read),
        f"{base}Create{entity}": frozenset(create),
        f"{base}Update{entity}": frozenset(update),
        f"{base}Delete{entity}": frozenset({W}),
    }


METHOD_SCOPES: dict[str, frozenset[Scope]] = {
    **_crud("ToolItemService", "ToolItem", "ToolItems", read={R}, create={W}, update={W}),
    **_crud("ToolAssemblyService", "ToolAssembly", "ToolAssemblies", read={R}, create={W}, update={W}),
    # Measuring stations read instances to find them and update measurements of any of them.
    **_crud(
        "ToolInstanceService", "ToolInstance", "ToolInstances", read={R, MEAS, USAGE}, create={W}, update={W, MEAS}
    ),
    # Presetter stations record measurements; whoever reads instances reads them.
    "/smooth.core.v1.ToolInstanceService/RecordMeasurement": frozenset({MEAS, W}),
    "/smooth.core.v1.ToolInstanceService/ListMeasurements": frozenset({R, MEAS, USAGE}),
    "/smooth.core.v1.ToolInstanceService/ResetToolLife": frozenset({Scope.TOOL_LIFE_RESET}),
    # Collectors read presets to map T numbers to instances.
    **_crud("ToolPresetService", "ToolPreset", "ToolPresets", read={R, USAGE}, create={W}, update={W}),
    **_crud("ToolUsageService", "ToolUsage", "ToolUsages", read={R, USAGE}, create={W, USAGE}, update={W, USAGE}),
    **_crud("ToolSetService", "ToolSet", "ToolSets", read={R}, create={W}, update={W}),
    "/smooth.core.v1.ToolSetService/AddToolSetMembers": frozenset({W}),
    "/smooth.core.v1.ToolSetService/RemoveToolSetMembers": frozenset({W}),
    "/smooth.core.v1.UserService/GetUser": frozenset({A}),
    "/smooth.core.v1.UserService/ListUsers": frozenset({A}),
    "/smooth.core.v1.UserService/CreateUser": frozenset({A}),
    "/smooth.core.v1.UserService/UpdateUser": frozenset({A}),
    "/smooth.core.v1.UserService/DeactivateUser": frozenset({A}),
    "/smooth.core.v1.UserService/ListRevisions": frozenset({A}),
    # People manage their own keys (the use case limits non-admins to themselves and to scopes they hold);
    # machine keys (usage:report, measurements:write, sync) do not manage keys.
    "/smooth.core.v1.ApiKeyService/CreateApiKey": frozenset({W, A}),
    "/smooth.core.v1.ApiKeyService/ListApiKeys": frozenset({R, W, A}),
    "/smooth.core.v1.ApiKeyService/RevokeApiKey": frozenset({R, W, A}),
    "/smooth.core.v1.AuditLogService/ListAuditLogs": frozenset({A}),
    "/smooth.core.v1.CollectorService/ListMachineStatuses": frozenset({R, USAGE}),
    "/smooth.core.v1.SyncService/PushChanges": frozenset({Scope.SYNC}),
    "/smooth.core.v1.SyncService/GetWatermark": frozenset({Scope.SYNC}),
    "/smooth.core.v1.SyncService/PullChanges": frozenset({Scope.SYNC}),
    "/smooth.core.v1.SyncService/ListConflicts": frozenset({A}),
    "/smooth.core.v1.SyncService/GetSnapshot": frozenset({Scope.SYNC}),
    "/smooth.core.v1.ReplicationService/GetReplicationStatus": frozenset({R}),
    # MES (issue 13): read-only queries and the change stream, for whoever reads tools.
    "/smooth.core.v1.ToolQueryService/ListToolLife": frozenset({R}),
    "/smooth.core.v1.ToolQueryService/ListCalibrationDue": frozenset({R}),
    "/smooth.core.v1.ToolQueryService/SummarizeUsage": frozenset({R}),
    "/smooth.core.v1.ToolQueryService/CheckJobReadiness": frozenset({R}),
    "/smooth.core.v1.ChangeStreamService/WatchChanges": frozenset({R}),
}


def authorize(method: str, principal: Principal) -> None:
    """Raise PermissionDenied unless the principal holds a scope the method accepts."""
    needed = METHOD_SCOPES.get(method)
    if needed is None:
        raise PermissionDenied(f"{method} has no access rule, so it is refused (default deny)", reason="NO_RULE")
    if not any(principal.has(scope) for scope in needed):
        names = " or ".join(sorted(s.value for s in needed))
        held = ", ".join(sorted(s.value for s in principal.scopes)) or "none"
        raise PermissionDenied(
            f"{method} needs the {names} scope; this key holds {held}",
            reason="MISSING_SCOPE",
            metadata={"required": names},
        )
