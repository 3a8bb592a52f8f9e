"""Mapping between table rows and domain objects (the ORM's job, done by hand for speed)."""

from __future__ import annotations

from typing import Any

from service.domain.attachments import Attachment
from service.domain.ticket import Reply, Ticket, TimeEntry
from service.domain.values import PRIORITY_RANK, DirectoryUser, Role, Status


TICKET_COLUMNS = (
    "id", "number", "customer_id", "created_by", "title", "description", "status", "status_reason",
    "priority", "category_id", "channel", "tags", "assignee_id", "version", "created_at", "updated_at",
    "status_changed_at", "first_response_at", "resolved_at", "closed_at", "deleted_at", "follow_up_of",
    "time_spent_minutes", "email_message_id", "follower_ids", "merged_into", "merged_from",
)
ATTACHMENT_COLUMNS = (
    "id", "ticket_id", "reply_id", "filename", "content_type", "size_bytes", "sha256", "uri", "internal",
    "scan_status", "scanner", "scanned_at", "created_at",
)


def ticket_from_row(row: Any) -> Ticket:
    m = row._mapping
    values = {c: m[c] for c in TICKET_COLUMNS}
    values["status"] = Status(values["status"])
    values["tags"] = list(values["tags"] or ())
    values["follower_ids"] = list(values["follower_ids"] or ())
    values["merged_from"] = list(values["merged_from"] or ())
    return Ticket(**values)


def ticket_to_row(ticket: Ticket) -> dict[str, Any]:
    row = {c: getattr(ticket, c) for c in TICKET_COLUMNS}
    row["status"] = ticket.status.value
    row["priority_rank"] = PRIORITY_RANK[ticket.priority]
    return row


def reply_to_row(reply: Reply) -> dict[str, Any]:
    return {
        "id": reply.id, "ticket_id": reply.ticket_id, "author_id": reply.author_id,
        "author_role": reply.author_role.value, "body": reply.body, "internal": reply.internal,
        "source": reply.source, "email_message_id": reply.email_message_id, "created_at": reply.created_at,
    }


def time_entry_to_row(entry: TimeEntry) -> dict[str, Any]:
    return {
        "id": entry.id, "ticket_id": entry.ticket_id, "user_id": entry.user_id, "minutes": entry.minutes,
        "note": entry.note, "created_at": entry.created_at,
    }


def user_from_row(row: Any) -> DirectoryUser:
    m = row._mapping
    return DirectoryUser(m["user_id"], m["email"], Role(m["role"]), m["customer_id"], m["active"])


def attachment_to_row(attachment: Attachment) -> dict[str, Any]:
    return {c: getattr(attachment, c) for c in ATTACHMENT_COLUMNS}


def attachment_from_row(row: Any) -> Attachment:
    """From a SQLAlchemy row or any mapping (an asyncpg Record)."""
    m = getattr(row, "_mapping", row)
    return Attachment(**{c: m[c] for c in ATTACHMENT_COLUMNS})
