"""Mapping between table rows and domain objects (the ORM's job, done by hand for speed).

``ticket_from_row`` and ``user_from_row`` read a row by column name, so they take either a
SQLAlchemy ``Row._mapping`` or an asyncpg ``Record`` (the unit of work's hot reads run on asyncpg
directly); both carry the same Python values (asyncpg's UUIDs, aware datetimes, lists for arrays).
"""

from __future__ import annotations

from typing import Any, Protocol

from service.domain.attachments import Attachment
from service.domain.ticket import Reply, Ticket, TimeEntry
from service.domain.values import PRIORITY_RANK, DirectoryUser, Role, Status

from .tables import tickets


class Columns(Protocol):
    """A row read by column name: a SQLAlchemy ``RowMapping``, an asyncpg ``Record``, a dict."""

    def __getitem__(self, key: str, /) -> Any: ...


#: The ticket's fields: every column of ``tickets`` but ``priority_rank``, derived from the priority.
TICKET_COLUMNS = tuple(name for name in tickets.c.keys() if name != "priority_rank")
ATTACHMENT_COLUMNS = (
    "id", "ticket_id", "reply_id", "filename", "content_type", "size_bytes", "sha256", "uri", "internal",
    "scan_status", "scanner", "scanned_at", "created_at",
)


def ticket_from_row(m: Columns) -> Ticket:
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


def user_from_row(m: Columns) -> DirectoryUser:
    return DirectoryUser(m["user_id"], m["email"], Role(m["role"]), m["customer_id"], m["active"])


def attachment_to_row(attachment: Attachment) -> dict[str, Any]:
    return {c: getattr(attachment, c) for c in ATTACHMENT_COLUMNS}


def attachment_from_row(m: Columns) -> Attachment:
    return Attachment(**{c: m[c] for c in ATTACHMENT_COLUMNS})
