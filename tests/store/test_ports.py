"""The store implements the ports (server/usecases/ports.py, issue 9): every method each protocol declares exists
on the store's `Transaction` (on `Store` for `UnitOfWork`) with the same parameters, the same defaults and the
same async-ness. The store may not import the use cases (tests/test_architecture.py), so the check lives here;
the two functions below let mypy check the full signatures when it is pointed at this file.
"""

from __future__ import annotations

import inspect
from typing import Any

import pytest

from server.store.repository import Store, Transaction
from server.usecases import ports


def _transaction_is_every_port(tx: Transaction) -> ports.Transaction:
    return tx


def _store_is_a_unit_of_work(store: Store) -> ports.UnitOfWork:
    return store


PROTOCOLS = sorted(
    (
        obj
        for obj in vars(ports).values()
        if isinstance(obj, type) and obj.__module__ == ports.__name__ and getattr(obj, "_is_protocol", False)
    ),
    key=lambda p: p.__name__,
)
IMPLEMENTATIONS: dict[str, type] = {"UnitOfWork": Store}


def _declared(protocol: type) -> dict[str, Any]:
    """The methods a protocol declares, its own and those of the protocols it extends."""
    methods: dict[str, Any] = {}
    for cls in reversed(protocol.__mro__):
        if cls.__module__ == ports.__name__:
            methods.update({n: f for n, f in vars(cls).items() if inspect.isfunction(f) and not n.startswith("_")})
    return methods


def _shape(function: Any) -> list[tuple[str, Any, Any]]:
    return [(p.name, p.kind, p.default) for p in inspect.signature(function).parameters.values()]


def test_every_port_is_found() -> None:
    names = {p.__name__ for p in PROTOCOLS}
    expected = {"Entities", "ChangeLog", "IdentityAndAudit", "CollectorState", "ReplicationState"}
    assert expected | {"Transaction", "UnitOfWork"} <= names
    assert set(_declared(ports.Transaction)) >= {m for p in expected for m in _declared(getattr(ports, p))}


@pytest.mark.parametrize("protocol", PROTOCOLS, ids=lambda p: p.__name__)
def test_the_store_implements_the_port(protocol: type) -> None:
    implementation = IMPLEMENTATIONS.get(protocol.__name__, Transaction)
    problems = []
    for name, declared in _declared(protocol).items():
        found = getattr(implementation, name, None)
        if found is None:
            problems.append(f"{implementation.__name__}.{name} is missing")
            continue
        if _shape(found) != _shape(declared):
            problems.append(
                f"{implementation.__name__}.{name}{inspect.signature(found)} != {inspect.signature(declared)}"
            )
        if inspect.iscoroutinefunction(found) != inspect.iscoroutinefunction(declared):
            problems.append(f"{implementation.__name__}.{name}: async in one, not in the other")
    assert _declared(protocol), f"{protocol.__name__} declares no method"
    assert not problems, "\n".join(problems)
