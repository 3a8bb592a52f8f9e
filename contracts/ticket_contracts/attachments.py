"""Attachments by reference (claim check): the service stores metadata and a URI, never bytes.

The client (or the email gateway) uploads the file to object storage and sends an
:class:`AttachmentRef`; answers and events show an :class:`AttachmentView`, whose ``uri`` a
customer gets only once a malware scanner reported the file ``clean``.
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, StringConstraints

#: Most attachments on one ticket description, reply or mail.
ATTACHMENTS_MAX = 20
FILENAME_MAX = 255
URI_MAX = 2_048
#: RFC 6838 names (``type/subtype``), optionally with parameters (``; charset=utf-8``).
_TOKEN = r"[A-Za-z0-9][A-Za-z0-9!#$&^_.+-]{0,126}"
MIME_TYPE_PATTERN = (
    rf"^{_TOKEN}/{_TOKEN}(?:\s*;\s*[A-Za-z0-9!#$&^_.+-]+=(?:[A-Za-z0-9!#$&^_.+-]+|\"[^\"\\\x00-\x1f]*\"))*$"
)


class ScanStatus(StrEnum):
    PENDING = "pending"
    CLEAN = "clean"
    INFECTED = "infected"


class ScanVerdict(StrEnum):
    CLEAN = "clean"
    INFECTED = "infected"


def _plain_filename(name: str) -> str:
    if "/" in name or "\\" in name:
        raise ValueError("a filename must not contain path separators")
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise ValueError("a filename must not contain control characters")
    if name.strip() in ("", ".", ".."):
        raise ValueError("a filename must name a file")
    return name


_URI = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^\s\x00-\x1f\x7f]+$")


def _uri(value: str) -> str:
    if not _URI.match(value):
        raise ValueError("a uri needs a scheme and no whitespace or control characters (scheme://…)")
    return value


Filename = Annotated[str, StringConstraints(min_length=1, max_length=FILENAME_MAX), AfterValidator(_plain_filename)]
ContentType = Annotated[str, StringConstraints(max_length=255, pattern=MIME_TYPE_PATTERN)]
Sha256 = Annotated[str, StringConstraints(pattern=r"^[0-9a-fA-F]{64}$", to_lower=True)]
Uri = Annotated[str, StringConstraints(min_length=1, max_length=URI_MAX), AfterValidator(_uri)]


class AttachmentRef(BaseModel):
    """An uploaded file, as a command names it. The service checks ``size_bytes`` against its
    configured maximum (default 25 MiB) and the ``uri`` scheme against its allowlist (default
    ``s3``, ``https``); either refused → ``validation_error``. A reused ``attachment_id`` →
    ``conflict``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    attachment_id: uuid.UUID = Field(description="Chosen by the client; unique across the service.")
    filename: Filename
    content_type: ContentType
    size_bytes: int = Field(ge=1, le=2**53, description="1 … the service's configured maximum (default 25 MiB).")
    sha256: Sha256
    uri: Uri = Field(description="Where the bytes are; scheme from the service's allowlist (default s3, https).")


def _distinct(refs: list[AttachmentRef]) -> list[AttachmentRef]:
    if len({a.attachment_id for a in refs}) != len(refs):
        raise ValueError("attachment_id must differ between the attachments of one message")
    return refs


Attachments = Annotated[list[AttachmentRef], Field(max_length=ATTACHMENTS_MAX), AfterValidator(_distinct)]


class AttachmentView(BaseModel):
    """An attachment as answers and events show it. ``uri`` is null for a customer — and in every
    event — until the attachment is scanned ``clean``; an ``infected`` file's uri is never shown
    to customers."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    attachment_id: uuid.UUID
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    uri: str | None
    scan_status: ScanStatus
    scanned_at: datetime | None = None
