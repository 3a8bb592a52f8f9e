"""Value types of the ticket model (SPEC §4, §5) shared by every message."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated

from pydantic import Field, StringConstraints


class Role(StrEnum):
    CUSTOMER = "customer"
    AGENT = "agent"
    ADMIN = "admin"
    SYSTEM = "system"


class Status(StrEnum):
    NEW = "new"
    OPEN = "open"
    IN_PROGRESS = "in_progress"
    PENDING = "pending"
    ON_HOLD = "on_hold"
    RESOLVED = "resolved"
    CLOSED = "closed"


class Priority(StrEnum):
    LOW = "low"
    NORMAL = "normal"
    HIGH = "high"
    URGENT = "urgent"


class Channel(StrEnum):
    WEB = "web"
    EMAIL = "email"
    API = "api"
    PHONE = "phone"


class ReplySource(StrEnum):
    WEB = "web"
    EMAIL = "email"
    API = "api"


TITLE_MAX = 200
DESCRIPTION_MAX = 20_000
REPLY_BODY_MAX = 50_000
REASON_MAX = 1_000
NOTE_MAX = 2_000
TAGS_MAX = 20

Title = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=TITLE_MAX)]
Description = Annotated[str, StringConstraints(min_length=1, max_length=DESCRIPTION_MAX)]
ReplyBody = Annotated[str, StringConstraints(min_length=1, max_length=REPLY_BODY_MAX)]
Reason = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=REASON_MAX)]
Note = Annotated[str, StringConstraints(max_length=NOTE_MAX)]
#: A lower-case slug: letters, digits and single hyphens, at most 50 characters.
Tag = Annotated[str, StringConstraints(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$", max_length=50)]
Tags = Annotated[list[Tag], Field(max_length=TAGS_MAX)]
Minutes = Annotated[int, Field(ge=1, le=1440)]
Version = Annotated[int, Field(ge=1)]
