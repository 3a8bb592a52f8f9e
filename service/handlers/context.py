"""What a command handler gets besides its command: who, when, and the batch's lookups."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from service.domain.ticket import Ticket
from service.domain.values import Actor, DirectoryUser

if TYPE_CHECKING:
    from collections.abc import Iterable


@dataclass(slots=True)
class CommandContext:
    actor: Actor
    now: datetime
    message_id: uuid.UUID
    users: dict[uuid.UUID, DirectoryUser] = field(default_factory=dict)
    #: The actor the command's events name when the sender acts for someone: the email
    #: gateway (a system actor) for the customer who wrote the mail. None: ``actor`` itself.
    on_behalf_of: Actor | None = None


class UnitOfWork(Protocol):
    """What handlers need from the unit of work; the SQL one and the test fake both provide it."""

    def get(self, ticket_id: uuid.UUID) -> Ticket | None: ...
    async def load(self, ticket_id: uuid.UUID) -> Ticket | None: ...
    def add(self, ticket: Ticket) -> None: ...
    async def next_number(self) -> int: ...
    async def users(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, DirectoryUser]: ...
    async def user_by_email(self, email: str) -> DirectoryUser | None: ...
    async def email_known(self, message_ids: Iterable[str]) -> dict[str, tuple[uuid.UUID | None, uuid.UUID]]: ...
    async def ticket_id_by_number(self, number: str) -> uuid.UUID | None: ...
    def record_email(self, row: dict[str, object]) -> None: ...
