"""One list of commands: each command type of the contract union has exactly one handler, and the
handler's registration declares what the bus must fetch for it before the batch runs.

    @handles(c.MergeTicket, tickets=lambda p: (p.ticket_id, p.into_ticket_id))
    async def merge_ticket(cmd, ctx, uow) -> Ticket: ...

``tickets`` are locked (existing or not) and loaded with the whole batch, in id order; ``users``
are read from the directory replica into ``ctx.users``; ``numbers`` ticket numbers are drawn.
``complete()`` checks the registry against ``ticket_contracts.commands.COMMAND_TYPES`` (derived
from the ``Command`` union), so a command added to the contract without a handler — or a handler
without a contract — fails at start-up and in the unit tests, never silently.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from ticket_contracts.commands import COMMAND_TYPES, CommandBase

from service.domain.ticket import Ticket

from .context import CommandContext
from .unit_of_work import UnitOfWork

Handler = Callable[[Any, CommandContext, UnitOfWork], Awaitable[Ticket]]
Ids = Callable[[Any], Iterable[uuid.UUID | None]]
H = TypeVar("H", bound=Handler)


def _own_ticket(payload: Any) -> Iterable[uuid.UUID | None]:
    return (getattr(payload, "ticket_id", None),)


def _nobody(payload: Any) -> Iterable[uuid.UUID | None]:
    return ()


@dataclass(slots=True, frozen=True)
class Registration:
    handler: Handler
    #: Ticket ids to lock and load with the batch (default: the payload's ``ticket_id``).
    tickets: Ids = _own_ticket
    #: Directory users to read into ``ctx.users``.
    users: Ids = _nobody
    #: Ticket numbers to draw for the tickets the command may create.
    numbers: int = 0


_REGISTRY: dict[str, Registration] = {}


def handles(command: type[CommandBase], *, tickets: Ids = _own_ticket, users: Ids = _nobody,
            numbers: int = 0) -> Callable[[H], H]:
    """Register the decorated coroutine as the handler of ``command``."""
    type_name = command.model_fields["type"].default

    def register(handler: H) -> H:
        if type_name in _REGISTRY:
            raise RuntimeError(f"two handlers for {type_name}")
        _REGISTRY[type_name] = Registration(handler, tickets, users, numbers)
        return handler

    return register


def complete() -> dict[str, Registration]:
    """The registry, checked against the contract's command union."""
    from . import commands, email  # noqa: F401  (importing them registers their handlers)

    missing = sorted(set(COMMAND_TYPES) - set(_REGISTRY))
    unknown = sorted(set(_REGISTRY) - set(COMMAND_TYPES))
    if missing or unknown:
        raise RuntimeError(f"command registry out of step with the contract: no handler for {missing}, "
                           f"no contract for {unknown}")
    return dict(_REGISTRY)
