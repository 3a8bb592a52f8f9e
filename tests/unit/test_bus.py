"""The bus: one registry derived from the contract, commands that change several tickets, and the
fallbacks that isolate the one command a batch cannot commit with."""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any, get_args

import pytest
from ticket_contracts.commands import COMMAND_TYPES, Command

from service.domain.values import Status
from service.handlers import bus
from service.handlers.unit_of_work import UnitOfWork

from .fakes import FakeUnitOfWork, agent, log_time, reply, result_dict, run, run_bus, seed_ticket


def test_every_command_of_the_contract_union_has_exactly_one_handler() -> None:
    union = {m.model_fields["type"].default for m in get_args(get_args(Command)[0])}
    assert set(COMMAND_TYPES) == union
    assert set(bus.REGISTRY) == union


async def test_a_command_that_changes_two_tickets_keeps_both_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Events are collected from every ticket the handler loaded, not only the one it returns."""
    uow = FakeUnitOfWork()
    first, second = seed_ticket(uow, Status.OPEN), seed_ticket(uow, Status.OPEN)
    registration = bus.REGISTRY["ticket.log_time"]

    async def on_both(cmd: Any, ctx: Any, uow_: UnitOfWork) -> Any:
        other = await uow_.load(second.id)
        assert other is not None
        other.log_time(ctx.actor, entry_id=uuid.uuid4(), minutes=1, note=None, now=ctx.now, expected_version=None)
        return await registration.handler(cmd, ctx, uow_)

    monkeypatch.setitem(bus.REGISTRY, "ticket.log_time", dataclasses.replace(
        registration, handler=on_both, tickets=lambda p: (p.ticket_id, second.id)))
    [outcome] = await run(uow, log_time(agent(), first.id, minutes=10))

    assert outcome.status == "accepted"
    assert (uow.ticket(first.id).time_spent_minutes, uow.ticket(second.id).time_spent_minutes) == (10, 1)
    events = {e["ticket_id"]: e for e in uow.event_bodies()}
    assert set(events) == {str(first.id), str(second.id)}
    result = result_dict(outcome)
    assert result["event_ids"] == [events[str(second.id)]["event_id"], events[str(first.id)]["event_id"]]
    assert (result["ticket_id"], result["ticket_version"]) == (str(first.id), 2)


async def test_a_batch_refused_by_a_constraint_is_handled_one_by_one() -> None:
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow, Status.OPEN)
    first = reply(agent(), ticket.id)
    clash = reply(agent(), ticket.id, reply_id=first.command.payload.reply_id)  # type: ignore[union-attr]
    outcomes = await run_bus(uow, log_time(agent(), ticket.id), first, clash)
    assert [(o.status, o.reason) for o in outcomes] == [("accepted", None), ("accepted", None), ("rejected", "conflict")]
    assert len(uow.replies) == 1


async def test_a_batch_failing_for_any_other_reason_is_split_until_the_culprit_is_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A failure the unit of work raises at commit (here: for one command's rows) is no handler
    crash: bisection finds the command, which alone is reported failed; the others commit."""
    uow = FakeUnitOfWork()
    ticket = seed_ticket(uow, Status.OPEN)
    items = [log_time(agent(), ticket.id, minutes=m) for m in range(1, 8)]
    poison = items[4].message_id
    real_commit = FakeUnitOfWork.commit
    attempts = []

    async def commit(self: FakeUnitOfWork) -> None:
        ids = [r.command_id for r, *_ in self._results]
        attempts.append(len(ids))
        if poison in ids:
            raise ValueError("the store cannot take this command's rows")
        await real_commit(self)

    monkeypatch.setattr(FakeUnitOfWork, "commit", commit)
    outcomes = await run_bus(uow, *items)

    assert [o.status for o in outcomes] == ["accepted"] * 4 + ["failed"] + ["accepted"] * 2
    assert isinstance(outcomes[4].error, ValueError)
    assert poison not in uow.inbox and len(uow.inbox) == 6
    assert uow.ticket(ticket.id).time_spent_minutes == sum(range(1, 8)) - 5
    assert len(attempts) < len(items) * 2  # halves, not one by one
