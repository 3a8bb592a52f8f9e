"""Rules of email ingest (SPEC §8) that need no I/O: loop protection, Message-IDs, subjects, bodies.

See docs/email-ingest.md for the behaviour these rules add up to.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterable
from typing import NamedTuple

from .errors import InvalidInput, RateLimited
from .ticket import TICKET_NUMBER_FORMAT

#: ``[TKT-000123]``: any case, spaces inside the brackets, a hyphen or dash (or nothing) between.
_TAG = re.compile(r"\[\s*TKT\s*[-‐–—]?\s*(\d{1,12})\s*\]", re.IGNORECASE)
#: Reply and forward prefixes of common mail clients and languages, with counters (``Re[2]:``).
_PREFIX = re.compile(
    r"^\s*(?:re|fw|fwd|aw|sv|wg|vs|vb|antw|tr|rif|odp)\s*(?:\[\d+\]|\(\d+\))?\s*[:：]\s*", re.IGNORECASE
)
_MSG_ID = re.compile(r"<([^<>\s]+)>")
_COMMENT = re.compile(r"\([^()]*\)")
_AUTOMATIC_SENDERS = frozenset({"mailer-daemon", "postmaster"})
#: ``auto_reply`` is not in RFC 3834 but is what many vacation responders send.
_BULK_PRECEDENCE = frozenset({"bulk", "junk", "list", "auto_reply"})
MAX_SUBJECT_TAGS = 5
NO_SUBJECT = "(no subject)"
EMPTY_BODY = "(empty message)"


class KnownEmail(NamedTuple):
    """A stored email Message-ID: its ticket (None for a rejected mail), the command that recorded
    it, and whether the platform sent it (``ticket.record_outbound_email``)."""

    ticket_id: uuid.UUID | None
    command_id: uuid.UUID
    outbound: bool = False


# ---- loop protection --------------------------------------------------------------------
def is_auto_submitted(
    gateway_flag: bool, auto_submitted: str | None, precedence: str | None, from_address: str
) -> bool:
    """The gateway's verdict, RFC 3834 ``Auto-Submitted`` other than ``no``,
    ``Precedence: bulk/junk/list/auto_reply``, or a bounce from ``mailer-daemon``/``postmaster``."""
    if gateway_flag:
        return True
    if auto_submitted is not None and _header_value(auto_submitted) not in ("", "no"):
        return True
    if precedence is not None and _header_value(precedence) in _BULK_PRECEDENCE:
        return True
    local_part = from_address.rsplit("@", 1)[0].split("+", 1)[0].lower().replace("_", "-")
    return local_part in _AUTOMATIC_SENDERS


def _header_value(raw: str) -> str:
    """The keyword of a structured header: parameters after ``;`` and ``(comments)`` removed."""
    return _COMMENT.sub(" ", raw.split(";", 1)[0]).strip().lower()


# ---- loop limits ------------------------------------------------------------------------
def check_new_ticket_rate(recent: int, limit: int) -> None:
    """``recent``: tickets the sender's mails opened in the rolling hour. At ``limit`` (> 0) no more."""
    if limit > 0 and recent >= limit:
        raise RateLimited(f"the sender's mails opened {recent} tickets within the last hour; at most {limit} "
                          "may be opened by mail per sender per hour (replies to existing tickets are accepted)")


def normalise_address(address: str) -> str:
    """An address as the directory stores it: trimmed, lower-case."""
    return address.strip().lower()


# ---- Message-IDs ------------------------------------------------------------------------
def normalise_message_id(raw: str) -> str:
    """One Message-ID in its header form ``<left@right>``, with or without brackets given."""
    found = _MSG_ID.search(raw)
    return f"<{found.group(1) if found else raw.strip().strip('<>').strip()}>"


def message_ids(values: Iterable[str]) -> list[str]:
    """Every Message-ID in header values (one id or several, as ``References`` holds them)."""
    out: list[str] = []
    for value in values:
        found = _MSG_ID.findall(value)
        if found:
            out.extend(f"<{i}>" for i in found)
        else:
            out.extend(map(normalise_message_id, value.split()))
    return out


def thread_candidates(in_reply_to: str | None, references: Iterable[str]) -> list[str]:
    """Message-IDs to look up, most specific first: ``In-Reply-To``, then ``References`` newest first."""
    ordered = message_ids([in_reply_to] if in_reply_to else []) + list(reversed(message_ids(references)))
    return list(dict.fromkeys(ordered))


# ---- subjects ---------------------------------------------------------------------------
def ticket_numbers_in_subject(subject: str) -> list[str]:
    """Ticket numbers tagged ``[TKT-000123]`` in the subject, in order, at most a few."""
    numbers = [TICKET_NUMBER_FORMAT.format(int(m.group(1))) for m in _TAG.finditer(subject)]
    return list(dict.fromkeys(numbers))[:MAX_SUBJECT_TAGS]


def title_from_subject(subject: str, max_length: int) -> str:
    """The subject without reply/forward prefixes and ticket tags, whitespace collapsed,
    cut to ``max_length``; ``(no subject)`` when nothing is left."""
    title = _TAG.sub(" ", clean_text(subject))
    previous = None
    while previous != title:
        previous, title = title, _PREFIX.sub("", title)
    title = " ".join(title.split())[:max_length].strip()
    return title or NO_SUBJECT


# ---- bodies -----------------------------------------------------------------------------
def clean_text(text: str) -> str:
    """Text PostgreSQL can store: NUL characters (which some mail parsers leave) removed."""
    return text.replace("\x00", "")


def body_text(body: str, limit: int, what: str) -> str:
    """The mail body as the description or reply text: unchanged (quoted history included),
    ``(empty message)`` when blank; longer than ``limit`` characters is refused."""
    body = clean_text(body)
    if len(body) > limit:
        raise InvalidInput(f"the mail body has {len(body):,} characters; {what} may have at most {limit:,}")
    return body if body.strip() else EMPTY_BODY
