"""Real support mail (issue 10) through ``handle_batch`` on the fake unit of work: threading through
recorded notification Message-IDs, the per-sender loop limit, Cc followers and mail attachments."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

import pytest
from ticket_contracts import commands as c

from service.domain.email import check_new_ticket_rate
from service.domain.errors import RateLimited
from service.domain.values import Role, Status
from service.handlers.bus import handle_batch
from service.handlers.context import Limits

from .fakes import (
    CUSTOMER_A,
    CUSTOMER_B,
    FakeUnitOfWork,
    agent,
    customer,
    incoming,
    run,
    run_one,
    seed_ticket,
    seed_user,
    system,
)


def mail(sender: str, subject: str = "Printer on fire", **fields: Any) -> Any:
    return incoming(c.IngestEmail(actor=system(), payload={
        "email_message_id": f"<{uuid.uuid4().hex}@mail.example>", "from_address": sender, "subject": subject,
        "body": "It smokes.", "received_at": "2026-01-05T10:00:00Z", **fields}))


def outbound(ticket_id: uuid.UUID, message_id: str, actor: Any = None, **extra: Any) -> Any:
    return incoming(c.RecordOutboundEmail(actor=actor or system(), payload={
        "ticket_id": ticket_id, "email_message_id": message_id, "sent_at": "2026-01-05T10:00:00Z", **extra}))


def upload() -> dict[str, Any]:
    return {"attachment_id": str(uuid.uuid4()), "filename": "photo.jpg", "content_type": "image/jpeg",
            "size_bytes": 2048, "sha256": "0f" * 32, "uri": "https://files.example.test/photo.jpg"}


# ---- threading through notifications ----------------------------------------------------------
async def test_a_reply_to_a_recorded_notification_threads_without_a_subject_tag() -> None:
    uow = FakeUnitOfWork()
    ann = seed_user(uow, Role.CUSTOMER, email="ann@example.com")
    ticket = seed_ticket(uow)
    recorded = await run_one(uow, outbound(ticket.id, "notify-1@platform.example"))
    answer = await run_one(uow, mail(ann.email, "Re: Your ticket was updated", in_reply_to="<notify-1@platform.example>"))

    assert recorded["status"] == "accepted" and recorded["event_ids"] == [] and recorded["ticket_version"] == 1
    assert answer["ticket_id"] == str(ticket.id) and answer["status"] == "accepted"
    assert [e["type"] for e in uow.event_bodies(ticket.id)] == ["ticket.reply_added"]


async def test_references_naming_a_notification_thread_too() -> None:
    uow = FakeUnitOfWork()
    ann = seed_user(uow, Role.CUSTOMER)
    ticket = seed_ticket(uow)
    await run_one(uow, outbound(ticket.id, "<n2@platform.example>"))
    answer = await run_one(uow, mail(ann.email, "Re: update", references=["<x@elsewhere> <n2@platform.example>"]))
    assert answer["ticket_id"] == str(ticket.id)


async def test_recording_changes_no_version_and_is_idempotent_by_message_id() -> None:
    uow = FakeUnitOfWork()
    ticket, other = seed_ticket(uow), seed_ticket(uow)
    first = await run_one(uow, outbound(ticket.id, "<n3@platform.example>", reply_id=str(uuid.uuid4())))
    again = await run_one(uow, outbound(ticket.id, "n3@platform.example"))
    elsewhere = await run_one(uow, outbound(other.id, "<n3@platform.example>"))

    assert first["status"] == again["status"] == "accepted" and again["event_ids"] == []
    assert elsewhere["reason"] == "conflict"
    assert uow.ticket(ticket.id).version == 1 and uow.events == []
    assert uow.emails["<n3@platform.example>"]["outbound"] is True


@pytest.mark.parametrize(("who", "want"), [("agent", "forbidden"), ("customer", "forbidden")])
async def test_only_service_accounts_record_outbound_mail(who: str, want: str) -> None:
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow)
    actor = agent() if who == "agent" else customer()
    assert (await run_one(uow, outbound(ticket.id, "<n@p>", actor=actor)))["reason"] == want


async def test_recording_for_a_missing_or_deleted_ticket_is_not_found_closed_is_fine() -> None:
    uow = FakeUnitOfWork()
    closed, deleted = seed_ticket(uow, Status.CLOSED), seed_ticket(uow, deleted=True)
    assert (await run_one(uow, outbound(uuid.uuid4(), "<a@p>")))["reason"] == "not_found"
    assert (await run_one(uow, outbound(deleted.id, "<b@p>")))["reason"] == "not_found"
    assert (await run_one(uow, outbound(closed.id, "<c@p>")))["status"] == "accepted"


async def test_a_reply_to_a_notification_of_a_closed_ticket_opens_a_follow_up() -> None:
    uow = FakeUnitOfWork()
    ann = seed_user(uow, Role.CUSTOMER)
    closed = seed_ticket(uow, Status.CLOSED)
    await run_one(uow, outbound(closed.id, "<closed@p>"))
    result = await run_one(uow, mail(ann.email, "Re: closed", in_reply_to="<closed@p>"))
    follow_up = uow.ticket(uuid.UUID(result["ticket_id"]))
    assert follow_up.follow_up_of == closed.id


async def test_our_own_notification_coming_back_is_a_loop() -> None:
    uow = FakeUnitOfWork()
    ann = seed_user(uow, Role.CUSTOMER)
    ticket = seed_ticket(uow)
    await run_one(uow, outbound(ticket.id, "<loop@platform.example>"))
    result = await run_one(uow, mail(ann.email, email_message_id="<loop@platform.example>"))
    assert result["reason"] == "auto_submitted"
    assert uow.event_bodies(ticket.id) == []


async def test_a_stranger_replying_to_someones_notification_gets_a_ticket_of_their_own() -> None:
    uow = FakeUnitOfWork()
    stranger = seed_user(uow, Role.CUSTOMER, customer_id=CUSTOMER_B)
    ticket = seed_ticket(uow, customer_id=CUSTOMER_A)
    await run_one(uow, outbound(ticket.id, "<n@p>"))
    result = await run_one(uow, mail(stranger.email, in_reply_to="<n@p>"))
    assert result["ticket_id"] != str(ticket.id) and uow.event_bodies(ticket.id) == []


# ---- loop limits ------------------------------------------------------------------------------
def test_the_rate_rule() -> None:
    check_new_ticket_rate(19, 20)
    for recent in (20, 21):
        with pytest.raises(RateLimited):
            check_new_ticket_rate(recent, 20)
    check_new_ticket_rate(10_000, 0)  # 0: no limit


async def test_the_21st_new_ticket_within_an_hour_is_rate_limited_replies_still_pass() -> None:
    uow = FakeUnitOfWork()
    ann = seed_user(uow, Role.CUSTOMER, email="ann@example.com")
    results = [await run_one(uow, mail("Ann@Example.com")) for _ in range(21)]
    reply = await run_one(uow, mail(ann.email, in_reply_to=uow.ticket(uuid.UUID(results[0]["ticket_id"]))
                                    .email_message_id))
    colleague = seed_user(uow, Role.CUSTOMER)
    other = await run_one(uow, mail(colleague.email))

    assert [r["status"] for r in results] == ["accepted"] * 20 + ["rejected"]
    assert results[20]["reason"] == "rate_limited" and results[20]["ticket_id"] is None
    assert reply["status"] == "accepted" and reply["ticket_id"] == results[0]["ticket_id"]
    assert other["status"] == "accepted"  # per sender
    rejected = [r for r in uow.emails.values() if r["command_id"] == uuid.UUID(results[20]["command_id"])]
    assert len(rejected) == 1 and rejected[0]["ticket_id"] is None  # recorded: a redelivery is rejected too


async def test_the_limit_counts_within_one_batch_and_is_configured() -> None:
    uow = FakeUnitOfWork()
    ann = seed_user(uow, Role.CUSTOMER)
    outcomes = await handle_batch([mail(ann.email) for _ in range(4)], uow, Limits(mail_new_tickets_per_hour=3))  # type: ignore[arg-type]
    assert [o.reason for o in outcomes] == [None, None, None, "rate_limited"]


async def test_the_hour_rolls() -> None:
    uow = FakeUnitOfWork()
    ann = seed_user(uow, Role.CUSTOMER)
    limits = Limits(mail_new_tickets_per_hour=1)
    [first] = await handle_batch([mail(ann.email)], uow, limits)  # type: ignore[arg-type]
    for row in uow.emails.values():
        row["created_at"] -= timedelta(minutes=61)
    [later] = await handle_batch([mail(ann.email)], uow, limits)  # type: ignore[arg-type]
    assert first.status == later.status == "accepted"


# ---- Cc ---------------------------------------------------------------------------------------
async def test_cc_colleagues_follow_unknown_and_disallowed_addresses_are_reported() -> None:
    uow = FakeUnitOfWork()
    ann = seed_user(uow, Role.CUSTOMER, email="ann@example.com")
    bob = seed_user(uow, Role.CUSTOMER, email="bob@example.com")
    gone = seed_user(uow, Role.CUSTOMER, email="gone@example.com", active=False)
    eve = seed_user(uow, Role.CUSTOMER, customer_id=CUSTOMER_B, email="eve@other.example")
    staff = seed_user(uow, Role.AGENT, email="agent@support.example")
    cc = ["Bob@Example.com", "nobody@example.com", gone.email, eve.email, staff.email, ann.email, "bob@example.com"]

    result = await run_one(uow, mail(ann.email, cc=cc))

    ticket = uow.ticket(uuid.UUID(result["ticket_id"]))
    assert ticket.follower_ids == [bob.user_id]
    assert result["unknown_cc"] == ["nobody@example.com", gone.email, eve.email, staff.email]
    types = [e["type"] for e in uow.event_bodies(ticket.id)]
    assert types == ["ticket.created", "ticket.followers_changed"] and result["ticket_version"] == 2
    assert uow.event_bodies(ticket.id)[1]["actor"]["user_id"] == str(ann.user_id)


async def test_cc_on_a_reply_adds_followers_once() -> None:
    uow = FakeUnitOfWork()
    ann = seed_user(uow, Role.CUSTOMER)
    bob = seed_user(uow, Role.CUSTOMER)
    ticket = seed_ticket(uow)
    first = await run_one(uow, mail(ann.email, f"Re: [{ticket.number}]", cc=[bob.email]))
    second = await run_one(uow, mail(ann.email, f"Re: [{ticket.number}]", cc=[bob.email]))

    assert first["ticket_id"] == second["ticket_id"] == str(ticket.id)
    assert [e["type"] for e in uow.event_bodies(ticket.id)] == [
        "ticket.reply_added", "ticket.followers_changed", "ticket.reply_added"]
    assert "unknown_cc" not in second or second["unknown_cc"] == []


async def test_the_same_mail_again_repeats_the_report() -> None:
    uow = FakeUnitOfWork()
    ann = seed_user(uow, Role.CUSTOMER)
    first = mail(ann.email, cc=["x@nowhere.example"])
    again = incoming(first.command.model_copy(update={"message_id": uuid.uuid4()}))
    one, two = await run(uow, first, again)
    assert two.result.unknown_cc == one.result.unknown_cc == ("x@nowhere.example",)  # type: ignore[union-attr]


# ---- attachments by mail ----------------------------------------------------------------------
async def test_a_mails_attachments_go_to_the_new_ticket_or_the_reply() -> None:
    uow = FakeUnitOfWork()
    ann = seed_user(uow, Role.CUSTOMER)
    new = await run_one(uow, mail(ann.email, attachments=[a := upload()]))
    ticket_id = uuid.UUID(new["ticket_id"])
    number = uow.ticket(ticket_id).number
    answer = await run_one(uow, mail(ann.email, f"Re: [{number}]", attachments=[b := upload()]))

    assert answer["ticket_id"] == new["ticket_id"]
    stored = {str(i): x for i, x in uow.attachments.items()}
    assert stored[a["attachment_id"]].reply_id is None and stored[b["attachment_id"]].reply_id is not None
    assert all(x.ticket_id == ticket_id and x.scan_status == "pending" for x in stored.values())
