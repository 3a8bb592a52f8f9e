"""Named domain errors. Each carries the reason code the entrypoint turns into a rejection."""

from __future__ import annotations


class DomainError(Exception):
    """Base of every rule violation; ``code`` is one of SPEC §6's reason codes."""

    code = "validation_error"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidInput(DomainError):
    code = "validation_error"


class Forbidden(DomainError):
    code = "forbidden"


class TicketNotFound(DomainError):
    code = "not_found"

    def __init__(self, message: str = "ticket not found") -> None:
        super().__init__(message)


class TicketClosed(DomainError):
    code = "ticket_closed"

    def __init__(self, message: str = "the ticket is closed") -> None:
        super().__init__(message)


class InvalidTransition(DomainError):
    code = "invalid_transition"


class ReasonRequired(DomainError):
    code = "reason_required"


class InvalidAssignee(DomainError):
    code = "invalid_assignee"


class Conflict(DomainError):
    code = "conflict"


class InvalidMerge(DomainError):
    code = "invalid_merge"


class UnknownSender(DomainError):
    code = "unknown_sender"


class AutoSubmitted(DomainError):
    code = "auto_submitted"


class InvalidFollower(DomainError):
    code = "invalid_follower"


class RateLimited(DomainError):
    code = "rate_limited"
