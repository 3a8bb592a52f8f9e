"""What a redaction keeps of a history entry: structure and ids, never words or e-mail ids."""

from __future__ import annotations

import uuid

from service.domain.redaction import MARKER, scrub_payload

ID = str(uuid.uuid4())


def test_created_keeps_the_structure_and_loses_the_words() -> None:
    payload = {"number": "TKT-000001", "customer_id": ID, "created_by": ID, "title": "Lost my keys",
               "description": "Call me at home", "priority": "high", "category_id": None, "channel": "email",
               "tags": ["vip"], "status": "new", "follow_up_of": None, "email_message_id": "<a@b.c>"}

    scrubbed = scrub_payload("ticket.created", payload)

    assert scrubbed == {**payload, "title": MARKER, "description": MARKER, "email_message_id": None}


def test_updates_lose_old_and_new_text_but_keep_other_changes() -> None:
    payload = {"changes": {"title": {"old": "a secret", "new": "another"}, "priority": {"old": "low", "new": "high"},
                           "description": {"old": "x", "new": None}}}

    assert scrub_payload("ticket.updated", payload) == {"changes": {
        "title": {"old": MARKER, "new": MARKER}, "priority": {"old": "low", "new": "high"},
        "description": {"old": MARKER, "new": None}}}


def test_replies_notes_reasons_and_attachments_are_scrubbed_wherever_they_are() -> None:
    reply = {"reply": {"id": ID, "ticket_id": ID, "author_id": ID, "author_role": "customer", "body": "my words",
                       "internal": False, "source": "email", "email_message_id": "<m@x>", "created_at": "2026-12-01",
                       "attachments": [{"id": ID, "filename": "passport.pdf", "uri": "s3://b/k", "size_bytes": 3}]},
             "first_response": False}
    assert scrub_payload("ticket.reply_added", reply) == {"reply": {
        **reply["reply"], "body": MARKER, "email_message_id": None,  # type: ignore[dict-item]
        "attachments": [{"id": ID, "filename": MARKER, "uri": MARKER, "size_bytes": 3}]}, "first_response": False}
    assert scrub_payload("ticket.status_changed", {"from_status": "resolved", "to_status": "open",
                                                   "reason": "not fixed, call Bob", "automatic": False}) == {
        "from_status": "resolved", "to_status": "open", "reason": MARKER, "automatic": False}
    assert scrub_payload("ticket.status_changed", {"reason": None})["reason"] is None
    assert scrub_payload("ticket.time_logged", {"entry": {"note": "phoned her"}, "time_spent_minutes": 5}) == {
        "entry": {"note": MARKER}, "time_spent_minutes": 5}
    assert scrub_payload("ticket.redacted", {"author_id": ID}) == {"author_id": ID}
