"""Issue 10 end to end over Kafka: attachments by reference and their scans, followers, Cc from mail,
threading through recorded notification Message-IDs, and the per-sender loop limit.

Each test sends commands with the contracts' client and checks results, events on tickets.events.v1
and query answers — what a platform team would see.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from datetime import UTC, datetime
from typing import Any

from ticket_contracts import (
    Actor,
    AddReply,
    ChangeStatus,
    CreateTicket,
    GetTicket,
    RecordAttachmentScan,
    RecordOutboundEmail,
    SetFollowers,
    ThreadAnswer,
    TicketAnswer,
    TicketThread,
    new_id,
    topics,
)
from ticket_contracts.client import TicketClient

from service.runtime import Runtime
from tests.e2e.test_email_ingest import customer, events_of, mail, rejected, resent
from tests.support.streams import TopicReader

AGENT = Actor(user_id=uuid.uuid4(), role="agent")
SCANNER = Actor(user_id=uuid.uuid4(), role="system")
NOTIFIER = Actor(user_id=uuid.uuid4(), role="system")


def upload(**fields: Any) -> dict[str, Any]:
    return {"attachment_id": str(uuid.uuid4()), "filename": "screenshot.png", "content_type": "image/png",
            "size_bytes": 48_213, "sha256": "c0ffee" * 10 + "beef", "uri": f"s3://uploads/{uuid.uuid4().hex}", **fields}


def as_actor(user: Any) -> Actor:
    return Actor(user_id=user.user_id, role=user.role, customer_id=user.customer_id)


async def create(client: TicketClient, actor: Actor, **payload: Any) -> uuid.UUID:
    ticket_id = new_id()
    result = await client.send(CreateTicket(actor=actor, payload={
        "ticket_id": ticket_id, "title": "Printer on fire", "description": "Smoke", **payload}))
    assert result.accepted, result
    return ticket_id


async def scan(client: TicketClient, ticket_id: uuid.UUID, attachment_id: str, verdict: str) -> Any:
    return await client.send(RecordAttachmentScan(actor=SCANNER, payload={
        "ticket_id": ticket_id, "attachment_id": attachment_id, "verdict": verdict, "scanner": "clamav 1.3/27301",
        "scanned_at": datetime.now(UTC)}))


async def get(client: TicketClient, actor: Actor, ticket_id: uuid.UUID) -> TicketAnswer:
    answer = await client.request(GetTicket(actor=actor, payload={"ticket_id": ticket_id}), raise_on_error=True)
    assert isinstance(answer, TicketAnswer)
    return answer


async def thread(client: TicketClient, actor: Actor, ticket_id: uuid.UUID) -> ThreadAnswer:
    answer = await client.request(TicketThread(actor=actor, payload={"ticket_id": ticket_id}), raise_on_error=True)
    assert isinstance(answer, ThreadAnswer)
    return answer


# ---- attachments and scans ------------------------------------------------------------------------
async def test_attachments_travel_with_metadata_and_their_uri_reaches_customers_only_when_clean(
    client: TicketClient, output: TopicReader, directory: Any
) -> None:
    jane = await customer(directory)
    owner = Actor(user_id=jane.user_id, role="customer", customer_id=jane.customer_id)
    desc, shot = upload(filename="error.log", content_type="text/plain; charset=utf-8"), upload()
    ticket_id = await create(client, owner, attachments=[desc])
    replied = await client.send(AddReply(actor=owner, payload={
        "ticket_id": ticket_id, "reply_id": new_id(), "body": "And a screenshot", "attachments": [shot]}))
    assert replied.accepted, replied

    created, added = await events_of(output, ticket_id, 2)
    assert created.payload.attachments[0].filename == "error.log"  # type: ignore[attr-defined]
    assert created.payload.attachments[0].scan_status == "pending"  # type: ignore[attr-defined]
    assert added.payload.reply.attachments[0].size_bytes == 48_213  # type: ignore[attr-defined]
    raw = json.dumps(output.json_for(ticket_id, topics.EVENTS))
    assert desc["uri"] not in raw and shot["uri"] not in raw  # events never carry an unscanned uri

    staff_view = (await get(client, AGENT, ticket_id)).ticket.attachments[0]
    customer_view = (await get(client, owner, ticket_id)).ticket.attachments[0]
    assert staff_view.uri == desc["uri"] and customer_view.uri is None and customer_view.scan_status == "pending"

    clean = await scan(client, ticket_id, desc["attachment_id"], "clean")
    infected = await scan(client, ticket_id, shot["attachment_id"], "infected")
    again = await scan(client, ticket_id, desc["attachment_id"], "clean")
    assert clean.accepted and infected.accepted and again.accepted and again.event_ids == []
    assert again.ticket_version == infected.ticket_version == clean.ticket_version + 1  # type: ignore[operator]

    *_, scanned_clean, scanned_infected = await events_of(output, ticket_id, 4)
    assert scanned_clean.type == scanned_infected.type == "ticket.attachment_scanned"
    assert scanned_clean.payload.attachment.uri == desc["uri"]  # type: ignore[attr-defined]
    assert scanned_infected.payload.attachment.uri is None  # type: ignore[attr-defined]
    assert (await get(client, owner, ticket_id)).ticket.attachments[0].uri == desc["uri"]
    [reply] = (await thread(client, owner, ticket_id)).replies
    assert reply.attachments[0].scan_status == "infected" and reply.attachments[0].uri is None


async def test_attachment_rules_answer_with_reason_codes(client: TicketClient) -> None:
    used = upload()
    ticket_id = await create(client, AGENT, customer_id=uuid.uuid4(), attachments=[used])

    async def reply_with(**fields: Any) -> Any:
        return await client.send(AddReply(actor=AGENT, payload={
            "ticket_id": ticket_id, "reply_id": new_id(), "body": "x", "attachments": [upload(**fields)]}))

    reused = await client.send(AddReply(actor=AGENT, payload={
        "ticket_id": ticket_id, "reply_id": new_id(), "body": "x", "attachments": [used]}))
    rejected(reused, "conflict")
    rejected(await reply_with(size_bytes=25 * 1024 * 1024 + 1), "validation_error")
    rejected(await reply_with(uri="ftp://files.example.test/a"), "validation_error")
    good = AddReply(actor=AGENT, payload={"ticket_id": ticket_id, "reply_id": new_id(), "body": "x",
                                          "attachments": [upload()]})
    bad = good.payload.attachments[0].model_copy(update={"filename": "../../etc/passwd"})  # skips the client's check
    traversal = good.model_copy(update={"payload": good.payload.model_copy(update={"attachments": [bad]})})
    rejected(await client.send(traversal), "validation_error")
    assert (await reply_with(size_bytes=25 * 1024 * 1024, uri="https://files.example.test/a")).accepted
    not_mine = await scan(client, ticket_id, str(uuid.uuid4()), "clean")
    rejected(not_mine, "not_found")
    by_agent = await client.send(RecordAttachmentScan(actor=AGENT, payload={
        "ticket_id": ticket_id, "attachment_id": used["attachment_id"], "verdict": "clean", "scanner": "me",
        "scanned_at": datetime.now(UTC)}))
    rejected(by_agent, "forbidden")


async def test_an_internal_notes_attachment_never_reaches_the_customer(
    client: TicketClient, output: TopicReader, directory: Any
) -> None:
    jane = await customer(directory)
    owner = Actor(user_id=jane.user_id, role="customer", customer_id=jane.customer_id)
    ticket_id = await create(client, owner)
    secret = upload(filename="internal-analysis.pdf", content_type="application/pdf")
    note = await client.send(AddReply(actor=AGENT, payload={
        "ticket_id": ticket_id, "reply_id": new_id(), "body": "our notes", "internal": True, "attachments": [secret]}))
    assert note.accepted
    assert (await scan(client, ticket_id, secret["attachment_id"], "clean")).accepted

    events = await events_of(output, ticket_id, 3)
    assert [e.internal for e in events] == [False, True, True]
    public = json.dumps([e for e in output.json_for(ticket_id, topics.EVENTS) if not e["internal"]])
    answers = (await get(client, owner, ticket_id)).model_dump_json() + (await thread(client, owner, ticket_id)).model_dump_json()
    for text in (public, answers):
        assert secret["attachment_id"] not in text and "internal-analysis" not in text
    staff = await thread(client, AGENT, ticket_id)
    assert staff.replies[0].attachments[0].uri == secret["uri"]


# ---- followers ------------------------------------------------------------------------------------
async def test_followers_are_set_announced_and_in_every_later_snapshot(
    client: TicketClient, output: TopicReader, directory: Any
) -> None:
    jane = await customer(directory)
    colleague = await directory.add("customer", customer_id=jane.customer_id)
    stranger = await customer(directory)
    agent = await directory.add("agent")
    owner = as_actor(jane)
    ticket_id = await create(client, owner)

    by_customer = await client.send(SetFollowers(actor=owner, payload={"ticket_id": ticket_id,
                                                                      "add": [colleague.user_id]}))
    by_agent = await client.send(SetFollowers(actor=AGENT, payload={"ticket_id": ticket_id, "add": [agent.user_id]}))
    invalid = await client.send(SetFollowers(actor=AGENT, payload={"ticket_id": ticket_id,
                                                                  "add": [stranger.user_id]}))
    unknown = await client.send(SetFollowers(actor=owner, payload={"ticket_id": ticket_id, "add": [uuid.uuid4()]}))
    staff_by_customer = await client.send(SetFollowers(actor=owner, payload={"ticket_id": ticket_id,
                                                                            "add": [agent.user_id]}))
    not_yours = await client.send(SetFollowers(actor=as_actor(stranger), payload={"ticket_id": ticket_id,
                                                                                 "add": [stranger.user_id]}))
    assert by_customer.accepted and by_agent.accepted
    rejected(invalid, "invalid_follower")
    rejected(unknown, "invalid_follower")
    rejected(staff_by_customer, "forbidden")
    rejected(not_yours, "not_found")

    _, first, second = await events_of(output, ticket_id, 3)
    assert first.type == "ticket.followers_changed" and first.payload.added == [colleague.user_id]  # type: ignore[attr-defined]
    assert second.ticket.follower_ids == [colleague.user_id, agent.user_id]
    assert (await get(client, owner, ticket_id)).ticket.follower_ids == [colleague.user_id, agent.user_id]

    leave = await client.send(SetFollowers(actor=as_actor(colleague), payload={"ticket_id": ticket_id,
                                                                              "remove": [colleague.user_id]}))
    assert leave.accepted
    closed = await client.send(ChangeStatus(actor=AGENT, payload={"ticket_id": ticket_id, "status": "closed"}))
    assert closed.accepted
    *_, left, closing = await events_of(output, ticket_id, 5)
    assert left.payload.removed == [colleague.user_id] and closing.ticket.follower_ids == [agent.user_id]  # type: ignore[attr-defined]
    rejected(await client.send(SetFollowers(actor=AGENT, payload={"ticket_id": ticket_id, "add": [colleague.user_id]})),
             "ticket_closed")


async def test_cc_colleagues_of_a_mail_become_followers_unknown_addresses_are_reported(
    client: TicketClient, output: TopicReader, directory: Any
) -> None:
    jane = await customer(directory)
    colleague = await directory.add("customer", customer_id=jane.customer_id)
    outsider = await customer(directory)
    unknown = f"{uuid.uuid4().hex[:8]}@nowhere.example.test"
    shot = upload(uri=f"https://files.example.test/{uuid.uuid4().hex}")

    result = await client.send(mail(jane.email, cc=[colleague.email.upper(), unknown, outsider.email],
                                    attachments=[shot]))

    assert result.accepted and result.ticket_version == 2, result
    assert result.unknown_cc == [unknown, outsider.email]
    created, followed = await events_of(output, result.ticket_id, 2)  # type: ignore[arg-type]
    assert created.payload.attachments[0].attachment_id == uuid.UUID(shot["attachment_id"])  # type: ignore[attr-defined]
    assert followed.type == "ticket.followers_changed" and followed.ticket.follower_ids == [colleague.user_id]
    assert followed.actor.user_id == jane.user_id


# ---- threading through notifications -------------------------------------------------------------
async def test_a_reply_to_a_notification_without_a_subject_tag_lands_on_its_ticket(
    client: TicketClient, output: TopicReader, directory: Any
) -> None:
    jane = await customer(directory)
    first = await client.send(mail(jane.email, "Printer on fire"))
    ticket_id = first.ticket_id
    assert ticket_id is not None
    notification = f"<notify.{uuid.uuid4().hex}@platform.example.test>"
    record = RecordOutboundEmail(actor=NOTIFIER, payload={"ticket_id": ticket_id, "email_message_id": notification,
                                                          "sent_at": datetime.now(UTC)})

    recorded = await client.send(record)
    again = await client.send(record.model_copy(update={"message_id": new_id()}))
    assert recorded.accepted and recorded.event_ids == [] and recorded.ticket_version == 1
    assert again.accepted and again.event_ids == [] and again.ticket_version == 1
    rejected(await client.send(RecordOutboundEmail(actor=AGENT, payload={
        "ticket_id": ticket_id, "email_message_id": "<x@y>", "sent_at": datetime.now(UTC)})), "forbidden")

    answer = await client.send(mail(jane.email, "Re: Your request has been updated", "Thanks, it works now.",
                                    in_reply_to=notification, references=[notification]))

    assert answer.accepted and answer.ticket_id == ticket_id and answer.ticket_version == 2, answer
    _, replied = await events_of(output, ticket_id, 2)
    assert replied.type == "ticket.reply_added" and replied.payload.reply.body == "Thanks, it works now."  # type: ignore[attr-defined]
    loop = await client.send(mail(jane.email, "Your request has been updated", message_id=notification))
    rejected(loop, "auto_submitted")  # our own notification looping back


# ---- loop limit -----------------------------------------------------------------------------------
async def test_the_21st_new_ticket_mail_of_a_sender_within_an_hour_is_rate_limited(
    client: TicketClient, directory: Any, service: Runtime
) -> None:
    jane = await customer(directory)
    metrics = service.metrics
    before = metrics.total(metrics.rate_limited, "ticket.ingest_email")
    mails = [mail(jane.email, f"Loop {n}") for n in range(20)]
    twenty = await asyncio.gather(*(client.send(m) for m in mails))
    assert all(r.accepted and r.ticket_version == 1 for r in twenty), [r.reason for r in twenty]

    the_21st = await client.send(mail(jane.email, "Loop 21"))
    rejected(the_21st, "rate_limited")
    assert metrics.total(metrics.rate_limited, "ticket.ingest_email") == before + 1
    assert (await client.send(resent(mails[0]))).accepted  # the same mail again is still its first outcome

    reply = await client.send(mail(jane.email, "Re: Loop 0", in_reply_to=mails[0].payload.email_message_id))
    assert reply.accepted and reply.ticket_id == twenty[0].ticket_id and reply.ticket_version == 2
    colleague = await directory.add("customer", customer_id=jane.customer_id)
    assert (await client.send(mail(colleague.email, "My own problem"))).accepted  # per sender
