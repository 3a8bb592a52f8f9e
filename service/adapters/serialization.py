"""Typed events and results → the JSON of ticket_contracts messages, built as plain dicts for speed;
query answers (contract models) → their JSON, byte for byte what pydantic writes, faster.

The shapes are those of ``ticket_contracts.events`` / ``results``; tests validate every
serialised message against the contract models, so the two cannot drift apart unnoticed.
orjson writes UUIDs, aware datetimes (RFC 3339), enums and dataclasses natively, several times
faster than the standard library on this hot path.
"""

from __future__ import annotations

import typing
import uuid
from datetime import datetime
from typing import Any

import orjson
from pydantic import BaseModel
from ticket_contracts.answers import Answer, AnswerBase

from service.domain.events import DomainEvent
from service.domain.values import Actor, Role
from service.handlers.messages import Result, Stamp


def _default(value: Any) -> Any:
    if isinstance(value, uuid.UUID):  # asyncpg's own UUID subclass, which orjson does not take as one
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    raise TypeError(f"cannot serialise {type(value).__name__}")


def dumps(value: Any) -> str:
    return orjson.dumps(value, default=_default).decode()


def actor_dict(actor: Actor) -> dict[str, Any]:
    return {"user_id": actor.user_id, "role": actor.role, "customer_id": actor.customer_id}


def event_json(event: DomainEvent, stamp: Stamp) -> str:
    """One event exactly as it is stored in the history and published."""
    return dumps({
        "message_id": event.event_id, "event_id": event.event_id, "type": event.type, "schema_version": 1,
        "correlation_id": stamp.correlation_id, "causation_id": stamp.causation_id,
        "occurred_at": event.occurred_at, "actor": actor_dict(stamp.actor), "ticket_id": event.ticket_id,
        "ticket_version": event.version, "internal": event.internal, "ticket": event.snapshot,
        "payload": event.payload,
    })


def result_json(r: Result) -> str:
    return dumps({
        "message_id": r.message_id, "type": "ticket.command_result", "schema_version": 1,
        "correlation_id": r.correlation_id, "causation_id": r.command_id, "sent_at": r.sent_at,
        "actor": actor_dict(r.actor) if r.actor else None, "command_id": r.command_id,
        "command_type": r.command_type, "ticket_id": r.ticket_id, "status": r.status,
        "event_ids": r.event_ids, "ticket_version": r.ticket_version, "reason": r.reason, "message": r.message,
        "unknown_cc": r.unknown_cc,
    })


def result_from_json(text: str) -> Result:
    """A stored result back as the typed value (inbox duplicates are re-sent from it)."""
    d = orjson.loads(text)
    a = d.get("actor")
    actor = Actor(uuid.UUID(a["user_id"]), Role(a["role"]), _uuid(a.get("customer_id"))) if a else None
    return Result(
        message_id=uuid.UUID(d["message_id"]), command_id=uuid.UUID(d["command_id"]),
        command_type=d["command_type"], correlation_id=_uuid(d.get("correlation_id")), actor=actor,
        ticket_id=_uuid(d.get("ticket_id")), sent_at=datetime.fromisoformat(d["sent_at"]),
        event_ids=tuple(uuid.UUID(e) for e in d.get("event_ids") or ()), ticket_version=d.get("ticket_version"),
        reason=d.get("reason"), message=d.get("message"), unknown_cc=tuple(d.get("unknown_cc") or ()),
    )


def _uuid(value: str | None) -> uuid.UUID | None:
    return uuid.UUID(value) if value else None


def answer_json(answer: AnswerBase) -> bytes:
    """A query answer's JSON: the bytes ``answer.model_dump_json()`` writes, faster
    (``bench.answers``: a thread of 200 replies ~0.88 → 0.27 ms, a page of 25 tickets 0.11 → 0.06;
    bench/README.md, "Answers on the wire").

    orjson walks the answer, each contract model as its fields (``__dict__``: these models have no
    aliases, serializers, computed fields or extras — :func:`_plain_models` checks that at import),
    UTC as ``Z`` as pydantic writes it. Anything else orjson cannot write natively (a set or an
    int beyond 64 bits in a history payload) falls back to pydantic's own
    serialisation of the whole answer, so the answer is never wrong, only slower."""
    try:
        return orjson.dumps(answer, default=_answer_part, option=orjson.OPT_UTC_Z)
    except TypeError:  # orjson.JSONEncodeError
        return answer.model_dump_json().encode()


def _answer_part(value: Any) -> Any:
    if isinstance(value, uuid.UUID):  # asyncpg's UUID subclass (plain uuid.UUID is native)
        return str(value)
    if type(value) in _ANSWER_MODELS:  # exact types: a subclass's extra fields would be written too
        return value.__dict__
    raise TypeError(f"not an answer part: {type(value).__name__}")


def _plain_models(root: Any) -> frozenset[type[BaseModel]]:
    """The contract models reachable from ``root`` (a type hint), each checked to serialise as
    exactly its fields in order: no aliases, no custom or computed serialisation, no extras."""
    found: set[type[BaseModel]] = set()

    def walk(hint: Any) -> None:
        if isinstance(hint, type) and issubclass(hint, BaseModel):
            if hint in found:
                return
            found.add(hint)
            decorators = hint.__pydantic_decorators__
            if (hint.model_config.get("extra") != "forbid" or hint.model_computed_fields
                    or decorators.field_serializers or decorators.model_serializers
                    or any(f.alias or f.serialization_alias or f.exclude for f in hint.model_fields.values())):
                raise TypeError(f"{hint.__name__} does not serialise as its fields: answer_json cannot write it")
            for field in hint.model_fields.values():
                walk(field.annotation)
            return
        for arg in typing.get_args(hint):  # Annotated, unions, list[...], dict[...]
            walk(arg)

    walk(root)
    return frozenset(found)


_ANSWER_MODELS = _plain_models(Answer)
