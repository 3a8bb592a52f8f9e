"""Issue 10's storage on real PostgreSQL: attachment rows and their scans, followers on the ticket
row, outbound Message-IDs, and the count behind the per-sender mail limit."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncEngine
from ticket_contracts import (
    Actor,
    AddReply,
    CreateTicket,
    IngestEmail,
    RecordAttachmentScan,
    RecordOutboundEmail,
    SetFollowers,
    new_id,
)

from service.adapters import tables as t
from service.adapters.unit_of_work import SqlUnitOfWork
from service.entrypoints.commands import message_bus
from service.handlers.bus import handle_batch
from service.handlers.messages import Outcome
from tests.support.waiting import eventually

from .test_unit_of_work import _runtime
from .uow_helpers import HeldUnitOfWork, add_user, customer, incoming, lock_waiters, migrated_engine, staff

SYSTEM = Actor(user_id=uuid.uuid4(), role="system")


@pytest.fixture
async def engine(database_server_url: str) -> AsyncIterator[AsyncEngine]:
    async with migrated_engine(database_server_url) as engine:
        yield engine


async def run(engine: AsyncEngine, *commands: Any) -> list[Outcome]:
    return await handle_batch([incoming(c) for c in commands], SqlUnitOfWork(engine))


def upload() -> dict[str, Any]:
    return {"attachment_id": str(uuid.uuid4()), "filename": "a.png", "content_type": "image/png",
            "size_bytes": 10, "sha256": "ab" * 32, "uri": f"s3://b/{uuid.uuid4().hex}"}


def scan(ticket_id: uuid.UUID, attachment_id: str, verdict: str) -> RecordAttachmentScan:
    return RecordAttachmentScan(actor=SYSTEM, payload={"ticket_id": ticket_id, "attachment_id": attachment_id,
                                                       "verdict": verdict, "scanner": "clamav",
                                                       "scanned_at": datetime.now(UTC)})


async def attachment_rows(engine: AsyncEngine) -> dict[str, Any]:
    async with engine.connect() as conn:
        return {str(r.id): r for r in await conn.execute(select(t.attachments))}


async def test_attachments_are_stored_and_scans_update_them_in_a_later_or_the_same_batch(engine: AsyncEngine) -> None:
    ticket_id, owner = new_id(), customer()
    later, same = upload(), upload()
    create = CreateTicket(actor=owner, payload={"ticket_id": ticket_id, "title": "t", "description": "d",
                                                "attachments": [later]})
    note = AddReply(actor=staff(), payload={"ticket_id": ticket_id, "reply_id": new_id(), "body": "n",
                                            "internal": True, "attachments": [same]})
    first = await run(engine, create, note, scan(ticket_id, same["attachment_id"], "infected"))
    second = await run(engine, scan(ticket_id, later["attachment_id"], "clean"))

    assert [o.status for o in first + second] == ["accepted"] * 4
    rows = await attachment_rows(engine)
    assert rows[later["attachment_id"]].scan_status == "clean" and rows[later["attachment_id"]].reply_id is None
    assert rows[later["attachment_id"]].scanner == "clamav" and rows[later["attachment_id"]].scanned_at is not None
    assert rows[same["attachment_id"]].scan_status == "infected" and rows[same["attachment_id"]].internal
    assert rows[same["attachment_id"]].uri == same["uri"] and rows[same["attachment_id"]].size_bytes == 10


async def test_two_instances_racing_with_one_attachment_id_keep_one_and_answer_conflict(engine: AsyncEngine) -> None:
    """The check before writing cannot see the other instance's uncommitted row; the primary key can:
    the second batch waits for the first, then falls back to one by one and answers ``conflict``."""
    file = upload()
    first_id, second_id, bystander_id = new_id(), new_id(), new_id()

    def create(ticket_id: uuid.UUID, attachments: list[dict[str, Any]]) -> CreateTicket:
        return CreateTicket(actor=customer(), payload={"ticket_id": ticket_id, "title": "t", "description": "d",
                                                       "attachments": attachments})

    held = HeldUnitOfWork(engine)
    first = asyncio.create_task(handle_batch([incoming(create(first_id, [file]))], held))
    await asyncio.wait_for(held.at_commit.wait(), 10)  # its attachment row is written, not committed
    second = asyncio.create_task(message_bus(_runtime(engine)).handle(
        [incoming(create(second_id, [file])), incoming(create(bystander_id, [upload()]))]))
    await eventually(lambda: lock_waiters(engine), timeout=10, what="the second insert to wait for the first")
    held.release()
    [won], (lost, bystander) = await asyncio.wait_for(asyncio.gather(first, second), 20)

    assert won.status == bystander.status == "accepted"
    assert (lost.status, lost.reason) == ("rejected", "conflict")
    rows = await attachment_rows(engine)
    assert len(rows) == 2 and rows[file["attachment_id"]].ticket_id == first_id


async def test_followers_round_trip_on_the_ticket_row(engine: AsyncEngine) -> None:
    ticket_id, owner = new_id(), customer()
    mate = await add_user(engine, "customer", customer_id=owner.customer_id)
    agent = await add_user(engine, "agent")
    await run(engine, CreateTicket(actor=owner, payload={"ticket_id": ticket_id, "title": "t", "description": "d"}))
    [added] = await run(engine, SetFollowers(actor=staff(), payload={"ticket_id": ticket_id, "add": [mate, agent]}))
    [removed] = await run(engine, SetFollowers(actor=staff(), payload={"ticket_id": ticket_id, "remove": [mate]}))

    assert added.status == removed.status == "accepted"
    async with engine.connect() as conn:
        followers = (await conn.execute(select(t.tickets.c.follower_ids).where(t.tickets.c.id == ticket_id))).scalar()
    assert followers == [agent]


async def test_outbound_rows_thread_and_the_mail_limit_counts_only_tickets_a_sender_opened(
    engine: AsyncEngine,
) -> None:
    owner = customer()
    address = f"{uuid.uuid4().hex[:8]}@example.test"
    await add_user(engine, "customer", email=address, customer_id=owner.customer_id)

    def mail(**fields: Any) -> IngestEmail:
        return IngestEmail(actor=SYSTEM, payload={"email_message_id": f"<{uuid.uuid4().hex}@m>",
                                                  "from_address": address.upper(), "body": "b",
                                                  "received_at": datetime.now(UTC), **fields})

    [opened] = await run(engine, mail())
    ticket_id = opened.ticket_id
    assert ticket_id is not None
    [recorded] = await run(engine, RecordOutboundEmail(actor=SYSTEM, payload={
        "ticket_id": ticket_id, "email_message_id": "<n@platform>", "sent_at": datetime.now(UTC)}))
    [answer] = await run(engine, mail(in_reply_to="<n@platform>"))
    [another] = await run(engine, mail())
    assert recorded.status == answer.status == another.status == "accepted" and answer.ticket_id == ticket_id

    since = datetime.now(UTC) - timedelta(hours=1)
    async with SqlUnitOfWork(engine) as uow:
        assert await uow.new_tickets_by_mail(address, since) == 2  # not the reply, not the outbound row
        assert await uow.new_tickets_by_mail("someone@else.test", since) == 0
        assert await uow.new_tickets_by_mail(address, datetime.now(UTC)) == 0
        known = await uow.email_known(["<n@platform>"])
    assert known["<n@platform>"].outbound and known["<n@platform>"].ticket_id == ticket_id
