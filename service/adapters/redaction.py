"""Carrying out a ``ticket.redact`` in the batch's transaction: the rows beyond the aggregate.

The aggregate has already replaced its own text (title, description, status reason, e-mail id)
and the unit of work has written it; this scrubs the rest with a few set-based statements per
redacted ticket: reply bodies and their e-mail ids, time-entry notes, the ticket's stored e-mail
Message-IDs, and the content of its history rows (``ticket_events.body``: who, when and what kind
of change stay). The search documents follow by trigger. For an author-only redaction, only that
user's rows and history entries — and the ticket's title, description or status reason when the
history shows they wrote the current one.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable
from typing import Any

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from service.domain.redaction import MARKER, Redaction, scrub_payload

_REPLIES = text("""
UPDATE replies SET body = :marker, email_message_id = NULL
WHERE ticket_id = :t AND (CAST(:a AS uuid) IS NULL OR author_id = :a)
  AND (body <> :marker OR email_message_id IS NOT NULL)""")
_EMAILS = text("""
DELETE FROM email_messages WHERE ticket_id = :t AND (CAST(:a AS uuid) IS NULL OR reply_id IN (
  SELECT id FROM replies WHERE ticket_id = :t AND author_id = :a))""")
_NOTES = text("""
UPDATE time_entries SET note = :marker
WHERE ticket_id = :t AND (CAST(:a AS uuid) IS NULL OR user_id = :a) AND note IS NOT NULL AND note <> :marker""")
_HISTORY = text("SELECT seq, body FROM ticket_events WHERE ticket_id = :t ORDER BY ticket_version")
_REWRITE = text("UPDATE ticket_events SET body = :body WHERE seq = :seq")
_TICKET_FIELDS = text("""
UPDATE tickets SET title = CASE WHEN :title THEN :marker ELSE title END,
                   description = CASE WHEN :description THEN :marker ELSE description END,
                   status_reason = CASE WHEN :reason AND status_reason IS NOT NULL THEN :marker ELSE status_reason END
WHERE id = :t""")

#: Columns of attachment references that get the marker (see ``_attachments``).
_ATTACHMENT_COLUMNS = ("filename", "uri", "url", "storage_uri", "sha256")


async def carry_out(conn: AsyncConnection, redactions: Iterable[Redaction]) -> None:
    for redaction in redactions:
        params = {"t": redaction.ticket_id, "a": redaction.author_id, "marker": MARKER}
        await conn.execute(_EMAILS, params)
        await conn.execute(_REPLIES, params)
        await conn.execute(_NOTES, params)
        await _attachments(conn, redaction)
        await _history(conn, redaction)


async def _history(conn: AsyncConnection, redaction: Redaction) -> None:
    rewrites: list[dict[str, Any]] = []
    last_writer: dict[str, uuid.UUID | None] = {}
    for seq, body in (await conn.execute(_HISTORY, {"t": redaction.ticket_id})).all():
        event = json.loads(body)
        writer = _uuid(event["actor"]["user_id"])
        _note_writers(event, writer, last_writer)
        if redaction.author_id is not None and writer != redaction.author_id:
            continue
        payload = scrub_payload(event["type"], event["payload"])
        if payload != event["payload"]:
            rewrites.append({"seq": seq, "body": json.dumps({**event, "payload": payload}, separators=(",", ":"),
                                                            ensure_ascii=False)})
    if rewrites:
        await conn.execute(_REWRITE, rewrites)
    if redaction.author_id is not None:
        mine = {name: last_writer.get(name) == redaction.author_id for name in ("title", "description", "reason")}
        if any(mine.values()):
            await conn.execute(_TICKET_FIELDS, {"t": redaction.ticket_id, "marker": MARKER, **mine})


def _note_writers(event: dict[str, Any], writer: uuid.UUID | None, last: dict[str, uuid.UUID | None]) -> None:
    """Who wrote the current title, description and status reason, as the history tells."""
    kind, payload = event["type"], event["payload"]
    if kind == "ticket.created":
        last["title"] = last["description"] = writer
    elif kind == "ticket.updated":
        for name in ("title", "description"):
            if name in payload.get("changes", {}):
                last[name] = writer
    elif kind == "ticket.status_changed":
        last["reason"] = writer


async def _attachments(conn: AsyncConnection, redaction: Redaction) -> None:
    """Attachment references, where this schema has them (a table named ``attachments`` with a
    ``ticket_id``): every text column among the known reference columns gets the marker."""
    columns = [row[0] for row in await conn.execute(text(
        "SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() "
        "AND table_name = 'attachments' AND data_type = 'text' AND column_name = ANY(:names)"),
        {"names": list(_ATTACHMENT_COLUMNS)})]
    if not columns:
        return
    owner = ("" if redaction.author_id is None else
             " AND (reply_id IN (SELECT id FROM replies WHERE ticket_id = :t AND author_id = :a))")
    sets = ", ".join(f"{c} = :marker" for c in columns)
    await conn.execute(text(f"UPDATE attachments SET {sets} WHERE ticket_id = :t{owner}"),
                       {"t": redaction.ticket_id, "a": redaction.author_id, "marker": MARKER})


def _uuid(value: Any) -> uuid.UUID | None:
    return uuid.UUID(value) if value else None
