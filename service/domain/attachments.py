"""Attachments by reference: metadata and a URI in object storage, never the bytes (claim check).

An attachment belongs to a ticket's description (``reply_id`` None) or to one reply, and follows
its visibility: an internal note's attachments are staff-only (``internal``). A new attachment is
``pending`` until a scanner reports ``clean`` or ``infected``; only a ``clean`` one's URI is ever
shown to a customer or put in an event (:meth:`Attachment.view`).
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from .errors import InvalidInput

PENDING, CLEAN, INFECTED = "pending", "clean", "infected"
VERDICTS = frozenset({CLEAN, INFECTED})
MIB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class AttachmentLimits:
    """What the service accepts (settings ``attachment_max_bytes``, ``attachment_uri_schemes``)."""

    max_size_bytes: int = 25 * MIB
    uri_schemes: frozenset[str] = frozenset({"s3", "https"})


@dataclass(frozen=True, slots=True)
class Upload:
    """A file as a command names it: already in object storage, at ``uri``."""

    id: uuid.UUID
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    uri: str


@dataclass(frozen=True, slots=True)
class Attachment:
    id: uuid.UUID
    ticket_id: uuid.UUID
    reply_id: uuid.UUID | None
    filename: str
    content_type: str
    size_bytes: int
    sha256: str
    uri: str
    internal: bool
    created_at: datetime
    scan_status: str = PENDING
    scanner: str | None = None
    scanned_at: datetime | None = None

    @classmethod
    def of(cls, upload: Upload, *, ticket_id: uuid.UUID, reply_id: uuid.UUID | None, internal: bool,
           now: datetime) -> Attachment:
        return cls(upload.id, ticket_id, reply_id, upload.filename, upload.content_type, upload.size_bytes,
                   upload.sha256, upload.uri, internal, now)

    def scanned(self, verdict: str, scanner: str, scanned_at: datetime) -> Attachment:
        return dataclasses.replace(self, scan_status=verdict, scanner=scanner, scanned_at=scanned_at)

    def view(self, *, show_uri: bool = False) -> dict[str, Any]:
        """The attachment as answers and events show it; the uri only when ``clean`` or when the
        reader may see it anyway (``show_uri``: staff reading a query answer)."""
        return {
            "attachment_id": self.id, "filename": self.filename, "content_type": self.content_type,
            "size_bytes": self.size_bytes, "sha256": self.sha256,
            "uri": self.uri if show_uri or self.scan_status == CLEAN else None,
            "scan_status": self.scan_status, "scanned_at": self.scanned_at,
        }


def check_uploads(uploads: Iterable[Upload], limits: AttachmentLimits) -> list[Upload]:
    """The uploads, if every size is within the limit and every URI scheme is allowed."""
    checked = list(uploads)
    for n, upload in enumerate(checked):
        if upload.size_bytes > limits.max_size_bytes:
            raise InvalidInput(f"attachments.{n}.size_bytes: {upload.size_bytes:,} bytes is over the limit of "
                               f"{limits.max_size_bytes:,}")
        parts = urlsplit(upload.uri)
        if parts.scheme.lower() not in limits.uri_schemes or not parts.netloc:
            allowed = ", ".join(sorted(limits.uri_schemes))
            raise InvalidInput(f"attachments.{n}.uri: the scheme must be one of {allowed} (scheme://location/…)")
    return checked
