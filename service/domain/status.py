"""The status machine of SPEC §5: who may move a ticket where, and when a reason is needed."""

from __future__ import annotations

from .errors import Forbidden, InvalidTransition, ReasonRequired, TicketClosed
from .values import Actor, Status


def check_not_closed(status: Status) -> None:
    if status is Status.CLOSED:
        raise TicketClosed()


def check_transition(actor: Actor, current: Status, target: Status, reason: str | None) -> None:
    """Raise the named error that forbids ``current → target`` for ``actor``; return if allowed."""
    check_not_closed(current)
    if target is current:
        raise InvalidTransition(f"the ticket is already {current.value}")
    if target is Status.NEW:
        raise InvalidTransition("nothing moves back to new")
    if not actor.is_staff:
        _check_customer_transition(current, target)
    if target is Status.ON_HOLD and not reason:
        raise ReasonRequired("a reason is required to put a ticket on hold")
    if is_reopening(current, target) and not reason:
        raise ReasonRequired("a reason is required to reopen a resolved ticket")


def _check_customer_transition(current: Status, target: Status) -> None:
    if target is Status.RESOLVED:
        return
    if current is Status.RESOLVED and target is Status.OPEN:
        return
    raise Forbidden("customers may only resolve their ticket or reopen a resolved one")


def is_reopening(current: Status, target: Status) -> bool:
    return current is Status.RESOLVED and target is not Status.CLOSED
