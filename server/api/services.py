"""Thin gRPC servicers for every entity service, built from the proto service descriptors.

Each method parses the request (server/api/mapping.py), calls the entity's use case and maps the result back.
No error handling here: the interceptor maps domain errors once.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Awaitable, Callable
from types import ModuleType
from typing import Any

import grpc
from google.protobuf import empty_pb2, message_factory
from google.protobuf.descriptor import ServiceDescriptor
from google.protobuf.message import Message
from smooth.core.v1 import (
    tool_assembly_pb2,
    tool_instance_pb2,
    tool_item_pb2,
    tool_preset_pb2,
    tool_set_pb2,
    tool_usage_pb2,
    user_pb2,
)

from server.api import mapping
from server.api.interceptors import CURRENT_CALL
from server.api.measurement_service import MeasurementHandlers
from server.domain.registry import KINDS, EntityKind
from server.domain.schema import OUTPUT_ONLY
from server.usecases.entities import Caller, EntityService, revision_entity
from server.usecases.identity import UserService
from server.usecases.lifecycle import InstanceService
from server.usecases.measurements import MeasurementService

# entity kind -> the generated module holding its service and messages.
PROTO_MODULES: dict[str, ModuleType] = {
    "tool_item": tool_item_pb2,
    "tool_assembly": tool_assembly_pb2,
    "tool_instance": tool_instance_pb2,
    "tool_preset": tool_preset_pb2,
    "tool_usage": tool_usage_pb2,
    "tool_set": tool_set_pb2,
    "user": user_pb2,
}

Handler = Callable[[Any, grpc.aio.ServicerContext], Awaitable[Message | bytes]]


def service_descriptor(kind: EntityKind) -> ServiceDescriptor:
    return PROTO_MODULES[kind.name].DESCRIPTOR.services_by_name[f"{kind.label}Service"]  # type: ignore[no-any-return]


# Serialized entity messages kept, all kinds together: a few hundred bytes each, so a few MB at most — the
# agent's memory stays bounded however many entities are read (issue 11: RSS < 200 MB).
MESSAGE_CACHE_SIZE = 8_192


class MessageCache:
    """Least recently used serialized messages by (kind, id, version, updated_at): an entity's state never changes
    without its version changing (a replicated state written at the same version carries its own updated_at)."""

    def __init__(self, size: int) -> None:
        self._size = size
        self._items: OrderedDict[tuple[Any, ...], bytes] = OrderedDict()

    def get(self, key: tuple[Any, ...]) -> bytes | None:
        wire = self._items.get(key)
        if wire is not None:
            self._items.move_to_end(key)
        return wire

    def put(self, key: tuple[Any, ...], wire: bytes) -> bytes:
        self._items[key] = wire
        if len(self._items) > self._size:
            self._items.popitem(last=False)
        return wire


def _varint(n: int) -> bytes:
    out = bytearray()
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def _field_key(number: int) -> bytes:
    """The key of a length-delimited field (wire type 2) with this number."""
    return _varint(number << 3 | 2)


def length_delimited(number: int, wire: bytes) -> bytes:
    """A length-delimited field (a message, string or bytes) with this number, as it stands on the wire: appended
    to a message's bytes, it sets that field (or adds to it, when repeated)."""
    return _field_key(number) + _varint(len(wire)) + wire


def serialize_response(response: Message | bytes) -> bytes:
    """Responses leave as protobuf bytes: a message is serialized, bytes built from cached messages pass as they
    are (protobuf's wire format lets a message be written as its fields' encodings one after another)."""
    return response if type(response) is bytes else response.SerializeToString()  # type: ignore[union-attr]


class EntityServicer:
    """Implements one `<Entity>Service`; the method set comes from the service descriptor."""

    def __init__(
        self,
        kind: EntityKind,
        service: EntityService,
        messages: MessageCache | None = None,
        extra: dict[str, Handler] | None = None,
    ) -> None:
        self.kind = kind
        self.extra = dict(extra or {})  # the service's custom methods, by name
        self.service = service
        self.message_cls: type[Message] = getattr(PROTO_MODULES[kind.name], kind.label)
        self.descriptor = service_descriptor(kind)
        self._messages = messages if messages is not None else MessageCache(MESSAGE_CACHE_SIZE)
        list_response = _response_cls(self.descriptor, f"List{_plural(kind)}").DESCRIPTOR
        (items,) = (f for f in list_response.fields if f.message_type is self.message_cls.DESCRIPTOR)
        self._items_key = _field_key(items.number)
        self._token_key = _field_key(list_response.fields_by_name["next_page_token"].number)

    def _caller(self, request: Message | None = None) -> Caller:
        call = CURRENT_CALL.get()
        return Caller(principal=call.principal, request_id=getattr(request, "request_id", ""), peer=call.peer)

    def out(self, entity: Any) -> bytes:
        """The entity's message, serialized once per version (`MessageCache`): a List of 50 rows or a hot Get
        neither rebuilds Structs and timestamps nor serializes again for states it has sent before."""
        key = (self.kind.name, entity.id, entity.version, entity.updated_at)
        wire = self._messages.get(key)
        if wire is None:
            wire = self._messages.put(key, mapping.to_proto(entity, self.message_cls).SerializeToString())
        return wire

    async def get(self, request: Any, context: grpc.aio.ServicerContext) -> bytes:
        return self.out(await self.service.get(mapping.require_id(request.id), self._caller()))

    async def list(self, request: Any, context: grpc.aio.ServicerContext) -> bytes:
        result = await self.service.list(
            page_size=request.page_size,
            page_token=request.page_token,
            filter_text=request.filter,
            order_by=request.order_by,
            caller=self._caller(),
        )
        # The List<Kind>sResponse written field by field: each item as the cached bytes of its message.
        parts: list[bytes] = []
        for entity in result.items:
            wire = self.out(entity)
            parts += (self._items_key, _varint(len(wire)), wire)
        if result.next_page_token:
            token = result.next_page_token.encode()
            parts += (self._token_key, _varint(len(token)), token)
        return b"".join(parts)

    async def create(self, request: Any, context: grpc.aio.ServicerContext) -> bytes:
        msg = getattr(request, self.kind.name)
        entity_id = mapping.require_id(msg.id) if msg.id else None
        values = mapping.from_proto(self.kind, msg, mapping.settable_fields(self.kind))
        return self.out(await self.service.create(values, entity_id=entity_id, caller=self._caller(request)))

    async def update(self, request: Any, context: grpc.aio.ServicerContext) -> bytes:
        msg = getattr(request, self.kind.name)
        entity_id = mapping.require_id(msg.id, f"{self.kind.name}.id")
        paths = mapping.update_paths(self.kind, msg, list(request.update_mask.paths))
        values = mapping.from_proto(self.kind, msg, [p for p in paths if p not in OUTPUT_ONLY])
        entity = await self.service.update(entity_id, msg.version, values, caller=self._caller(request))
        return self.out(entity)

    async def delete(self, request: Any, context: grpc.aio.ServicerContext) -> Message:
        await self.service.delete(mapping.require_id(request.id), request.version, caller=self._caller(request))
        return empty_pb2.Empty()

    async def list_revisions(self, request: Any, context: grpc.aio.ServicerContext) -> Message:
        result = await self.service.list_revisions(
            mapping.require_id(request.id),
            page_size=request.page_size,
            page_token=request.page_token,
            caller=self._caller(),
        )
        response: Any = _response_cls(self.descriptor, "ListRevisions")()
        revision_cls = _message_cls(response.DESCRIPTOR.fields_by_name["revisions"].message_type)
        for rev in result.items:
            item = revision_cls(revision=mapping.revision_info(rev))
            getattr(item, self.kind.name).MergeFromString(self.out(revision_entity(self.kind, rev)))
            response.revisions.append(item)
        response.next_page_token = result.next_page_token
        out: Message = response
        return out

    async def add_members(self, request: Any, context: grpc.aio.ServicerContext) -> bytes:
        return await self._members(request, add=True)

    async def remove_members(self, request: Any, context: grpc.aio.ServicerContext) -> bytes:
        return await self._members(request, add=False)

    async def _members(self, request: Any, *, add: bool) -> bytes:
        members = {
            name: [mapping.require_id(v, name) for v in getattr(request, name)]
            for name in ("tool_instance_ids", "tool_preset_ids")
        }
        entity = await self.service.change_members(
            mapping.require_id(request.id), request.version, members, add=add, caller=self._caller(request)
        )
        return self.out(entity)

    async def deactivate(self, request: Any, context: grpc.aio.ServicerContext) -> bytes:
        assert isinstance(self.service, UserService)
        user = await self.service.deactivate(
            mapping.require_id(request.id), request.version, caller=self._caller(request)
        )
        return self.out(user)

    def handlers(self) -> grpc.GenericRpcHandler:
        label, plural = self.kind.label, _plural(self.kind)
        behaviors: dict[str, Handler] = {
            f"Get{label}": self.get,
            f"List{plural}": self.list,
            f"Create{label}": self.create,
            f"Update{label}": self.update,
            f"Delete{label}": self.delete,
            "ListRevisions": self.list_revisions,
            "AddToolSetMembers": self.add_members,
            "RemoveToolSetMembers": self.remove_members,
            "DeactivateUser": self.deactivate,
            **self.extra,
        }
        methods: dict[str, grpc.RpcMethodHandler] = {}
        for method in self.descriptor.methods:
            behavior = behaviors[method.name]  # a proto method without a behavior fails at start-up
            methods[method.name] = grpc.unary_unary_rpc_method_handler(
                behavior,
                request_deserializer=_message_cls(method.input_type).FromString,
                response_serializer=serialize_response,
            )
        return grpc.method_handlers_generic_handler(self.descriptor.full_name, methods)


def _plural(kind: EntityKind) -> str:
    return kind.label[:-1] + "ies" if kind.label.endswith("y") else kind.label + "s"


def _message_cls(descriptor: Any) -> type[Message]:
    return message_factory.GetMessageClass(descriptor)


def _response_cls(service: ServiceDescriptor, method: str) -> type[Message]:
    return _message_cls(service.methods_by_name[method].output_type)


def entity_servicers(services: dict[str, EntityService], measurements: MeasurementService) -> list[EntityServicer]:
    messages = MessageCache(MESSAGE_CACHE_SIZE)  # one budget shared by every kind
    servicers = {name: EntityServicer(KINDS[name], services[name], messages) for name in PROTO_MODULES}
    instances = servicers["tool_instance"]
    instances.extra.update(MeasurementHandlers(measurements, instances.out).behaviors())
    instance_service = services["tool_instance"]
    assert isinstance(instance_service, InstanceService)

    async def reset_tool_life(request: Any, context: grpc.aio.ServicerContext) -> bytes:
        entity = await instance_service.reset_tool_life(
            mapping.require_id(request.id),
            request.version,
            request.reason,
            list(request.counters),
            caller=instances._caller(request),
        )
        return instances.out(entity)

    instances.extra["ResetToolLife"] = reset_tool_life
    return list(servicers.values())
