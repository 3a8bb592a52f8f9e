"""``ticket_contracts`` on its own: discrimination by type, the limits of SPEC §4, envelope
rules, the JSON Schema export, and independence from the service."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from typing import Any

import pytest
from pydantic import ValidationError
from ticket_contracts import commands as c
from ticket_contracts import parse_command
from ticket_contracts.envelope import Actor
from ticket_contracts.schema import json_schemas

AGENT = {"user_id": str(uuid.uuid4()), "role": "agent"}
TICKET = str(uuid.uuid4())


def command(type_: str, payload: dict[str, Any], actor: dict[str, Any] = AGENT) -> str:
    return json.dumps({"message_id": str(uuid.uuid4()), "type": type_, "actor": actor, "payload": payload})


VALID = {
    "ticket.create": ({"ticket_id": TICKET, "title": "t", "description": "d"}, c.CreateTicket),
    "ticket.update": ({"ticket_id": TICKET, "title": "t"}, c.UpdateTicket),
    "ticket.change_status": ({"ticket_id": TICKET, "status": "open"}, c.ChangeStatus),
    "ticket.assign": ({"ticket_id": TICKET, "assignee_id": None}, c.AssignTicket),
    "ticket.add_reply": ({"ticket_id": TICKET, "reply_id": str(uuid.uuid4()), "body": "b"}, c.AddReply),
    "ticket.log_time": ({"ticket_id": TICKET, "entry_id": str(uuid.uuid4()), "minutes": 5}, c.LogTime),
    "ticket.delete": ({"ticket_id": TICKET, "reason": "spam"}, c.DeleteTicket),
    "ticket.restore": ({"ticket_id": TICKET}, c.RestoreTicket),
    "ticket.redact": ({"ticket_id": TICKET, "author_id": TICKET}, c.RedactTicket),
    "ticket.ingest_email": ({"email_message_id": "<a@b>", "from_address": "a@b.example", "body": "hi",
                             "received_at": "2026-01-01T00:00:00Z"}, c.IngestEmail),
    "ticket.set_followers": ({"ticket_id": TICKET, "add": [str(uuid.uuid4())]}, c.SetFollowers),
    "ticket.record_attachment_scan": ({"ticket_id": TICKET, "attachment_id": str(uuid.uuid4()), "verdict": "clean",
                                       "scanner": "clamav 1.3", "scanned_at": "2026-01-01T00:00:00Z"},
                                      c.RecordAttachmentScan),
    "ticket.record_outbound_email": ({"ticket_id": TICKET, "email_message_id": "<n1@platform.example>",
                                      "sent_at": "2026-01-01T00:00:00Z"}, c.RecordOutboundEmail),
    "ticket.merge": ({"ticket_id": TICKET, "into_ticket_id": str(uuid.uuid4())}, c.MergeTicket),
}


@pytest.mark.parametrize("type_", VALID)
def test_commands_are_discriminated_by_type(type_: str) -> None:
    payload, model = VALID[type_]
    assert type(parse_command(command(type_, payload))) is model


def test_a_payload_of_another_type_is_refused() -> None:
    with pytest.raises(ValidationError):
        parse_command(command("ticket.log_time", VALID["ticket.delete"][0]))


def test_an_unknown_type_is_refused() -> None:
    with pytest.raises(ValidationError):
        parse_command(command("ticket.explode", {"ticket_id": TICKET}))


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValidationError):
        parse_command(command("ticket.restore", {"ticket_id": TICKET, "force": True}))


# ---- SPEC §4 limits -------------------------------------------------------------------------
def create(**fields: Any) -> str:
    return command("ticket.create", {"ticket_id": TICKET, "title": "t", "description": "d", **fields})


def reply(body: str) -> str:
    return command("ticket.add_reply", {"ticket_id": TICKET, "reply_id": str(uuid.uuid4()), "body": body})


def log(minutes: Any) -> str:
    return command("ticket.log_time", {"ticket_id": TICKET, "entry_id": str(uuid.uuid4()), "minutes": minutes})


LIMITS = [
    ("title of 1", create(title="x"), True),
    ("title of 200", create(title="x" * 200), True),
    ("title of 201", create(title="x" * 201), False),
    ("empty title", create(title=""), False),
    ("blank title", create(title="   "), False),
    ("description of 1", create(description="x"), True),
    ("description of 20000", create(description="x" * 20_000), True),
    ("description of 20001", create(description="x" * 20_001), False),
    ("empty description", create(description=""), False),
    ("reply of 1", reply("x"), True),
    ("reply of 50000", reply("x" * 50_000), True),
    ("reply of 50001", reply("x" * 50_001), False),
    ("empty reply", reply(""), False),
    ("1 minute", log(1), True),
    ("1440 minutes", log(1440), True),
    ("0 minutes", log(0), False),
    ("1441 minutes", log(1441), False),
    ("negative minutes", log(-5), False),
    ("fractional minutes", log(1.5), False),
    ("slug tags", create(tags=["vip", "billing-2", "a1-b2-c3"]), True),
    ("upper-case tag", create(tags=["VIP"]), False),
    ("tag with a space", create(tags=["big deal"]), False),
    ("tag with a double hyphen", create(tags=["a--b"]), False),
    ("tag with a leading hyphen", create(tags=["-a"]), False),
    ("empty tag", create(tags=[""]), False),
    ("tag of 51", create(tags=["x" * 51]), False),
    ("21 tags", create(tags=[f"t{i}" for i in range(21)]), False),
    ("unknown priority", create(priority="whenever"), False),
    ("unknown channel", create(channel="pigeon"), False),
    ("unknown status", command("ticket.change_status", {"ticket_id": TICKET, "status": "limbo"}), False),
    ("expected_version 0", command("ticket.restore", {"ticket_id": TICKET, "expected_version": 0}), False),
]


@pytest.mark.parametrize(("raw", "valid"), [pytest.param(raw, ok, id=name) for name, raw, ok in LIMITS])
def test_limits(raw: str, valid: bool) -> None:
    if valid:
        parse_command(raw)
    else:
        with pytest.raises(ValidationError):
            parse_command(raw)


# ---- envelope and payload rules -------------------------------------------------------------
def test_a_customer_actor_needs_a_customer_id() -> None:
    with pytest.raises(ValidationError, match="customer_id"):
        Actor(user_id=uuid.uuid4(), role="customer")
    with pytest.raises(ValidationError, match="customer_id"):
        parse_command(command("ticket.restore", {"ticket_id": TICKET},
                              actor={"user_id": str(uuid.uuid4()), "role": "customer"}))
    Actor(user_id=uuid.uuid4(), role="customer", customer_id=uuid.uuid4())
    Actor(user_id=uuid.uuid4(), role="agent")


def test_an_update_must_change_something() -> None:
    with pytest.raises(ValidationError, match="at least one"):
        parse_command(command("ticket.update", {"ticket_id": TICKET}))
    with pytest.raises(ValidationError, match="at least one"):
        parse_command(command("ticket.update", {"ticket_id": TICKET, "expected_version": 3}))


@pytest.mark.parametrize("name", ["title", "description", "priority", "tags"])
def test_an_update_cannot_null_a_required_field(name: str) -> None:
    with pytest.raises(ValidationError, match="cannot be null"):
        parse_command(command("ticket.update", {"ticket_id": TICKET, name: None}))


def test_an_update_may_clear_the_category() -> None:
    cmd = parse_command(command("ticket.update", {"ticket_id": TICKET, "category_id": None}))
    assert cmd.payload.changed_fields() == {"category_id": None}  # type: ignore[attr-defined]


# ---- JSON Schema ---------------------------------------------------------------------------
def test_json_schemas_cover_every_message_kind() -> None:
    schemas = json_schemas()
    assert {"command", "query", "event", "command-result"} <= set(schemas)
    text = json.dumps(schemas)
    command_types = set(VALID)
    event_types = {f"ticket.{t}" for t in ("created", "updated", "status_changed", "assigned", "reply_added",
                                           "time_logged", "deleted", "restored", "merged", "merge_received",
                                           "followers_changed", "attachment_scanned", "redacted")}
    query_types = {f"ticket.{t}" for t in ("get", "list", "my", "search", "thread", "history", "time_entries")}
    for name, types in (("command", command_types), ("event", event_types), ("query", query_types)):
        mapping = schemas[name]["discriminator"]["mapping"]
        assert set(mapping) == types, name
    result = schemas["command-result"]
    assert {"command_id", "status", "reason", "event_ids", "ticket_version"} <= set(result["properties"])
    assert "reason_required" in text and "invalid_assignee" in text  # reason codes are enumerated


# ---- independence --------------------------------------------------------------------------
def test_contracts_never_import_the_service() -> None:
    probe = (
        "import sys, importlib, pkgutil, ticket_contracts\n"
        "for m in pkgutil.iter_modules(ticket_contracts.__path__):\n"
        "    importlib.import_module('ticket_contracts.' + m.name)\n"
        "leaked = sorted(n for n in sys.modules if n.split('.')[0] in "
        "{'service', 'sqlalchemy', 'faststream', 'asyncpg', 'aiokafka'})\n"
        "print(','.join(leaked))\n"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == ""
