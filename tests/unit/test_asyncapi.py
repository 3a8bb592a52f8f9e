"""asyncapi.yaml is generated from the app, never hand-edited: this fails when it is stale."""

from __future__ import annotations

from pathlib import Path

import yaml
from ticket_contracts import topics

from service.app import docs_app

ROOT = Path(__file__).resolve().parents[2]
REGENERATE = ".venv/bin/faststream docs gen --factory service.app:docs_app --yaml --out asyncapi.yaml"


def generated() -> dict:
    return yaml.safe_load(docs_app().schema.to_specification().to_yaml())


def test_asyncapi_yaml_matches_the_code() -> None:
    on_disk = yaml.safe_load((ROOT / "asyncapi.yaml").read_text())
    assert on_disk == generated(), f"asyncapi.yaml is stale; regenerate it with: {REGENERATE}"


def test_every_topic_of_the_spec_is_documented() -> None:
    spec = generated()
    addresses = {channel["address"] for channel in spec["channels"].values()}
    assert spec["asyncapi"].startswith("3.")
    assert set(topics.ALL_TOPICS) <= addresses


def test_every_command_query_and_event_type_has_a_schema() -> None:
    schemas = generated()["components"]["schemas"]
    for name in ("CreateTicket", "IngestEmail", "GetTicket", "ListTickets", "TicketCreated", "TicketReplyAdded",
                 "CommandResult", "ErrorAnswer", "Heartbeat", "UserUpserted"):
        assert name in schemas, name
