"""Who may follow a ticket, and who may change its followers (``ticket.set_followers``, a mail's Cc).

A follower is an active staff member or an active user of the ticket's own customer. Staff may add
any such user and remove anyone; a customer may add active users of the ticket's own customer and
remove only themselves. Service accounts change no followers. Anyone else is refused with the usual
``forbidden`` / ``not_found`` (visibility is checked before this).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping

from .errors import Forbidden, InvalidFollower
from .policy import check_not_system
from .values import STAFF, Actor, DirectoryUser, Role

#: Most followers one ticket may have.
MAX_FOLLOWERS = 100


def may_follow(user: DirectoryUser | None, customer_id: uuid.UUID) -> bool:
    """Whether ``user`` may follow a ticket of ``customer_id`` at all."""
    if user is None or not user.active:
        return False
    return user.role in STAFF or (user.role is Role.CUSTOMER and user.customer_id == customer_id)


def may_add(actor: Actor, user: DirectoryUser) -> bool:
    """Whether ``actor`` may add ``user`` (who may follow): staff anyone, a customer only customers."""
    return actor.is_staff or user.role is Role.CUSTOMER


def check_follower_change(actor: Actor, customer_id: uuid.UUID, add: Mapping[uuid.UUID, DirectoryUser | None],
                          remove: Iterable[uuid.UUID]) -> None:
    """Raise the named error that forbids the change; return if it is allowed."""
    check_not_system(actor, "change followers")
    for user_id, user in add.items():
        if user is None or not may_follow(user, customer_id):
            raise InvalidFollower(f"user {user_id} is not an active staff member or user of the ticket's customer")
        if not may_add(actor, user):
            raise Forbidden("customers may only add users of their own customer as followers")
    if actor.role is Role.CUSTOMER and any(user_id != actor.user_id for user_id in remove):
        raise Forbidden("customers may only remove themselves as followers")
