"""User-directory events consumed from ``users.events.v1`` (the identity service's)."""

from __future__ import annotations

import uuid
from typing import Annotated, Literal, Union

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, StringConstraints, TypeAdapter

from .envelope import Message
from .model import Role


class UserPayload(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")
    user_id: uuid.UUID


class UserUpsertedPayload(UserPayload):
    email: Annotated[str, StringConstraints(strip_whitespace=True, to_lower=True, max_length=320)]
    display_name: Annotated[str, StringConstraints(max_length=200)] = ""
    role: Role
    customer_id: uuid.UUID | None = None
    active: bool = True


class UserEventBase(Message):
    occurred_at: AwareDatetime


class UserUpserted(UserEventBase):
    type: Literal["user.upserted"] = "user.upserted"
    payload: UserUpsertedPayload


class UserDeactivated(UserEventBase):
    type: Literal["user.deactivated"] = "user.deactivated"
    payload: UserPayload


class UserErased(UserEventBase):
    """GDPR art. 17: forget this person. The service redacts their tickets and words and drops
    their e-mail address from its replica (docs/operations.md)."""

    type: Literal["user.erased"] = "user.erased"
    payload: UserPayload


UserEvent = Annotated[Union[UserUpserted, UserDeactivated, UserErased], Field(discriminator="type")]
user_event_adapter: TypeAdapter[UserEvent] = TypeAdapter(UserEvent)


def parse_user_event(data: bytes | str) -> UserEventBase:
    return user_event_adapter.validate_json(data)  # type: ignore[return-value]
