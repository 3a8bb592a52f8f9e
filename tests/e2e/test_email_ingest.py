"""Email ingest end to end: realistic mails from the gateway become tickets and replies (SPEC §8).

Every mail is a ``ticket.ingest_email`` sent by a system actor; each test asserts the result
and the events on tickets.events.v1. That a ticket did *not* change is shown by the version
the next command on it gets (versions run 1, 2, 3 … without gaps).
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from ticket_contracts import (
    Actor,
    AddReply,
    ChangeStatus,
    CommandResult,
    DeleteTicket,
    EventBase,
    IngestEmail,
    RestoreTicket,
    new_id,
    parse_event,
    topics,
)
from ticket_contracts.client import TicketClient
from ticket_contracts.commands import IngestEmailPayload
from ticket_contracts.users import UserUpsertedPayload

from tests.support.streams import TopicReader
from tests.support.waiting import eventually

GATEWAY = Actor(user_id=uuid.uuid4(), role="system")
AGENT = Actor(user_id=uuid.uuid4(), role="agent")
ADMIN = Actor(user_id=uuid.uuid4(), role="admin")


def mail(sender: str, subject: str = "Printer on fire", body: str = "It smokes.\n\nJane", *,
         message_id: str | None = None, in_reply_to: str | None = None, references: list[str] | None = None,
         **fields: Any) -> IngestEmail:
    payload = IngestEmailPayload(
        email_message_id=message_id or f"<{uuid.uuid4().hex}@mail.example.test>", in_reply_to=in_reply_to,
        references=references or [], from_address=sender, subject=subject, body=body,
        received_at=datetime.now(UTC), **fields,
    )
    return IngestEmail(actor=GATEWAY, payload=payload)


def resent(command: IngestEmail) -> IngestEmail:
    """The same mail in a new envelope, as a gateway retrying after a crash would send it."""
    return command.model_copy(update={"message_id": new_id()})


async def customer(directory: Any, customer_id: uuid.UUID | None = None, **kw: Any) -> UserUpsertedPayload:
    return await directory.add("customer", customer_id=customer_id or uuid.uuid4(), **kw)


async def events_of(output: TopicReader, ticket_id: uuid.UUID, count: int) -> list[EventBase]:
    """The ticket's events once at least ``count`` distinct ones arrived, in version order."""
    def distinct() -> dict[str, Any] | None:
        unique = {e["event_id"]: e for e in output.json_for(ticket_id, topics.EVENTS)}
        return unique if len(unique) >= count else None

    unique = await eventually(distinct, what=f"{count} events of {ticket_id}")
    return sorted((parse_event(json.dumps(e)) for e in unique.values()), key=lambda e: e.ticket_version)


async def version_after(client: TicketClient, ticket_id: uuid.UUID) -> int:
    """Add an internal note and return the version it got: one more than the ticket had."""
    note = AddReply(actor=AGENT, payload={"ticket_id": ticket_id, "reply_id": new_id(), "body": "probe",
                                          "internal": True})
    result = await client.send(note)
    assert result.accepted, result
    return result.ticket_version  # type: ignore[return-value]


async def set_status(client: TicketClient, ticket_id: uuid.UUID, status: str) -> CommandResult:
    result = await client.send(ChangeStatus(actor=AGENT, payload={"ticket_id": ticket_id, "status": status}))
    assert result.accepted, result
    return result


async def new_ticket_by_mail(client: TicketClient, sender: UserUpsertedPayload,
                             **kw: Any) -> tuple[IngestEmail, CommandResult]:
    first = mail(sender.email, **kw)
    result = await client.send(first)
    assert result.accepted and result.ticket_version == 1, result
    return first, result


def rejected(result: CommandResult, reason: str) -> None:
    assert result.status == "rejected" and result.reason == reason, result
    assert result.event_ids == [] and result.ticket_version is None


# ---- new tickets -----------------------------------------------------------------------
async def test_new_mail_opens_an_email_ticket_in_the_senders_name(client: TicketClient, output: TopicReader,
                                                                  directory: Any) -> None:
    jane = await customer(directory)
    body = ("The printer on floor 3 smokes.\n\nJane\n\n"
            "On Mon, 2 Jun 2025, Support <support@example.test> wrote:\n> Hello,\n> how can we help?\n")
    command = mail(jane.email.upper(), "Re: Fwd:  Printer   on fire", body, message_id="abc-123@mail.example.test")

    result = await client.send(command)

    assert result.accepted and result.ticket_version == 1 and len(result.event_ids) == 1
    assert result.command_id == command.message_id and result.actor is not None and result.actor.role == "system"
    [created] = await events_of(output, result.ticket_id, 1)  # type: ignore[arg-type]
    assert created.type == "ticket.created" and created.event_id == result.event_ids[0]
    p = created.payload  # type: ignore[attr-defined]
    assert p.channel == "email" and p.title == "Printer on fire" and p.description == body
    assert p.customer_id == jane.customer_id and p.created_by == jane.user_id
    assert p.follow_up_of is None and p.email_message_id == "<abc-123@mail.example.test>"
    assert p.status == "new" and p.priority == "normal" and created.ticket.number == p.number
    assert created.actor.user_id == jane.user_id and created.actor.role == "customer"
    assert created.actor.customer_id == jane.customer_id and created.causation_id == command.message_id


async def test_long_subject_becomes_a_title_cut_to_the_limit(client: TicketClient, output: TopicReader,
                                                             directory: Any) -> None:
    jane = await customer(directory)
    _, result = await new_ticket_by_mail(client, jane, subject="AW: " + "Drucker " * 60, body="")

    [created] = await events_of(output, result.ticket_id, 1)  # type: ignore[arg-type]
    title = created.payload.title  # type: ignore[attr-defined]
    assert len(title) <= 200 and title.startswith("Drucker Drucker") and title == title.strip()
    assert created.payload.description == "(empty message)"  # type: ignore[attr-defined]


async def test_nul_characters_are_dropped_instead_of_jamming_the_consumer(
    client: TicketClient, output: TopicReader, directory: Any
) -> None:
    jane = await customer(directory)
    _, result = await new_ticket_by_mail(client, jane, subject="Print\x00er", body="Smoke\x00 everywhere")

    [created] = await events_of(output, result.ticket_id, 1)  # type: ignore[arg-type]
    assert created.payload.title == "Printer"  # type: ignore[attr-defined]
    assert created.payload.description == "Smoke everywhere"  # type: ignore[attr-defined]


# ---- threading -------------------------------------------------------------------------
async def test_reply_by_in_reply_to_and_then_to_that_reply(client: TicketClient, output: TopicReader,
                                                           directory: Any) -> None:
    jane = await customer(directory)
    first, opened = await new_ticket_by_mail(client, jane)
    ticket_id = opened.ticket_id
    answer = mail(jane.email, "Re: Printer on fire", "Now it is burning.\n\n> It smokes.",
                  in_reply_to=first.payload.email_message_id, references=[first.payload.email_message_id])

    replied = await client.send(answer)
    again = await client.send(mail(jane.email, "Re: Re: Printer on fire", "Fire brigade is here.",
                                   in_reply_to=answer.payload.email_message_id))

    assert replied.accepted and replied.ticket_id == ticket_id and replied.ticket_version == 2
    assert again.accepted and again.ticket_id == ticket_id and again.ticket_version == 3
    events = await events_of(output, ticket_id, 3)  # type: ignore[arg-type]
    assert [e.type for e in events] == ["ticket.created", "ticket.reply_added", "ticket.reply_added"]
    reply = events[1].payload.reply  # type: ignore[attr-defined]
    assert reply.body == "Now it is burning.\n\n> It smokes." and reply.author_id == jane.user_id
    assert reply.author_role == "customer" and reply.source == "email" and not reply.internal
    assert reply.email_message_id == answer.payload.email_message_id
    assert not events[1].internal and events[1].payload.first_response is False  # type: ignore[attr-defined]
    assert events[1].actor.user_id == jane.user_id and events[2].ticket.status == "new"
    assert await version_after(client, ticket_id) == 4  # type: ignore[arg-type]


async def test_reply_by_references_only(client: TicketClient, output: TopicReader, directory: Any) -> None:
    jane = await customer(directory)
    first, opened = await new_ticket_by_mail(client, jane, message_id="<orig-ref@mail.example.test>")
    notification = "<unknown-notification@tickets.example.test>"
    header = f"<orig-ref@mail.example.test>\r\n {notification}"  # the raw header, as some gateways pass it

    result = await client.send(mail(jane.email, "Still broken", "See below.", references=[header]))

    assert result.accepted and result.ticket_id == opened.ticket_id and result.ticket_version == 2
    events = await events_of(output, opened.ticket_id, 2)  # type: ignore[arg-type]
    assert events[1].type == "ticket.reply_added"


@pytest.mark.parametrize("style", [
    "Re: [{n}] Printer on fire",
    "AW: AW:[{n}] Drucker",
    "SV: [ {n} ] Skrivaren",
    "Fwd: RE:  [{lower}]",
    "Printer [{short}] still broken",
])
async def test_reply_by_subject_tag(style: str, client: TicketClient, output: TopicReader, directory: Any) -> None:
    jane = await customer(directory)
    _, opened = await new_ticket_by_mail(client, jane)
    [created] = await events_of(output, opened.ticket_id, 1)  # type: ignore[arg-type]
    number = created.ticket.number
    subject = style.format(n=number, lower=number.lower(), short="TKT-" + str(int(number.split("-")[1])))

    result = await client.send(mail(jane.email, subject, "Any news?"))

    assert result.accepted and result.ticket_id == opened.ticket_id and result.ticket_version == 2


async def test_a_colleague_of_the_same_customer_may_reply(client: TicketClient, output: TopicReader,
                                                          directory: Any) -> None:
    jane = await customer(directory)
    john = await customer(directory, jane.customer_id)
    first, opened = await new_ticket_by_mail(client, jane)

    result = await client.send(mail(john.email, "Re: Printer", "Same here.", in_reply_to=first.payload.email_message_id))

    assert result.accepted and result.ticket_id == opened.ticket_id
    events = await events_of(output, opened.ticket_id, 2)  # type: ignore[arg-type]
    assert events[1].payload.reply.author_id == john.user_id  # type: ignore[attr-defined]


async def test_a_stranger_quoting_someones_ticket_gets_a_ticket_of_their_own(
    client: TicketClient, output: TopicReader, directory: Any
) -> None:
    victim = await customer(directory)
    stranger = await customer(directory)
    first, opened = await new_ticket_by_mail(client, victim)
    [created] = await events_of(output, opened.ticket_id, 1)  # type: ignore[arg-type]
    quoting = mail(stranger.email, f"Re: [{created.ticket.number}] Printer on fire", "I can see your ticket!",
                   in_reply_to=first.payload.email_message_id, references=[first.payload.email_message_id])

    result = await client.send(quoting)

    assert result.accepted and result.ticket_id != opened.ticket_id and result.ticket_version == 1
    [own] = await events_of(output, result.ticket_id, 1)  # type: ignore[arg-type]
    assert own.type == "ticket.created" and own.payload.customer_id == stranger.customer_id  # type: ignore[attr-defined]
    assert own.payload.follow_up_of is None and own.payload.title == "Printer on fire"  # type: ignore[attr-defined]
    assert created.ticket.number not in own.payload.title  # type: ignore[attr-defined]
    assert await version_after(client, opened.ticket_id) == 2, "the victim's ticket is unchanged"  # type: ignore[arg-type]
    assert len(await events_of(output, opened.ticket_id, 2)) == 2  # type: ignore[arg-type]


async def test_a_reply_to_a_deleted_ticket_starts_a_new_one(client: TicketClient, output: TopicReader,
                                                            directory: Any) -> None:
    jane = await customer(directory)
    first, opened = await new_ticket_by_mail(client, jane)
    ticket_id = opened.ticket_id
    deleted = await client.send(DeleteTicket(actor=ADMIN, payload={"ticket_id": ticket_id, "reason": "spam"}))
    assert deleted.accepted

    result = await client.send(mail(jane.email, "Re: Printer on fire", "Hello?", in_reply_to=first.payload.email_message_id))

    assert result.accepted and result.ticket_id != ticket_id and result.ticket_version == 1
    [created] = await events_of(output, result.ticket_id, 1)  # type: ignore[arg-type]
    assert created.payload.follow_up_of is None  # type: ignore[attr-defined]
    restored = await client.send(RestoreTicket(actor=ADMIN, payload={"ticket_id": ticket_id}))
    assert restored.ticket_version == 3, "the deleted ticket got nothing"


# ---- statuses --------------------------------------------------------------------------
async def test_a_reply_to_a_closed_ticket_opens_a_follow_up_that_threads_itself(
    client: TicketClient, output: TopicReader, directory: Any
) -> None:
    jane = await customer(directory)
    first, opened = await new_ticket_by_mail(client, jane)
    closed_id = opened.ticket_id
    await set_status(client, closed_id, "closed")  # type: ignore[arg-type]
    late = mail(jane.email, "Re: Printer on fire", "It is back!", in_reply_to=first.payload.email_message_id)

    result = await client.send(late)

    assert result.accepted and result.ticket_id != closed_id and result.ticket_version == 1
    [follow_up] = await events_of(output, result.ticket_id, 1)  # type: ignore[arg-type]
    p = follow_up.payload  # type: ignore[attr-defined]
    assert p.follow_up_of == closed_id and p.channel == "email" and p.customer_id == jane.customer_id
    assert p.description == "It is back!" and p.email_message_id == late.payload.email_message_id
    assert [e.type for e in await events_of(output, closed_id, 2)] == ["ticket.created", "ticket.status_changed"]
    # the follow-up's own Message-ID is remembered: answering it continues the follow-up
    more = await client.send(mail(jane.email, "Re: Re: Printer", "Photo attached.", in_reply_to=late.payload.email_message_id))
    assert more.accepted and more.ticket_id == result.ticket_id and more.ticket_version == 2


@pytest.mark.parametrize("status", ["resolved", "pending"])
async def test_a_reply_to_a_resolved_or_pending_ticket_reopens_it(
    status: str, client: TicketClient, output: TopicReader, directory: Any
) -> None:
    jane = await customer(directory)
    first, opened = await new_ticket_by_mail(client, jane)
    ticket_id = opened.ticket_id
    await set_status(client, ticket_id, status)  # type: ignore[arg-type]

    result = await client.send(mail(jane.email, "Re: Printer on fire", "Not fixed.", in_reply_to=first.payload.email_message_id))

    assert result.accepted and result.ticket_id == ticket_id and result.ticket_version == 4
    events = await events_of(output, ticket_id, 4)  # type: ignore[arg-type]
    assert [e.type for e in events[2:]] == ["ticket.reply_added", "ticket.status_changed"]
    assert [e.event_id for e in events[2:]] == result.event_ids
    moved = events[3].payload  # type: ignore[attr-defined]
    assert (moved.from_status, moved.to_status, moved.automatic) == (status, "open", True)
    assert events[3].ticket.status == "open" and events[3].ticket.resolved_at is None
    assert events[3].causation_id == events[2].causation_id


# ---- idempotency -----------------------------------------------------------------------
async def test_the_same_mail_twice_changes_nothing_even_in_a_new_envelope(
    client: TicketClient, output: TopicReader, directory: Any
) -> None:
    jane = await customer(directory)
    first, opened = await new_ticket_by_mail(client, jane, message_id="<twice@mail.example.test>")

    same_envelope = await client.send(first)
    retried = resent(first)
    new_envelope = await client.send(retried)
    unbracketed = await client.send(mail(jane.email, message_id="twice@mail.example.test"))

    assert same_envelope == opened
    for again, command_id in ((new_envelope, retried.message_id), (unbracketed, None)):
        assert again.status == "accepted" and again.ticket_id == opened.ticket_id
        assert again.event_ids == opened.event_ids and again.ticket_version == 1
        assert again.command_id != opened.command_id and again.causation_id == again.command_id
        assert command_id is None or again.command_id == command_id
    assert await version_after(client, opened.ticket_id) == 2  # type: ignore[arg-type]


async def test_the_same_reply_twice_adds_one_reply(client: TicketClient, output: TopicReader, directory: Any) -> None:
    jane = await customer(directory)
    first, opened = await new_ticket_by_mail(client, jane)
    answer = mail(jane.email, "Re: Printer", "Once.", in_reply_to=first.payload.email_message_id)

    replied = await client.send(answer)
    again = await client.send(resent(answer))

    assert replied.accepted and replied.ticket_version == 2
    assert again.accepted and again.event_ids == replied.event_ids and again.ticket_version == 2
    assert await version_after(client, opened.ticket_id) == 3  # type: ignore[arg-type]


async def test_a_rejected_mail_is_remembered_with_its_rejection(client: TicketClient, directory: Any) -> None:
    address = f"late-{uuid.uuid4().hex[:8]}@example.test"
    early = mail(address)

    first = await client.send(early)
    await customer(directory, email=address)  # the directory learns the sender only now
    again = await client.send(resent(early))
    fresh = await client.send(mail(address))

    rejected(first, "unknown_sender")
    rejected(again, "unknown_sender")
    assert again.message == first.message and again.command_id != first.command_id
    assert fresh.accepted, "a new mail from the now-known sender is accepted"


# ---- loop protection -------------------------------------------------------------------
@pytest.mark.parametrize("automatic", [
    {"auto_submitted_header": "auto-replied; owner-email=\"jane@example.test\""},
    {"auto_submitted_header": "auto-generated"},
    {"precedence_header": "bulk"},
    {"auto_submitted": True},
])
async def test_an_auto_reply_never_touches_the_ticket(automatic: dict[str, Any], client: TicketClient,
                                                     output: TopicReader, directory: Any) -> None:
    jane = await customer(directory)
    first, opened = await new_ticket_by_mail(client, jane)
    [created] = await events_of(output, opened.ticket_id, 1)  # type: ignore[arg-type]
    vacation = mail(jane.email, f"Automatic reply: [{created.ticket.number}] Printer on fire",
                    "I am out of office until Monday.", in_reply_to=first.payload.email_message_id, **automatic)

    result = await client.send(vacation)
    again = await client.send(resent(vacation))

    rejected(result, "auto_submitted")
    rejected(again, "auto_submitted")
    assert await version_after(client, opened.ticket_id) == 2  # type: ignore[arg-type]


async def test_an_auto_submitted_no_is_a_person(client: TicketClient, directory: Any) -> None:
    jane = await customer(directory)
    result = await client.send(mail(jane.email, auto_submitted_header="no", precedence_header="first-class"))
    assert result.accepted


async def test_a_bounce_never_touches_the_ticket(client: TicketClient, output: TopicReader, directory: Any) -> None:
    jane = await customer(directory)
    first, opened = await new_ticket_by_mail(client, jane)
    [created] = await events_of(output, opened.ticket_id, 1)  # type: ignore[arg-type]
    bounce = mail("MAILER-DAEMON@mx.example.test", f"Undelivered Mail Returned to Sender [{created.ticket.number}]",
                  "This is the mail system at host mx.example.test.\n\nI'm sorry to have to inform you ...",
                  references=[first.payload.email_message_id])

    result = await client.send(bounce)

    rejected(result, "auto_submitted")
    assert await version_after(client, opened.ticket_id) == 2  # type: ignore[arg-type]


# ---- senders ---------------------------------------------------------------------------
async def test_an_unknown_sender_is_rejected(client: TicketClient) -> None:
    result = await client.send(mail(f"nobody-{uuid.uuid4().hex[:8]}@example.test"))
    rejected(result, "unknown_sender")
    assert result.ticket_id is None


async def test_an_inactive_sender_is_rejected_even_on_their_thread(client: TicketClient, output: TopicReader,
                                                                    directory: Any) -> None:
    jane = await customer(directory)
    first, opened = await new_ticket_by_mail(client, jane)
    await directory.add("customer", customer_id=jane.customer_id, email=jane.email, user_id=jane.user_id, active=False)

    result = await client.send(mail(jane.email, "Re: Printer", "Me again.", in_reply_to=first.payload.email_message_id))

    rejected(result, "unknown_sender")
    assert await version_after(client, opened.ticket_id) == 2  # type: ignore[arg-type]


async def test_staff_mail_is_not_a_customer_reply(client: TicketClient, directory: Any) -> None:
    agent = await directory.add("agent")
    rejected(await client.send(mail(agent.email)), "unknown_sender")


async def test_only_the_gateway_may_ingest(client: TicketClient, directory: Any) -> None:
    jane = await customer(directory)
    own = Actor(user_id=jane.user_id, role="customer", customer_id=jane.customer_id)
    result = await client.send(mail(jane.email).model_copy(update={"actor": own}))
    rejected(result, "forbidden")


# ---- sizes -----------------------------------------------------------------------------
async def test_body_limits_are_those_of_a_description_and_a_reply(client: TicketClient, output: TopicReader,
                                                                   directory: Any) -> None:
    jane = await customer(directory)
    too_long = await client.send(mail(jane.email, body="x" * 20_001))
    first, opened = await new_ticket_by_mail(client, jane, body="x" * 20_000)
    long_reply = await client.send(mail(jane.email, "Re: x", "y" * 50_000, in_reply_to=first.payload.email_message_id))
    too_long_reply = await client.send(mail(jane.email, "Re: x", "z" * 50_001, in_reply_to=first.payload.email_message_id))

    rejected(too_long, "validation_error")
    assert too_long.message is not None and "20,001 characters" in too_long.message and "20,000" in too_long.message
    assert long_reply.accepted and long_reply.ticket_version == 2
    rejected(too_long_reply, "validation_error")
    assert too_long_reply.message is not None and "50,000" in too_long_reply.message
    events = await events_of(output, opened.ticket_id, 2)  # type: ignore[arg-type]
    assert len(events[1].payload.reply.body) == 50_000  # type: ignore[attr-defined]
    assert await version_after(client, opened.ticket_id) == 3  # type: ignore[arg-type]


async def test_a_body_over_the_contracts_limit_is_a_validation_error(client: TicketClient, directory: Any) -> None:
    jane = await customer(directory)
    payload = IngestEmailPayload.model_construct(
        email_message_id=f"<{uuid.uuid4().hex}@mail.example.test>", in_reply_to=None, references=[],
        from_address=jane.email, subject="Huge", body="x" * 200_001, received_at=datetime.now(UTC),
        auto_submitted=False, auto_submitted_header=None, precedence_header=None,
    )
    result = await client.send(IngestEmail(actor=GATEWAY, payload=payload))
    rejected(result, "validation_error")
    assert result.message is not None and "body" in result.message
