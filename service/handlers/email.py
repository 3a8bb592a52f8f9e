"""``ticket.ingest_email``: the gateway's mail becomes a reply on a known ticket or a new ticket.

Threading: first the Message-IDs in ``In-Reply-To`` and ``References`` (newest first), then a
ticket number in the subject. A match becomes a public customer reply only when the sender
belongs to the ticket's customer; otherwise — or when nothing matches — the mail opens a new
ticket. A mail to a closed ticket opens a follow-up ticket. Ids are derived from the
Message-ID, so the same mail always maps to the same ticket or reply.
"""

from __future__ import annotations

import uuid

from ticket_contracts.commands import IngestEmail

from service.domain.email import EMPTY_BODY, is_auto_submitted, ticket_number_in_subject, title_from_subject
from service.domain.errors import AutoSubmitted, Forbidden, InvalidInput, UnknownSender
from service.domain.ticket import Ticket, format_number
from service.domain.values import Actor, DirectoryUser, Role, Status

from .context import CommandContext, UnitOfWork

DESCRIPTION_MAX = 20_000
REPLY_MAX = 50_000
_NS = uuid.UUID("5f0c7a1e-3d2b-4f7e-9a55-1c2d3e4f5a6b")


class AlreadyIngested(Exception):
    """The mail's Message-ID was ingested before, by the command ``command_id``."""

    def __init__(self, command_id: uuid.UUID) -> None:
        super().__init__(str(command_id))
        self.command_id = command_id


async def ingest_email(cmd: IngestEmail, ctx: CommandContext, uow: UnitOfWork) -> Ticket | None:
    p = cmd.payload
    if ctx.actor.role is not Role.SYSTEM:
        raise Forbidden("only the email-ingest gateway may ingest email")
    known = await uow.email_known([p.email_message_id])
    if p.email_message_id in known:
        raise AlreadyIngested(known[p.email_message_id][1])
    uow.record_email({"message_id": p.email_message_id, "ticket_id": None, "reply_id": None,
                      "command_id": ctx.message_id, "created_at": ctx.now})
    if is_auto_submitted(p.auto_submitted, p.auto_submitted_header, p.precedence_header, p.from_address):
        raise AutoSubmitted("auto-submitted mail never creates tickets or replies")
    sender = await _sender(p.from_address, uow)
    actor = Actor(sender.user_id, Role.CUSTOMER, sender.customer_id)
    target = await _thread(cmd, uow)
    if target is not None and target.customer_id == sender.customer_id and target.deleted_at is None:
        if target.status is not Status.CLOSED:
            return _reply(target, cmd, actor, ctx, uow)
        return await _new_ticket(cmd, actor, ctx, uow, follow_up_of=target.id)
    return await _new_ticket(cmd, actor, ctx, uow, follow_up_of=None)


async def _sender(address: str, uow: UnitOfWork) -> DirectoryUser:
    user = await uow.user_by_email(address)
    if user is None or not user.active or user.role is not Role.CUSTOMER or user.customer_id is None:
        raise UnknownSender("the sender is not an active customer user")
    return user


async def _thread(cmd: IngestEmail, uow: UnitOfWork) -> Ticket | None:
    p = cmd.payload
    candidates = [i for i in [p.in_reply_to, *reversed(p.references)] if i]
    if candidates:
        known = await uow.email_known(candidates)
        for message_id in candidates:
            ticket_id = known.get(message_id, (None, None))[0]
            if ticket_id is not None:
                return await uow.load(ticket_id)
    number = ticket_number_in_subject(p.subject)
    ticket_id = await uow.ticket_id_by_number(number) if number else None
    return await uow.load(ticket_id) if ticket_id else None


def _reply(ticket: Ticket, cmd: IngestEmail, actor: Actor, ctx: CommandContext, uow: UnitOfWork) -> Ticket:
    p = cmd.payload
    if len(p.body) > REPLY_MAX:
        raise InvalidInput(f"the mail body is longer than {REPLY_MAX} characters")
    reply_id = uuid.uuid5(_NS, p.email_message_id)
    ticket.add_reply(actor, reply_id=reply_id, body=p.body or EMPTY_BODY, internal=False, source="email",
                     now=ctx.now, expected_version=None, email_message_id=p.email_message_id)
    _remember(uow, p.email_message_id, ticket.id, reply_id, ctx)
    return ticket


async def _new_ticket(
    cmd: IngestEmail, actor: Actor, ctx: CommandContext, uow: UnitOfWork, follow_up_of: uuid.UUID | None
) -> Ticket:
    p = cmd.payload
    if len(p.body) > DESCRIPTION_MAX:
        raise InvalidInput(f"the mail body is longer than {DESCRIPTION_MAX} characters, the limit of a new ticket")
    ticket = Ticket.open_new(
        ticket_id=uuid.uuid5(_NS, p.email_message_id), number=format_number(await uow.next_number()),
        customer_id=actor.customer_id,  # type: ignore[arg-type]  # senders are customers
        actor=actor, title=title_from_subject(p.subject, 200),
        description=p.body.strip() or EMPTY_BODY, priority="normal", category_id=None, channel="email",
        tags=[], now=ctx.now, follow_up_of=follow_up_of, email_message_id=p.email_message_id,
    )
    uow.add(ticket)
    _remember(uow, p.email_message_id, ticket.id, None, ctx)
    return ticket


def _remember(uow: UnitOfWork, message_id: str, ticket_id: uuid.UUID, reply_id: uuid.UUID | None,
              ctx: CommandContext) -> None:
    uow.record_email({"message_id": message_id, "ticket_id": ticket_id, "reply_id": reply_id,
                      "command_id": ctx.message_id, "created_at": ctx.now})
