"""Thin servicers for ApiKeyService and AuditLogService (identity and audit use cases)."""

from __future__ import annotations

from typing import Any

import grpc
from google.protobuf import json_format, struct_pb2
from smooth.core.v1 import api_key_pb2, api_key_pb2_grpc, audit_log_pb2, audit_log_pb2_grpc

from server.api import mapping
from server.api.interceptors import CURRENT_CALL
from server.domain.errors import FieldViolation, InvalidArgument
from server.domain.identity import ApiKey, AuditEntry, AuditFilter
from server.usecases.app import UseCases
from server.usecases.entities import Caller


def _caller(request: Any = None) -> Caller:
    call = CURRENT_CALL.get()
    return Caller(principal=call.principal, request_id=str(getattr(request, "request_id", "") or ""), peer=call.peer)


def _optional_id(text: str, field: str) -> Any:
    return mapping.require_id(text, field) if text else None


def _time(request: Any, field: str) -> Any:
    if not request.HasField(field):
        return None
    try:
        return mapping.timestamp_to_datetime(getattr(request, field))
    except ValueError as exc:
        raise InvalidArgument.of([FieldViolation(field, str(exc))]) from None


def api_key_to_proto(key: ApiKey) -> api_key_pb2.ApiKey:
    msg = api_key_pb2.ApiKey(
        id=str(key.id), user_id=str(key.user_id), key_id=key.key_id, name=key.name, scopes=list(key.scopes)
    )
    for field, value in (
        ("expire_time", key.expires_at),
        ("last_used_time", key.last_used_at),
        ("revoke_time", key.revoked_at),
        ("create_time", key.created_at),
    ):
        if value is not None:
            getattr(msg, field).FromDatetime(value)
    return msg


def audit_to_proto(entry: AuditEntry) -> audit_log_pb2.AuditLogEntry:
    msg = audit_log_pb2.AuditLogEntry(
        sequence=entry.seq,
        actor_id=str(entry.actor_id or ""),
        api_key_id=str(entry.api_key_id or ""),
        action=entry.action,
        entity_type=entry.entity_type,
        entity_id=entry.entity_id,
        entity_version=entry.entity_version or 0,
        request_id=entry.request_id,
        peer=entry.peer,
        outcome=entry.outcome,
        detail=entry.detail,
        prev_hash=entry.prev_hash,
        hash=entry.hash,
    )
    msg.occur_time.FromDatetime(entry.occurred_at)
    for field in ("before", "after"):
        value = getattr(entry, field)
        if value is not None:
            getattr(msg, field).CopyFrom(json_format.ParseDict(value, struct_pb2.Struct()))
    return msg


class ApiKeyServicer(api_key_pb2_grpc.ApiKeyServiceServicer):  # type: ignore[misc]
    def __init__(self, use_cases: UseCases) -> None:
        self._keys = use_cases.api_keys

    async def CreateApiKey(self, request: Any, context: grpc.aio.ServicerContext) -> api_key_pb2.CreateApiKeyResponse:
        key, secret = await self._keys.create(
            user_id=_optional_id(request.user_id, "user_id"),
            name=request.name,
            scopes=list(request.scopes),
            expires_at=_time(request, "expire_time"),
            caller=_caller(request),
        )
        return api_key_pb2.CreateApiKeyResponse(api_key=api_key_to_proto(key), secret=secret)

    async def ListApiKeys(self, request: Any, context: grpc.aio.ServicerContext) -> api_key_pb2.ListApiKeysResponse:
        keys, token = await self._keys.list(
            user_id=_optional_id(request.user_id, "user_id"),
            page_size=request.page_size,
            page_token=request.page_token,
            caller=_caller(request),
        )
        return api_key_pb2.ListApiKeysResponse(api_keys=[api_key_to_proto(k) for k in keys], next_page_token=token)

    async def RevokeApiKey(self, request: Any, context: grpc.aio.ServicerContext) -> api_key_pb2.ApiKey:
        return api_key_to_proto(await self._keys.revoke(mapping.require_id(request.id), caller=_caller(request)))


class AuditLogServicer(audit_log_pb2_grpc.AuditLogServiceServicer):  # type: ignore[misc]
    def __init__(self, use_cases: UseCases) -> None:
        self._audit = use_cases.audit

    async def ListAuditLogs(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> audit_log_pb2.ListAuditLogsResponse:
        flt = AuditFilter(
            actor_id=_optional_id(request.actor_id, "actor_id"),
            entity_type=request.entity_type,
            entity_id=request.entity_id,
            action=request.action,
            start_time=_time(request, "start_time"),
            end_time=_time(request, "end_time"),
        )
        entries, token = await self._audit.list(
            _caller().principal, flt, page_size=request.page_size, page_token=request.page_token
        )
        return audit_log_pb2.ListAuditLogsResponse(entries=[audit_to_proto(e) for e in entries], next_page_token=token)


def add_identity_servicers(server: grpc.aio.Server, use_cases: UseCases) -> list[str]:
    api_key_pb2_grpc.add_ApiKeyServiceServicer_to_server(ApiKeyServicer(use_cases), server)
    audit_log_pb2_grpc.add_AuditLogServiceServicer_to_server(AuditLogServicer(use_cases), server)
    return [
        api_key_pb2.DESCRIPTOR.services_by_name["ApiKeyService"].full_name,
        audit_log_pb2.DESCRIPTOR.services_by_name["AuditLogService"].full_name,
    ]
