"""``ticket.ingest_email``: the gateway's mail becomes a reply on a known ticket or a new ticket.

In order: only the gateway (a system actor) may ingest; a Message-ID seen before changes
nothing (the first command's outcome is repeated); the Message-ID is recorded at once, so a
rejection below is remembered too; auto-submitted mail is refused; the sender must be an
active customer in the directory replica. Threading then tries the Message-IDs in
``In-Reply-To`` and ``References`` (newest first), then ticket tags in the subject, and takes
the first ticket that belongs to the sender's customer and is not deleted. A match becomes a
public customer reply (reopening a pending or resolved ticket); a closed match opens a
follow-up ticket; no match opens a new ticket. A match that was merged into another ticket is
replaced by its target (following a chain of merges), so such mail is a reply there, never a
follow-up of the merged ticket. Ids derive from the Message-ID. The events
name the sender as their actor. See docs/email-ingest.md.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import timedelta

from ticket_contracts.commands import IngestEmail, RecordOutboundEmail
from ticket_contracts.model import DESCRIPTION_MAX, REPLY_BODY_MAX, TITLE_MAX

from service.domain import email as rules
from service.domain.attachments import Upload
from service.domain.errors import AutoSubmitted, Conflict, Forbidden, UnknownSender
from service.domain.policy import check_visible
from service.domain.ticket import Ticket, format_number
from service.domain.values import Actor, DirectoryUser, Role, Status

from .commands import new_uploads
from .context import CommandContext
from .registry import handles
from .unit_of_work import UnitOfWork

#: The window of the per-sender limit on tickets opened by mail.
RATE_WINDOW = timedelta(hours=1)

_NS = uuid.UUID("5f0c7a1e-3d2b-4f7e-9a55-1c2d3e4f5a6b")


class AlreadyIngested(Exception):
    """The mail's Message-ID was recorded before, by the command ``command_id``."""

    def __init__(self, command_id: uuid.UUID) -> None:
        super().__init__(str(command_id))
        self.command_id = command_id


@handles(IngestEmail, tickets=lambda p: ())
async def ingest_email(cmd: IngestEmail, ctx: CommandContext, uow: UnitOfWork) -> Ticket:
    p = cmd.payload
    if ctx.actor.role is not Role.SYSTEM:
        raise Forbidden("only the email-ingest gateway may ingest email")
    message_id = rules.normalise_message_id(p.email_message_id)
    known = await uow.email_known([message_id])
    if message_id in known:
        if known[message_id].outbound:  # one of our own notifications came back: a loop
            raise AutoSubmitted("the mail is one the platform sent about a ticket; it never creates tickets or replies")
        raise AlreadyIngested(known[message_id].command_id)
    sender_address = rules.normalise_address(p.from_address)
    _remember(uow, message_id, None, None, ctx, sender_address)  # replaced on success; kept with a rejection
    if rules.is_auto_submitted(p.auto_submitted, p.auto_submitted_header, p.precedence_header, p.from_address):
        raise AutoSubmitted("auto-submitted mail (auto-reply, bounce, bulk) never creates tickets or replies")
    sender = await _sender(p.from_address, uow)
    actor = Actor(sender.user_id, Role.CUSTOMER, sender.customer_id)
    ctx.on_behalf_of = actor
    target = await _thread(cmd, actor, uow)
    if target is None or target.status is Status.CLOSED:
        recent = await uow.new_tickets_by_mail(sender_address, ctx.now - RATE_WINDOW)
        rules.check_new_ticket_rate(recent, ctx.limits.mail_new_tickets_per_hour)
        uploads = await new_uploads(p.attachments, ctx, uow)
        ticket = await _new_ticket(cmd, message_id, actor, ctx, uow, uploads, sender_address,
                                   follow_up_of=target.id if target else None)
    else:
        uploads = await new_uploads(p.attachments, ctx, uow)
        ticket = _reply(target, cmd, message_id, actor, ctx, uow, uploads, sender_address)
    await _follow_cc(ticket, p.cc, actor, ctx, uow)
    return ticket


@handles(RecordOutboundEmail)
async def record_outbound_email(cmd: RecordOutboundEmail, ctx: CommandContext, uow: UnitOfWork) -> Ticket:
    """Remember the Message-ID of a mail the platform sent about the ticket, so that replies naming it
    thread here. No event, no new version; the same Message-ID for the same ticket again changes nothing."""
    p = cmd.payload
    ticket = check_visible(ctx.actor, await uow.load(p.ticket_id))
    if ctx.actor.role is not Role.SYSTEM:
        raise Forbidden("only service accounts (the notification service) may record outbound mail")
    message_id = rules.normalise_message_id(p.email_message_id)
    known = (await uow.email_known([message_id])).get(message_id)
    if known is not None:
        if known.outbound and known.ticket_id == ticket.id:
            return ticket  # recorded before: accepted, nothing changes
        raise Conflict("this Message-ID is already recorded for another mail")
    uow.record_email({"message_id": message_id, "ticket_id": ticket.id, "reply_id": p.reply_id,
                      "command_id": ctx.message_id, "created_at": ctx.now, "from_address": None, "outbound": True})
    return ticket


async def _follow_cc(ticket: Ticket, cc: list[str], sender: Actor, ctx: CommandContext, uow: UnitOfWork) -> None:
    """Cc'd users of the sender's customer follow the ticket; the other addresses are reported."""
    addresses = list(dict.fromkeys(rules.normalise_address(a) for a in cc if a.strip()))
    if not addresses:
        return
    users = await uow.users_by_email(addresses)
    accepted = ticket.follow_from_mail(sender, users.values(), ctx.now)
    ctx.unknown_cc = [a for a in addresses if a not in users or users[a].user_id not in accepted]


async def _sender(address: str, uow: UnitOfWork) -> DirectoryUser:
    user = await uow.user_by_email(address)
    if user is None or not user.active or user.role is not Role.CUSTOMER or user.customer_id is None:
        raise UnknownSender("the sender is not an active customer user")
    return user


async def _thread(cmd: IngestEmail, sender: Actor, uow: UnitOfWork) -> Ticket | None:
    """The first threading candidate the sender may reply to; a stranger's ticket never matches."""
    async for ticket_id in _candidates(cmd, uow):
        ticket = await _surviving(await uow.load(ticket_id), uow)
        if ticket is not None and ticket.customer_id == sender.customer_id and ticket.deleted_at is None:
            return ticket
    return None


#: Longer chains of merges than this are not followed (a guard; merges never form a cycle).
MAX_MERGE_CHAIN = 100


async def _surviving(ticket: Ticket | None, uow: UnitOfWork) -> Ticket | None:
    """The ticket a merged ticket lives on as: its target, following a chain of merges."""
    seen: set[uuid.UUID] = set()
    while ticket is not None and ticket.merged_into is not None and len(seen) < MAX_MERGE_CHAIN:
        seen.add(ticket.id)
        if ticket.merged_into in seen:
            return None
        ticket = await uow.load(ticket.merged_into)
    return ticket


async def _candidates(cmd: IngestEmail, uow: UnitOfWork) -> AsyncIterator[uuid.UUID]:
    p = cmd.payload
    seen: set[uuid.UUID] = set()
    if ids := rules.thread_candidates(p.in_reply_to, p.references):
        known = await uow.email_known(ids)
        for message_id in ids:
            ticket_id = known.get(message_id, (None, None))[0]
            if ticket_id is not None and ticket_id not in seen:
                seen.add(ticket_id)
                yield ticket_id
    for number in rules.ticket_numbers_in_subject(p.subject):
        ticket_id = await uow.ticket_id_by_number(number)
        if ticket_id is not None and ticket_id not in seen:
            seen.add(ticket_id)
            yield ticket_id


def _reply(ticket: Ticket, cmd: IngestEmail, message_id: str, actor: Actor, ctx: CommandContext,
           uow: UnitOfWork, uploads: list[Upload], sender_address: str) -> Ticket:
    body = rules.body_text(cmd.payload.body, REPLY_BODY_MAX, "a reply")
    reply_id = uuid.uuid5(_NS, message_id)
    ticket.add_reply(actor, reply_id=reply_id, body=body, internal=False, source="email", now=ctx.now,
                     expected_version=None, email_message_id=message_id, attachments=uploads)
    _remember(uow, message_id, ticket.id, reply_id, ctx, sender_address)
    return ticket


async def _new_ticket(
    cmd: IngestEmail, message_id: str, actor: Actor, ctx: CommandContext, uow: UnitOfWork,
    uploads: list[Upload], sender_address: str, follow_up_of: uuid.UUID | None,
) -> Ticket:
    p = cmd.payload
    description = rules.body_text(p.body, DESCRIPTION_MAX, "a new ticket's description")
    ticket = Ticket.open_new(
        ticket_id=uuid.uuid5(_NS, message_id), number=format_number(await uow.next_number()),
        customer_id=actor.customer_id,  # type: ignore[arg-type]  # _sender checked it
        actor=actor, title=rules.title_from_subject(p.subject, TITLE_MAX), description=description,
        priority="normal", category_id=None, channel="email", tags=[], now=ctx.now,
        follow_up_of=follow_up_of, email_message_id=message_id, attachments=uploads,
    )
    uow.add(ticket)
    _remember(uow, message_id, ticket.id, None, ctx, sender_address)
    return ticket


def _remember(uow: UnitOfWork, message_id: str, ticket_id: uuid.UUID | None, reply_id: uuid.UUID | None,
              ctx: CommandContext, from_address: str) -> None:
    uow.record_email({"message_id": message_id, "ticket_id": ticket_id, "reply_id": reply_id,
                      "command_id": ctx.message_id, "created_at": ctx.now, "from_address": from_address,
                      "outbound": False})
