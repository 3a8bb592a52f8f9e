"""The unit-of-work contract: the same checks against the in-memory fake and against PostgreSQL.

Every test speaks only :class:`service.handlers.unit_of_work.UnitOfWork` (plus the bus's
``handle_batch``, which uses nothing else), so the fake the unit tests trust behaves like the SQL
implementation the service runs: all-or-nothing commits, the inbox, absent ids that can be locked
and then created, several tickets changed by one command, refused constraints, numbers, the
user directory and the mail records.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy.ext.asyncio import create_async_engine
from ticket_contracts import Actor, AddReply, CreateTicket, IngestEmail, MergeTicket, new_id

from service.adapters.unit_of_work import SqlUnitOfWork
from service.domain.ticket import Ticket, format_number
from service.domain.values import Actor as DomainActor
from service.domain.values import Role, Status
from service.handlers.bus import handle_batch
from service.handlers.messages import Outcome, Stamp
from service.handlers.unit_of_work import ConstraintViolation, UnitOfWork
from tests.integration.uow_helpers import add_user, customer, incoming, staff
from tests.unit.fakes import FakeUnitOfWork, seed_user

SYSTEM = Actor(user_id=uuid.uuid4(), role="system")


@dataclass
class Backend:
    """A unit-of-work implementation under test: fresh units of work on one store, and a way to
    put users into its directory (the replica, which the command side only reads)."""

    name: str
    uow: Callable[[], UnitOfWork]
    add_user: Callable[[str, str, uuid.UUID | None, bool], Awaitable[uuid.UUID]]

    async def user(self, role: str, email: str, *, customer_id: uuid.UUID | None = None,
                   active: bool = True) -> uuid.UUID:
        return await self.add_user(role, email, customer_id, active)

    async def run(self, *commands: object, reply_to: str | None = None) -> list[Outcome]:
        return await handle_batch([incoming(c, reply_to=reply_to) for c in commands], self.uow())  # type: ignore[arg-type]


@pytest.fixture(params=["fake", "postgres"])
async def backend(request: pytest.FixtureRequest, database_url: str) -> AsyncIterator[Backend]:
    if request.param == "fake":
        fake = FakeUnitOfWork()

        async def fake_user(role: str, email: str, customer_id: uuid.UUID | None, active: bool) -> uuid.UUID:
            return seed_user(fake, Role(role), email=email, customer_id=customer_id, active=active).user_id

        yield Backend("fake", lambda: fake, fake_user)
        return
    engine = create_async_engine(database_url)

    async def sql_user(role: str, email: str, customer_id: uuid.UUID | None, active: bool) -> uuid.UUID:
        return await add_user(engine, role, email=email, customer_id=customer_id, active=active)

    try:
        yield Backend("postgres", lambda: SqlUnitOfWork(engine), sql_user)
    finally:
        await engine.dispose()


def _create(ticket_id: uuid.UUID, actor: Actor | None = None) -> CreateTicket:
    return CreateTicket(actor=actor or customer(), payload={"ticket_id": ticket_id, "title": "T", "description": "D"})


async def _load(backend: Backend, ticket_id: uuid.UUID) -> Ticket | None:
    async with backend.uow() as uow:
        return await uow.load(ticket_id)


def _unique_address() -> str:
    return f"{uuid.uuid4().hex[:12]}@contract.test"


# ---- commit or nothing ------------------------------------------------------------------------
async def test_a_committed_batch_is_read_back_with_its_inbox_row(backend: Backend) -> None:
    ticket_id = new_id()
    command = _create(ticket_id)
    [outcome] = await backend.run(command, reply_to="tickets.replies.contract")

    ticket = await _load(backend, ticket_id)
    assert ticket is not None and (ticket.version, ticket.status) == (1, Status.NEW)
    async with backend.uow() as uow:
        stored = await uow.processed([command.message_id, uuid.uuid4()])
        single = await uow.result_of(command.message_id)
    assert list(stored) == [command.message_id]
    assert stored[command.message_id].result == outcome.result == (single.result if single else None)
    assert stored[command.message_id].reply_to == "tickets.replies.contract"
    assert stored[command.message_id].fingerprint is not None


async def test_leaving_without_commit_forgets_everything(backend: Backend) -> None:
    ticket_id = new_id()
    async with backend.uow() as uow:
        await uow.lock_tickets([ticket_id])
        await uow.reserve_numbers(1)
        ticket = _new_ticket(ticket_id, format_number(await uow.next_number()))
        uow.add(ticket)
        uow.record_events(ticket.take_events(), _stamp())
        assert uow.get(ticket_id) is ticket  # the batch sees its own change
    assert await _load(backend, ticket_id) is None


async def test_a_locked_absent_id_can_be_created_and_committed(backend: Backend) -> None:
    ticket_id = new_id()
    async with backend.uow() as uow:
        await uow.lock_tickets([ticket_id])
        assert uow.get(ticket_id) is None and await uow.load(ticket_id) is None
        await uow.reserve_numbers(1)
        ticket = _new_ticket(ticket_id, format_number(await uow.next_number()))
        uow.add(ticket)
        uow.record_events(ticket.take_events(), _stamp())
        await uow.commit()
    found = await _load(backend, ticket_id)
    assert found is not None and found.id == ticket_id


async def test_locking_loads_existing_tickets_into_the_identity_map(backend: Backend) -> None:
    present, absent = new_id(), new_id()
    await backend.run(_create(present))
    async with backend.uow() as uow:
        await uow.lock_tickets([absent, present, present])
        ticket = uow.get(present)
        assert ticket is not None and ticket.id == present
        assert uow.get(absent) is None
        assert await uow.load(present) is ticket  # one object per ticket within a batch


# ---- several tickets per command --------------------------------------------------------------
async def test_a_two_ticket_command_keeps_both_changes(backend: Backend) -> None:
    owner = customer()
    source, target = new_id(), new_id()
    await backend.run(_create(source, owner), _create(target, owner))

    [merged] = await backend.run(MergeTicket(actor=staff(), payload={"ticket_id": source, "into_ticket_id": target}))

    assert merged.status == "accepted"
    assert merged.result is not None and len(merged.result.event_ids) == 3
    after_source, after_target = await _load(backend, source), await _load(backend, target)
    assert after_source is not None and after_target is not None
    assert (after_source.status, after_source.merged_into, after_source.version) == (Status.CLOSED, target, 3)
    assert (after_target.merged_from, after_target.version) == ([source], 2)


# ---- constraints ------------------------------------------------------------------------------
async def test_a_reused_reply_id_is_a_constraint_violation_and_nothing_of_the_batch_is_written(
    backend: Backend,
) -> None:
    ticket_id = new_id()
    await backend.run(_create(ticket_id))
    agent, reply_id = staff(), uuid.uuid4()
    await backend.run(AddReply(actor=agent, payload={"ticket_id": ticket_id, "reply_id": reply_id, "body": "one"}))
    other = new_id()
    with pytest.raises(ConstraintViolation):
        await backend.run(_create(other),
                          AddReply(actor=agent, payload={"ticket_id": ticket_id, "reply_id": reply_id, "body": "two"}))
    assert await _load(backend, other) is None
    ticket = await _load(backend, ticket_id)
    assert ticket is not None and ticket.version == 3  # created, reply, auto-open: nothing of the refused batch


async def _add_new_ticket(backend: Backend, ticket: Ticket) -> None:
    async with backend.uow() as uow:
        uow.add(ticket)
        uow.record_events(ticket.take_events(), _stamp())
        await uow.commit()


async def test_a_taken_ticket_number_or_id_is_a_constraint_violation(backend: Backend) -> None:
    existing = new_id()
    await backend.run(_create(existing))
    stored = await _load(backend, existing)
    assert stored is not None
    fresh = new_id()
    with pytest.raises(ConstraintViolation):  # the number is unique
        await _add_new_ticket(backend, _new_ticket(fresh, stored.number))
    with pytest.raises(ConstraintViolation):  # and the id is the key
        await _add_new_ticket(backend, _new_ticket(existing, format_number(10**8 + 1)))
    assert await _load(backend, fresh) is None
    again = await _load(backend, existing)
    assert again is not None and (again.number, again.version) == (stored.number, stored.version)


# ---- numbers ----------------------------------------------------------------------------------
async def test_numbers_are_never_handed_out_twice_even_after_a_rollback(backend: Backend) -> None:
    async with backend.uow() as uow:
        await uow.reserve_numbers(2)
        first, second = await uow.next_number(), await uow.next_number()
    async with backend.uow() as uow:
        await uow.reserve_numbers(1)
        third = await uow.next_number()
    assert first < second < third


async def test_a_ticket_is_found_by_its_number(backend: Backend) -> None:
    ticket_id = new_id()
    await backend.run(_create(ticket_id))
    ticket = await _load(backend, ticket_id)
    assert ticket is not None
    async with backend.uow() as uow:
        assert await uow.ticket_id_by_number(ticket.number) == ticket_id
        assert await uow.ticket_id_by_number("TKT-999999999") is None


# ---- the user directory -----------------------------------------------------------------------
async def test_users_are_read_by_id_and_by_address_an_active_one_winning(backend: Backend) -> None:
    address = _unique_address()
    company = uuid.uuid4()
    gone = await backend.user("customer", address, customer_id=company, active=False)
    current = await backend.user("customer", address, customer_id=company)  # the replica holds lower case
    agent = await backend.user("agent", _unique_address())
    async with backend.uow() as uow:
        by_id = await uow.users([agent, gone, uuid.uuid4()])
        assert set(by_id) == {agent, gone}
        assert (by_id[agent].role, by_id[gone].active) == (Role.AGENT, False)
        single = await uow.user_by_email(address.upper())
        many = await uow.users_by_email([address, "nobody@contract.test"])
    assert single is not None and single.user_id == current
    assert list(many) == [address] and many[address].user_id == current and many[address].customer_id == company


# ---- mail records -----------------------------------------------------------------------------
async def test_an_ingested_mail_is_known_by_its_message_id_and_counts_for_its_sender(backend: Backend) -> None:
    address = _unique_address()
    await backend.user("customer", address, customer_id=uuid.uuid4())
    message_id = f"<{uuid.uuid4().hex}@contract.test>"
    before = datetime.now(UTC) - timedelta(minutes=1)
    command = IngestEmail(actor=SYSTEM, payload={
        "email_message_id": message_id, "from_address": address, "subject": "Help", "body": "It broke",
        "received_at": datetime.now(UTC)})
    [outcome] = await backend.run(command)
    assert outcome.status == "accepted" and outcome.result is not None
    async with backend.uow() as uow:
        known = await uow.email_known([message_id, "<unknown@contract.test>"])
        opened = await uow.new_tickets_by_mail(address, before)
    assert list(known) == [message_id]
    assert (known[message_id].ticket_id, known[message_id].command_id) == (outcome.result.ticket_id, command.message_id)
    assert not known[message_id].outbound
    assert opened == 1


def _stamp() -> Stamp:
    message_id = uuid.uuid4()
    return Stamp(DomainActor(uuid.uuid4(), Role.AGENT, None), message_id, message_id)


def _new_ticket(ticket_id: uuid.UUID, number: str) -> Ticket:
    now = datetime.now(UTC)
    return Ticket.open_new(
        ticket_id=ticket_id, number=number, customer_id=uuid.uuid4(),
        actor=DomainActor(uuid.uuid4(), Role.AGENT, None), title="T", description="D", priority="normal",
        category_id=None, channel="web", tags=[], now=now, attachments=[],
    )
