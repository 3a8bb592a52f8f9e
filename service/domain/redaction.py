"""Redaction (GDPR art. 17): which words go, and what stays of the audit trail.

The marker replaces every piece of free text a person wrote: titles, descriptions, status and
delete reasons, reply bodies, time-entry notes, attachment names and addresses. E-mail identifiers
are removed (null), not marked. Ids, types, versions, timestamps, actors, statuses and other
enumerations stay, so the history still says who did what kind of change, and when.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

MARKER = "[redacted]"

#: Keys whose string values are someone's words, wherever they occur in an event payload.
TEXT_KEYS = frozenset({"title", "description", "reason", "body", "note", "filename", "uri", "url", "subject",
                       "old", "new", "text", "comment", "name"})
#: Keys whose values identify e-mails (or addresses): removed.
EMAIL_KEYS = frozenset({"email_message_id", "message_id_header", "from_address", "cc", "to", "email",
                        "in_reply_to", "references"})
#: Keys under ``changes`` (ticket.updated) whose old and new values are text.
TEXT_FIELDS = frozenset({"title", "description"})


@dataclass(frozen=True, slots=True)
class Redaction:
    """What a ``ticket.redact`` asks the unit of work to scrub beyond the aggregate's own fields:
    the whole ticket's text (``author_id`` None), or only what ``author_id`` wrote."""

    ticket_id: uuid.UUID
    author_id: uuid.UUID | None


def scrub_payload(event_type: str, payload: dict[str, Any]) -> dict[str, Any]:
    """An event payload with every word replaced by the marker and e-mail identifiers removed."""
    if event_type == "ticket.updated":
        changes = payload.get("changes", {})
        return {**payload, "changes": {
            field: ({k: (MARKER if v is not None else None) for k, v in change.items()}
                    if field in TEXT_FIELDS else change)
            for field, change in changes.items()}}
    return _scrub(payload)


def _scrub(value: Any, key: str | None = None) -> Any:
    if isinstance(value, dict):
        return {k: _scrub(v, k) for k, v in value.items()}
    if key in EMAIL_KEYS:
        return [] if isinstance(value, list) else None
    if isinstance(value, list):
        return [_scrub(v, key) for v in value]
    if isinstance(value, str) and key in TEXT_KEYS:
        return MARKER
    return value
