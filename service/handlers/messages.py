"""The command side's own message types, typed until the unit of work commits them.

``Incoming`` is a command as the entrypoint hands it to the bus; ``Result`` is its outcome as the
service will publish it (the unit of work serialises it when it writes the inbox, which is the
results' outbox); ``Stamp`` is what every event of one command carries besides the domain event
(who, and which conversation). ``Outcome`` is what the bus reports back to the entrypoint.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from ticket_contracts.commands import CommandBase

from service.domain.values import Actor

Status = Literal["accepted", "rejected", "duplicate", "failed"]


@dataclass(slots=True)
class Incoming:
    """A command taken off the topic: decoded, or with the reason it failed validation."""

    message_id: uuid.UUID
    command_type: str
    correlation_id: uuid.UUID
    reply_to: str | None
    actor: Actor | None
    ticket_id: uuid.UUID | None
    command: CommandBase | None = None
    invalid: str | None = None
    invalid_reason: str = "validation_error"
    #: Whether the refusal is about who sent it (authentication), not what was sent: such a
    #: rejection is answered but never recorded, so a retry with a valid token is processed.
    unauthenticated: bool = False
    #: Hash of the sender's identity and the command's payload (see ``fingerprint``).
    fingerprint: str | None = None


@dataclass(slots=True, frozen=True)
class Result:
    """One ``ticket.command_result``, exactly as it will be published."""

    message_id: uuid.UUID
    command_id: uuid.UUID
    command_type: str
    correlation_id: uuid.UUID | None
    actor: Actor | None
    ticket_id: uuid.UUID | None
    sent_at: datetime
    event_ids: tuple[uuid.UUID, ...] = ()
    ticket_version: int | None = None
    reason: str | None = None
    message: str | None = None
    #: ``ticket.ingest_email``: Cc addresses that became no follower.
    unknown_cc: tuple[str, ...] = ()

    @property
    def status(self) -> Literal["accepted", "rejected"]:
        return "rejected" if self.reason else "accepted"


@dataclass(slots=True, frozen=True)
class Stamp:
    """The envelope fields of every event one command records."""

    actor: Actor
    correlation_id: uuid.UUID
    causation_id: uuid.UUID


@dataclass(slots=True)
class Outcome:
    message_id: uuid.UUID
    result: Result | None  # None when the command failed unexpectedly
    reply_to: str | None
    ticket_id: uuid.UUID | None
    status: Status = "accepted"
    reason: str | None = None
    error: BaseException | None = field(default=None, repr=False)
    #: Not stored in the inbox (a refused sender, a conflicting reuse of a message_id): the
    #: entrypoint publishes the result itself, to command-results and the sender's reply_to.
    unrecorded: bool = False
