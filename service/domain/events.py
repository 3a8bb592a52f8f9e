"""Domain events, named in the past tense. Each becomes one entry of the ticket's history.

An event is a type name and a payload of plain values; the adapters serialise it. The
aggregate stamps ``version`` (the ticket's version after the change) and ``internal``.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

TICKET_CREATED = "ticket.created"
TICKET_UPDATED = "ticket.updated"
STATUS_CHANGED = "ticket.status_changed"
TICKET_ASSIGNED = "ticket.assigned"
REPLY_ADDED = "ticket.reply_added"
TIME_LOGGED = "ticket.time_logged"
TICKET_DELETED = "ticket.deleted"
TICKET_RESTORED = "ticket.restored"
FOLLOWERS_CHANGED = "ticket.followers_changed"
ATTACHMENT_SCANNED = "ticket.attachment_scanned"
TICKET_MERGED = "ticket.merged"
MERGE_RECEIVED = "ticket.merge_received"
TICKET_REDACTED = "ticket.redacted"


@dataclass(slots=True)
class DomainEvent:
    type: str
    ticket_id: uuid.UUID
    version: int
    occurred_at: datetime
    payload: dict[str, Any]
    #: The ticket's routing fields right after this event (SPEC §7).
    snapshot: dict[str, Any]
    internal: bool = False
    event_id: uuid.UUID = field(default_factory=uuid.uuid4)
