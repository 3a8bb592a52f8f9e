"""What a command handler gets besides its command: who, when, and the batch's lookups."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from service.domain.attachments import AttachmentLimits
from service.domain.values import Actor, DirectoryUser


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
