"""Attachments by reference (issue 10): contract limits, configured limits, reused ids, visibility
in events, and scan verdicts — through ``handle_batch`` on the fake unit of work."""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from pydantic import ValidationError
from ticket_contracts import commands as c
from ticket_contracts.attachments import AttachmentRef
from ticket_contracts.events import parse_event

from service.domain.attachments import AttachmentLimits
from service.domain.values import Status
from service.handlers.bus import handle_batch
from service.handlers.context import Limits

from .fakes import (
    FakeUnitOfWork,
    agent,
    create,
    customer,
    incoming,
    reply,
    run,
    run_one,
    seed_ticket,
    system,
)

SHA = "ab" * 32


def upload(**fields: Any) -> dict[str, Any]:
    return {"attachment_id": str(uuid.uuid4()), "filename": "screenshot.png", "content_type": "image/png",
            "size_bytes": 12_345, "sha256": SHA, "uri": "s3://uploads/abc/screenshot.png", **fields}


def scan(ticket_id: uuid.UUID, attachment_id: Any, verdict: str = "clean", actor: Any = None, **extra: Any) -> Any:
    return incoming(c.RecordAttachmentScan(actor=actor or system(), payload={
        "ticket_id": ticket_id, "attachment_id": attachment_id, "verdict": verdict, "scanner": "clamav 1.3",
        "scanned_at": "2026-01-05T10:00:00Z", **extra}))


def events(uow: FakeUnitOfWork, ticket_id: uuid.UUID, type_: str) -> list[dict[str, Any]]:
    return [e for e in uow.event_bodies(ticket_id) if e["type"] == type_]


# ---- the contract -----------------------------------------------------------------------------
@pytest.mark.parametrize(("field", "value"), [
    ("filename", ""), ("filename", "a" * 256), ("filename", "../etc/passwd"), ("filename", "dir\\file.txt"),
    ("filename", "new\nline.txt"), ("filename", "tab\there"), ("filename", "bell\x07"), ("filename", ".."),
    ("content_type", "png"), ("content_type", "image/"), ("content_type", "image png"), ("content_type", ""),
    ("size_bytes", 0), ("size_bytes", -1), ("sha256", "ab" * 31), ("sha256", "zz" * 32), ("sha256", ""),
    ("uri", "no-scheme"), ("uri", "s3://bucket/with space"), ("uri", ""), ("attachment_id", "not-a-uuid"),
])
def test_the_contract_refuses_bad_metadata(field: str, value: Any) -> None:
    with pytest.raises(ValidationError):
        AttachmentRef.model_validate(upload(**{field: value}))


@pytest.mark.parametrize("filename", ["a", "a" * 255, "Bericht März 2026.pdf", "résumé (final).docx", ".env"])
def test_the_contract_takes_ordinary_filenames(filename: str) -> None:
    assert AttachmentRef.model_validate(upload(filename=filename)).filename == filename


def test_mime_parameters_are_allowed_and_sha256_is_lower_cased() -> None:
    ref = AttachmentRef.model_validate(upload(content_type="text/plain; charset=utf-8", sha256="AB" * 32))
    assert ref.sha256 == SHA and ref.content_type == "text/plain; charset=utf-8"


def test_at_most_twenty_distinct_attachments_per_message() -> None:
    base = {"ticket_id": uuid.uuid4(), "title": "t", "description": "d"}
    c.CreateTicketPayload.model_validate(base | {"attachments": [upload() for _ in range(20)]})
    with pytest.raises(ValidationError):
        c.CreateTicketPayload.model_validate(base | {"attachments": [upload() for _ in range(21)]})
    same = upload()
    with pytest.raises(ValidationError):
        c.CreateTicketPayload.model_validate(base | {"attachments": [same, same]})


# ---- configured limits ------------------------------------------------------------------------
async def test_size_up_to_the_configured_maximum() -> None:
    uow = FakeUnitOfWork()
    at_limit = await run_one(uow, create(customer(), attachments=[upload(size_bytes=25 * 1024 * 1024)]))
    over = await run_one(uow, create(customer(), attachments=[upload(size_bytes=25 * 1024 * 1024 + 1)]))

    assert at_limit["status"] == "accepted"
    assert over["reason"] == "validation_error" and "26,214,400" in over["message"]


async def test_limits_come_from_the_configuration() -> None:
    uow = FakeUnitOfWork()
    limits = Limits(AttachmentLimits(max_size_bytes=100, uri_schemes=frozenset({"gs"})))
    items = [create(customer(), attachments=[upload(size_bytes=101, uri="gs://b/k")]),
             create(customer(), attachments=[upload(size_bytes=100, uri="s3://b/k")]),
             create(customer(), attachments=[upload(size_bytes=100, uri="gs://b/k")])]
    outcomes = await handle_batch(items, uow, limits)  # type: ignore[arg-type]

    assert [o.reason for o in outcomes] == ["validation_error", "validation_error", None]


@pytest.mark.parametrize(("uri", "want"), [
    ("s3://uploads/a/b.png", "accepted"), ("https://files.example.test/a.png", "accepted"),
    ("HTTPS://files.example.test/a.png", "accepted"), ("http://files.example.test/a.png", "rejected"),
    ("file:///etc/passwd", "rejected"), ("javascript://alert(1)", "rejected"), ("s3:///no-bucket", "rejected"),
])
async def test_uri_scheme_from_the_allowlist(uri: str, want: str) -> None:
    result = await run_one(FakeUnitOfWork(), create(customer(), attachments=[upload(uri=uri)]))
    assert result["status"] == want, result


# ---- reused ids -------------------------------------------------------------------------------
async def test_a_reused_attachment_id_is_a_conflict_in_a_later_batch_and_in_the_same_batch() -> None:
    uow = FakeUnitOfWork()
    first = upload()
    created = await run_one(uow, create(customer(), attachments=[first]))
    ticket_id = uuid.UUID(created["ticket_id"])
    later = await run_one(uow, reply(agent(), ticket_id, attachments=[first | {"filename": "other.png"}]))
    a, b = await run(uow, reply(agent(), ticket_id, attachments=[same := upload()]),
                     reply(agent(), ticket_id, attachments=[same]))

    assert later["reason"] == "conflict"
    assert a.status == "accepted" and b.reason == "conflict"
    assert len(uow.attachments) == 2


# ---- events and visibility --------------------------------------------------------------------
async def test_created_and_reply_events_carry_metadata_without_an_unscanned_uri() -> None:
    uow = FakeUnitOfWork()
    owner = customer()
    desc = upload(filename="log.txt", content_type="text/plain")
    created = await run_one(uow, create(owner, attachments=[desc]))
    ticket_id = uuid.UUID(created["ticket_id"])
    await run_one(uow, reply(owner, ticket_id, attachments=[upload()]))

    [made] = events(uow, ticket_id, "ticket.created")
    [replied] = events(uow, ticket_id, "ticket.reply_added")
    for event in (made, replied):
        parse_event(json.dumps(event))  # valid contract events
    assert made["payload"]["attachments"][0] == {
        "attachment_id": desc["attachment_id"], "filename": "log.txt", "content_type": "text/plain",
        "size_bytes": 12_345, "sha256": SHA, "uri": None, "scan_status": "pending", "scanned_at": None}
    assert replied["payload"]["reply"]["attachments"][0]["uri"] is None
    assert "s3://" not in json.dumps(uow.event_bodies(ticket_id))


async def test_an_internal_notes_attachments_stay_in_internal_events() -> None:
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow)
    note = upload()
    await run_one(uow, reply(agent(), ticket.id, internal=True, attachments=[note]))
    await run_one(uow, scan(ticket.id, note["attachment_id"]))

    public = [e for e in uow.event_bodies(ticket.id) if not e["internal"]]
    assert public == [] and note["attachment_id"] not in json.dumps(public)
    assert {e["type"] for e in uow.event_bodies(ticket.id)} == {"ticket.reply_added", "ticket.attachment_scanned"}
    assert uow.attachments[uuid.UUID(note["attachment_id"])].internal


# ---- scans ------------------------------------------------------------------------------------
async def test_a_clean_verdict_shows_the_uri_an_infected_one_never() -> None:
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow)
    good, bad = upload(uri="s3://uploads/good"), upload(uri="s3://uploads/bad")
    await run_one(uow, reply(customer(), ticket.id, attachments=[good, bad]))
    clean = await run_one(uow, scan(ticket.id, good["attachment_id"], "clean"))
    infected = await run_one(uow, scan(ticket.id, bad["attachment_id"], "infected"))

    assert clean["status"] == infected["status"] == "accepted"
    scanned = events(uow, ticket.id, "ticket.attachment_scanned")
    for event in scanned:
        parse_event(json.dumps(event))
    assert [(e["payload"]["verdict"], e["payload"]["attachment"]["uri"]) for e in scanned] == [
        ("clean", "s3://uploads/good"), ("infected", None)]
    assert scanned[0]["payload"]["reply_id"] is not None and not scanned[0]["internal"]
    assert uow.attachments[uuid.UUID(bad["attachment_id"])].scan_status == "infected"
    assert [e["ticket_version"] for e in uow.event_bodies(ticket.id)] == [2, 3, 4]


async def test_the_same_verdict_twice_is_accepted_without_an_event_another_verdict_changes_it() -> None:
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow)
    file = upload()
    await run_one(uow, reply(agent(), ticket.id, attachments=[file]))
    first = await run_one(uow, scan(ticket.id, file["attachment_id"], "clean"))
    again = await run_one(uow, scan(ticket.id, file["attachment_id"], "clean"))
    rescan = await run_one(uow, scan(ticket.id, file["attachment_id"], "infected"))

    assert first["ticket_version"] == again["ticket_version"] and again["event_ids"] == []
    assert rescan["ticket_version"] == first["ticket_version"] + 1 and len(rescan["event_ids"]) == 1


async def test_a_scan_in_the_same_batch_as_the_upload() -> None:
    uow = FakeUnitOfWork()
    file = upload()
    create_item = create(customer(), attachments=[file])
    ticket_id = create_item.ticket_id
    outcomes = await run(uow, create_item, scan(ticket_id, file["attachment_id"]))

    assert [o.status for o in outcomes] == ["accepted", "accepted"]
    assert uow.attachments[uuid.UUID(file["attachment_id"])].scan_status == "clean"


@pytest.mark.parametrize("who", [customer, agent])
async def test_only_service_accounts_record_verdicts(who: Any) -> None:
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow)
    file = upload()
    await run_one(uow, reply(agent(), ticket.id, attachments=[file]))
    result = await run_one(uow, scan(ticket.id, file["attachment_id"], actor=who()))
    assert result["reason"] == "forbidden"


async def test_a_verdict_on_an_unknown_or_anothers_attachment_is_not_found() -> None:
    uow = FakeUnitOfWork()
    mine, other = seed_ticket(uow), seed_ticket(uow)
    file = upload()
    await run_one(uow, reply(agent(), other.id, attachments=[file]))

    assert (await run_one(uow, scan(mine.id, file["attachment_id"])))["reason"] == "not_found"
    assert (await run_one(uow, scan(mine.id, uuid.uuid4())))["reason"] == "not_found"
    assert (await run_one(uow, scan(uuid.uuid4(), file["attachment_id"])))["reason"] == "not_found"


async def test_a_verdict_is_recorded_on_a_closed_ticket_but_not_a_deleted_one() -> None:
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow)
    file = upload()
    await run_one(uow, reply(agent(), ticket.id, attachments=[file]))
    row = uow.tickets[ticket.id]
    row["status"] = Status.CLOSED.value
    assert (await run_one(uow, scan(ticket.id, file["attachment_id"])))["status"] == "accepted"
    row = uow.tickets[ticket.id]
    row["deleted_at"] = row["created_at"]
    assert (await run_one(uow, scan(ticket.id, file["attachment_id"], "infected")))["reason"] == "not_found"
