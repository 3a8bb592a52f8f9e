"""The unit of work as the command side sees it: ONE protocol, implemented by
``service.adapters.unit_of_work.SqlUnitOfWork`` and by the tests' in-memory fake.

Handlers depend on this port, never on an adapter: the adapters implement it (dependency
inversion), and the shared contract suite (tests/contract/test_unit_of_work_contract.py) runs
the same checks against both implementations.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

from service.domain.attachments import Attachment
from service.domain.email import KnownEmail
from service.domain.events import DomainEvent
from service.domain.ticket import Ticket
from service.domain.values import DirectoryUser

from .messages import Result, Stamp


class ConstraintViolation(Exception):
    """The store refused the batch's writes on a unique key or another constraint: nothing of the
    batch is written. The bus then handles the batch's commands one by one."""


@dataclass(slots=True, frozen=True)
class StoredResult:
    """An inbox row: the result a command produced, where it was answered, and the fingerprint
    of who sent what (None for rows stored before fingerprints existed)."""

    result: Result
    reply_to: str | None
    fingerprint: str | None = None


class UnitOfWork(Protocol):
    """One batch of commands: ``async with`` opens it, ``commit`` writes everything at once, and
    leaving the block without ``commit`` forgets everything."""

    async def __aenter__(self) -> Any: ...
    async def __aexit__(self, *exc: object) -> None: ...

    # ---- reads (and locks) ----------------------------------------------------------------
    async def start_batch(self, ticket_ids: Iterable[uuid.UUID], message_ids: Iterable[uuid.UUID], numbers: int,
                          user_ids: Iterable[uuid.UUID]) -> tuple[dict[uuid.UUID, StoredResult],
                                                                  dict[uuid.UUID, DirectoryUser]]:
        """What every batch reads first, in as few round trips as the store allows: lock (and load)
        the tickets, reserve ``numbers`` ticket numbers, and return the inbox's results of these
        message ids and these directory users. The same as ``lock_tickets``, ``processed``,
        ``reserve_numbers`` and ``users`` one after the other."""

    async def lock_tickets(self, ids: Iterable[uuid.UUID]) -> None:
        """Lock these ticket ids, existing or not, until commit or rollback, in id order; load
        the ones that exist into the identity map."""

    async def load(self, ticket_id: uuid.UUID) -> Ticket | None:
        """The ticket (locked first, if the batch had not locked it), or None."""

    def get(self, ticket_id: uuid.UUID) -> Ticket | None:
        """The ticket already in the identity map, without a round trip."""

    async def processed(self, message_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, StoredResult]: ...
    async def result_of(self, command_id: uuid.UUID) -> StoredResult | None: ...
    async def users(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, DirectoryUser]: ...
    async def user_by_email(self, email: str) -> DirectoryUser | None: ...
    async def email_known(self, message_ids: Iterable[str]) -> dict[str, KnownEmail]: ...
    async def users_by_email(self, addresses: Iterable[str]) -> dict[str, DirectoryUser]:
        """Directory users by (lower-case) address; an active user wins over an inactive one."""

    async def new_tickets_by_mail(self, from_address: str, since: datetime) -> int:
        """Tickets opened by the sender's mails since ``since``: committed and in this batch."""

    async def known_attachments(self, ids: Iterable[uuid.UUID]) -> set[uuid.UUID]:
        """Which of these attachment ids are taken: stored, or added earlier in this batch."""

    async def attachment(self, attachment_id: uuid.UUID) -> Attachment | None:
        """An attachment as this batch sees it (changed in memory, else as stored)."""

    async def ticket_id_by_number(self, number: str) -> uuid.UUID | None: ...
    async def reserve_numbers(self, count: int) -> None: ...
    async def next_number(self) -> int: ...

    # ---- changes, kept in memory until commit ---------------------------------------------
    def add(self, ticket: Ticket) -> None: ...
    def record_events(self, events: list[DomainEvent], stamp: Stamp) -> None:
        """The events of one command; their tickets are saved at commit."""

    def record_result(self, result: Result, reply_to: str | None, fingerprint: str | None = None) -> None:
        """The command's inbox row: it is processed, with this result."""

    def record_email(self, row: dict[str, Any]) -> None: ...
    def undo(self, ticket_id: uuid.UUID | None, before: Ticket | None, command_id: uuid.UUID) -> None:
        """Forget what a failed command did in memory: the ticket as it was, and its email rows."""

    async def commit(self) -> None:
        """Write every change, event, inbox row and email row, then commit; raises
        :class:`ConstraintViolation` when the store refuses them."""
