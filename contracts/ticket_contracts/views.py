"""Read shapes of a ticket and its parts, used by events and query answers."""

from __future__ import annotations

import uuid
from datetime import datetime

from pydantic import BaseModel, ConfigDict

from .attachments import AttachmentView
from .model import Channel, Priority, ReplySource, Role, Status


class View(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TicketSnapshot(View):
    """The routing fields every event carries, so consumers never query back (SPEC §7)."""

    id: uuid.UUID
    number: str
    customer_id: uuid.UUID
    status: Status
    priority: Priority
    assignee_id: uuid.UUID | None
    category_id: uuid.UUID | None
    created_at: datetime
    first_response_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    deleted: bool = False
    #: Users who follow the ticket (notified about it besides the customer and the assignee).
    follower_ids: list[uuid.UUID] = []


class TicketView(View):
    """A whole ticket as a query answer shows it."""

    id: uuid.UUID
    number: str
    customer_id: uuid.UUID
    created_by: uuid.UUID
    title: str
    description: str
    status: Status
    status_reason: str | None
    priority: Priority
    category_id: uuid.UUID | None
    channel: Channel
    tags: list[str]
    assignee_id: uuid.UUID | None
    version: int
    created_at: datetime
    updated_at: datetime
    status_changed_at: datetime
    first_response_at: datetime | None
    resolved_at: datetime | None
    closed_at: datetime | None
    deleted_at: datetime | None
    follow_up_of: uuid.UUID | None
    #: The ticket this one was merged into (it is closed), or null.
    merged_into: uuid.UUID | None = None
    #: The tickets merged into this one, oldest merge first.
    merged_from: list[uuid.UUID] = []
    #: Staff only; always null in answers to customers.
    time_spent_minutes: int | None
    #: The description's attachments (a reply's are in its ReplyView).
    attachments: list[AttachmentView] = []
    follower_ids: list[uuid.UUID] = []


class ReplyView(View):
    id: uuid.UUID
    ticket_id: uuid.UUID
    author_id: uuid.UUID
    author_role: Role
    body: str
    internal: bool
    source: ReplySource
    email_message_id: str | None
    created_at: datetime
    attachments: list[AttachmentView] = []


class TimeEntryView(View):
    id: uuid.UUID
    ticket_id: uuid.UUID
    user_id: uuid.UUID
    minutes: int
    note: str | None
    created_at: datetime
