"""What a command handler gets besides its command: who, when, and the batch's lookups."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from service.domain.attachments import Attachment, AttachmentLimits
from service.domain.email import KnownEmail
from service.domain.ticket import Ticket
from service.domain.values import Actor, DirectoryUser

if TYPE_CHECKING:
    from collections.abc import Iterable


@dataclass(frozen=True, slots=True)
class Limits:
    """The configured limits the rules apply (from :class:`service.settings.Settings`)."""

    attachments: AttachmentLimits = AttachmentLimits()
    #: New tickets the mails of one sender may open per rolling hour; 0: no limit.
    mail_new_tickets_per_hour: int = 20


@dataclass(slots=True)
class CommandContext:
    actor: Actor
    now: datetime
    message_id: uuid.UUID
    users: dict[uuid.UUID, DirectoryUser] = field(default_factory=dict)
    #: The actor the command's events name when the sender acts for someone: the email
    #: gateway (a system actor) for the customer who wrote the mail. None: ``actor`` itself.
    on_behalf_of: Actor | None = None
    limits: Limits = Limits()
    #: ``ticket.ingest_email``: Cc addresses that became no follower, for the result.
    unknown_cc: list[str] = field(default_factory=list)


class UnitOfWork(Protocol):
    """What handlers need from the unit of work; the SQL one and the test fake both provide it."""

    def get(self, ticket_id: uuid.UUID) -> Ticket | None: ...
    async def load(self, ticket_id: uuid.UUID) -> Ticket | None: ...
    def add(self, ticket: Ticket) -> None: ...
    async def next_number(self) -> int: ...
    async def users(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, DirectoryUser]: ...
    async def user_by_email(self, email: str) -> DirectoryUser | None: ...
    async def email_known(self, message_ids: Iterable[str]) -> dict[str, KnownEmail]: ...
    async def ticket_id_by_number(self, number: str) -> uuid.UUID | None: ...
    def record_email(self, row: dict[str, object]) -> None: ...
    async def users_by_email(self, addresses: Iterable[str]) -> dict[str, DirectoryUser]: ...
    async def new_tickets_by_mail(self, from_address: str, since: datetime) -> int: ...
    async def known_attachments(self, ids: Iterable[uuid.UUID]) -> set[uuid.UUID]: ...
    async def attachment(self, attachment_id: uuid.UUID) -> Attachment | None: ...
