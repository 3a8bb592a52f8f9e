"""An idle instance polls less: after 10 s without records the command and query subscribers
fetch with the long idle wait, and the first batch brings back the short one (issue 12: idle cost).
Read through the subscribers' consumers, i.e. what aiokafka puts in its next FetchRequest."""

from __future__ import annotations

import uuid

from ticket_contracts import Actor, CreateTicket, new_id, topics
from ticket_contracts.client import TicketClient

from service.entrypoints.broker import PromptBatchSubscriber
from service.runtime import Runtime
from tests.support.waiting import eventually


def _subscriber(service: Runtime, topic: str) -> object:
    return next(s for s in service.broker.subscribers if topic in s.topic_names)  # type: ignore[attr-defined]


def _fetch_wait(subscriber: object) -> int:
    return subscriber.consumer._fetcher._fetch_max_wait_ms  # type: ignore[attr-defined]


async def test_every_subscriber_of_the_running_service_polls_again_at_once_after_an_empty_poll(
    service: Runtime,
) -> None:
    """No FastStream pause after an empty poll on any input (tests/unit/test_prompt_batches.py)."""
    assert {type(s) for s in service.broker.subscribers} == {PromptBatchSubscriber}


async def test_an_idle_command_subscriber_waits_longer_and_the_first_command_restores_the_short_wait(
    service: Runtime, client: TicketClient,
) -> None:
    s = service.settings
    commands = _subscriber(service, topics.COMMANDS)
    await eventually(lambda: _fetch_wait(commands) == s.idle_fetch_wait_ms, timeout=40,
                     what="the idle command subscriber to switch to the idle fetch wait")
    assert commands.batch_timeout_ms == s.idle_fetch_wait_ms  # type: ignore[attr-defined]
    assert service.fetch_waits is not None
    woken = service.fetch_waits.woken

    actor = Actor(user_id=uuid.uuid4(), role="customer", customer_id=uuid.uuid4())
    result = await client.send(CreateTicket(actor=actor, payload={"ticket_id": new_id(), "title": "T", "description": "D"}))

    assert result.status == "accepted"
    # the batch that carried the command switched the subscriber back to the short wait
    assert service.fetch_waits.woken > woken
    assert s.idle_fetch_wait_ms > s.fetch_max_wait_ms
