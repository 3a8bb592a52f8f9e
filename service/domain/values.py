"""Plain value types of the domain: roles, statuses, the actor, directory users."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from enum import StrEnum


class Role(StrEnum):
    CUSTOMER = "customer"
    AGENT = "agent"
    ADMIN = "admin"
    SYSTEM = "system"


STAFF = frozenset({Role.AGENT, Role.ADMIN})

#: Priorities in order, 1 (low) … 4 (urgent): the read side sorts by it.
PRIORITY_RANK = {"low": 1, "normal": 2, "high": 3, "urgent": 4}


class Status(StrEnum):
    NEW = "new"
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    PENDING = "pending"
    ON_HOLD = "on_hold"
    RESOLVED = "resolved"
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Actor:
    user_id: uuid.UUID
    role: Role
    customer_id: uuid.UUID | None = None

    @property
    def is_staff(self) -> bool:
        return self.role in STAFF


@dataclass(frozen=True, slots=True)
class DirectoryUser:
    """An entry of the local replica of the user directory."""

    user_id: uuid.UUID
    email: str
    role: Role
    customer_id: uuid.UUID | None
    active: bool

    @property
    def can_be_assigned(self) -> bool:
        return self.active and self.role in STAFF
