"""Domain events published on ``tickets.events.v1`` (SPEC §7)."""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal, Union

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, TypeAdapter

from .attachments import AttachmentView, ScanVerdict
from .envelope import Actor, Message
from .model import Channel, Priority, Status
from .views import ReplyView, TicketSnapshot, TimeEntryView


class EventPayload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class EventBase(Message):
    """``event_id`` equals ``message_id``; ``causation_id`` is the command's ``message_id``."""

    event_id: uuid.UUID
    occurred_at: AwareDatetime
    actor: Actor
    ticket_id: uuid.UUID
    ticket_version: int = Field(ge=1, description="The ticket's version after the change: 1, 2, 3 … per ticket.")
    internal: bool = Field(False, description="True when the event reveals staff-only content (internal notes).")
    ticket: TicketSnapshot


class TicketCreatedPayload(EventPayload):
    number: str
    customer_id: uuid.UUID
    created_by: uuid.UUID
    title: str
    description: str
    priority: Priority
    category_id: uuid.UUID | None
    channel: Channel
    tags: list[str]
    status: Status
    follow_up_of: uuid.UUID | None
    email_message_id: str | None = None
    attachments: list[AttachmentView] = []


class FieldChange(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    old: Any
    new: Any


class TicketUpdatedPayload(EventPayload):
    changes: dict[str, FieldChange]


class StatusChangedPayload(EventPayload):
    from_status: Status
    to_status: Status
    reason: str | None
    automatic: bool


class AssignedPayload(EventPayload):
    from_assignee_id: uuid.UUID | None
    to_assignee_id: uuid.UUID | None


class ReplyAddedPayload(EventPayload):
    reply: ReplyView
    first_response: bool


class TimeLoggedPayload(EventPayload):
    entry: TimeEntryView
    time_spent_minutes: int


class DeletedPayload(EventPayload):
    reason: str


class RestoredPayload(EventPayload):
    pass


class FollowersChangedPayload(EventPayload):
    added: list[uuid.UUID]
    removed: list[uuid.UUID]


class AttachmentScannedPayload(EventPayload):
    """``internal`` (on the event) when the attachment belongs to an internal note."""

    attachment_id: uuid.UUID
    reply_id: uuid.UUID | None = Field(description="The reply it is attached to; null: the ticket's description.")
    verdict: ScanVerdict
    scanner: str
    scanned_at: AwareDatetime
    attachment: AttachmentView


class MergedPayload(EventPayload):
    """On the source: it was merged into ``into_ticket_id`` (an automatic close follows)."""

    into_ticket_id: uuid.UUID
    into_number: str
    reason: str | None = None


class MergeReceivedPayload(EventPayload):
    """On the target: the ticket ``from_ticket_id`` was merged into it."""

    from_ticket_id: uuid.UUID
    from_number: str


class RedactedPayload(EventPayload):
    """No content: downstream copies of the words must go (see docs/operations.md)."""

    author_id: uuid.UUID | None = Field(None, description=(
        "Set: only what this user wrote was redacted. Null: the whole ticket's text."))


class TicketCreated(EventBase):
    type: Literal["ticket.created"] = "ticket.created"
    payload: TicketCreatedPayload


class TicketUpdated(EventBase):
    type: Literal["ticket.updated"] = "ticket.updated"
    payload: TicketUpdatedPayload


class TicketStatusChanged(EventBase):
    type: Literal["ticket.status_changed"] = "ticket.status_changed"
    payload: StatusChangedPayload


class TicketAssigned(EventBase):
    type: Literal["ticket.assigned"] = "ticket.assigned"
    payload: AssignedPayload


class TicketReplyAdded(EventBase):
    type: Literal["ticket.reply_added"] = "ticket.reply_added"
    payload: ReplyAddedPayload


class TicketTimeLogged(EventBase):
    type: Literal["ticket.time_logged"] = "ticket.time_logged"
    payload: TimeLoggedPayload


class TicketDeleted(EventBase):
    type: Literal["ticket.deleted"] = "ticket.deleted"
    payload: DeletedPayload


class TicketRestored(EventBase):
    type: Literal["ticket.restored"] = "ticket.restored"
    payload: RestoredPayload


class TicketFollowersChanged(EventBase):
    type: Literal["ticket.followers_changed"] = "ticket.followers_changed"
    payload: FollowersChangedPayload


class TicketAttachmentScanned(EventBase):
    type: Literal["ticket.attachment_scanned"] = "ticket.attachment_scanned"
    payload: AttachmentScannedPayload


class TicketMerged(EventBase):
    type: Literal["ticket.merged"] = "ticket.merged"
    payload: MergedPayload


class TicketMergeReceived(EventBase):
    type: Literal["ticket.merge_received"] = "ticket.merge_received"
    payload: MergeReceivedPayload


class TicketRedacted(EventBase):
    type: Literal["ticket.redacted"] = "ticket.redacted"
    payload: RedactedPayload


Event = Annotated[
    Union[
        TicketCreated,
        TicketUpdated,
        TicketStatusChanged,
        TicketAssigned,
        TicketReplyAdded,
        TicketTimeLogged,
        TicketDeleted,
        TicketRestored,
        TicketFollowersChanged,
        TicketAttachmentScanned,
        TicketMerged,
        TicketMergeReceived,
        TicketRedacted,
    ],
    Field(discriminator="type"),
]
event_adapter: TypeAdapter[Event] = TypeAdapter(Event)


def parse_event(data: bytes | str) -> EventBase:
    return event_adapter.validate_json(data)  # type: ignore[return-value]
