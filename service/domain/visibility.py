"""Who may read what (SPEC §9): the guards of the query side.

Customers see only their own customer's tickets; a foreign ticket, like a deleted one, is
``not_found`` — never ``forbidden`` — so ticket ids cannot be probed (the rule of
:func:`service.domain.policy.check_visible`). Agents see every non-deleted ticket; admins may ask
for deleted ones. Audit trails and time entries are staff-only, internal notes and time spent
are shown to staff only. Service accounts (``system``) read nothing: they only send commands.
"""

from __future__ import annotations

import uuid

from .errors import Forbidden
from .policy import check_visible as check_readable
from .values import Actor, Role

__all__ = ["check_readable", "check_may_query", "check_may_see_deleted", "check_staff_only", "customer_scope"]


def check_may_query(actor: Actor) -> None:
    if actor.role is Role.SYSTEM:
        raise Forbidden("service accounts may not query tickets")


def check_may_see_deleted(actor: Actor, include_deleted: bool) -> None:
    """Asking for deleted tickets is an admin's right; anyone else asking is refused outright
    (before any ticket is looked at, so the refusal reveals nothing)."""
    if include_deleted and actor.role is not Role.ADMIN:
        raise Forbidden("only admins may ask for deleted tickets")


def check_staff_only(actor: Actor, what: str) -> None:
    if not actor.is_staff:
        raise Forbidden(f"only agents and admins may read {what}")


def customer_scope(actor: Actor, requested: uuid.UUID | None) -> uuid.UUID | None:
    """The customer a listing is limited to. Staff may pick any (or none); a customer is always
    limited to their own, and naming another customer is ``forbidden`` — whatever that customer
    is, so the answer depends on nothing but the request."""
    if actor.role is not Role.CUSTOMER:
        return requested
    if requested is not None and requested != actor.customer_id:
        raise Forbidden("customers may only list their own customer's tickets")
    return actor.customer_id
