"""The in-memory half of a batch's unit of work: the identity map and the changes waiting for
commit. The SQL unit of work (and the tests' fake) add the reads and the commit around it; both
turn the typed events and results into rows here, with the same serialisation."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from service.domain.attachments import Attachment
from service.domain.events import DomainEvent
from service.domain.redaction import Redaction
from service.domain.ticket import Reply, Ticket, TimeEntry
from service.domain.values import DirectoryUser
from service.handlers.messages import Result, Stamp
from service.handlers.unit_of_work import StoredResult

from service.tracing import COMMAND_TRACES, NO_TRACE

from .serialization import event_json, result_json


def _trace_columns(context: tuple[str | None, str | None]) -> dict[str, str | None]:
    return {"traceparent": context[0], "tracestate": context[1]}


@dataclass(slots=True)
class Rows:
    """Everything one commit writes."""

    new_tickets: list[Ticket] = field(default_factory=list)
    changed_tickets: list[Ticket] = field(default_factory=list)
    replies: list[Reply] = field(default_factory=list)
    time_entries: list[TimeEntry] = field(default_factory=list)
    events: list[dict[str, Any]] = field(default_factory=list)
    inbox: list[dict[str, Any]] = field(default_factory=list)
    emails: list[dict[str, Any]] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    #: Stored attachments whose scan status changed.
    scans: list[Attachment] = field(default_factory=list)
    #: ``ticket.redact``: what to scrub beyond the aggregates' own fields (adapters/redaction.py).
    redactions: list[Redaction] = field(default_factory=list)


class BatchChanges:
    def __init__(self) -> None:
        self._tickets: dict[uuid.UUID, Ticket] = {}
        #: Ids looked up (under their lock) and not found, so a create does not ask again.
        self._absent: set[uuid.UUID] = set()
        self._new: set[uuid.UUID] = set()
        #: Tickets with recorded events, saved at commit (by id: an undo may replace the object).
        self._dirty: dict[uuid.UUID, None] = {}
        self._events: list[tuple[DomainEvent, Stamp]] = []
        self._results: list[tuple[Result, str | None, str | None]] = []
        self._emails: dict[str, dict[str, Any]] = {}
        self._numbers: list[int] = []

    def get(self, ticket_id: uuid.UUID) -> Ticket | None:
        return self._tickets.get(ticket_id)

    async def reserve_numbers(self, count: int) -> None:
        raise NotImplementedError

    async def lock_tickets(self, ids: Iterable[uuid.UUID]) -> None:
        raise NotImplementedError

    async def processed(self, message_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, StoredResult]:
        raise NotImplementedError

    async def users(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, DirectoryUser]:
        raise NotImplementedError

    async def start_batch(self, ticket_ids: Iterable[uuid.UUID], message_ids: Iterable[uuid.UUID], numbers: int,
                          user_ids: Iterable[uuid.UUID]) -> tuple[dict[uuid.UUID, StoredResult],
                                                                  dict[uuid.UUID, DirectoryUser]]:
        """One read after the other (the SQL unit of work does it in two statements)."""
        await self.lock_tickets(ticket_ids)
        stored = await self.processed(message_ids)
        await self.reserve_numbers(numbers)
        return stored, await self.users(user_ids)

    async def next_number(self) -> int:
        if not self._numbers:
            await self.reserve_numbers(1)
        return self._numbers.pop(0)

    def add(self, ticket: Ticket) -> None:
        self._tickets[ticket.id] = ticket
        self._absent.discard(ticket.id)
        self._new.add(ticket.id)

    def undo(self, ticket_id: uuid.UUID | None, before: Ticket | None, command_id: uuid.UUID) -> None:
        """Forget what a failed command did in memory: its ticket state and its email rows."""
        if ticket_id is not None:
            if before is None:
                if self._tickets.pop(ticket_id, None) is not None:
                    self._absent.add(ticket_id)
                self._new.discard(ticket_id)
                self._dirty.pop(ticket_id, None)
            else:
                self._tickets[ticket_id] = before
        self._emails = {k: v for k, v in self._emails.items() if v["command_id"] != command_id}

    def record_events(self, events: list[DomainEvent], stamp: Stamp) -> None:
        for event in events:
            self._events.append((event, stamp))
            self._dirty[event.ticket_id] = None

    def record_result(self, result: Result, reply_to: str | None, fingerprint: str | None = None) -> None:
        self._results.append((result, reply_to, fingerprint))

    def record_email(self, row: dict[str, Any]) -> None:
        """Remember an email Message-ID; a later row for the same id replaces the earlier."""
        self._emails[row["message_id"]] = row

    def rows(self) -> Rows:
        """Serialise the batch's changes: the events and results become their published JSON."""
        rows = Rows(emails=list(self._emails.values()))
        for ticket_id in self._dirty:
            ticket = self._tickets[ticket_id]
            new_replies, new_entries = ticket.take_children()
            rows.redactions.extend(ticket.take_redactions())
            rows.replies.extend(new_replies)
            rows.time_entries.extend(new_entries)
            new_files, scanned = ticket.take_attachments()
            rows.attachments.extend(new_files)
            rows.scans.extend(scanned)
            (rows.new_tickets if ticket_id in self._new else rows.changed_tickets).append(ticket)
        traces = COMMAND_TRACES.get()  # the command's trace context goes with its events and result
        rows.events = [{
            "event_id": e.event_id, "ticket_id": e.ticket_id, "ticket_version": e.version, "type": e.type,
            "internal": e.internal, "occurred_at": e.occurred_at, "body": event_json(e, stamp),
            **_trace_columns(traces.get(stamp.causation_id, NO_TRACE)),
        } for e, stamp in self._events]
        rows.inbox = [{
            "message_id": r.command_id, "command_type": r.command_type, "ticket_id": r.ticket_id,
            "processed_at": r.sent_at, "status": r.status, "result": result_json(r), "reply_to": reply_to,
            **_trace_columns(traces.get(r.command_id, NO_TRACE)),
            "fingerprint": fingerprint,
        } for r, reply_to, fingerprint in self._results]
        return rows

    def pending_new_tickets_by_mail(self, from_address: str, since: datetime) -> int:
        """Tickets opened earlier in this batch by mails of ``from_address`` (loop limit)."""
        return sum(1 for r in self._emails.values() if r.get("from_address") == from_address
                   and r["ticket_id"] is not None and r["reply_id"] is None and not r.get("outbound")
                   and r["created_at"] > since)

    def pending_attachment_ids(self) -> set[uuid.UUID]:
        return {a.id for ticket in self._tickets.values() for a in ticket.new_attachments}

    def pending_attachment(self, attachment_id: uuid.UUID) -> Attachment | None:
        """An attachment added or scanned earlier in this batch, as it is now."""
        for ticket in self._tickets.values():
            if (found := ticket.attachment(attachment_id)) is not None:
                return found
        return None
