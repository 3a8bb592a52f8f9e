"""Reason codes shared by command results and query error answers (SPEC §6)."""

from __future__ import annotations

from enum import StrEnum


class ReasonCode(StrEnum):
    VALIDATION_ERROR = "validation_error"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    TICKET_CLOSED = "ticket_closed"
    INVALID_TRANSITION = "invalid_transition"
    REASON_REQUIRED = "reason_required"
    INVALID_ASSIGNEE = "invalid_assignee"
    CONFLICT = "conflict"
    UNKNOWN_SENDER = "unknown_sender"
    #: An email ingest refused because the mail was auto-submitted (SPEC §8 loop protection).
    AUTO_SUBMITTED = "auto_submitted"
    #: ``ticket.set_followers`` (or a mail's Cc) named a user who may not follow the ticket.
    INVALID_FOLLOWER = "invalid_follower"
    #: Too many new tickets by mail from one sender within the rolling hour (loop limit).
    RATE_LIMITED = "rate_limited"
    #: A merge of a ticket into itself or into another customer's ticket.
    INVALID_MERGE = "invalid_merge"
