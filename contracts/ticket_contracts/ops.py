"""Instance heartbeats on ``tickets.ops.v1`` for monitoring."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal

from pydantic import AwareDatetime, Field

from .envelope import Message, utcnow


class Heartbeat(Message):
    type: Literal["ops.heartbeat"] = "ops.heartbeat"
    sent_at: Annotated[AwareDatetime, Field(default_factory=utcnow)]
    instance_id: str
    version: str
    started_at: AwareDatetime
    uptime_s: float
    commands_handled: int
    commands_rejected: int
    queries_answered: int
    dead_lettered: int
    outbox_backlog: int | None = Field(None, description="Unpublished events and results, when known.")
    consumer_lag: dict[str, int] | None = Field(
        None, description="Per partition, when the broker reports end offsets reliably."
    )
    relay_active: bool = Field(description="Whether this instance holds the relay lock.")
    ready: bool


class ErasureProgress(Message):
    """Progress of one ``user.erased``: published when it is planned, after each chunk of
    ``ticket.redact`` commands is on the commands topic, and when all are (``done``)."""

    type: Literal["ops.erasure_progress"] = "ops.erasure_progress"
    sent_at: Annotated[AwareDatetime, Field(default_factory=utcnow)]
    instance_id: str
    user_id: uuid.UUID
    tickets_to_redact: int = Field(description="Tickets redacted whole (created by the user, or their customer's).")
    tickets_with_authored_content: int = Field(description="Other tickets where only the user's words go.")
    commands_sent: int
    done: bool
