"""Command outcomes on ``tickets.command-results.v1`` (and the command's ``reply_to``)."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field, model_validator

from .envelope import Actor, Message, utcnow
from .errors import ReasonCode


class CommandResult(Message):
    """Exactly one per distinct command. ``causation_id`` is the command's ``message_id``."""

    type: Literal["ticket.command_result"] = "ticket.command_result"
    sent_at: Annotated[AwareDatetime, Field(default_factory=utcnow)]
    actor: Actor | None = Field(None, description="The command's actor, when it could be decoded.")
    command_id: uuid.UUID
    command_type: str
    ticket_id: uuid.UUID | None
    status: Literal["accepted", "rejected"]
    event_ids: list[uuid.UUID] = []
    ticket_version: int | None = None
    reason: ReasonCode | None = None
    message: str | None = Field(None, description="Human-readable; never reveals what the actor may not see.")
    unknown_cc: list[str] = Field(
        default_factory=list,
        description="ticket.ingest_email: Cc addresses that became no follower (no active user of the "
        "sender's customer has them), lower-case.",
    )

    @model_validator(mode="after")
    def _rejections_have_reasons(self) -> CommandResult:
        if (self.status == "rejected") != (self.reason is not None):
            raise ValueError("a rejected result needs a reason, an accepted one has none")
        return self

    @property
    def accepted(self) -> bool:
        return self.status == "accepted"


def parse_result(data: bytes | str) -> CommandResult:
    return CommandResult.model_validate_json(data)
