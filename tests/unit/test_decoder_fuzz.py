"""Fuzzing the decoders (hypothesis): every byte string becomes exactly one of a command (query), a
``validation_error`` answer, or a dead letter — without raising, in bounded time and memory.

Inputs come from four sources: arbitrary bytes; arbitrary JSON; valid commands and queries with one
part replaced, removed or wrapped in deep nesting; and valid messages with bytes cut or spliced in.
The budget is fixed (``EXAMPLES`` per decoder, about 20 s in all on the CI machine); ``HYPOTHESIS_FUZZ_EXAMPLES`` raises it for a longer local run.
"""

from __future__ import annotations

import json
import os
import time
import tracemalloc
import uuid
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from ticket_contracts import Actor, topics
from ticket_contracts.commands import AddReply, AssignTicket, ChangeStatus, CreateTicket, IngestEmail, LogTime
from ticket_contracts.queries import GetTicket, ListTickets

from service.adapters.auth import ActorResolver
from service.entrypoints.decoding import DeadLetter, decode_command
from service.entrypoints.query_decoding import IncomingQuery, decode_query
from service.handlers.messages import Incoming

EXAMPLES = int(os.environ.get("HYPOTHESIS_FUZZ_EXAMPLES", "2000"))
MAX_BYTES = 1_048_576
#: Generous bounds: they catch super-linear blow-ups (a deep recursion, a quadratic parse), not slowness.
CPU_SECONDS = 1.0
PEAK_BYTES = 64 * 1_048_576
RESOLVER = ActorResolver("trust")
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=False, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much])

ACTOR = Actor(user_id=uuid.uuid4(), role="customer", customer_id=uuid.uuid4())
TICKET = uuid.uuid4()


def _commands() -> list[dict[str, Any]]:
    made = [
        CreateTicket(actor=ACTOR, payload={"ticket_id": TICKET, "title": "T", "description": "D", "tags": ["a"]}),
        AddReply(actor=ACTOR, payload={"ticket_id": TICKET, "reply_id": uuid.uuid4(), "body": "hello"}),
        ChangeStatus(actor=ACTOR, payload={"ticket_id": TICKET, "status": "pending"}),
        AssignTicket(actor=ACTOR, payload={"ticket_id": TICKET, "assignee_id": uuid.uuid4()}),
        LogTime(actor=ACTOR, payload={"ticket_id": TICKET, "entry_id": uuid.uuid4(), "minutes": 5}),
        IngestEmail(actor=Actor(user_id=uuid.uuid4(), role="system"),
                    payload={"email_message_id": "<a@b>", "from_address": "a@b.test", "body": "hi",
                             "received_at": "2026-01-01T00:00:00Z"}),
    ]
    return [json.loads(m.model_dump_json()) for m in made]


def _queries() -> list[dict[str, Any]]:
    made = [GetTicket(actor=ACTOR, payload={"ticket_id": TICKET}), ListTickets(actor=ACTOR, payload={})]
    return [json.loads(m.model_dump_json()) for m in made]


COMMANDS, QUERIES = _commands(), _queries()

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50)
    | st.sampled_from(["ticket.create", "ticket.get", str(uuid.uuid4()), "customer", "", "\x00", "\\u0000"]),
    lambda inner: st.lists(inner, max_size=8) | st.dictionaries(st.text(max_size=12), inner, max_size=8),
    max_leaves=40,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found += _paths(item, (*prefix, i))
    return found


@st.composite
def mutated(draw: st.DrawFn, templates: list[dict[str, Any]]) -> bytes:
    """A valid message with one part replaced, removed, or wrapped in (possibly very deep) nesting."""
    message = json.loads(json.dumps(draw(st.sampled_from(templates))))
    path = draw(st.sampled_from(_paths(message)[1:]))
    parent = message
    for step in path[:-1]:
        parent = parent[step]
    action = draw(st.sampled_from(["keep", "replace", "remove", "nest", "huge"]))
    if action == "keep":
        return json.dumps(message).encode()
    if action == "remove":
        del parent[path[-1]]
        return json.dumps(message).encode()
    if action == "replace":
        parent[path[-1]] = draw(json_values)
        return json.dumps(message).encode()
    marker = "__HOLE__"
    parent[path[-1]] = marker
    head, tail = json.dumps(message).encode().split(b'"__HOLE__"')
    if action == "nest":
        depth = draw(st.integers(1, 20_000))
        open_, close = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
        return head + open_ * depth + b"1" + close * depth + tail
    filler = draw(st.sampled_from([b'"' + b"x" * 300_000 + b'"', b"9" * 5000, b"[" + b"1," * 2000 + b"1]", b"1e999",
                                   b"-" + b"9" * 30, b'"' + b"\\ud800" * 10 + b'"']))
    return head + filler + tail


@st.composite
def spliced(draw: st.DrawFn, templates: list[dict[str, Any]]) -> bytes:
    """A valid message with bytes cut out of it or spliced into it."""
    value = json.dumps(draw(st.sampled_from(templates))).encode()
    at = draw(st.integers(0, len(value)))
    cut = draw(st.integers(0, 20))
    return value[:at] + draw(st.binary(max_size=20)) + value[at + cut:]


def inputs(templates: list[dict[str, Any]]) -> st.SearchStrategy[bytes]:
    return st.one_of(st.binary(max_size=300), json_values.map(lambda v: json.dumps(v).encode()),
                     mutated(templates), mutated(templates), spliced(templates))


def _record(value: bytes, reply_to: bytes, topic: str) -> SimpleNamespace:
    return SimpleNamespace(value=value, headers=[(topics.HEADER_REPLY_TO, reply_to)], key=b"k",
                           topic=topic, partition=0, offset=1)


def _bounded(decode: Any, value: bytes) -> Any:
    tracemalloc.start()
    started = time.process_time()
    try:
        outcome = decode(value)
    finally:
        seconds = time.process_time() - started
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert seconds < CPU_SECONDS, f"decoding {len(value)} bytes took {seconds:.2f} s of CPU"
    assert peak < PEAK_BYTES, f"decoding {len(value)} bytes peaked at {peak} bytes"
    return outcome


reply_tos = st.sampled_from([b"tickets.replies.fuzz"] * 3 + [b"notifications.commands.v1", b"", b"\xff\xfe"])


@FUZZ
@given(value=inputs(COMMANDS), reply_to=reply_tos)
def test_every_byte_string_is_a_command_a_validation_error_or_a_dead_letter(value: bytes, reply_to: bytes) -> None:
    outcome = _bounded(lambda v: decode_command(_record(v, reply_to, topics.COMMANDS), RESOLVER, MAX_BYTES), value)

    event(outcome.error_class if isinstance(outcome, DeadLetter) else outcome.invalid_reason if outcome.invalid
          else "command")
    if isinstance(outcome, DeadLetter):
        assert outcome.error_class and isinstance(outcome.error_message, str)
    else:
        assert isinstance(outcome, Incoming)
        is_command = outcome.command is not None and outcome.invalid is None
        is_validation_error = outcome.invalid is not None and outcome.invalid_reason == "validation_error"
        assert is_command != is_validation_error, "exactly one of a command and a validation_error"
        assert outcome.reply_to in (None, "tickets.replies.fuzz"), "a refused reply_to is never kept"


@FUZZ
@given(value=inputs(QUERIES), reply_to=reply_tos)
def test_every_byte_string_is_a_query_a_validation_error_or_a_dead_letter(value: bytes, reply_to: bytes) -> None:
    outcome = _bounded(lambda v: decode_query(_record(v, reply_to, topics.QUERIES), RESOLVER, MAX_BYTES), value)

    event(outcome.error_class if isinstance(outcome, DeadLetter) else outcome.refusal[0] if outcome.refusal
          else "query")
    if isinstance(outcome, DeadLetter):
        assert outcome.error_class and isinstance(outcome.error_message, str)
    else:
        assert isinstance(outcome, IncomingQuery) and outcome.reply_to == "tickets.replies.fuzz"
        is_query = outcome.query is not None and outcome.refusal is None
        is_validation_error = outcome.query is None and outcome.refusal is not None \
            and outcome.refusal[0] == "validation_error"
        assert is_query != is_validation_error, "exactly one of a query and a validation_error"


@pytest.mark.parametrize("depth", [10_000, 100_000])
def test_the_reported_attack_a_20_kb_command_nested_10000_deep(depth: int) -> None:
    value = json.dumps(COMMANDS[0]).encode()[:-1] + b', "x": ' + b"[" * depth + b"]" * depth + b"}"
    outcome = _bounded(lambda v: decode_command(_record(v, b"tickets.replies.fuzz", topics.COMMANDS),
                                                RESOLVER, MAX_BYTES), value)
    assert isinstance(outcome, DeadLetter) and outcome.error_class == "LimitExceeded"
