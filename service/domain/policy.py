"""Permission guards of SPEC §6. Each raises a named error or returns.

A customer addressing another customer's ticket gets ``not_found``, never ``forbidden``,
so ticket ids cannot be probed; deleted tickets are invisible to all but admins.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Protocol, TypeVar

from .errors import Forbidden, InvalidInput, TicketNotFound
from .values import Actor, Role


class Addressable(Protocol):
    """What visibility needs of a ticket: the aggregate and the read side's views both have it."""

    @property
    def customer_id(self) -> uuid.UUID: ...

    @property
    def deleted_at(self) -> datetime | None: ...


T = TypeVar("T", bound=Addressable)


def check_visible(actor: Actor, ticket: T | None, *, allow_deleted: bool = False) -> T:
    """The ticket if ``actor`` may address it at all; ``TicketNotFound`` otherwise."""
    if ticket is None:
        raise TicketNotFound()
    if actor.role is Role.CUSTOMER and ticket.customer_id != actor.customer_id:
        raise TicketNotFound()
    if ticket.deleted_at is not None and not (allow_deleted and actor.role is Role.ADMIN):
        raise TicketNotFound()
    return ticket


def check_staff(actor: Actor, action: str) -> None:
    if not actor.is_staff:
        raise Forbidden(f"only agents and admins may {action}")


def check_admin(actor: Actor, action: str) -> None:
    if actor.role is not Role.ADMIN:
        raise Forbidden(f"only admins may {action}")


def check_redactor(actor: Actor) -> None:
    """Redaction erases people's words for good: admins, and service accounts (erasure)."""
    if actor.role not in (Role.ADMIN, Role.SYSTEM):
        raise Forbidden("only admins and service accounts may redact tickets")


def check_not_system(actor: Actor, action: str) -> None:
    if actor.role is Role.SYSTEM:
        raise Forbidden(f"service accounts may not {action}")


def customer_for_new_ticket(actor: Actor, requested: uuid.UUID | None) -> uuid.UUID:
    """Whose ticket a new ticket is: customers only for their own customer."""
    if actor.role is Role.CUSTOMER:
        if requested is not None and requested != actor.customer_id:
            raise Forbidden("customers may only create tickets for their own customer")
        if actor.customer_id is None:
            raise InvalidInput("a customer actor needs customer_id")
        return actor.customer_id
    if requested is None:
        raise InvalidInput("customer_id is required when staff or a service creates a ticket")
    return requested


CUSTOMER_EDITABLE = frozenset({"title", "description"})


def check_update_fields(actor: Actor, fields: set[str]) -> None:
    check_not_system(actor, "edit tickets")
    if actor.role is Role.CUSTOMER and not fields <= CUSTOMER_EDITABLE:
        raise Forbidden("customers may only change the title and the description")


def check_reply(actor: Actor, internal: bool) -> None:
    check_not_system(actor, "reply")
    if internal and not actor.is_staff:
        raise Forbidden("only agents and admins may write internal notes")
