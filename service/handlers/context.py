"""What a command handler gets besides its command: who, when, and the batch's lookups."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime

from service.domain.values import Actor, DirectoryUser


@dataclass(slots=True)
class CommandContext:
    actor: Actor
    now: datetime
    message_id: uuid.UUID
    users: dict[uuid.UUID, DirectoryUser] = field(default_factory=dict)
    #: The actor the command's events name when the sender acts for someone: the email
    #: gateway (a system actor) for the customer who wrote the mail. None: ``actor`` itself.
    on_behalf_of: Actor | None = None
