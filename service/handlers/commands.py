"""Command handlers: load the tickets, call domain methods, hand back the ticket the result names.

Each is a short linear script, registered with :func:`~service.handlers.registry.handles`, which
also declares what the bus fetches for it. Errors are domain errors; the bus turns them into
rejections, and collects the events of every ticket the handler loaded or added.
``ticket.ingest_email`` lives in :mod:`service.handlers.email`.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ticket_contracts import commands as c
from ticket_contracts.attachments import AttachmentRef

from service.domain.attachments import Upload, check_uploads
from service.domain.errors import Conflict
from service.domain.policy import check_staff, check_visible, customer_for_new_ticket
from service.domain.ticket import Ticket, format_number
from service.domain.values import Role, Status

from .context import CommandContext
from .registry import handles
from .unit_of_work import UnitOfWork


@handles(c.CreateTicket, numbers=1)
async def create_ticket(cmd: c.CreateTicket, ctx: CommandContext, uow: UnitOfWork) -> Ticket:
    p = cmd.payload
    customer_id = customer_for_new_ticket(ctx.actor, p.customer_id)
    if await uow.load(p.ticket_id) is not None:
        raise Conflict("a ticket with this ticket_id already exists")
    uploads = await new_uploads(p.attachments, ctx, uow)
    ticket = Ticket.open_new(
        ticket_id=p.ticket_id, number=format_number(await uow.next_number()), customer_id=customer_id,
        actor=ctx.actor, title=p.title, description=p.description, priority=p.priority.value,
        category_id=p.category_id, channel=p.channel.value, tags=list(p.tags), now=ctx.now, attachments=uploads,
    )
    uow.add(ticket)
    return ticket


@handles(c.UpdateTicket)
async def update_ticket(cmd: c.UpdateTicket, ctx: CommandContext, uow: UnitOfWork) -> Ticket:
    p = cmd.payload
    ticket = check_visible(ctx.actor, await uow.load(p.ticket_id))
    changes = {k: _plain(v) for k, v in p.changed_fields().items()}
    ticket.update(ctx.actor, changes, ctx.now, p.expected_version)
    return ticket


@handles(c.ChangeStatus)
async def change_status(cmd: c.ChangeStatus, ctx: CommandContext, uow: UnitOfWork) -> Ticket:
    p = cmd.payload
    ticket = check_visible(ctx.actor, await uow.load(p.ticket_id))
    ticket.change_status(ctx.actor, Status(p.status.value), p.reason, ctx.now, p.expected_version)
    return ticket


@handles(c.AssignTicket, users=lambda p: (p.assignee_id,))
async def assign_ticket(cmd: c.AssignTicket, ctx: CommandContext, uow: UnitOfWork) -> Ticket:
    p = cmd.payload
    ticket = check_visible(ctx.actor, await uow.load(p.ticket_id))
    assignee = ctx.users.get(p.assignee_id) if p.assignee_id else None
    ticket.assign(ctx.actor, assignee, p.assignee_id, ctx.now, p.expected_version)
    return ticket


@handles(c.AddReply)
async def add_reply(cmd: c.AddReply, ctx: CommandContext, uow: UnitOfWork) -> Ticket:
    p = cmd.payload
    ticket = check_visible(ctx.actor, await uow.load(p.ticket_id))
    uploads = await new_uploads(p.attachments, ctx, uow) if p.attachments else []
    ticket.add_reply(
        ctx.actor, reply_id=p.reply_id, body=p.body, internal=p.internal, source=p.source.value,
        now=ctx.now, expected_version=p.expected_version, attachments=uploads,
    )
    return ticket


@handles(c.LogTime)
async def log_time(cmd: c.LogTime, ctx: CommandContext, uow: UnitOfWork) -> Ticket:
    p = cmd.payload
    ticket = check_visible(ctx.actor, await uow.load(p.ticket_id))
    ticket.log_time(
        ctx.actor, entry_id=p.entry_id, minutes=p.minutes, note=p.note, now=ctx.now,
        expected_version=p.expected_version,
    )
    return ticket


@handles(c.DeleteTicket)
async def delete_ticket(cmd: c.DeleteTicket, ctx: CommandContext, uow: UnitOfWork) -> Ticket:
    p = cmd.payload
    ticket = check_visible(ctx.actor, await uow.load(p.ticket_id))
    ticket.delete(ctx.actor, p.reason, ctx.now, p.expected_version)
    return ticket


@handles(c.RestoreTicket)
async def restore_ticket(cmd: c.RestoreTicket, ctx: CommandContext, uow: UnitOfWork) -> Ticket:
    p = cmd.payload
    ticket = check_visible(ctx.actor, await uow.load(p.ticket_id), allow_deleted=True)
    ticket.restore(ctx.actor, ctx.now, p.expected_version)
    return ticket


@handles(c.MergeTicket, tickets=lambda p: (p.ticket_id, p.into_ticket_id))
async def merge_ticket(cmd: c.MergeTicket, ctx: CommandContext, uow: UnitOfWork) -> Ticket:
    p = cmd.payload
    source = check_visible(ctx.actor, await uow.load(p.ticket_id))
    check_staff(ctx.actor, "merge tickets")
    target = check_visible(ctx.actor, await uow.load(p.into_ticket_id))
    source.merge_into(ctx.actor, target, p.reason, ctx.now, p.expected_version)
    return source


@handles(c.SetFollowers, users=lambda p: p.add)
async def set_followers(cmd: c.SetFollowers, ctx: CommandContext, uow: UnitOfWork) -> Ticket:
    p = cmd.payload
    ticket = check_visible(ctx.actor, await uow.load(p.ticket_id))
    ticket.set_followers(ctx.actor, {i: ctx.users.get(i) for i in p.add}, p.remove, ctx.now, p.expected_version)
    return ticket


@handles(c.RecordAttachmentScan)
async def record_attachment_scan(cmd: c.RecordAttachmentScan, ctx: CommandContext, uow: UnitOfWork) -> Ticket:
    p = cmd.payload
    ticket = check_visible(ctx.actor, await uow.load(p.ticket_id))
    ticket.record_scan(ctx.actor, await uow.attachment(p.attachment_id), p.verdict.value, p.scanner,
                       p.scanned_at, ctx.now, p.expected_version)
    return ticket


async def new_uploads(refs: Iterable[AttachmentRef], ctx: CommandContext, uow: UnitOfWork) -> list[Upload]:
    """A command's attachments, within the configured limits and with ids nobody used yet."""
    uploads = check_uploads((Upload(a.attachment_id, a.filename, a.content_type, a.size_bytes, a.sha256, a.uri)
                             for a in refs), ctx.limits.attachments)
    if uploads and await uow.known_attachments(u.id for u in uploads):
        raise Conflict("an attachment_id is already used by another attachment")
    return uploads




@handles(c.RedactTicket)
async def redact_ticket(cmd: c.RedactTicket, ctx: CommandContext, uow: UnitOfWork) -> Ticket:
    """Admins address any ticket (deleted too); a service account too, however it is."""
    p = cmd.payload
    ticket = await uow.load(p.ticket_id)
    if ctx.actor.role is not Role.SYSTEM or ticket is None:
        ticket = check_visible(ctx.actor, ticket, allow_deleted=True)
    ticket.redact(ctx.actor, p.author_id, ctx.now, p.expected_version)
    return ticket


def _plain(value: Any) -> Any:
    if isinstance(value, list):
        return list(value)
    return getattr(value, "value", value)
