"""Rules of email ingest (SPEC §8) that need no I/O: loop protection, subject parsing."""

from __future__ import annotations

import re

from .ticket import TICKET_NUMBER_FORMAT

_TAG = re.compile(r"\[\s*(TKT)\s*-\s*(\d{1,12})\s*\]", re.IGNORECASE)
_PREFIX = re.compile(r"^\s*(?:re|fw|fwd|aw|sv|wg|vs|antw|tr|rif|odp)\s*(?:\[\d+\]|\(\d+\))?\s*[:：]\s*", re.IGNORECASE)
_AUTOMATIC_SENDERS = frozenset({"mailer-daemon", "postmaster"})
_BULK_PRECEDENCE = frozenset({"bulk", "junk", "list"})
NO_SUBJECT = "(no subject)"
EMPTY_BODY = "(empty message)"


def is_auto_submitted(
    gateway_flag: bool, auto_submitted: str | None, precedence: str | None, from_address: str
) -> bool:
    """RFC 3834 ``Auto-Submitted`` other than ``no``, ``Precedence: bulk/junk/list``, bounces."""
    if gateway_flag:
        return True
    if auto_submitted and auto_submitted.split(";")[0].strip().lower() not in ("", "no"):
        return True
    if precedence and precedence.strip().lower() in _BULK_PRECEDENCE:
        return True
    return from_address.split("@")[0].lower() in _AUTOMATIC_SENDERS


def ticket_number_in_subject(subject: str) -> str | None:
    """``[TKT-000123]`` anywhere in the subject, tolerant of case and spacing."""
    match = _TAG.search(subject)
    return TICKET_NUMBER_FORMAT.format(int(match.group(2))) if match else None


def title_from_subject(subject: str, max_length: int) -> str:
    """The subject without reply/forward prefixes and ticket tags, trimmed to the title limit."""
    title = _TAG.sub(" ", subject)
    previous = None
    while previous != title:
        previous, title = title, _PREFIX.sub("", title)
    title = " ".join(title.split())
    return (title or NO_SUBJECT)[:max_length].strip() or NO_SUBJECT
