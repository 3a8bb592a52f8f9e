"""The in-memory half of a batch's unit of work: the identity map and the rows waiting for
commit. The SQL unit of work (and the tests' fake) add the reads and the commit around it."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from service.domain.attachments import Attachment
from service.domain.ticket import Ticket


class BatchChanges:
    def __init__(self) -> None:
        self._tickets: dict[uuid.UUID, Ticket] = {}
        #: Ids looked up and not found, so a create does not ask again for the ticket it makes.
        self._absent: set[uuid.UUID] = set()
        self._new: dict[uuid.UUID, Ticket] = {}
        self._events: list[dict[str, Any]] = []
        self._inbox: list[dict[str, Any]] = []
        self._emails: dict[str, dict[str, Any]] = {}
        self._numbers: list[int] = []

    def get(self, ticket_id: uuid.UUID) -> Ticket | None:
        return self._tickets.get(ticket_id)

    async def reserve_numbers(self, count: int) -> None:
        raise NotImplementedError

    async def next_number(self) -> int:
        if not self._numbers:
            await self.reserve_numbers(1)
        return self._numbers.pop(0)

    def add(self, ticket: Ticket) -> None:
        self._tickets[ticket.id] = ticket
        self._new[ticket.id] = ticket

    def undo(self, ticket_id: uuid.UUID | None, before: Ticket | None, command_id: uuid.UUID) -> None:
        """Forget what a failed command did in memory: its ticket state and its email rows."""
        if ticket_id is not None:
            if before is None:
                self._tickets.pop(ticket_id, None)
                self._new.pop(ticket_id, None)
            else:
                self._tickets[ticket_id] = before
                if ticket_id in self._new:
                    self._new[ticket_id] = before
        self._emails = {k: v for k, v in self._emails.items() if v["command_id"] != command_id}

    def record_events(self, rows: list[dict[str, Any]]) -> None:
        self._events.extend(rows)

    def record_processed(self, row: dict[str, Any]) -> None:
        self._inbox.append(row)

    def record_email(self, row: dict[str, Any]) -> None:
        """Remember an email Message-ID; a later row for the same id replaces the earlier."""
        self._emails[row["message_id"]] = row

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
