"""The message envelope of SPEC §3, common to commands, queries, results and events."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from .model import Role


def new_id() -> uuid.UUID:
    """A time-ordered UUID (v7) for message, ticket and reply ids."""
    if hasattr(uuid, "uuid7"):  # Python 3.14+
        return uuid.uuid7()  # type: ignore[attr-defined,no-any-return]
    return _uuid7()


def _uuid7() -> uuid.UUID:
    import os
    import time

    ms = time.time_ns() // 1_000_000
    rand = int.from_bytes(os.urandom(10), "big")
    value = (ms & ((1 << 48) - 1)) << 80
    value |= 0x7 << 76
    value |= ((rand >> 62) & 0xFFF) << 64
    value |= 0b10 << 62
    value |= rand & ((1 << 62) - 1)
    return uuid.UUID(int=value)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Actor(BaseModel):
    """Who sends a message. ``customer_id`` is required for customers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    user_id: uuid.UUID
    role: Role
    customer_id: uuid.UUID | None = None

    @model_validator(mode="after")
    def _customer_has_customer_id(self) -> Actor:
        if self.role is Role.CUSTOMER and self.customer_id is None:
            raise ValueError("a customer actor needs customer_id")
        return self


class Message(BaseModel):
    """Fields every message carries."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_id: Annotated[uuid.UUID, Field(default_factory=new_id)]
    type: str
    schema_version: int = 1
    correlation_id: uuid.UUID | None = None
    causation_id: uuid.UUID | None = None


def _message_id_required(schema: dict[str, Any]) -> None:
    required = schema.setdefault("required", [])
    if "message_id" not in required:
        required.insert(0, "message_id")


class Request(Message):
    """A command or a query: sent by an actor, who may carry a signed token (SPEC §11).

    ``message_id`` is required on the wire (the JSON Schema says so, and the service dead-letters a
    command or query without one as ``InvalidEnvelope``): it is the sender's idempotency key and how
    it matches the result. Building one in Python still draws a fresh id when none is given — that
    is the sender choosing it, and it is always serialised."""

    model_config = ConfigDict(frozen=True, extra="forbid", json_schema_extra=_message_id_required)

    sent_at: Annotated[AwareDatetime, Field(default_factory=utcnow)]
    actor: Actor
    actor_token: str | None = Field(
        None, description="Signed actor token; verified in production, where it overrides `actor`."
    )
