"""A reproducible mix of commands over many tickets, and checks of what the service published."""

from __future__ import annotations

import json
import random
import uuid
from collections import defaultdict
from typing import Any

from ticket_contracts import (
    Actor,
    AddReply,
    AssignTicket,
    ChangeStatus,
    CommandBase,
    CreateTicket,
    LogTime,
    UpdateTicket,
    new_id,
)


def interleaved_commands(tickets: int, total: int, agents: list[uuid.UUID], seed: int = 7) -> list[CommandBase]:
    """``tickets`` creates, then ``total - tickets`` replies, status changes, assignments, time
    entries and edits, interleaved across tickets at random (some will be rejected by the rules)."""
    rng = random.Random(seed)
    customers = [Actor(user_id=uuid.uuid4(), role="customer", customer_id=uuid.uuid4()) for _ in range(tickets)]
    agent_actors = [Actor(user_id=a, role="agent") for a in agents]
    ids = [new_id() for _ in range(tickets)]
    commands: list[CommandBase] = [
        CreateTicket(actor=c, payload={"ticket_id": t, "title": f"Ticket {i}", "description": "Something broke"})
        for i, (t, c) in enumerate(zip(ids, customers, strict=True))
    ]
    statuses = ["open", "in_progress", "pending", "resolved", "open", "in_progress"]
    for _ in range(total - tickets):
        i = rng.randrange(tickets)
        ticket, customer, agent = ids[i], customers[i], rng.choice(agent_actors)
        kind = rng.random()
        if kind < 0.35:
            actor = customer if rng.random() < 0.5 else agent
            commands.append(AddReply(actor=actor, payload={"ticket_id": ticket, "reply_id": new_id(),
                                                          "body": "Any news?", "internal": actor is agent and rng.random() < 0.3}))
        elif kind < 0.6:
            commands.append(ChangeStatus(actor=agent, payload={"ticket_id": ticket, "status": rng.choice(statuses),
                                                              "reason": "working on it"}))
        elif kind < 0.75:
            commands.append(AssignTicket(actor=agent, payload={"ticket_id": ticket, "assignee_id": rng.choice(agents)}))
        elif kind < 0.9:
            commands.append(LogTime(actor=agent, payload={"ticket_id": ticket, "entry_id": new_id(),
                                                         "minutes": rng.randint(1, 120)}))
        else:
            commands.append(UpdateTicket(actor=agent, payload={"ticket_id": ticket,
                                                              "priority": rng.choice(["low", "high", "urgent"])}))
    return commands


def check_event_stream(records: list[Any], final_versions: dict[uuid.UUID, int]) -> None:
    """Per ticket: after de-duplication by ticket_version, versions arrive in order as 1..n with no
    gap; a re-published version always carries the same event_id."""
    seen: dict[str, dict[int, str]] = defaultdict(dict)
    for record in records:
        event = json.loads(record.value)
        ticket, version, event_id = event["ticket_id"], event["ticket_version"], event["event_id"]
        assert record.key == ticket.encode(), "events are keyed by ticket id"
        versions = seen[ticket]
        if version in versions:
            assert versions[version] == event_id, f"{ticket} v{version} published with two event ids"
            continue
        assert version == len(versions) + 1, f"{ticket}: got v{version} after v{len(versions)}"
        versions[version] = event_id
    for ticket, final in final_versions.items():
        assert len(seen[str(ticket)]) == final, f"{ticket}: {len(seen[str(ticket)])} events, version {final}"
