"""asyncapi.yaml is generated from the app, never hand-edited: this fails when it is stale."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import unquote

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


def _resolve(spec: dict, node: dict) -> dict:
    while "$ref" in node:
        node = spec["components"]["schemas"][unquote(node["$ref"].rsplit("/", 1)[-1])]
    return node


def _objects(spec: dict, schema: dict) -> list[dict]:
    """The object schemas a payload may be: itself, or each alternative of a oneOf."""
    schema = _resolve(spec, schema)
    if "oneOf" in schema:
        return [o for alt in schema["oneOf"] for o in _objects(spec, alt)]
    return [schema]


def test_every_channel_describes_one_message_per_record() -> None:
    """Kafka records carry one message each: never an array (the batch subscribers must not leak
    their list into the document); JSON channels are objects, dead-letter channels the raw bytes."""
    spec = generated()
    for name, channel in spec["channels"].items():
        assert channel["messages"], name
        for reference in channel["messages"].values():
            message = spec["components"]["messages"][unquote(reference["$ref"].rsplit("/", 1)[-1])]
            payload = _resolve(spec, message["payload"])
            assert payload.get("type") != "array", f"{name}: payload is an array"
            if channel["address"] in topics.DLQ_TOPICS:
                assert payload == {"type": "string", "format": "binary", "title": payload["title"]}, name
                continue
            for alternative in _objects(spec, payload):
                assert alternative["type"] == "object", f"{name}: {alternative.get('title')} is not an object"
                assert "type" in alternative["properties"], f"{name}: {alternative.get('title')} has no type"


def test_every_output_message_documents_its_headers() -> None:
    spec = generated()
    outputs = {topics.EVENTS, topics.COMMAND_RESULTS, "reply_to"}
    seen = set()
    for channel in spec["channels"].values():
        for reference in channel["messages"].values():
            message = spec["components"]["messages"][unquote(reference["$ref"].rsplit("/", 1)[-1])]
            headers = message["headers"]
            assert headers["type"] == "object"
            if channel["address"] in outputs:
                seen.add(channel["address"])
                assert set(headers["required"]) == {"correlation_id", "causation_id", "type", "content-type"}
                assert {"traceparent", "tracestate"} <= set(headers["properties"])
            if channel["address"] in topics.DLQ_TOPICS:
                assert {"dlq.error.class", "dlq.source.topic", "dlq.source.offset"} <= set(headers["required"])
    assert seen == outputs
